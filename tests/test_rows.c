/* permute and combine: spec and argument validation, the C references on hand-made cases, source
 * and NVRTC compiles of every vector path (CPU), and GPU runs against the references bit for bit
 * (skipped without a device). */
#include <elf.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numeric.h"
#include "cache/store.h"
#include "support.h"

static void expect_error(moejit_status got, moejit_status want, const char *needle)
{
    if (got != want)
        fail_msg("expected %s, got %s (%s)", moejit_status_str(want), moejit_status_str(got), moejit_last_error(NULL));
    if (!strstr(moejit_last_error(NULL), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", moejit_last_error(NULL), needle);
}

static void test_specs_and_names(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_PERMUTE};
    d.permute.hidden = 0;
    expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "permute spec: hidden = 0 must be >= 1");
    d.permute.hidden = MOEJIT_MAX_HIDDEN + 1;
    expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "hidden = 65537 exceeds the maximum 65536");
    d.permute.hidden = 64, d.permute.dtype = (moejit_dtype)5;
    expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "permute spec: dtype = 5");
    d = (moejit_kernel_desc){.op = MOEJIT_OP_COMBINE};
    d.combine.hidden = -3;
    expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "combine spec: hidden = -3");

    char name[96];
    d = (moejit_kernel_desc){.op = MOEJIT_OP_PERMUTE};
    d.permute.hidden = 7168, d.permute.dtype = MOEJIT_DTYPE_BF16, d.permute.has_scale = 5; /* any non-zero: 1 */
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_permute_h7168_bf16_scale");
    d = (moejit_kernel_desc){.op = MOEJIT_OP_COMBINE};
    d.combine.hidden = 4096, d.combine.dtype = MOEJIT_DTYPE_F16;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_combine_h4096_f16");
}

