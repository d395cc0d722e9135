/* Internal entry points of the C references, shared with the tests. */
#ifndef MOEJIT_SRC_REFERENCE_H
#define MOEJIT_SRC_REFERENCE_H

#include "moejit_reference.h"
#include "spec.h"

/* The smallest relative gap, in one row of E logits (already f32), between a choice the routing
 * makes and the best choice it does not make — at the group boundary (TG-th vs next group score)
 * and at the expert boundary (K-th vs next selection value among kept experts). Tests draw inputs
 * with a margin well above f32 rounding, so that kernel and reference must agree exactly. */
double mj_route_row_margin(const mj_route_shape *r, const float *logits, const float *bias);

struct mj_align_params;
/* align's counting sort over `experts` experts with block size `block_size`, on host memory
 * described by checked kernel parameters (route_align's reference runs it over E+S experts). */
moejit_status mj_align_reference_run(int experts, int block_size, const struct mj_align_params *p);

#endif
