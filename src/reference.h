/* Internal entry points of the C references, shared with the tests. */
#ifndef MOEJIT_REFERENCE_H
#define MOEJIT_REFERENCE_H

#include "spec.h"

/* Scores (val) and selection values (sel = score + bias) of one row of E logits, in double, as
 * the reference computes them; logits already converted to float. */
void mj_route_row_values(const mj_route_shape *r, const float *logits, const float *bias, double *val, double *sel);

#endif
