/* mx_scales without a GPU: validation, names, sizes, and the reference checked three ways:
 * against torchao's to_blocked transcribed step by step (pad, view, permute, reshape, transpose),
 * inverse(forward(x)) == x, and 2D groups == each group blocked alone, concatenated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static void test_specs_names_sizes(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_MX_SCALES, .mx_scales = {.cols = 224}};
    char name[96];
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_mx_scales_c224");
    char *src;
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    assert_non_null(strstr(src, "static constexpr int kCols = 224;"));
    /* 56 tiles = 14 segments of 16 bytes: two chunks of 7 warps */
    assert_non_null(strstr(src, "static constexpr int kSegs = 7;"));
    assert_non_null(strstr(src, "static constexpr int kChunks = 2;"));
    static const char *const entries[] = {"_to_blocked_3d(", "_to_blocked_2d(", "_from_blocked_3d(", "_from_blocked_2d("};
    for (int i = 0; i < 4; i++) {
        char e[128];
        snprintf(e, sizeof e, "moejit_mx_scales_c224%s", entries[i]);
        assert_non_null(strstr(src, e));
    }
    moejit_free(src);
    d.mx_scales.cols = 0;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "mx_scales spec: cols = 0 must be >= 1");
    d.mx_scales.cols = MOEJIT_MAX_MX_COLS + 1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "cols = 65537 exceeds the maximum 65536");

    const moejit_mx_scales_spec s = {.cols = 7}; /* Cp = 8: two tiles a row block */
    size_t bytes;
    assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_3D, 3, 130, &bytes), MOEJIT_OK);
    assert_int_equal(bytes, 3 * 256 * 8);
    /* 2D: at most 127 wasted rows a group, whole row blocks */
    assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_GROUPS, 4, 1000, &bytes), MOEJIT_OK);
    assert_int_equal(bytes, (1000 + 4 * 127) / 128 * 128 * 8);
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, (moejit_mx_layout)2, 1, 1, &bytes), MOEJIT_ERR_INVALID_ARGUMENT,
                 "layout = 2 is not a moejit_mx_layout");
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_3D, -1, 1, &bytes), MOEJIT_ERR_INVALID_ARGUMENT,
                 "groups = -1 must be >= 0");
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_3D, 1, -4, &bytes), MOEJIT_ERR_INVALID_ARGUMENT,
                 "rows = -4 must be >= 0");
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_GROUPS, 16, (int64_t)1 << 31, &bytes),
                 MOEJIT_ERR_UNSUPPORTED, "group_ends are int32");
}

static void test_bad_args(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    const moejit_mx_scales_spec s = {.cols = 20};
    const moejit_mx_scales_args good = {.layout = MOEJIT_MX_3D, .in = (void *)0x10001, .out = (void *)0x20000,
                                        .groups = 2, .rows = 300};
    moejit_mx_scales_args a = good;
    a.out = (void *)0x20008;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "mx_scales args: out (blocked) = 0x20008 is not aligned to 16 bytes");
    a = good, a.in = (void *)0x20004, a.out = (void *)0x10001; /* inverse: in is the blocked one */
    mjt_expect_error(moejit_mx_scales_inverse(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "in (blocked) = 0x20004 is not aligned to 16 bytes");
    a = good, a.in = NULL;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "mx_scales args: in is NULL");
    a = good, a.row_stride = 19;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "row_stride = 19 is smaller than cols = 20");
    a = good, a.group_stride = 5999;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "group_stride = 5999 is smaller than rows × row_stride = 6000");
    a = good, a.rows = -1;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "rows = -1 must be >= 0");
    a = good, a.layout = MOEJIT_MX_2D_GROUPS;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "group_ends (layout = 2D groups) is NULL");
    a.group_ends = (const int32_t *)0x30002;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "group_ends (layout = 2D groups) = 0x30002 is not aligned");
    mjt_expect_error(moejit_mx_scales(ctx, &s, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "mx_scales args: args is NULL");
    const moejit_mx_scales_spec bad = {.cols = -2};
    mjt_expect_error(moejit_mx_scales(ctx, &bad, &good, NULL), MOEJIT_ERR_INVALID_SPEC, "cols = -2");
    /* Empty tensors: nothing to do, no pointer needed. */
    moejit_mx_scales_args empty = {.layout = MOEJIT_MX_3D, .groups = 0, .rows = 300};
    assert_int_equal(moejit_mx_scales(ctx, &s, &empty, NULL), MOEJIT_OK);
    empty.groups = 5, empty.rows = 0;
    assert_int_equal(moejit_mx_scales_inverse(ctx, &s, &empty, NULL), MOEJIT_OK);
    mjt_expect_nothing_ran(ctx, dir);
}

/* torchao's to_blocked, one step at a time, on a [rows, cols] matrix:
 *   padded = zeros(Rp, Cp); padded[:rows, :cols] = x
 *   blocks = padded.view(Rp/128, 128, Cp/4, 4).permute(0, 2, 1, 3)   # [rb, cb, 128, 4]
 *   out = blocks.reshape(-1, 4, 32, 4).transpose(1, 2).reshape(-1, 32, 16).flatten() */
