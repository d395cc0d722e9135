/* Internal entry points of the C references, shared with the tests. */
#ifndef MOEJIT_REFERENCE_H
#define MOEJIT_REFERENCE_H

#include "spec.h"

/* Scores (val) and selection values (sel = score + bias) of one row of E logits, in double, as
 * the reference computes them; logits already converted to float. */
void mj_route_row_values(const mj_route_shape *r, const float *logits, const float *bias, double *val, double *sel);

struct mj_align_params;
/* align's counting sort over `experts` experts with block size `block_size`, on host memory
 * described by checked kernel parameters (route_align's reference runs it over E+S experts). */
moejit_status mj_align_reference_run(int experts, int block_size, const struct mj_align_params *p);

#endif
