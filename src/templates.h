/* Kernel templates, embedded into the library at build time (cmake/embed_templates.cmake turns
 * each kernel_templates/NAME.cuh into a NUL-terminated C array), so an installed library needs no
 * template directory. */
#ifndef MOEJIT_TEMPLATES_H
#define MOEJIT_TEMPLATES_H

extern const char mj_template_common_cuh[];
extern const char mj_template_route_cuh[];
extern const char mj_template_rows_cuh[];
extern const char mj_template_align_cuh[];
extern const char mj_template_route_align_cuh[];
extern const char mj_template_mx_scales_cuh[];

#endif
