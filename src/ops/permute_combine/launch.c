/* moejit_permute / moejit_combine: argument checks, then lookup (or first-use build) and one launch. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/permute_combine/permute_combine.h"

moejit_status moejit_permute(moejit_ctx *ctx, const moejit_permute_spec *spec, const moejit_permute_args *args,
                             moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_permute: ctx is NULL");
    mj_permute_shape s;
    moejit_status st = mj_permute_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_permute_check_args(&s, args, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_permute, &s, sizeof s);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    mj_permute_params p = {
        .x = args->x,
        .sorted_ids = args->sorted_ids,
        .ids = s.has_scale ? args->ids : NULL,
        .scale = s.has_scale ? args->scale : NULL,
        .out = args->out,
        .num_tokens = args->num_tokens,
        .num_rows = args->num_rows,
        .topk = args->topk,
        .num_experts = s.has_scale ? args->num_experts : 0,
    };
    return mj_launch(ctx, k, 0, args->num_rows, &p, stream);
}

moejit_status moejit_combine(moejit_ctx *ctx, const moejit_combine_spec *spec, const moejit_combine_args *args,
                             moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_combine: ctx is NULL");
    mj_combine_shape s;
    moejit_status st = mj_combine_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_combine_check_args(&s, args, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_combine, &s, sizeof s);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    mj_combine_params p = {
        .y = args->y,
        .slot_of = args->slot_of,
        .weights = args->weights,
        .out = args->out,
        .num_tokens = args->num_tokens,
        .num_rows = args->num_rows,
        .topk = args->topk,
    };
    return mj_launch(ctx, k, 0, args->num_tokens, &p, stream);
}
