/* moejit_permute / moejit_combine and their backward: argument checks, then lookup (or first-use
 * build) and one launch. */
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

/* Small batches take the backward ops' latency entry (permute_combine.h). */
static int backward_latency(int64_t tokens, int topk)
{
    return tokens * topk <= MJ_ROWS_BACKWARD_LATENCY_SLOTS;
}

moejit_status moejit_permute_backward(moejit_ctx *ctx, const moejit_permute_backward_spec *spec,
                                      const moejit_permute_backward_args *args, moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_permute_backward: ctx is NULL");
    mj_permute_backward_shape s;
    moejit_status st = mj_permute_backward_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_permute_backward_check_args(&s, args, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_permute_backward, &s, sizeof s);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    const int scaled = s.has_scale && args->num_rows > 0;
    mj_permute_backward_params p = {
        .grad_out = args->num_rows > 0 ? args->grad_out : NULL,
        .slot_of = args->slot_of,
        .ids = scaled ? args->ids : NULL,
        .scale = scaled ? args->scale : NULL,
        .grad_x = args->grad_x,
        .num_tokens = args->num_tokens,
        .num_rows = args->num_rows,
        .topk = args->topk,
        .num_experts = s.has_scale ? args->num_experts : 0,
    };
    if (!backward_latency(args->num_tokens, args->topk))
        return mj_launch(ctx, k, MJ_ROWS_BACKWARD_THROUGHPUT, args->num_tokens, &p, stream);
    return mj_launch(ctx, k, MJ_ROWS_BACKWARD_LATENCY, args->num_tokens * mj_rows_slices(s.hidden, s.dtype), &p, stream);
}

moejit_status moejit_combine_backward(moejit_ctx *ctx, const moejit_combine_backward_spec *spec,
                                      const moejit_combine_backward_args *args, moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_combine_backward: ctx is NULL");
    mj_combine_backward_shape s;
    moejit_status st = mj_combine_backward_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_combine_backward_check_args(&s, args, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_combine_backward, &s, sizeof s);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    /* an output with nothing to hold is not passed: the kernel then neither reads for it nor writes it */
    const int want_y = args->grad_y && args->num_rows > 0, want_w = args->grad_weights && args->num_tokens > 0;
    const int tokens = args->num_tokens > 0;
    mj_combine_backward_params p = {
        .grad_out = tokens ? args->grad_out : NULL,
        .y = want_w && args->num_rows > 0 ? args->y : NULL,
        .slot_of = tokens ? args->slot_of : NULL,
        .weights = want_y && tokens ? args->weights : NULL,
        .sorted_ids = want_y ? args->sorted_ids : NULL,
        .grad_y = want_y ? args->grad_y : NULL,
        .grad_weights = want_w ? args->grad_weights : NULL,
        .num_tokens = args->num_tokens,
        .num_rows = args->num_rows,
        .topk = args->topk,
    };
    const int64_t zero_blocks = want_y ? mj_blocks_for(args->num_rows, MJ_COMBINE_BACKWARD_ZERO_ROWS) : 0;
    if (!backward_latency(args->num_tokens, args->topk))
        return mj_launch(ctx, k, MJ_ROWS_BACKWARD_THROUGHPUT, args->num_tokens + zero_blocks, &p, stream);
    /* the latency entry zeroes a slice of a row a block */
    return mj_launch(ctx, k, MJ_ROWS_BACKWARD_LATENCY,
                     args->num_tokens * args->topk + zero_blocks * mj_rows_slices(s.hidden, s.dtype), &p, stream);
}
