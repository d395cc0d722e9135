/* permute and combine backward: spec and argument validation, the C references against an
 * independent computation in double and against finite differences of the forward references,
 * grad_weights' summation order, source and NVRTC compiles (CPU), and GPU runs against the
 * references bit for bit, twice (skipped without a device). */
#include <elf.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numeric.h"
#include "cache/store.h"
#include "ops/permute_combine/permute_combine.h"
#include "support.h"

static void expect_error(moejit_status got, moejit_status want, const char *needle)
{
    if (got != want)
        fail_msg("expected %s, got %s (%s)", moejit_status_str(want), moejit_status_str(got), moejit_last_error(NULL));
    if (!strstr(moejit_last_error(NULL), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", moejit_last_error(NULL), needle);
}

static size_t elem_bytes(moejit_dtype dtype) { return dtype == MOEJIT_DTYPE_F32 ? 4 : 2; }

static float load(const void *rows, moejit_dtype dtype, int64_t i) { return mj_load_as_f32(rows, (int)dtype, i); }

static void store(void *rows, moejit_dtype dtype, int64_t i, float v)
{
    if (dtype == MOEJIT_DTYPE_F32) ((float *)rows)[i] = v;
    else ((uint16_t *)rows)[i] = dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
}

/* rows × hidden fresh N(0, 1) values of dtype (host, malloc'ed). */
static void *random_rows(mjt_rng *rng, int64_t rows, int hidden, moejit_dtype dtype)
{
    const size_t n = (size_t)(rows * hidden);
    void *p = malloc(n * elem_bytes(dtype) + 16);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) store(p, dtype, (int64_t)i, (float)mjt_normal(rng));
    return p;
}

/* Dispatch maps as align writes them, through align's reference: ids [T, K] drawn over E + 1
 * experts (E: not on this rank, dropped), blocks of B rows. *R = total_padded. Then `late_drops`
 * kept slots are dropped afterwards (slot_of = -1, sorted_ids still naming them), as a capacity
 * limit would. ids, sorted_ids and slot_of are malloc'ed. */
static void make_maps(mjt_rng *rng, int64_t T, int K, int E, int B, int late_drops, int32_t **ids_out,
                      int32_t **sorted_out, int32_t **slot_out, int64_t *R)
{
    const int64_t N = T * K;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(N + 1)), *slot = malloc(sizeof(int32_t) * (size_t)(N + 1));
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)(mjt_next(rng) % (uint64_t)(E + 1));
    moejit_align_spec spec = {.num_experts = E, .block_size = B};
    int64_t cap;
    assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
    int32_t *sorted = malloc(sizeof(int32_t) * (size_t)(cap + 1)), total = 0;
    moejit_align_args a = {.ids = ids, .num_tokens = T, .topk = K,
                           .out = {.sorted_ids = sorted, .total_padded = &total, .slot_of = slot}};
    if (moejit_align_reference(&spec, &a) != MOEJIT_OK) fail_msg("align reference: %s", moejit_last_error(NULL));
    for (int d = 0; d < late_drops && N > 0; d++) slot[mjt_next(rng) % (uint64_t)N] = -1;
    *ids_out = ids, *sorted_out = sorted, *slot_out = slot, *R = total;
}

/* ---- specs, names, arguments -------------------------------------------------------------------- */

static void test_specs_and_names(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_PERMUTE_BACKWARD};
    expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "permute_backward spec: hidden = 0 must be >= 1");
    d.permute_backward.hidden = MOEJIT_MAX_HIDDEN + 1;
    expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "permute_backward spec: hidden = 65537 exceeds the maximum 65536");
    d.permute_backward.hidden = 64, d.permute_backward.dtype = (moejit_dtype)7;
    expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "permute_backward spec: dtype = 7");
    d.permute_backward.dtype = MOEJIT_DTYPE_F32, d.permute_backward.reserved[4] = 2;
    expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "permute_backward spec: reserved[4] = 0x2 must be 0");
    d = (moejit_kernel_desc){.op = MOEJIT_OP_COMBINE_BACKWARD};
    d.combine_backward.hidden = -3;
    expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "combine_backward spec: hidden = -3");
    d.combine_backward.hidden = 8, d.combine_backward.reserved[0] = 1;
    expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "combine_backward spec: reserved[0] = 0x1 must be 0");

    char name[96];
    d = (moejit_kernel_desc){.op = MOEJIT_OP_PERMUTE_BACKWARD};
    d.permute_backward = (moejit_permute_backward_spec){.hidden = 7168, .dtype = MOEJIT_DTYPE_BF16, .has_scale = 3};
    assert_int_equal(moejit_validate(&d), MOEJIT_OK);
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_permute_backward_h7168_bf16_scale");
    d.permute_backward.has_scale = 0;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_permute_backward_h7168_bf16");
    d = (moejit_kernel_desc){.op = MOEJIT_OP_COMBINE_BACKWARD};
    d.combine_backward = (moejit_combine_backward_spec){.hidden = 4096, .dtype = MOEJIT_DTYPE_F16};
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_combine_backward_h4096_f16");
}