static void test_bad_args(void **state)
{
    (void)state;
    int32_t sorted[4] = {0, 1, 2, 3}, ids[4] = {0}, slot[4] = {0};
    float scale[2] = {1, 1}, w[4] = {0}, x[16], out[16];
    moejit_permute_spec ps = {.hidden = 4, .has_scale = 1};
    moejit_permute_args pa = {.x = x, .sorted_ids = sorted, .ids = ids, .scale = scale, .out = out, .num_tokens = 2,
                              .topk = 2, .num_experts = 2, .num_rows = 4};
    assert_int_equal(moejit_permute_reference(&ps, &pa), MOEJIT_OK);
    moejit_permute_args a = pa;
    a.topk = 0;
    expect_error(moejit_permute_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "permute args: topk = 0 must be >= 1");
    a = pa, a.num_tokens = 1 << 30;
    expect_error(moejit_permute_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "exceeds 2^31 - 1 (sorted_ids are int32)");
    a = pa, a.num_rows = -1;
    expect_error(moejit_permute_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "num_rows = -1 must be >= 0");
    a = pa, a.scale = NULL;
    expect_error(moejit_permute_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "scale (spec.has_scale = 1) is NULL");
    a = pa, a.num_experts = 0;
    expect_error(moejit_permute_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "num_experts = 0 must be >= 1");
    a = pa, a.out = (char *)out + 2;
    expect_error(moejit_permute_reference(&ps, &a), MOEJIT_ERR_INVALID_ARGUMENT, "is not aligned to 4 bytes");
    a = pa, a.num_rows = 0, a.out = NULL, a.sorted_ids = NULL;
    assert_int_equal(moejit_permute_reference(&ps, &a), MOEJIT_OK); /* nothing to do */
    ps.has_scale = 0;
    a = pa, a.num_tokens = 0, a.x = NULL, a.ids = NULL, a.scale = NULL;
    assert_int_equal(moejit_permute_reference(&ps, &a), MOEJIT_OK); /* every row is padding */
    for (int i = 0; i < 16; i++) assert_true(out[i] == 0.0f);

    moejit_combine_spec cs = {.hidden = 4};
    moejit_combine_args ca = {.y = x, .slot_of = slot, .weights = w, .out = out, .num_tokens = 2, .topk = 2, .num_rows = 4};
    assert_int_equal(moejit_combine_reference(&cs, &ca), MOEJIT_OK);
    moejit_combine_args b = ca;
    b.reserved0 = 1;
    expect_error(moejit_combine_reference(&cs, &b), MOEJIT_ERR_UNSUPPORTED, "combine args: reserved0 = 0x1 must be 0");
    b = ca, b.reserved[8] = 7;
    expect_error(moejit_combine_reference(&cs, &b), MOEJIT_ERR_UNSUPPORTED, "combine args: reserved[8] = 0x7 must be 0");
    b = ca, b.weights = NULL;
    expect_error(moejit_combine_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT, "combine args: weights is NULL");
    b = ca, b.num_tokens = -2;
    expect_error(moejit_combine_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = -2");
    b = ca, b.y = NULL;
    expect_error(moejit_combine_reference(&cs, &b), MOEJIT_ERR_INVALID_ARGUMENT, "combine args: y is NULL");
    /* launches check the same before anything is compiled or launched */
    moejit_ctx *ctx;
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    expect_error(moejit_combine(ctx, &cs, &b, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "combine args: y is NULL");
    cs.hidden = 0;
    expect_error(moejit_combine(ctx, &cs, &ca, NULL), MOEJIT_ERR_INVALID_SPEC, "hidden = 0");
    a = pa, a.topk = -1;
    expect_error(moejit_permute(ctx, &ps, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "topk = -1");
    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    assert_int_equal(s.compiles + s.launches, 0);
    moejit_close(ctx);
}

/* T = 3 tokens, K = 2, H = 3 (bf16): rows in expert order with padding and a dropped slot. */
static void test_references_by_hand(void **state)
{
    (void)state;
    uint16_t x[3 * 3];
    for (int i = 0; i < 9; i++) x[i] = mj_f32_to_bf16((float)(i + 1)); /* token t: 3t+1, 3t+2, 3t+3 */
    const int32_t ids[6] = {1, 0, 0, 7 /* not on this rank */, 1, 0};
    const float scale[2] = {0.5f, 3.0f};
    /* expert 0: (0,1) (1,0) (2,1); expert 1: (0,0) (2,0); block 4: padding 6 */
    const int32_t sorted[8] = {1, 2, 5, 6, 0, 4, 6, 6};
    uint16_t out[8 * 3];
    memset(out, 0xff, sizeof out);
    moejit_permute_spec ps = {.hidden = 3, .dtype = MOEJIT_DTYPE_BF16, .has_scale = 1};
    moejit_permute_args pa = {.x = x, .sorted_ids = sorted, .ids = ids, .scale = scale, .out = out, .num_tokens = 3,
                              .topk = 2, .num_experts = 2, .num_rows = 8};
    assert_int_equal(moejit_permute_reference(&ps, &pa), MOEJIT_OK);
    const float want[8][3] = {{0.5f, 1, 1.5f}, {2, 2.5f, 3}, {3.5f, 4, 4.5f}, {0, 0, 0},
                              {3, 6, 9},       {21, 24, 27}, {0, 0, 0},      {0, 0, 0}};
    for (int r = 0; r < 8; r++)
        for (int j = 0; j < 3; j++)
            if (mj_bf16_to_f32(out[r * 3 + j]) != want[r][j])
                fail_msg("permute row %d col %d: %g, want %g", r, j, (double)mj_bf16_to_f32(out[r * 3 + j]), (double)want[r][j]);

    /* combine back: slot_of is where each (t, k) landed; (1, 1) was dropped */
    const int32_t slot_of[6] = {4, 0, 1, -1, 5, 2};
    const float w[6] = {0.25f, 0.75f, 1.0f, 100.0f, 0.5f, 0.5f};
    uint16_t y[8 * 3], comb[3 * 3];
    memcpy(y, out, sizeof y);
    moejit_combine_spec cs = {.hidden = 3, .dtype = MOEJIT_DTYPE_BF16};
    moejit_combine_args ca = {.y = y, .slot_of = slot_of, .weights = w, .out = comb, .num_tokens = 3, .topk = 2,
                              .num_rows = 8};
    assert_int_equal(moejit_combine_reference(&cs, &ca), MOEJIT_OK);
    /* token 0: 0.25·3x + 0.75·0.5x = 1.125x; token 1: 0.5x (the dropped slot adds nothing); token 2: 1.75x */
    const float factor[3] = {1.125f, 0.5f, 1.75f};
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < 3; j++) {
            const float expect = mj_bf16_to_f32(mj_f32_to_bf16(factor[t] * (float)(3 * t + j + 1)));
            if (mj_bf16_to_f32(comb[t * 3 + j]) != expect)
                fail_msg("combine token %d col %d: %g, want %g", t, j, (double)mj_bf16_to_f32(comb[t * 3 + j]), (double)expect);
        }
    /* the sum is one FMA chain, in slot order, rounded once */
    float yf[2] = {1.0f, 1e-8f}, wf[2] = {1.0f + 0x1p-23f, 1.0f}, of;
    int32_t so[2] = {0, 1};
    moejit_combine_spec c1 = {.hidden = 1};
    moejit_combine_args a1 = {.y = yf, .slot_of = so, .weights = wf, .out = &of, .num_tokens = 1, .topk = 2, .num_rows = 2};
    assert_int_equal(moejit_combine_reference(&c1, &a1), MOEJIT_OK);
    assert_true(of == fmaf(1.0f, 1e-8f, fmaf(1.0f + 0x1p-23f, 1.0f, 0.0f)));
}

static void test_compile(void **state)
{
    (void)state;
    /* Every vector path: 16, 8, 4 bytes and single 16-bit elements; scale on and off. */
    static const struct {
        int op, hidden;
        moejit_dtype dtype;
        int scale, vec;
    } cases[] = {
        {MOEJIT_OP_PERMUTE, 7168, MOEJIT_DTYPE_BF16, 1, 16}, {MOEJIT_OP_PERMUTE, 4, MOEJIT_DTYPE_F16, 0, 8},
        {MOEJIT_OP_PERMUTE, 6, MOEJIT_DTYPE_BF16, 1, 4},     {MOEJIT_OP_PERMUTE, 3, MOEJIT_DTYPE_F16, 1, 2},
        {MOEJIT_OP_PERMUTE, 65536, MOEJIT_DTYPE_F32, 0, 16}, {MOEJIT_OP_PERMUTE, 5, MOEJIT_DTYPE_F32, 1, 4},
        {MOEJIT_OP_COMBINE, 4096, MOEJIT_DTYPE_BF16, 0, 16}, {MOEJIT_OP_COMBINE, 2, MOEJIT_DTYPE_F32, 0, 8},
        {MOEJIT_OP_COMBINE, 1, MOEJIT_DTYPE_F16, 0, 2},      {MOEJIT_OP_COMBINE, 6, MOEJIT_DTYPE_F16, 0, 4},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    moejit_kernel_desc d[N];
    for (int i = 0; i < N; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].op = (moejit_op)cases[i].op;
        if (cases[i].op == MOEJIT_OP_PERMUTE)
            d[i].permute = (moejit_permute_spec){.hidden = cases[i].hidden, .dtype = cases[i].dtype, .has_scale = cases[i].scale};
        else d[i].combine = (moejit_combine_spec){.hidden = cases[i].hidden, .dtype = cases[i].dtype};
        char *src;
        assert_int_equal(moejit_source(NULL, &d[i], &src, NULL), MOEJIT_OK);
        char want[96];
        snprintf(want, sizeof want, "static constexpr int kVecBytes = %d;", cases[i].vec);
        if (!strstr(src, want)) fail_msg("case %d: source lacks \"%s\"", i, want);
        snprintf(want, sizeof want, "static constexpr int kHidden = %d;", cases[i].hidden);
        assert_non_null(strstr(src, want));
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

/* ---- GPU ---------------------------------------------------------------------------------------- */

static void *random_rows(mjt_rng *rng, int64_t rows, int hidden, moejit_dtype dtype)
{
    const size_t n = (size_t)(rows * hidden), elem = dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    uint8_t *p = malloc(n * elem + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        const float v = (float)mjt_normal(rng);
        if (dtype == MOEJIT_DTYPE_F32) ((float *)p)[i] = v;
        else ((uint16_t *)p)[i] = dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
    }
    return p;
}

static void *to_device(const void *host, size_t bytes, size_t offset)
{
    char *d = mjt_dev_alloc(bytes + offset + 16);
    mjt_h2d(d + offset, host, bytes);
    return d + offset;
}

static void expect_same(const void *got, const void *want, size_t row_bytes, int64_t rows, const char *what)
{
    for (int64_t r = 0; r < rows; r++)
        if (memcmp((const char *)got + r * row_bytes, (const char *)want + r * row_bytes, row_bytes))
            fail_msg("%s: row %lld differs from the reference", what, (long long)r);
}

/* offset: bytes added to every base pointer (2: forces the element-wise path). */
static void permute_case(moejit_ctx *ctx, mjt_rng *rng, int hidden, moejit_dtype dtype, int has_scale, int64_t T, int K,
                         size_t offset)
{
    const int E = 8;
    const size_t elem = dtype == MOEJIT_DTYPE_F32 ? 4 : 2, row = (size_t)hidden * elem;
    const int64_t R = T * K + 16;
    void *x = random_rows(rng, T, hidden, dtype);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(T * K + 1)), *sorted = malloc(sizeof(int32_t) * (size_t)R);
    float scale[8];
    for (int e = 0; e < E; e++) scale[e] = (float)(0.5 + mjt_uniform(rng));
    for (int64_t i = 0; i < T * K; i++) ids[i] = (int32_t)(mjt_next(rng) % (E + 1)); /* E: not on this rank */
    for (int64_t r = 0; r < R; r++) sorted[r] = (int32_t)(mjt_next(rng) % (uint64_t)(T * K + 2)) - 1; /* -1 and T*K pad */
    void *ref = malloc(row * (size_t)R), *got = malloc(row * (size_t)R);
    moejit_permute_spec spec = {.hidden = hidden, .dtype = dtype, .has_scale = has_scale};
    moejit_permute_args a = {.x = x, .sorted_ids = sorted, .ids = ids, .scale = scale, .out = ref, .num_tokens = T,
                             .topk = K, .num_experts = E, .num_rows = R};
    assert_int_equal(moejit_permute_reference(&spec, &a), MOEJIT_OK);
    void *dx = to_device(x, row * (size_t)T, offset), *dout = to_device(got, row * (size_t)R, offset);
    int32_t *dids = to_device(ids, 4 * (size_t)(T * K), 0), *dsorted = to_device(sorted, 4 * (size_t)R, 0);
    float *dscale = to_device(scale, sizeof scale, 0);
    mjt_dev_fill(dout, 0xff, row * (size_t)R); /* poison */
    a.x = dx, a.sorted_ids = dsorted, a.ids = dids, a.scale = dscale, a.out = dout;
    moejit_status st = moejit_permute(ctx, &spec, &a, NULL);
    if (st != MOEJIT_OK) fail_msg("moejit_permute: %s: %s", moejit_status_str(st), moejit_last_error(ctx));
    mjt_sync();
    mjt_d2h(got, dout, row * (size_t)R);
    char what[128];
    snprintf(what, sizeof what, "permute H=%d dtype=%d scale=%d T=%lld K=%d offset=%zu", hidden, dtype, has_scale,
             (long long)T, K, offset);
    expect_same(got, ref, row, R, what);
    mjt_dev_free((char *)dx - offset), mjt_dev_free((char *)dout - offset), mjt_dev_free(dids), mjt_dev_free(dsorted),
        mjt_dev_free(dscale);
    free(x), free(ids), free(sorted), free(ref), free(got);
}

static void combine_case(moejit_ctx *ctx, mjt_rng *rng, int hidden, moejit_dtype dtype, int64_t T, int K, size_t offset)
{
    if (T < 0 || K < 1) { /* (the compiler cannot see that callers pass sizes) */
        fail_msg("combine_case: T = %lld, K = %d", (long long)T, K);
        return;
    }
    const size_t elem = dtype == MOEJIT_DTYPE_F32 ? 4 : 2, row = (size_t)hidden * elem;
    const int64_t R = T * K + 8;
    void *y = random_rows(rng, R, hidden, dtype);
    int32_t *slot = malloc(sizeof(int32_t) * (size_t)(T * K));
    float *w = malloc(sizeof(float) * (size_t)(T * K));
    for (int64_t i = 0; i < T * K; i++) {
        slot[i] = (int32_t)(mjt_next(rng) % (uint64_t)(R + 2)) - 1; /* -1 and R: dropped */
        w[i] = (float)mjt_uniform(rng);
    }
    void *ref = malloc(row * (size_t)T), *got = malloc(row * (size_t)T);
    moejit_combine_spec spec = {.hidden = hidden, .dtype = dtype};
    moejit_combine_args a = {.y = y, .slot_of = slot, .weights = w, .out = ref, .num_tokens = T, .topk = K, .num_rows = R};
    assert_int_equal(moejit_combine_reference(&spec, &a), MOEJIT_OK);
    void *dy = to_device(y, row * (size_t)R, offset), *dout = to_device(got, row * (size_t)T, offset);
    int32_t *dslot = to_device(slot, 4 * (size_t)(T * K), 0);
    float *dw = to_device(w, 4 * (size_t)(T * K), 0);
    mjt_dev_fill(dout, 0xff, row * (size_t)T);
    a.y = dy, a.slot_of = dslot, a.weights = dw, a.out = dout;
    moejit_status st = moejit_combine(ctx, &spec, &a, NULL);
    if (st != MOEJIT_OK) fail_msg("moejit_combine: %s: %s", moejit_status_str(st), moejit_last_error(ctx));
    mjt_sync();
    mjt_d2h(got, dout, row * (size_t)T);
    char what[128];
    snprintf(what, sizeof what, "combine H=%d dtype=%d T=%lld K=%d offset=%zu", hidden, dtype, (long long)T, K, offset);
    expect_same(got, ref, row, T, what);
    mjt_dev_free((char *)dy - offset), mjt_dev_free((char *)dout - offset), mjt_dev_free(dslot), mjt_dev_free(dw);
    free(y), free(slot), free(w), free(ref), free(got);
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
    static const int hs[] = {1, 3, 6, 64, 1000, 7168};
    static const moejit_dtype dts[] = {MOEJIT_DTYPE_F32, MOEJIT_DTYPE_BF16, MOEJIT_DTYPE_F16};
    for (size_t h = 0; h < sizeof hs / sizeof hs[0]; h++)
        for (int d = 0; d < 3 && mjt_keep((int)h, 2); d++)
            for (int scale = 0; scale < 2; scale++) {
                permute_case(ctx, &rng, hs[h], dts[d], scale, 37, 4, 0);
                permute_case(ctx, &rng, hs[h], dts[d], scale, 5, 8, dts[d] == MOEJIT_DTYPE_F32 ? 4 : 2);
                if (scale) continue;
                combine_case(ctx, &rng, hs[h], dts[d], 37, 4, 0);
                combine_case(ctx, &rng, hs[h], dts[d], 5, 10, dts[d] == MOEJIT_DTYPE_F32 ? 4 : 2);
            }
    const int T = (int)mjt_quick_cap(4096, 256); /* a real batch (smaller under compute-sanitizer) */
    permute_case(ctx, &rng, 4096, MOEJIT_DTYPE_BF16, 1, T, 8, 0);
    combine_case(ctx, &rng, 4096, MOEJIT_DTYPE_BF16, T, 8, 0);
    moejit_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs_and_names),    cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_references_by_hand), cmocka_unit_test(test_compile),
        cmocka_unit_test(test_gpu_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
