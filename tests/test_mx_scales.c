/* mx_scales without a GPU: validation, names, sizes, and the reference checked three ways:
 * against torchao's to_blocked transcribed step by step (pad, view, permute, reshape, transpose),
 * inverse(forward(x)) == x, and 2D groups (of rows or of columns) == each group blocked alone,
 * concatenated. */
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
    static const char *const entries[] = {"_to_blocked_3d(",   "_to_blocked_2d(",   "_from_blocked_3d(",
                                          "_from_blocked_2d(", "_to_blocked_2d_k(", "_from_blocked_2d_k("};
    for (int i = 0; i < 6; i++) {
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
    /* 2D K groups: all M rows in every group (Rp = 1024), at most 3 wasted columns a group */
    assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_K_GROUPS, 4, 1000, &bytes), MOEJIT_OK);
    assert_int_equal(bytes, 1024 * ((7 + 4 * 3) / 4 * 4));
    assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_K_GROUPS, 0, 1000, &bytes), MOEJIT_OK);
    assert_int_equal(bytes, 1024 * 4); /* no group: the zeros of round_down(C, 4) columns */
    assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_K_GROUPS, 3, 0, &bytes), MOEJIT_OK);
    assert_int_equal(bytes, 0);
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_K_GROUPS, (int64_t)1 << 30, 1, &bytes),
                 MOEJIT_ERR_UNSUPPORTED, "groups = 1073741824 with cols = 7 pass 2147483647 padded columns");
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_K_GROUPS, 1000, (int64_t)1 << 53, &bytes),
                 MOEJIT_ERR_UNSUPPORTED, "rows = 9007199254740992 with groups = 1000 overflows");
    mjt_expect_error(moejit_mx_scales_blocked_bytes(&s, (moejit_mx_layout)3, 1, 1, &bytes), MOEJIT_ERR_INVALID_ARGUMENT,
                 "layout = 3 is not a moejit_mx_layout (0 3D, 1 2D groups, 2 2D K groups)");
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
    a = good, a.layout = MOEJIT_MX_2D_K_GROUPS;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "mx_scales args: group_ends (layout = 2D K groups) is NULL");
    a.group_ends = (const int32_t *)0x30001;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                 "group_ends (layout = 2D K groups) = 0x30001 is not aligned");
    a = good, a.layout = MOEJIT_MX_2D_K_GROUPS, a.groups = (int64_t)1 << 31;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_UNSUPPORTED,
                 "mx_scales args: groups = 2147483648 with cols = 20 pass 2147483647 padded columns");
    a = good, a.layout = MOEJIT_MX_2D_K_GROUPS, a.row_stride = 7;
    mjt_expect_error(moejit_mx_scales(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "row_stride = 7 is smaller than cols = 20");
    mjt_expect_error(moejit_mx_scales(ctx, &s, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "mx_scales args: args is NULL");
    const moejit_mx_scales_spec bad = {.cols = -2};
    mjt_expect_error(moejit_mx_scales(ctx, &bad, &good, NULL), MOEJIT_ERR_INVALID_SPEC, "cols = -2");
    /* Empty tensors: nothing to do, no pointer needed. */
    moejit_mx_scales_args empty = {.layout = MOEJIT_MX_3D, .groups = 0, .rows = 300};
    assert_int_equal(moejit_mx_scales(ctx, &s, &empty, NULL), MOEJIT_OK);
    empty.groups = 5, empty.rows = 0;
    assert_int_equal(moejit_mx_scales_inverse(ctx, &s, &empty, NULL), MOEJIT_OK);
    empty = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 4, .rows = 0};
    assert_int_equal(moejit_mx_scales(ctx, &s, &empty, NULL), MOEJIT_OK);
    empty.groups = 0, empty.rows = 300; /* the inverse of no group writes nothing */
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

/* 2D K groups as torchao describes them (torch_to_blocked_2d_K_groups): a zeroed [Rp, C + 4·G]
 * buffer; group g, the columns [group_ends[g-1], group_ends[g]) of every row, goes through
 * to_blocked on its own and its tiles are copied one by one to byte start_col·Rp + (rb·ncb + cb)·512,
 * where start_col is the running sum of the earlier groups' sizes rounded up to 4 (an empty group
 * adds nothing). Returns the buffer (calloc'ed) and its size; *last_end is the last group end. */
static uint8_t *torchao_k_groups(const uint8_t *x, int64_t M, int64_t C, int64_t stride, const int32_t *ends,
                                 int64_t G, size_t *size, int64_t *last_end)
{
    const int64_t Rp = (M + 127) / 128 * 128, nrb = Rp / 128;
    *size = (size_t)(Rp * (C + 4 * G));
    uint8_t *out = calloc(*size ? *size : 1, 1);
    int64_t start_col = 0, begin = 0;
    for (int64_t g = 0; g < G; g++) {
        const int64_t n = ends[g] - begin;
        if (n > 0) {
            uint8_t *sub = malloc((size_t)(M * n)), *blk = malloc((size_t)(Rp * (n + 3) / 4 * 4));
            for (int64_t r = 0; r < M; r++) memcpy(sub + r * n, x + r * stride + begin, (size_t)n);
            torchao_to_blocked(sub, M, n, n, blk);
            const int64_t ncb = (n + 3) / 4;
            for (int64_t rb = 0; rb < nrb; rb++)
                for (int64_t cb = 0; cb < ncb; cb++)
                    memcpy(out + start_col * Rp + (rb * ncb + cb) * 512, blk + (rb * ncb + cb) * 512, 512);
            start_col += ncb * 4;
            free(sub), free(blk);
        }
        begin = ends[g];
    }
    *last_end = begin;
    return out;
}

static void test_reference_2d_k_groups(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    /* empty groups first, in the middle and last; sizes that are not multiples of 4; columns left
     * after the last group; a single group of every column; no group */
    static const int32_t e1[] = {0, 5, 5, 12, 13, 13, 30}, e2[] = {40}, e3[] = {3, 3, 3}, e4[] = {1, 2, 3, 4, 40};
    static const struct {
        int C;
        const int32_t *ends;
        int64_t G;
    } cases[] = {{40, e1, 7}, {40, e2, 1}, {4, e3, 3}, {40, e4, 5}, {41, e1, 7}, {40, NULL, 0}};
    static const int64_t ms[] = {1, 127, 128, 300};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t m = 0; m < sizeof ms / sizeof ms[0]; m++)
            for (int strided = 0; strided < 2; strided++) {
                const int C = cases[c].C;
                const int64_t M = ms[m], G = cases[c].G, stride = C + 5 * strided;
                const moejit_mx_scales_spec s = {.cols = C};
                size_t bytes, want_size;
                int64_t last_end;
                assert_int_equal(moejit_mx_scales_blocked_bytes(&s, MOEJIT_MX_2D_K_GROUPS, G, M, &bytes), MOEJIT_OK);
                assert_int_equal(bytes, (size_t)((M + 127) / 128 * 128 * ((C + 3 * G) / 4 * 4)));
                uint8_t *x = malloc((size_t)(M * stride)), *out = malloc(bytes + 1), *back = malloc((size_t)(M * stride));
                for (int64_t i = 0; i < M * stride; i++) x[i] = (uint8_t)mjt_next(&rng);
                uint8_t *want = torchao_k_groups(x, M, C, stride, cases[c].ends, G, &want_size, &last_end);
                memset(out, 0xee, bytes + 1);
                moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_K_GROUPS, .in = x, .out = out, .groups = G, .rows = M,
                                           .group_ends = cases[c].ends, .row_stride = strided ? stride : 0};
                assert_int_equal(moejit_mx_scales_reference(&s, &a), MOEJIT_OK);
                /* ours is torchao's prefix; torchao's bytes after it are zeros */
                assert_true(bytes <= want_size);
                assert_memory_equal(out, want, bytes);
                for (size_t i = bytes; i < want_size; i++) assert_int_equal(want[i], 0);
                assert_int_equal(out[bytes], 0xee);
                /* inverse(forward(x)) == x on the columns of the groups; nothing else is written */
                memset(back, 0xee, (size_t)(M * stride));
                a.in = out, a.out = back;
                assert_int_equal(moejit_mx_scales_inverse_reference(&s, &a), MOEJIT_OK);
                for (int64_t r = 0; r < M; r++)
                    for (int64_t j = 0; j < stride; j++)
                        assert_int_equal(back[r * stride + j], j < last_end ? x[r * stride + j] : 0xee);
                free(x), free(out), free(back), free(want);
            }
    /* ends the kernel would repair are refused here, naming the end and the bound */
    const int C = 10;
    const moejit_mx_scales_spec s = {.cols = C};
    uint8_t x[4 * 10] = {0}, out[512 * 8];
    const int32_t down[] = {8, 4}, past[] = {4, 11}, negative[] = {-1, 4};
    moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_K_GROUPS, .in = x, .out = out, .groups = 2, .rows = 4,
                               .group_ends = down};
    mjt_expect_error(moejit_mx_scales_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "mx_scales args: group_ends[1] = 4 is smaller than the end before it, 8");
    a.group_ends = past;
    mjt_expect_error(moejit_mx_scales_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "mx_scales args: group_ends[1] = 11 passes cols = 10");
    a.group_ends = negative;
    mjt_expect_error(moejit_mx_scales_inverse_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                 "mx_scales args: group_ends[0] = -1 is smaller than the end before it, 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs_names_sizes),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_reference_is_to_blocked),
        cmocka_unit_test(test_reference_2d_is_groups_concatenated),
        cmocka_unit_test(test_reference_2d_k_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