static void test_bad_args(void **state)
{
    (void)state;
    int32_t slot[4] = {0, 1, 2, 3}, sorted[4] = {0, 1, 2, 3}, ids[4] = {0, 1, 0, 1};
    float scale[2] = {1, 2}, w[4] = {1, 1, 1, 1}, gw[4], g[16] = {0}, y[16] = {0}, out[16];
    moejit_permute_backward_spec ps = {.hidden = 4, .has_scale = 1};
    moejit_permute_backward_args pa = {.grad_out = g, .slot_of = slot, .ids = ids, .scale = scale, .grad_x = out,
                                       .num_tokens = 2, .topk = 2, .num_experts = 2, .num_rows = 4};
    assert_int_equal(moejit_permute_backward_reference(&ps, &pa), MOEJIT_OK);
    moejit_permute_backward_args a = pa;
    a.topk = 0;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: topk = 0 must be >= 1");
    a = pa, a.num_tokens = -5;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: num_tokens = -5 must be >= 0");
    a = pa, a.num_rows = -1;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "num_rows = -1 must be >= 0");
    a = pa, a.num_experts = 0;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: num_experts = 0 must be >= 1 (spec.has_scale = 1)");
    a = pa, a.scale = NULL;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: scale (spec.has_scale = 1) is NULL");
    a = pa, a.ids = NULL;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: ids (spec.has_scale = 1) is NULL");
    a = pa, a.grad_out = NULL;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: grad_out is NULL");
    a = pa, a.slot_of = NULL;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: slot_of is NULL");
    a = pa, a.grad_x = (char *)out + 2;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: grad_x");
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "is not aligned to 4 bytes");
    a = pa, a.reserved[3] = 9;
    expect_error(moejit_permute_backward_reference(&ps, &a), MOEJIT_ERR_UNSUPPORTED,
                 "permute_backward args: reserved[3] = 0x9 must be 0");
    a = pa, a.num_tokens = 0, a.grad_out = NULL, a.slot_of = NULL, a.grad_x = NULL;
    assert_int_equal(moejit_permute_backward_reference(&ps, &a), MOEJIT_OK); /* nothing to do */
    a = pa, a.num_rows = 0, a.grad_out = NULL, a.ids = NULL, a.scale = NULL; /* every slot dropped */
    memset(out, 0xff, sizeof out);
    assert_int_equal(moejit_permute_backward_reference(&ps, &a), MOEJIT_OK);
    for (int i = 0; i < 8; i++) assert_true(out[i] == 0.0f && !signbit(out[i]));

    moejit_combine_backward_spec cs = {.hidden = 4};
    moejit_combine_backward_args ca = {.grad_out = g, .y = y, .slot_of = slot, .weights = w, .sorted_ids = sorted,
                                       .grad_y = out, .grad_weights = gw, .num_tokens = 2, .topk = 2, .num_rows = 4};
    assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
    moejit_combine_backward_args b = ca;
    b.reserved0 = 1;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_UNSUPPORTED,
                 "combine_backward args: reserved0 = 0x1 must be 0");
    b = ca, b.reserved[7] = 4;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_UNSUPPORTED,
                 "combine_backward args: reserved[7] = 0x4 must be 0");
    b = ca, b.topk = -2;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: topk = -2 must be >= 1");
    b = ca, b.num_tokens = 1 << 30;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: num_tokens = 1073741824 times topk = 2 exceeds 2^31 - 1");
    b = ca, b.sorted_ids = NULL;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: sorted_ids (grad_y wanted) is NULL");
    b = ca, b.weights = NULL;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: weights (grad_y wanted) is NULL");
    b = ca, b.y = NULL;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: y (grad_weights wanted) is NULL");
    b = ca, b.grad_out = NULL;
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: grad_out is NULL");
    b = ca, b.grad_weights = (float *)((char *)gw + 1);
    expect_error(moejit_combine_backward_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: grad_weights");
    /* what an output does not need may be missing */
    b = ca, b.grad_y = NULL, b.sorted_ids = NULL, b.weights = NULL;
    assert_int_equal(moejit_combine_backward_reference(&cs, &b), MOEJIT_OK);
    b = ca, b.grad_weights = NULL, b.y = NULL;
    assert_int_equal(moejit_combine_backward_reference(&cs, &b), MOEJIT_OK);
    b = ca, b.grad_weights = NULL, b.grad_y = NULL, b.grad_out = NULL, b.slot_of = NULL;
    assert_int_equal(moejit_combine_backward_reference(&cs, &b), MOEJIT_OK); /* nothing wanted */
    b = ca, b.num_tokens = 0, b.grad_out = NULL, b.slot_of = NULL, b.weights = NULL, b.y = NULL; /* all rows zero */
    memset(out, 0xff, sizeof out);
    assert_int_equal(moejit_combine_backward_reference(&cs, &b), MOEJIT_OK);
    for (int i = 0; i < 16; i++) assert_true(out[i] == 0.0f && !signbit(out[i]));
    b = ca, b.num_rows = 0, b.y = NULL, b.sorted_ids = NULL; /* every slot dropped */
    memset(gw, 0xff, sizeof gw);
    assert_int_equal(moejit_combine_backward_reference(&cs, &b), MOEJIT_OK);
    for (int i = 0; i < 4; i++) assert_true(gw[i] == 0.0f && !signbit(gw[i]));

    /* launches check the same before anything is compiled or launched */
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    b = ca, b.weights = NULL;
    expect_error(moejit_combine_backward(ctx, &cs, &b, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "combine_backward args: weights (grad_y wanted) is NULL");
    expect_error(moejit_combine_backward(NULL, &cs, &ca, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "moejit_combine_backward: ctx is NULL");
    cs.hidden = 0;
    expect_error(moejit_combine_backward(ctx, &cs, &ca, NULL), MOEJIT_ERR_INVALID_SPEC, "hidden = 0");
    a = pa, a.topk = -1;
    expect_error(moejit_permute_backward(ctx, &ps, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "topk = -1");
    expect_error(moejit_permute_backward(ctx, NULL, &pa, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward spec: spec is NULL");
    expect_error(moejit_permute_backward(ctx, &ps, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "permute_backward args: args is NULL");
    /* nothing to do: success without a launch or a compile */
    a = pa, a.num_tokens = 0;
    assert_int_equal(moejit_permute_backward(ctx, &ps, &a, NULL), MOEJIT_OK);
    cs.hidden = 4;
    b = ca, b.grad_y = NULL, b.grad_weights = NULL;
    assert_int_equal(moejit_combine_backward(ctx, &cs, &b, NULL), MOEJIT_OK);
    mjt_expect_nothing_ran(ctx, dir);
}

/* ---- the references ------------------------------------------------------------------------------ */

/* T = 3, K = 2, H = 2 (f32), small integers: every result exact. */
static void test_references_by_hand(void **state)
{
    (void)state;
    /* slots: (0,0)→4 (0,1)→0 (1,0)→1 (1,1) dropped (2,0)→5 (2,1)→2; rows 3, 6, 7 padding */
    const int32_t slot_of[6] = {4, 0, 1, -1, 5, 2}, sorted[8] = {1, 2, 5, 6, 0, 4, 6, -1};
    const int32_t ids[6] = {1, 0, 0, 7, 1, 0};
    const float scale[2] = {0.5f, 4.0f};
    float g_rows[8 * 2], gx[3 * 2];
    for (int i = 0; i < 16; i++) g_rows[i] = (float)(i + 1); /* row r: 2r+1, 2r+2 */
    moejit_permute_backward_spec ps = {.hidden = 2, .has_scale = 1};
    moejit_permute_backward_args pa = {.grad_out = g_rows, .slot_of = slot_of, .ids = ids, .scale = scale,
                                       .grad_x = gx, .num_tokens = 3, .topk = 2, .num_experts = 2, .num_rows = 8};
    assert_int_equal(moejit_permute_backward_reference(&ps, &pa), MOEJIT_OK);
    /* t0: 4·row4 + 0.5·row0; t1: 0.5·row1; t2: 4·row5 + 0.5·row2 */
    const float want_x[6] = {4 * 9 + 0.5f * 1, 4 * 10 + 0.5f * 2, 0.5f * 3, 0.5f * 4, 4 * 11 + 0.5f * 5, 4 * 12 + 0.5f * 6};
    for (int i = 0; i < 6; i++)
        if (gx[i] != want_x[i]) fail_msg("permute backward [%d]: %g, want %g", i, (double)gx[i], (double)want_x[i]);
    ps.has_scale = 0;
    assert_int_equal(moejit_permute_backward_reference(&ps, &pa), MOEJIT_OK);
    assert_true(gx[0] == 9 + 1 && gx[3] == 4 && gx[5] == 12 + 6);

    const float w[6] = {0.25f, 0.75f, 2.0f, 100.0f, 0.5f, -1.0f};
    float go[3 * 2] = {1, 2, 3, 4, 5, 6}, y[8 * 2], gy[8 * 2], gw[6];
    for (int i = 0; i < 16; i++) y[i] = (float)(16 - i); /* row r: 16-2r, 15-2r */
    memset(gy, 0xff, sizeof gy);
    memset(gw, 0xff, sizeof gw);
    moejit_combine_backward_spec cs = {.hidden = 2};
    moejit_combine_backward_args ca = {.grad_out = go, .y = y, .slot_of = slot_of, .weights = w, .sorted_ids = sorted,
                                       .grad_y = gy, .grad_weights = gw, .num_tokens = 3, .topk = 2, .num_rows = 8};
    assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
    /* grad_y[r] = w[i] · go[i / K] for i = sorted[r]; rows 3, 6, 7 zero */
    const float want_y[16] = {0.75f * 1, 0.75f * 2, 2 * 3, 2 * 4, -1 * 5, -1 * 6, 0, 0,
                              0.25f * 1, 0.25f * 2, 0.5f * 5, 0.5f * 6, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++)
        if (gy[i] != want_y[i]) fail_msg("grad_y [%d]: %g, want %g", i, (double)gy[i], (double)want_y[i]);
    /* grad_weights[t,k] = go[t] · y[slot] */
    const float want_w[6] = {1 * 8 + 2 * 7, 1 * 16 + 2 * 15, 3 * 14 + 4 * 13, 0, 5 * 6 + 6 * 5, 5 * 12 + 6 * 11};
    for (int i = 0; i < 6; i++)
        if (gw[i] != want_w[i]) fail_msg("grad_weights [%d]: %g, want %g", i, (double)gw[i], (double)want_w[i]);
    /* a slot dropped after align: its row is no longer anyone's (zero), its weight's gradient 0 */
    int32_t late[6];
    memcpy(late, slot_of, sizeof late);
    late[1] = -1;
    ca.slot_of = late;
    assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
    assert_true(gy[0] == 0 && gy[1] == 0 && gw[1] == 0 && gw[0] == want_w[0]);
}

/* grad_weights' sum is the kernel's: per-thread chains over chunks, then butterflies. Here a
 * sequential sum would absorb the small terms into 2^24; the tree adds them first. */
static void test_dot_order(void **state)
{
    (void)state;
    /* H = 64 f32: 16-byte chunks (N = 4), 32 threads, one warp: thread j sums elements 4j..4j+3 */
    float g[7168], y[7168], gw;
    for (int i = 0; i < 64; i++) g[i] = 1.0f, y[i] = 0.0f;
    y[0] = 0x1p24f, y[4] = 1.0f, y[12] = 1.0f; /* threads 0, 1, 3: (p0 + p2) + (p1 + p3) = 2^24 + 2 */
    const int32_t slot = 0, sorted = 0;
    moejit_combine_backward_spec cs = {.hidden = 64};
    moejit_combine_backward_args ca = {.grad_out = g, .y = y, .slot_of = &slot, .sorted_ids = &sorted,
                                       .grad_weights = &gw, .num_tokens = 1, .topk = 1, .num_rows = 1};
    assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
    assert_true(gw == 0x1p24f + 2.0f);
    float seq = 0.0f;
    for (int i = 0; i < 64; i++) seq = fmaf(g[i], y[i], seq);
    assert_true(seq == 0x1p24f); /* what a plain loop would say */

    /* H = 7168 f32: 1792 chunks over 256 threads (8 warps). Thread 0 chains chunks 0 and 256
     * (2^24, then +1 +1 absorbed); threads 32 and 96 (warps 1 and 3) hold 1 each: the warps' butterfly
     * adds (w0 + w2) + (w1 + w3) = 2^24 + 2. */
    for (int i = 0; i < 7168; i++) g[i] = 1.0f, y[i] = 0.0f;
    y[0] = 0x1p24f, y[1024] = 1.0f, y[1025] = 1.0f, y[32 * 4] = 1.0f, y[96 * 4 + 3] = 1.0f;
    cs.hidden = 7168;
    assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
    assert_true(gw == 0x1p24f + 2.0f);
    /* bf16, H = 7 (14-byte rows: one element a chunk, lane l of one warp holds product l) */
    uint16_t gb[7], yb[7];
    for (int i = 0; i < 7; i++) gb[i] = mj_f32_to_bf16(1.0f), yb[i] = mj_f32_to_bf16(1.0f);
    yb[0] = mj_f32_to_bf16(0x1p24f);
    cs = (moejit_combine_backward_spec){.hidden = 7, .dtype = MOEJIT_DTYPE_BF16};
    ca.grad_out = gb, ca.y = yb;
    assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
    /* o = 16, 8 add zeros; o = 4: lanes 0+4, 1+5, 2+6, 3 = 2^24 (2^24 + 1 ties to even), 2, 2, 1;
     * o = 2: 2^24 + 2, 3; o = 1: 2^24 + 5, which ties to even: 2^24 + 4 */
    if (gw != 0x1p24f + 4.0f) fail_msg("bf16 H=7: %.1f, want 2^24 + 4", (double)gw);
}

static double unit_roundoff(moejit_dtype dtype)
{
    return dtype == MOEJIT_DTYPE_F32 ? 0x1p-24 : dtype == MOEJIT_DTYPE_BF16 ? 0x1p-8 : 0x1p-11;
}

/* |got - exact| within one rounding to dtype of exact, plus f32 accumulation error over mag
 * (the sum of the magnitudes of the terms) with `terms` roundings. */
static void expect_close(double got, double exact, double mag, int terms, moejit_dtype dtype, const char *what, int64_t i)
{
    const double tol = unit_roundoff(dtype) * fabs(exact) * 1.0001 + 0x1p-24 * mag * (terms + 1) +
                       (dtype == MOEJIT_DTYPE_F16 ? 0x1p-25 : 1e-30); /* f16's subnormal steps */
    if (!(fabs(got - exact) <= tol))
        fail_msg("%s [%lld]: %.9g, exact %.9g (tolerance %.3g)", what, (long long)i, got, exact, tol);
}

/* The references against the definitions computed in double, on align's maps with late drops, in
 * every dtype. */
static void test_references_vs_double(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const moejit_dtype dts[] = {MOEJIT_DTYPE_F32, MOEJIT_DTYPE_BF16, MOEJIT_DTYPE_F16};
    static const int hs[] = {1, 7, 64, 130};
    for (int d = 0; d < 3; d++)
        for (int h = 0; h < 4; h++)
            for (int has_scale = 0; has_scale < 2; has_scale++) {
                const moejit_dtype dt = dts[d];
                const int H = hs[h], K = 3, E = 5;
                const int64_t T = 11;
                int32_t *ids, *sorted, *slot;
                int64_t R;
                make_maps(&rng, T, K, E, 4, 2, &ids, &sorted, &slot, &R);
                float scale[5], *w = malloc(sizeof(float) * (size_t)(T * K)), *gw = malloc(sizeof(float) * (size_t)(T * K));
                for (int e = 0; e < E; e++) scale[e] = (float)(0.5 + mjt_uniform(&rng));
                for (int64_t i = 0; i < T * K; i++) w[i] = (float)mjt_uniform(&rng);
                void *g_rows = random_rows(&rng, R, H, dt), *g_tok = random_rows(&rng, T, H, dt);
                void *y = random_rows(&rng, R, H, dt), *gx = malloc((size_t)(T * H) * elem_bytes(dt));
                void *gy = malloc((size_t)(R * H) * elem_bytes(dt) + 1);

                moejit_permute_backward_spec ps = {.hidden = H, .dtype = dt, .has_scale = has_scale};
                moejit_permute_backward_args pa = {.grad_out = g_rows, .slot_of = slot, .ids = ids, .scale = scale,
                                                   .grad_x = gx, .num_tokens = T, .topk = K, .num_experts = E,
                                                   .num_rows = R};
                assert_int_equal(moejit_permute_backward_reference(&ps, &pa), MOEJIT_OK);
                for (int64_t t = 0; t < T; t++)
                    for (int j = 0; j < H; j++) {
                        double exact = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            const int32_t r = slot[t * K + k], e = ids[t * K + k];
                            if (r < 0 || r >= R || (has_scale && (e < 0 || e >= E))) continue;
                            const double term = (double)load(g_rows, dt, (int64_t)r * H + j) * (has_scale ? scale[e] : 1.0);
                            exact += term, mag += fabs(term);
                        }
                        expect_close(load(gx, dt, t * H + j), exact, mag, K, dt, "permute backward", t * H + j);
                    }

                moejit_combine_backward_spec cs = {.hidden = H, .dtype = dt};
                moejit_combine_backward_args ca = {.grad_out = g_tok, .y = y, .slot_of = slot, .weights = w,
                                                   .sorted_ids = sorted, .grad_y = gy, .grad_weights = gw,
                                                   .num_tokens = T, .topk = K, .num_rows = R};
                assert_int_equal(moejit_combine_backward_reference(&cs, &ca), MOEJIT_OK);
                int owned = 0;
                for (int64_t r = 0; r < R; r++) {
                    const int32_t i = sorted[r];
                    const int own = i >= 0 && i < T * K && slot[i] == r;
                    owned += own;
                    for (int j = 0; j < H; j++) {
                        const double exact = own ? (double)w[i] * load(g_tok, dt, (int64_t)(i / K) * H + j) : 0.0;
                        expect_close(load(gy, dt, r * H + j), exact, fabs(exact), 0, dt, "grad_y", r * H + j);
                    }
                }
                assert_true(owned > 0 && owned < R); /* kept rows, padding rows and late drops all seen */
                for (int64_t i = 0; i < T * K; i++) {
                    double exact = 0, mag = 0;
                    if (slot[i] >= 0 && slot[i] < R)
                        for (int j = 0; j < H; j++) {
                            const double p = (double)load(g_tok, dt, (i / K) * H + j) * load(y, dt, (int64_t)slot[i] * H + j);
                            exact += p, mag += fabs(p);
                        }
                    expect_close(gw[i], exact, mag, H, MOEJIT_DTYPE_F32, "grad_weights", i);
                    if (slot[i] < 0) assert_true(gw[i] == 0.0f);
                }
                free(ids), free(sorted), free(slot), free(w), free(gw), free(g_rows), free(g_tok), free(y), free(gx),
                    free(gy);
            }
}

/* L(θ) = Σ grad_out · forward(θ), in double over the forward reference's f32 output. */
static double permute_loss(const moejit_permute_spec *spec, moejit_permute_args *a, const float *g_rows, float *out)
{
    a->out = out;
    assert_int_equal(moejit_permute_reference(spec, a), MOEJIT_OK);
    double L = 0;
    for (int64_t i = 0; i < a->num_rows * spec->hidden; i++) L += (double)g_rows[i] * out[i];
    return L;
}

static double combine_loss(const moejit_combine_spec *spec, moejit_combine_args *a, const float *g_tok, float *out)
{
    a->out = out;
    assert_int_equal(moejit_combine_reference(spec, a), MOEJIT_OK);
    double L = 0;
    for (int64_t i = 0; i < a->num_tokens * spec->hidden; i++) L += (double)g_tok[i] * out[i];
    return L;
}

static void expect_derivative(double fd, double got, const char *what, int64_t i)
{
    if (!(fabs(fd - got) <= 2e-3 * (1 + fabs(got)))) fail_msg("%s [%lld]: backward %.7g, finite difference %.7g", what, (long long)i, got, fd);
}

/* The backward is the gradient of the forward's math: central differences (f32 forward
 * references, the loss in double) against the backward references, on align's maps with a slot
 * dropped after align. Every function here is linear in each perturbed input, so the difference
 * is exact but for the forward's f32 roundings. */
static void test_finite_differences(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    const int H = 5, K = 3, E = 4;
    const int64_t T = 6;
    const double h = 1.0 / 64;
    for (int round = 0; round < 3; round++) {
        int32_t *ids, *sorted, *slot;
        int64_t R;
        make_maps(&rng, T, K, E, 2, 1, &ids, &sorted, &slot, &R);
        const int64_t N = T * K;
        float scale[4], *w = malloc(sizeof(float) * (size_t)N), *gw = malloc(sizeof(float) * (size_t)N);
        for (int e = 0; e < E; e++) scale[e] = (float)(0.5 + mjt_uniform(&rng));
        for (int64_t i = 0; i < N; i++) w[i] = (float)mjt_uniform(&rng);
        float *x = random_rows(&rng, T, H, MOEJIT_DTYPE_F32), *y = random_rows(&rng, R, H, MOEJIT_DTYPE_F32);
        float *g_rows = random_rows(&rng, R, H, MOEJIT_DTYPE_F32), *g_tok = random_rows(&rng, T, H, MOEJIT_DTYPE_F32);
        float *rows_out = malloc(sizeof(float) * (size_t)(R * H) + 4), *tok_out = malloc(sizeof(float) * (size_t)(T * H));
        float *gx = malloc(sizeof(float) * (size_t)(T * H)), *gy = malloc(sizeof(float) * (size_t)(R * H) + 4);

        /* permute, scaled and not: d/dx */
        for (int has_scale = 0; has_scale < 2; has_scale++) {
            moejit_permute_spec ps = {.hidden = H, .has_scale = has_scale};
            moejit_permute_args pa = {.x = x, .sorted_ids = sorted, .ids = ids, .scale = scale, .num_tokens = T,
                                      .topk = K, .num_experts = E, .num_rows = R};
            moejit_permute_backward_spec pbs = {.hidden = H, .has_scale = has_scale};
            moejit_permute_backward_args pba = {.grad_out = g_rows, .slot_of = slot, .ids = ids, .scale = scale,
                                                .grad_x = gx, .num_tokens = T, .topk = K, .num_experts = E, .num_rows = R};
            /* the backward follows slot_of; the forward, sorted_ids: a late drop only in slot_of would
             * still be permuted, so the permute check uses align's maps as they are */
            int32_t *slot_align = malloc(sizeof(int32_t) * (size_t)N);
            for (int64_t i = 0; i < N; i++) slot_align[i] = -1;
            for (int64_t r = 0; r < R; r++)
                if (sorted[r] >= 0 && sorted[r] < N) slot_align[sorted[r]] = (int32_t)r;
            pba.slot_of = slot_align;
            assert_int_equal(moejit_permute_backward_reference(&pbs, &pba), MOEJIT_OK);
            for (int64_t i = 0; i < T * H; i++) {
                const float keep = x[i];
                x[i] = keep + (float)h;
                const double up = permute_loss(&ps, &pa, g_rows, rows_out);
                x[i] = keep - (float)h;
                const double down = permute_loss(&ps, &pa, g_rows, rows_out);
                x[i] = keep;
                expect_derivative((up - down) / (2 * h), gx[i], has_scale ? "d/dx (scaled)" : "d/dx", i);
            }
            free(slot_align);
        }

        /* combine: d/dy and d/dweights, with the late drop */
        moejit_combine_spec cs = {.hidden = H};
        moejit_combine_args ca = {.y = y, .slot_of = slot, .weights = w, .num_tokens = T, .topk = K, .num_rows = R};
        moejit_combine_backward_spec cbs = {.hidden = H};
        moejit_combine_backward_args cba = {.grad_out = g_tok, .y = y, .slot_of = slot, .weights = w, .sorted_ids = sorted,
                                            .grad_y = gy, .grad_weights = gw, .num_tokens = T, .topk = K, .num_rows = R};
        assert_int_equal(moejit_combine_backward_reference(&cbs, &cba), MOEJIT_OK);
        for (int64_t i = 0; i < R * H; i++) {
            const float keep = y[i];
            y[i] = keep + (float)h;
            const double up = combine_loss(&cs, &ca, g_tok, tok_out);
            y[i] = keep - (float)h;
            const double down = combine_loss(&cs, &ca, g_tok, tok_out);
            y[i] = keep;
            expect_derivative((up - down) / (2 * h), gy[i], "d/dy", i);
        }
        for (int64_t i = 0; i < N; i++) {
            const float keep = w[i];
            w[i] = keep + (float)h;
            const double up = combine_loss(&cs, &ca, g_tok, tok_out);
            w[i] = keep - (float)h;
            const double down = combine_loss(&cs, &ca, g_tok, tok_out);
            w[i] = keep;
            expect_derivative((up - down) / (2 * h), gw[i], "d/dweights", i);
        }
        free(ids), free(sorted), free(slot), free(w), free(gw), free(x), free(y), free(g_rows), free(g_tok);
        free(rows_out), free(tok_out), free(gx), free(gy);
    }
}

/* ---- source and compiles ------------------------------------------------------------------------- */

static void test_compile(void **state)
{
    (void)state;
    /* Every chunk width: 16, 8, 4 bytes and single 16-bit elements; scale on and off. */
    static const struct {
        int op, hidden;
        moejit_dtype dtype;
        int scale, vec, threads;
    } cases[] = {
        {MOEJIT_OP_PERMUTE_BACKWARD, 7168, MOEJIT_DTYPE_BF16, 1, 16, 256},
        {MOEJIT_OP_PERMUTE_BACKWARD, 4, MOEJIT_DTYPE_F16, 0, 8, 32},
        {MOEJIT_OP_PERMUTE_BACKWARD, 7, MOEJIT_DTYPE_BF16, 1, 2, 32},
        {MOEJIT_OP_PERMUTE_BACKWARD, 65536, MOEJIT_DTYPE_F32, 0, 16, 256},
        {MOEJIT_OP_COMBINE_BACKWARD, 7168, MOEJIT_DTYPE_F32, 0, 16, 256},
        {MOEJIT_OP_COMBINE_BACKWARD, 128, MOEJIT_DTYPE_BF16, 0, 16, 32},
        {MOEJIT_OP_COMBINE_BACKWARD, 2, MOEJIT_DTYPE_F32, 0, 8, 32},
        {MOEJIT_OP_COMBINE_BACKWARD, 6, MOEJIT_DTYPE_F16, 0, 4, 32},
        {MOEJIT_OP_COMBINE_BACKWARD, 1, MOEJIT_DTYPE_F16, 0, 2, 32},
        {MOEJIT_OP_COMBINE_BACKWARD, 1000, MOEJIT_DTYPE_BF16, 0, 16, 128},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    moejit_kernel_desc d[N];
    for (int i = 0; i < N; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].op = (moejit_op)cases[i].op;
        if (cases[i].op == MOEJIT_OP_PERMUTE_BACKWARD)
            d[i].permute_backward = (moejit_permute_backward_spec){.hidden = cases[i].hidden, .dtype = cases[i].dtype,
                                                                   .has_scale = cases[i].scale};
        else d[i].combine_backward = (moejit_combine_backward_spec){.hidden = cases[i].hidden, .dtype = cases[i].dtype};
        char *src;
        assert_int_equal(moejit_source(NULL, &d[i], &src, NULL), MOEJIT_OK);
        char want[96];
        snprintf(want, sizeof want, "static constexpr int kVecBytes = %d;", cases[i].vec);
        if (!strstr(src, want)) fail_msg("case %d: source lacks \"%s\"", i, want);
        snprintf(want, sizeof want, "static constexpr int kThreads = %d;", cases[i].threads);
        if (!strstr(src, want)) fail_msg("case %d: source lacks \"%s\"", i, want);
        snprintf(want, sizeof want, "static constexpr int kHidden = %d;", cases[i].hidden);
        assert_non_null(strstr(src, want));
        assert_non_null(strstr(src, cases[i].op == MOEJIT_OP_PERMUTE_BACKWARD ? "(const mj::PermuteBackwardParams p)"
                                                                                : "(const mj::CombineBackwardParams p)"));
        assert_null(strstr(src, "\n#include"));
        moejit_free(src);
    }
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    moejit_prewarm_result r[N];
    moejit_status st = moejit_prewarm(ctx, d, N, "sm_90a", r);
    for (int i = 0; i < N; i++)
        if (r[i].status != MOEJIT_OK) fail_msg("%s: %s", r[i].name, r[i].error);
    assert_int_equal(st, MOEJIT_OK);
    for (int i = 0; i < N; i++) mjt_check_cached_cubin(dir, r[i].key, 90);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* ---- GPU ----------------------------------------------------------------------------------------- */

static void *to_device(const void *host, size_t bytes, size_t offset)
{
    char *d = mjt_dev_alloc(bytes + offset + 16);
    mjt_h2d(d + offset, host, bytes);
    return d + offset;
}

static void dev_free_at(void *p, size_t offset)
{
    if (p) mjt_dev_free((char *)p - offset);
}

static void expect_same(const void *got, const void *want, size_t row_bytes, int64_t rows, const char *what)
{
    for (int64_t r = 0; r < rows; r++)
        if (memcmp((const char *)got + r * row_bytes, (const char *)want + r * row_bytes, row_bytes))
            fail_msg("%s: row %lld differs from the reference", what, (long long)r);
}

/* A GPU output: poisoned, then compared with the reference after each of two launches. */
typedef struct out_buf {
    void *dev;
    size_t bytes, row_bytes;
    int64_t rows;
} out_buf;

static void permute_backward_case(moejit_ctx *ctx, mjt_rng *rng, int hidden, moejit_dtype dtype, int has_scale,
                                  int64_t T, int K, size_t offset)
{
    const int E = 8, B = 4;
    const size_t row = (size_t)hidden * elem_bytes(dtype);
    int32_t *ids, *sorted, *slot;
    int64_t R;
    make_maps(rng, T, K, E, B, (int)(T / 4), &ids, &sorted, &slot, &R);
    for (int64_t i = 0; i < T * K; i += 7) slot[i] = (int32_t)R; /* out of range: dropped too */
    float scale[8];
    for (int e = 0; e < E; e++) scale[e] = (float)(0.5 + mjt_uniform(rng));
    void *g = random_rows(rng, R, hidden, dtype), *ref = malloc(row * (size_t)T), *got = malloc(row * (size_t)T);
    moejit_permute_backward_spec spec = {.hidden = hidden, .dtype = dtype, .has_scale = has_scale};
    moejit_permute_backward_args a = {.grad_out = g, .slot_of = slot, .ids = ids, .scale = scale, .grad_x = ref,
                                      .num_tokens = T, .topk = K, .num_experts = E, .num_rows = R};
    assert_int_equal(moejit_permute_backward_reference(&spec, &a), MOEJIT_OK);
    void *dg = to_device(g, row * (size_t)R, offset), *dx = to_device(got, row * (size_t)T, offset);
    int32_t *dids = to_device(ids, 4 * (size_t)(T * K), 0), *dslot = to_device(slot, 4 * (size_t)(T * K), 0);
    float *dscale = to_device(scale, sizeof scale, 0);
    a.grad_out = dg, a.slot_of = dslot, a.ids = dids, a.scale = dscale, a.grad_x = dx;
    char what[160];
    for (int run = 0; run < 2; run++) {
        mjt_dev_fill(dx, run ? 0x5a : 0xff, row * (size_t)T); /* poison */
        moejit_status st = moejit_permute_backward(ctx, &spec, &a, NULL);
        if (st != MOEJIT_OK) fail_msg("moejit_permute_backward: %s: %s", moejit_status_str(st), moejit_last_error(ctx));
        mjt_sync();
        mjt_d2h(got, dx, row * (size_t)T);
        snprintf(what, sizeof what, "permute_backward H=%d dtype=%d scale=%d T=%lld K=%d R=%lld offset=%zu run %d",
                 hidden, dtype, has_scale, (long long)T, K, (long long)R, offset, run + 1);
        expect_same(got, ref, row, T, what);
    }
    dev_free_at(dg, offset), dev_free_at(dx, offset), mjt_dev_free(dids), mjt_dev_free(dslot), mjt_dev_free(dscale);
    free(ids), free(sorted), free(slot), free(g), free(ref), free(got);
}

/* want: 1 grad_y, 2 grad_weights, 3 both. */
static void combine_backward_case(moejit_ctx *ctx, mjt_rng *rng, int hidden, moejit_dtype dtype, int64_t T, int K,
                                  size_t offset, int want)
{
    const int E = 8, B = 4;
    const size_t row = (size_t)hidden * elem_bytes(dtype);
    int32_t *ids, *sorted, *slot;
    int64_t R;
    make_maps(rng, T, K, E, B, (int)(T / 4), &ids, &sorted, &slot, &R);
    /* maps beyond align's: a stray slot reading a padding row (its grad_weights uses that row, the
     * row stays zero), a slot past R, a padding value of -1 */
    for (int64_t r = 0; r < R; r++)
        if ((sorted[r] < 0 || sorted[r] >= T * K) && T * K > 0) {
            slot[mjt_next(rng) % (uint64_t)(T * K)] = (int32_t)r;
            sorted[r] = -1;
            break;
        }
    if (T * K > 1) slot[1] = (int32_t)R;
    const int64_t N = T * K;
    float *w = malloc(sizeof(float) * (size_t)(N + 1));
    for (int64_t i = 0; i < N; i++) w[i] = (float)mjt_normal(rng);
    void *go = random_rows(rng, T, hidden, dtype), *y = random_rows(rng, R, hidden, dtype);
    void *ref_y = malloc(row * (size_t)R + 4), *got_y = malloc(row * (size_t)R + 4);
    float *ref_w = malloc(sizeof(float) * (size_t)(N + 1)), *got_w = malloc(sizeof(float) * (size_t)(N + 1));
    moejit_combine_backward_spec spec = {.hidden = hidden, .dtype = dtype};
    moejit_combine_backward_args a = {.grad_out = go, .y = y, .slot_of = slot, .weights = w, .sorted_ids = sorted,
                                      .grad_y = want & 1 ? ref_y : NULL, .grad_weights = want & 2 ? ref_w : NULL,
                                      .num_tokens = T, .topk = K, .num_rows = R};
    assert_int_equal(moejit_combine_backward_reference(&spec, &a), MOEJIT_OK);
    void *dgo = to_device(go, row * (size_t)T, offset), *dy = to_device(y, row * (size_t)R, offset);
    void *dgy = to_device(got_y, row * (size_t)R, offset);
    float *dgw = to_device(got_w, 4 * (size_t)N, 0), *dw = to_device(w, 4 * (size_t)N, 0);
    int32_t *dslot = to_device(slot, 4 * (size_t)N, 0), *dsorted = to_device(sorted, 4 * (size_t)R, 0);
    a.grad_out = dgo, a.y = dy, a.slot_of = dslot, a.weights = dw, a.sorted_ids = dsorted;
    a.grad_y = want & 1 ? dgy : NULL, a.grad_weights = want & 2 ? dgw : NULL;
    char what[160];
    for (int run = 0; run < 2; run++) {
        mjt_dev_fill(dgy, run ? 0x5a : 0xff, row * (size_t)R); /* poison */
        mjt_dev_fill(dgw, run ? 0x5a : 0xff, 4 * (size_t)N);
        moejit_status st = moejit_combine_backward(ctx, &spec, &a, NULL);
        if (st != MOEJIT_OK) fail_msg("moejit_combine_backward: %s: %s", moejit_status_str(st), moejit_last_error(ctx));
        mjt_sync();
        snprintf(what, sizeof what, "combine_backward H=%d dtype=%d T=%lld K=%d R=%lld offset=%zu want=%d run %d", hidden,
                 dtype, (long long)T, K, (long long)R, offset, want, run + 1);
        if (want & 1) {
            mjt_d2h(got_y, dgy, row * (size_t)R);
            expect_same(got_y, ref_y, row, R, what);
        }
        if (want & 2) {
            mjt_d2h(got_w, dgw, 4 * (size_t)N);
            for (int64_t i = 0; i < N; i++)
                if (memcmp(&got_w[i], &ref_w[i], 4))
                    fail_msg("%s: grad_weights[%lld] = %.9g, reference %.9g", what, (long long)i, (double)got_w[i],
                             (double)ref_w[i]);
        }
    }
    dev_free_at(dgo, offset), dev_free_at(dy, offset), dev_free_at(dgy, offset);
    mjt_dev_free(dgw), mjt_dev_free(dw), mjt_dev_free(dslot), mjt_dev_free(dsorted);
    free(ids), free(sorted), free(slot), free(w), free(go), free(y), free(ref_y), free(got_y), free(ref_w), free(got_w);
}

static void test_gpu_against_reference(void **state)
{
    (void)state;
    if (!mjt_gpu_available()) skip();
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int hs[] = {1, 7, 128, 7168};
    static const moejit_dtype dts[] = {MOEJIT_DTYPE_F32, MOEJIT_DTYPE_BF16, MOEJIT_DTYPE_F16};
    for (size_t h = 0; h < sizeof hs / sizeof hs[0]; h++)
        for (int d = 0; d < 3 && mjt_keep((int)h, 2); d++) {
            const size_t misalign = elem_bytes(dts[d]); /* every base pointer off the vectors: element path */
            for (int scale = 0; scale < 2; scale++) {
                permute_backward_case(ctx, &rng, hs[h], dts[d], scale, 37, 4, 0);
                permute_backward_case(ctx, &rng, hs[h], dts[d], scale, 5, 8, misalign);
            }
            for (int want = 1; want <= 3; want++) combine_backward_case(ctx, &rng, hs[h], dts[d], 37, 4, 0, want);
            combine_backward_case(ctx, &rng, hs[h], dts[d], 5, 10, misalign, 3);
            combine_backward_case(ctx, &rng, hs[h], dts[d], 1, 8, 0, 3); /* decode: mostly padding rows */
        }
    /* Both entry points (T·K up to MJ_ROWS_BACKWARD_LATENCY_SLOTS: the latency one, which batches
     * 8 slots' loads: K = 19 is two full batches and a partial one; above it the throughput one). */
    permute_backward_case(ctx, &rng, 128, MOEJIT_DTYPE_BF16, 1, 3, 19, 0);
    combine_backward_case(ctx, &rng, 128, MOEJIT_DTYPE_BF16, 3, 19, 0, 3);
    permute_backward_case(ctx, &rng, 7, MOEJIT_DTYPE_F32, 1, MJ_ROWS_BACKWARD_LATENCY_SLOTS / 8 + 1, 8, 0);
    combine_backward_case(ctx, &rng, 7, MOEJIT_DTYPE_F32, MJ_ROWS_BACKWARD_LATENCY_SLOTS / 8 + 1, 8, 0, 3);
    const int64_t T = mjt_quick_cap(2048, 128); /* a real batch (smaller under compute-sanitizer) */
    permute_backward_case(ctx, &rng, 7168, MOEJIT_DTYPE_BF16, 1, T, 8, 0);
    combine_backward_case(ctx, &rng, 7168, MOEJIT_DTYPE_BF16, T, 8, 0, 3);
    moejit_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs_and_names),       cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_references_by_hand),    cmocka_unit_test(test_dot_order),
        cmocka_unit_test(test_references_vs_double),  cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_compile),               cmocka_unit_test(test_gpu_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
