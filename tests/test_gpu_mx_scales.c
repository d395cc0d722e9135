/* GPU: mx_scales against its C reference (torchao's to_blocked), byte for byte over the whole
 * poisoned output plus a poisoned margin after it: 3D and 2D layouts grouped by rows (M) and by
 * columns (K), rows and columns that are not multiples of 128 and 4, padded strides, plain tensors
 * with 16-, 4- and 1-byte alignment, uneven and empty groups, and the inverse back to a poisoned
 * plain tensor. Every test skips without a device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define MARGIN 64 /* poisoned bytes after each output that nothing may write */

static void expect_same(const unsigned char *got, const unsigned char *want, size_t n, const char *what, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("%s: %s byte %zu is 0x%02x, reference 0x%02x", what, name, i, got[i], want[i]);
}

/* One tensor both ways. `a` describes the plain tensor (strides, groups, rows, layout) with host
 * group ends; `offset` shifts the plain tensor from a 256-byte aligned base. */
static void check(mjt_rng *rng, int C, moejit_mx_scales_args a, int offset, const char *what)
{
    const moejit_mx_scales_spec spec = {.cols = C};
    size_t blocked_bytes;
    assert_int_equal(moejit_mx_scales_blocked_bytes(&spec, a.layout, a.groups, a.rows, &blocked_bytes), MOEJIT_OK);
    const int64_t row_stride = a.row_stride ? a.row_stride : C;
    const int64_t group_stride = a.group_stride ? a.group_stride : a.rows * row_stride;
    const size_t plain_bytes =
        (size_t)(a.layout == MOEJIT_MX_3D ? a.groups * group_stride : a.rows * row_stride) + MARGIN;
    const int32_t *ends = a.group_ends;

    unsigned char *plain = malloc(plain_bytes), *blocked_ref = malloc(blocked_bytes + MARGIN),
                  *got = malloc((plain_bytes > blocked_bytes ? plain_bytes : blocked_bytes) + MARGIN),
                  *plain_ref = malloc(plain_bytes);
    for (size_t i = 0; i < plain_bytes; i++) plain[i] = (unsigned char)mjt_next(rng);
    memset(blocked_ref, MJT_POISON, blocked_bytes + MARGIN);
    unsigned char *d_plain_base = mjt_dev_alloc(plain_bytes + 256), *d_plain = d_plain_base + offset;
    unsigned char *d_blocked = mjt_dev_alloc(blocked_bytes + MARGIN);
    int32_t *d_ends = a.layout != MOEJIT_MX_3D && a.groups ? mjt_dev_alloc(4 * (size_t)a.groups) : NULL;
    if (d_ends) mjt_h2d(d_ends, ends, 4 * (size_t)a.groups);
    mjt_h2d(d_plain, plain, plain_bytes);
    mjt_dev_fill(d_blocked, MJT_POISON, blocked_bytes + MARGIN);

    /* plain → blocked */
    moejit_mx_scales_args dev = a;
    dev.in = d_plain, dev.out = d_blocked, dev.group_ends = d_ends;
    moejit_status st = moejit_mx_scales(mjt_gpu_ctx, &spec, &dev, NULL);
    if (st != MOEJIT_OK) fail_msg("%s: moejit_mx_scales: %s: %s", what, moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    moejit_mx_scales_args host = a;
    host.in = plain, host.out = blocked_ref;
    assert_int_equal(moejit_mx_scales_reference(&spec, &host), MOEJIT_OK);
    mjt_d2h(got, d_blocked, blocked_bytes + MARGIN);
    expect_same(got, blocked_ref, blocked_bytes + MARGIN, what, "blocked");

    /* blocked → a poisoned plain tensor: the scales come back, nothing else is written */
    mjt_dev_fill(d_plain, MJT_POISON, plain_bytes);
    memset(plain_ref, MJT_POISON, plain_bytes);
    dev.in = d_blocked, dev.out = d_plain;
    st = moejit_mx_scales_inverse(mjt_gpu_ctx, &spec, &dev, NULL);
    if (st != MOEJIT_OK) fail_msg("%s: inverse: %s: %s", what, moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    host.in = blocked_ref, host.out = plain_ref;
    assert_int_equal(moejit_mx_scales_inverse_reference(&spec, &host), MOEJIT_OK);
    mjt_d2h(got, d_plain, plain_bytes);
    expect_same(got, plain_ref, plain_bytes, what, "plain (inverse)");

    free(plain), free(blocked_ref), free(got), free(plain_ref);
    mjt_dev_free(d_plain_base), mjt_dev_free(d_blocked), mjt_dev_free(d_ends);
}

static void test_3d(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    /* C: 1 to 3 partial tiles, partial 16-byte segments, 4-byte rows, model sizes (7168/32 = 224,
     * 5120/32 = 160, 18432/32 = 576), one more than a model size. */
    static const int cs[] = {1, 3, 4, 7, 16, 20, 64, 160, 224, 225, 576};
    static const int64_t rs[] = {1, 100, 128, 300};
    static const int64_t gs[] = {1, 16};
    char what[160];
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        for (size_t r = 0; r < sizeof rs / sizeof rs[0] && mjt_keep((int)c, 2); r++)
            for (size_t g = 0; g < 2; g++) {
                moejit_mx_scales_args a = {.layout = MOEJIT_MX_3D, .groups = gs[g], .rows = rs[r]};
                snprintf(what, sizeof what, "3D G=%lld R=%lld C=%d dense", (long long)gs[g], (long long)rs[r], cs[c]);
                check(&rng, cs[c], a, 0, what);
            }
    /* Strided: padded rows and groups; plain bases and strides that allow 16, 4 or 1 bytes. */
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        if (!mjt_keep((int)c, 3)) continue;
        const int C = cs[c];
        moejit_mx_scales_args a = {.layout = MOEJIT_MX_3D, .groups = 3, .rows = 257,
                                   .row_stride = (C + 15) / 16 * 16 + 16, .group_stride = 0};
        a.group_stride = a.rows * a.row_stride + 32;
        snprintf(what, sizeof what, "3D C=%d 16-byte strides", C);
        check(&rng, C, a, 0, what);
        a.row_stride = (C + 3) / 4 * 4 + 4, a.group_stride = a.rows * a.row_stride + 4;
        snprintf(what, sizeof what, "3D C=%d 4-byte strides, base + 4", C);
        check(&rng, C, a, 4, what);
        a.row_stride = C + 1, a.group_stride = a.rows * a.row_stride + 3;
        snprintf(what, sizeof what, "3D C=%d odd strides, base + 1", C);
        check(&rng, C, a, 1, what);
    }
    /* A model-sized one: 16 experts of 2048 rows (N of a down projection), K = 7168. */
    moejit_mx_scales_args big = {.layout = MOEJIT_MX_3D, .groups = mjt_quick_cap(16, 2), .rows = 2048};
    check(&rng, 224, big, 0, "3D G=16 R=2048 C=224");
}

/* Ends of G groups over M rows: uneven sizes, some empty, maybe rows left after the last group. */
static int32_t *random_ends(mjt_rng *rng, int64_t G, int64_t M, int leave_tail)
{
    int32_t *ends = malloc(4 * (size_t)(G ? G : 1));
    int64_t total = leave_tail ? M - (int64_t)(mjt_next(rng) % (uint64_t)(M / 4 + 1)) : M;
    /* cut [0, total) at G-1 sorted random points; a third of the cuts repeat (empty groups) */
    for (int64_t g = 0; g < G; g++) {
        const uint64_t r = mjt_next(rng);
        ends[g] = g == G - 1 ? (int32_t)total
                             : (g && r % 3 == 0 ? ends[g - 1] : (int32_t)((r >> 8) % (uint64_t)(total + 1)));
    }
    for (int64_t i = 1; i < G; i++) /* sort (insertion: G is small) */
        for (int64_t j = i; j > 0 && ends[j - 1] > ends[j]; j--) {
            const int32_t t = ends[j];
            ends[j] = ends[j - 1], ends[j - 1] = t;
        }
    return ends;
}

static void test_2d_groups(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int cs[] = {1, 7, 20, 64, 160, 225};
    static const int64_t ms[] = {1, 127, 1000, 5000};
    static const int64_t gs[] = {1, 16};
    char what[160];
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        for (size_t m = 0; m < sizeof ms / sizeof ms[0] && mjt_keep((int)c, 2) && mjt_keep((int)m, 3); m++)
            for (size_t g = 0; g < 2; g++)
                for (int tail = 0; tail < 2; tail++) {
                    int32_t *ends = random_ends(&rng, gs[g], ms[m], tail);
                    moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_GROUPS, .groups = gs[g], .rows = ms[m],
                                               .group_ends = ends};
                    if (tail) a.row_stride = cs[c] + 3; /* and an odd stride */
                    snprintf(what, sizeof what, "2D G=%lld M=%lld C=%d%s", (long long)gs[g], (long long)ms[m], cs[c],
                             tail ? " rows after the last group, odd stride" : "");
                    check(&rng, cs[c], a, 0, what);
                    free(ends);
                }
    /* All groups empty; a single group of every row; 64 groups, 16 of them empty. */
    int32_t zeros[8] = {0};
    moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_GROUPS, .groups = 8, .rows = 300, .group_ends = zeros};
    check(&rng, 64, a, 0, "2D all groups empty");
    int32_t all[1] = {4096};
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_GROUPS, .groups = 1, .rows = 4096, .group_ends = all};
    check(&rng, 224, a, 0, "2D one group");
    int32_t *ends = random_ends(&rng, 64, 20000, 0);
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_GROUPS, .groups = 64, .rows = 20000, .group_ends = ends};
    check(&rng, 224, a, 0, "2D G=64 M=20000 C=224");
    free(ends);
}