static void torchao_to_blocked(const uint8_t *x, int64_t rows, int64_t cols, int64_t stride, uint8_t *out)
{
    const int64_t Rp = (rows + 127) / 128 * 128, Cp = (cols + 3) / 4 * 4, nrb = Rp / 128, ncb = Cp / 4;
    uint8_t *padded = calloc((size_t)(Rp * Cp), 1), *blocks = malloc((size_t)(Rp * Cp));
    for (int64_t r = 0; r < rows; r++) memcpy(padded + r * Cp, x + r * stride, (size_t)cols);
    for (int64_t rb = 0; rb < nrb; rb++) /* permute(0, 2, 1, 3), contiguous */
        for (int64_t cb = 0; cb < ncb; cb++)
            for (int64_t i = 0; i < 128; i++)
                for (int64_t j = 0; j < 4; j++)
                    blocks[((rb * ncb + cb) * 128 + i) * 4 + j] = padded[(rb * 128 + i) * Cp + cb * 4 + j];
    for (int64_t t = 0; t < nrb * ncb; t++) /* [t, 4, 32, 4] → transpose(1, 2) → [t, 32, 4, 4] */
        for (int64_t a = 0; a < 4; a++)
            for (int64_t b = 0; b < 32; b++)
                for (int64_t c = 0; c < 4; c++) out[((t * 32 + b) * 4 + a) * 4 + c] = blocks[((t * 4 + a) * 32 + b) * 4 + c];
    free(padded), free(blocks);
}

static void test_reference_is_to_blocked(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int cs[] = {1, 3, 4, 5, 16, 33, 224};
    static const int64_t rs[] = {1, 31, 128, 129, 300};
    for (int c = 0; c < 7; c++)
        for (int r = 0; r < 5; r++)
            for (int64_t G = 1; G <= 3; G += 2) {
                const int C = cs[c];
                const int64_t R = rs[r], stride = C + (r % 2) * 3, gstride = R * stride + (c % 2) * 5;
                const moejit_mx_scales_spec s = {.cols = C};
                size_t bytes;
                assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_3D, G, R, &bytes), MOEJIT_OK);
                const size_t per_group = bytes / (size_t)G, plain_bytes = (size_t)(G * gstride);
                uint8_t *x = malloc(plain_bytes), *out = malloc(bytes), *want = malloc(bytes), *back = malloc(plain_bytes);
                for (size_t i = 0; i < plain_bytes; i++) x[i] = (uint8_t)mjt_next(&rng);
                memset(out, 0xee, bytes);
                moejit_mx_scales_args a = {.layout = MOEJIT_MX_3D, .in = x, .out = out, .groups = G, .rows = R,
                                           .row_stride = stride, .group_stride = gstride};
                assert_int_equal(moejit_mx_scales_reference(&s, &a), MOEJIT_OK);
                for (int64_t g = 0; g < G; g++) torchao_to_blocked(x + g * gstride, R, C, stride, want + g * per_group);
                assert_memory_equal(out, want, bytes);
                /* inverse(forward(x)) == x where x has scales; the gaps between rows are not touched */
                memset(back, 0xee, plain_bytes);
                a.in = out, a.out = back;
                assert_int_equal(moejit_mx_scales_inverse_reference(&s, &a), MOEJIT_OK);
                for (int64_t g = 0; g < G; g++)
                    for (int64_t i = 0; i < R; i++)
                        for (int64_t j = 0; j < stride; j++) {
                            const size_t at = (size_t)(g * gstride + i * stride + j);
                            assert_int_equal(back[at], j < C ? x[at] : 0xee);
                        }
                free(x), free(out), free(want), free(back);
            }
}

/* 2D groups: each group blocked on its own, the groups one after the other, zeros after the last. */
static void test_reference_2d_is_groups_concatenated(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    const int C = 10;
    const int32_t ends[] = {0, 100, 100, 356, 357, 357, 900}; /* empty groups first, middle, and rows left after */
    const int64_t G = 7, M = 1000;
    const moejit_mx_scales_spec s = {.cols = C};
    size_t bytes;
    assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_GROUPS, G, M, &bytes), MOEJIT_OK);
    uint8_t *x = malloc(M * C), *out = malloc(bytes), *want = calloc(bytes, 1);
    for (int64_t i = 0; i < M * C; i++) x[i] = (uint8_t)mjt_next(&rng);
    memset(out, 0xee, bytes);
    moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_GROUPS, .in = x, .out = out, .groups = G, .rows = M,
                               .group_ends = ends};
    assert_int_equal(moejit_mx_scales_reference(&s, &a), MOEJIT_OK);
    size_t at = 0;
    for (int g = 0; g < G; g++) {
        const int32_t begin = g ? ends[g - 1] : 0;
        if (ends[g] == begin) continue;
        torchao_to_blocked(x + begin * C, ends[g] - begin, C, C, want + at);
        at += (size_t)((ends[g] - begin + 127) / 128 * 128 * 12); /* Cp = 12 */
    }
    assert_true(at <= bytes);
    assert_memory_equal(out, want, bytes);
    /* ends the kernel would repair are refused here */
    const int32_t down[] = {100, 50}, past[] = {100, 1001};
    a.groups = 2, a.group_ends = down;
    mjt_expect_error(moejit_mx_scales_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "group_ends[1] = 50 is smaller than the end before it, 100");
    a.group_ends = past;
    mjt_expect_error(moejit_mx_scales_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "group_ends[1] = 1001 passes rows = 1000");
    free(x), free(out), free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs_names_sizes),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_reference_is_to_blocked),
        cmocka_unit_test(test_reference_2d_is_groups_concatenated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
