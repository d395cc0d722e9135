/* One source of truth for the C/CUDA contracts (docs/DESIGN.md §3.3): every generated source
 * declares the kernel parameter structs from the same tables as the host, checks their layout
 * with static_asserts, and takes the score enums from moejit.h; a layout that differs stops the
 * compile. No GPU (NVRTC only). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ops.h"
#include "jit/codegen.h"
#include "jit/nvrtc.h"
#include "ops/align/align.h"
#include "ops/mx_scales/mx_scales.h"
#include "ops/permute_combine/permute_combine.h"
#include "ops/route/route.h"
#include "ops/route_align/route_align.h"
#include "support.h"

/* The generated source of d into *src (malloc'ed). */
static void source_of(const moejit_kernel_desc *d, char **src)
{
    if (moejit_source(NULL, d, src, NULL) != MOEJIT_OK) fail_msg("moejit_source: %s", moejit_last_error(NULL));
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void expect_contains(const char *src, const char *line)
{
    if (!strstr(src, line)) fail_msg("the generated source lacks:\n%s", line);
}

/* The checks a struct's layout gets: its size and each field's offset, as this compiler laid it out. */
#define EXPECT_SIZE(src, S) \
    do { \
        char line_[160]; \
        snprintf(line_, sizeof line_, "static_assert(sizeof(%s) == %zu,", #S, sizeof(S)); \
        expect_contains(src, line_); \
    } while (0)
#define EXPECT_OFFSET(src, S, field) \
    do { \
        char line_[160]; \
        snprintf(line_, sizeof line_, "static_assert(MJ_OFFSETOF(%s, %s) == %zu,", #S, #field, offsetof(S, field)); \
        expect_contains(src, line_); \
    } while (0)

static void test_params_emitted_with_checks(void **state)
{
    (void)state;
    char *src;
    source_of(&(moejit_kernel_desc){.op = MOEJIT_OP_ROUTE_ALIGN,
                                               .route_align = {.route = {.num_experts = 64, .topk = 4}, .block_size = 16}}, &src);
    EXPECT_SIZE(src, mj_route_params);
    EXPECT_OFFSET(src, mj_route_params, num_tokens);
    EXPECT_OFFSET(src, mj_route_params, row_stride);
    EXPECT_SIZE(src, mj_align_params);
    EXPECT_OFFSET(src, mj_align_params, slot_of);
    EXPECT_OFFSET(src, mj_align_params, num_tiles);
    EXPECT_OFFSET(src, mj_align_params, expert_map);
    EXPECT_OFFSET(src, mj_align_params, first_expert);
    EXPECT_SIZE(src, mj_route_align_params);
    EXPECT_OFFSET(src, mj_route_align_params, align);
    EXPECT_OFFSET(src, mj_route_params, logical_ids);
    /* every field of the three structs is checked: 11 + 13 + 2 offsets, 3 sizes */
    assert_int_equal(count(src, "host and device layouts differ"), 11 + 13 + 2 + 3);
    /* the templates take the score enums from moejit.h */
    char line[64];
    snprintf(line, sizeof line, "kScoreSigmoid = %d", MOEJIT_SCORE_SIGMOID);
    expect_contains(src, line);
    snprintf(line, sizeof line, "kGroupTop2Sum = %d", MOEJIT_GROUP_SCORE_TOP2_SUM);
    expect_contains(src, line);
    free(src);

    source_of(&(moejit_kernel_desc){.op = MOEJIT_OP_MX_SCALES, .mx_scales = {.cols = 160}}, &src);
    EXPECT_SIZE(src, mj_mx_params);
    EXPECT_OFFSET(src, mj_mx_params, group_ends);
    EXPECT_OFFSET(src, mj_mx_params, units);
    free(src);
    source_of(&(moejit_kernel_desc){.op = MOEJIT_OP_PERMUTE, .permute = {.hidden = 64}}, &src);
    EXPECT_SIZE(src, mj_permute_params);
    EXPECT_OFFSET(src, mj_permute_params, num_experts);
    EXPECT_SIZE(src, mj_combine_params);
    EXPECT_OFFSET(src, mj_combine_params, topk);
    free(src);
    /* the backward's modules declare all four row structs (their template follows the forward's) */
    source_of(&(moejit_kernel_desc){.op = MOEJIT_OP_COMBINE_BACKWARD, .combine_backward = {.hidden = 64}}, &src);
    EXPECT_SIZE(src, mj_permute_params);
    EXPECT_SIZE(src, mj_combine_params);
    EXPECT_SIZE(src, mj_permute_backward_params);
    EXPECT_OFFSET(src, mj_permute_backward_params, num_experts);
    EXPECT_SIZE(src, mj_combine_backward_params);
    EXPECT_OFFSET(src, mj_combine_backward_params, grad_weights);
    EXPECT_OFFSET(src, mj_combine_backward_params, topk);
    /* every field of the four structs is checked: 9 + 8 + 9 + 11 offsets, 4 sizes */
    assert_int_equal(count(src, "host and device layouts differ"), 9 + 8 + 9 + 11 + 4);
    free(src);
}

/* Compile `src` for sm_90a with the library's NVRTC; returns the status, the log in *log. */
static moejit_status nvrtc_compile(const char *src, char **log)
{
    mj_nvrtc_identity id;
    mj_nvrtc *nv;
    mj_compile_options opts;
    assert_int_equal(mj_nvrtc_locate(&id), MOEJIT_OK);
    assert_int_equal(mj_nvrtc_open(&id, &nv), MOEJIT_OK);
    assert_int_equal(mj_compile_options_build("sm_90a", NULL, &opts), MOEJIT_OK);
    mj_compile_output out;
    moejit_status st = mj_nvrtc_compile(nv, src, "contract.cu", &opts, &out);
    *log = out.log ? strdup(out.log) : strdup("");
    mj_compile_output_free(&out);
    mj_nvrtc_close(nv);
    return st;
}

/* A device layout that differs from the host's (simulated by editing one checked offset) fails
 * the compile, naming the field; the untouched source compiles. */
static void test_layout_mismatch_stops_the_compile(void **state)
{
    (void)state;
    char *src;
    source_of(&(moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 64, .topk = 4}}, &src);
    char *log;
    assert_int_equal(nvrtc_compile(src, &log), MOEJIT_OK);
    free(log);
    char want[96];
    snprintf(want, sizeof want, "MJ_OFFSETOF(mj_route_params, num_tokens) == %zu,", offsetof(mj_route_params, num_tokens));
    char *at = strstr(src, want);
    assert_non_null(at);
    char *digit = strstr(at, "== ") + 3;
    *digit = *digit == '9' ? '8' : (char)(*digit + 1); /* the host now says another offset */
    assert_int_equal(nvrtc_compile(src, &log), MOEJIT_ERR_COMPILE);
    if (!strstr(log, "mj_route_params.num_tokens: host and device layouts differ"))
        fail_msg("the log does not name the field:\n%s", log);
    free(log);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_emitted_with_checks),
        cmocka_unit_test(test_layout_mismatch_stops_the_compile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
