/* align's launch path: argument checks, the one-or-three-launch decision and the launches.
 * Shared by moejit_align, its reference and route_align (whose fallback runs align's kernels). */
#ifndef MOEJIT_ALIGN_LAUNCH_H
#define MOEJIT_ALIGN_LAUNCH_H

#include "jit.h"
#include "op_align.h"

/* Must match mj::AlignParams in kernel_templates/align.cuh. */
typedef struct mj_align_params {
    const int32_t *ids;
    int32_t n;
    int32_t capacity;
    int32_t *counts;
    int32_t *offsets;
    int32_t *sorted_ids;
    int32_t *block_expert;
    int32_t *total_padded;
    int32_t *slot_of;
    int32_t *ws;
    int32_t num_tiles;
} mj_align_params;

/* How a batch runs, decided from sizes alone (so launches are capturable in CUDA graphs). */
typedef struct mj_align_layout {
    int64_t n;          /* N = T·K */
    int64_t capacity;   /* entries sorted_ids needs: N + min(E, N)·(B-1) */
    int small;          /* 1: one launch of the small entry (n <= small_ids) */
    int multi;          /* 0: one launch; 1: count, scan and scatter over tiles */
    int tiles;          /* P (multi) */
    size_t ws_bytes;    /* workspace (multi) */
    int scatter_blocks; /* grid of the scatter kernel (multi) */
} mj_align_layout;

/* Layout of T tokens of K ids over E experts with block size B, for align's default geometry;
 * `op` names the caller in messages ("align", "route_align"). Rejects T < 0, K < 1 and batches
 * whose positions pass int32. */
moejit_status mj_align_layout_for(const char *op, int experts, int block_size, int64_t num_tokens, int64_t topk,
                                  mj_align_layout *out);

/* Check ids (when N > 0) and the outputs against a layout, and fill the kernel parameters.
 * `check_workspace` is 0 for the reference, which needs none. */
moejit_status mj_align_check_outputs(const char *op, const mj_align_layout *l, const int32_t *ids,
                                     const moejit_align_outputs *o, int check_workspace, mj_align_params *p);

/* align args' own reserved words (the outputs' are checked with them). */
moejit_status mj_align_check_args_reserved(const moejit_align_args *a);

/* 1 if any output is wanted. */
int mj_align_wants_output(const mj_align_params *p);

/* Launch align's entries (from `first`) of k for p: the layout picks the small entry, the
 * single one or three launches. */
moejit_status mj_align_run(moejit_ctx *ctx, const mj_kernel *k, int first, const mj_align_layout *l,
                           const mj_align_params *p, moejit_stream stream);

#endif
