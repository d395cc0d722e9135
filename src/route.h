/* route's launch parameters, as the kernel receives them. */
#ifndef MOEJIT_ROUTE_H
#define MOEJIT_ROUTE_H

#include <stdint.h>

/* Must match mj::RouteParams in kernel_templates/route.cuh (passed by value). */
typedef struct mj_route_params {
    const void *logits;
    const float *bias;
    int32_t *ids;
    float *weights;
    int64_t num_tokens;
    int64_t row_stride;
} mj_route_params;

#endif
