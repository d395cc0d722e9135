/* route's launch pieces, shared with route_align (whose kernels route with the same code). */
#ifndef MOEJIT_ROUTE_LAUNCH_H
#define MOEJIT_ROUTE_LAUNCH_H

#include "op_route.h"

/* Must match mj::RouteParams in kernel_templates/route.cuh. */
typedef struct mj_route_params {
    const void *logits;
    const float *bias;
    int32_t *ids;
    float *weights;
    int64_t num_tokens;
    int64_t row_stride;
} mj_route_params;

/* Check route arguments against a shape and fill the kernel parameters. `op` names the caller in
 * messages ("route", "route_align"). */
moejit_status mj_route_check_args(const char *op, const mj_route_shape *r, const moejit_route_args *a,
                                  mj_route_params *p);

#endif