/* Four group ends the reference rejects (`bad`): the kernel reads them as a running maximum
 * clamped to [0, M] (row groups) or [0, C] (column groups) and stays inside its tensors, i.e. it
 * equals the reference on the repaired ends. */
static void bad_ends_stay_in_bounds(moejit_mx_layout layout, const int32_t bad[4], const int32_t repaired[4],
                                    const char *what)
{
    const int C = 20;
    const moejit_mx_scales_spec spec = {.cols = C};
    const int64_t M = 300;
    size_t bytes;
    assert_int_equal(moejit_mx_scales_blocked_bytes(&spec, layout, 4, M, &bytes), MOEJIT_OK);
    unsigned char *plain = malloc((size_t)M * C), *ref = malloc(bytes + MARGIN), *got = malloc(bytes + MARGIN);
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int64_t i = 0; i < M * C; i++) plain[i] = (unsigned char)mjt_next(&rng);
    memset(ref, MJT_POISON, bytes + MARGIN);
    moejit_mx_scales_args h = {.layout = layout, .in = plain, .out = ref, .groups = 4, .rows = M, .group_ends = bad};
    assert_int_equal(moejit_mx_scales_reference(&spec, &h), MOEJIT_ERR_INVALID_ARGUMENT);
    h.group_ends = repaired;
    assert_int_equal(moejit_mx_scales_reference(&spec, &h), MOEJIT_OK);
    unsigned char *d_plain = mjt_dev_alloc((size_t)M * C), *d_out = mjt_dev_alloc(bytes + MARGIN);
    int32_t *d_ends = mjt_dev_alloc(4 * sizeof *bad);
    mjt_h2d(d_plain, plain, (size_t)M * C), mjt_h2d(d_ends, bad, 4 * sizeof *bad);
    mjt_dev_fill(d_out, MJT_POISON, bytes + MARGIN);
    moejit_mx_scales_args d = {.layout = layout, .in = d_plain, .out = d_out, .groups = 4, .rows = M, .group_ends = d_ends};
    assert_int_equal(moejit_mx_scales(mjt_gpu_ctx, &spec, &d, NULL), MOEJIT_OK);
    mjt_sync();
    mjt_d2h(got, d_out, bytes + MARGIN);
    expect_same(got, ref, bytes + MARGIN, what, "blocked");
    free(plain), free(ref), free(got);
    mjt_dev_free(d_plain), mjt_dev_free(d_out), mjt_dev_free(d_ends);
}

