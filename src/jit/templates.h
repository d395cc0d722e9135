/* The kernel templates, embedded into the library at build time (cmake/embed_templates.cmake turns
 * each kernel_templates/NAME.cuh into the NUL-terminated array mj_template_NAME_cuh), so an
 * installed library needs no template directory. The prelude every source starts with is here;
 * each op declares its own template beside its codegen. */
#ifndef MOEJIT_JIT_TEMPLATES_H
#define MOEJIT_JIT_TEMPLATES_H

extern const char mj_template_common_cuh[];

#endif
