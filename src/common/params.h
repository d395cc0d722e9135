/* Kernel parameter structs are declared once, as a table X(S, type, name) in the op's header; this
 * expands a table into the C struct's fields. jit/codegen.h expands the same table into the CUDA
 * struct of the generated source, with static_asserts of the layout (docs/DESIGN.md §3.3). */
#ifndef MOEJIT_COMMON_PARAMS_H
#define MOEJIT_COMMON_PARAMS_H

#define MJ_PARAM_DECL(S, type, name) type name;

#endif