static void test_2d_bad_ends_stay_in_bounds(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    const int32_t bad[] = {50, 20, 5000000, -3}, repaired[] = {50, 50, 300, 300};
    bad_ends_stay_in_bounds(MOEJIT_MX_2D_GROUPS, bad, repaired, "bad ends");
}

/* 2D K groups (weight gradients): groups of columns, every one with all M rows. */
static void test_2d_k_groups(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    /* C = 224 is 7168 / 32 (DeepSeek-V3's hidden size); C = 4 with 16 groups is mostly empty groups */
    static const int cs[] = {4, 160, 224};
    static const int64_t ms[] = {1, 128, 1000, 8192};
    static const int64_t gs[] = {1, 3, 8, 16};
    char what[192];
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        for (size_t m = 0; m < sizeof ms / sizeof ms[0] && mjt_keep((int)m, 2); m++)
            for (size_t g = 0; g < sizeof gs / sizeof gs[0]; g++)
                for (int tail = 0; tail < 2; tail++) {
                    const int64_t M = mjt_quick_cap(ms[m], 1000);
                    /* random cuts: uneven sizes, most not multiples of 4, a third of them empty */
                    int32_t *ends = random_ends(&rng, gs[g], cs[c], tail);
                    moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_K_GROUPS, .groups = gs[g], .rows = M,
                                               .group_ends = ends};
                    if (tail) a.row_stride = cs[c] + 3; /* and an odd stride */
                    int n = snprintf(what, sizeof what, "2D K G=%lld M=%lld C=%d%s, ends", (long long)gs[g],
                                     (long long)M, cs[c], tail ? " cols after the last group, odd stride" : "");
                    for (int64_t i = 0; i < gs[g] && n < (int)sizeof what - 12; i++)
                        n += snprintf(what + n, sizeof what - (size_t)n, " %d", ends[i]);
                    check(&rng, cs[c], a, 0, what);
                    free(ends);
                }
    /* Plain tensors with 16-, 4- and 1-byte alignment; all groups empty; one group of every
     * column; 64 groups (warp 0 walks them in two batches), many of them 1 or 2 columns. */
    int32_t ends3[] = {50, 51, 224};
    moejit_mx_scales_args a = {.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 3, .rows = 300, .group_ends = ends3,
                               .row_stride = 240};
    check(&rng, 224, a, 0, "2D K 16-byte stride");
    a.row_stride = 228;
    check(&rng, 224, a, 4, "2D K 4-byte stride, base + 4");
    a.row_stride = 225;
    check(&rng, 224, a, 1, "2D K odd stride, base + 1");
    int32_t zeros[8] = {0};
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 8, .rows = 300, .group_ends = zeros};
    check(&rng, 64, a, 0, "2D K all groups empty");
    int32_t all[1] = {224};
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 1, .rows = 4096, .group_ends = all};
    check(&rng, 224, a, 0, "2D K one group");
    int32_t *ends = random_ends(&rng, 64, 160, 0);
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 64, .rows = 1000, .group_ends = ends};
    check(&rng, 160, a, 0, "2D K G=64 M=1000 C=160");
    free(ends);
    ends = random_ends(&rng, 40, 576, 1);
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 40, .rows = 700, .group_ends = ends};
    check(&rng, 576, a, 0, "2D K G=40 M=700 C=576 (6 units across)");
    free(ends);
    int32_t small[] = {1, 1, 2, 5, 7};
    a = (moejit_mx_scales_args){.layout = MOEJIT_MX_2D_K_GROUPS, .groups = 5, .rows = 129, .group_ends = small};
    check(&rng, 7, a, 0, "2D K C=7 five groups");
}

static void test_2d_k_bad_ends_stay_in_bounds(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    const int32_t bad[] = {9, 3, 5000000, -3}, repaired[] = {9, 9, 20, 20};
    bad_ends_stay_in_bounds(MOEJIT_MX_2D_K_GROUPS, bad, repaired, "K bad ends");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_3d),
        cmocka_unit_test(test_2d_groups),
        cmocka_unit_test(test_2d_bad_ends_stay_in_bounds),
        cmocka_unit_test(test_2d_k_groups),
        cmocka_unit_test(test_2d_k_bad_ends_stay_in_bounds),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
