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
    EXPECT_OFFSET(src, mj_align_params, expert_capacity);
    EXPECT_SIZE(src, mj_route_align_params);
    EXPECT_OFFSET(src, mj_route_align_params, align);
    EXPECT_OFFSET(src, mj_route_params, logical_ids);
    /* every field of the three structs is checked: 16 + 14 + 2 offsets, 3 sizes */
    assert_int_equal(count(src, "host and device layouts differ"), 16 + 14 + 2 + 3);
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

/* Compile `src` for `arch` with the library's NVRTC; returns the status, the log in *log. */
static moejit_status nvrtc_compile_for(const char *src, const char *arch, char **log)
{
    mj_nvrtc_identity id;
    mj_nvrtc *nv;
    mj_compile_options opts;
    assert_int_equal(mj_nvrtc_locate(&id), MOEJIT_OK);
    assert_int_equal(mj_nvrtc_open(&id, &nv), MOEJIT_OK);
    assert_int_equal(mj_compile_options_build(arch, NULL, &opts), MOEJIT_OK);
    mj_compile_output out;
    moejit_status st = mj_nvrtc_compile(nv, src, "contract.cu", &opts, &out);
    *log = out.log ? strdup(out.log) : strdup("");
    mj_compile_output_free(&out);
    mj_nvrtc_close(nv);
    return st;
}

static moejit_status nvrtc_compile(const char *src, char **log) { return nvrtc_compile_for(src, "sm_90a", log); }

/* One shape of every op (route on both its paths, permute with and without a scale). */
static const moejit_kernel_desc k_every_op[] = {
    {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 64, .topk = 4}},
    {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SIGMOID}},
    {.op = MOEJIT_OP_ALIGN, .align = {.num_experts = 256, .block_size = 64}},
    {.op = MOEJIT_OP_ROUTE_ALIGN, .route_align = {.route = {.num_experts = 64, .topk = 4}, .block_size = 16}},
    {.op = MOEJIT_OP_MX_SCALES, .mx_scales = {.cols = 160}},
    {.op = MOEJIT_OP_PERMUTE, .permute = {.hidden = 256, .dtype = MOEJIT_DTYPE_BF16}},
    {.op = MOEJIT_OP_PERMUTE, .permute = {.hidden = 64, .has_scale = 1}},
    {.op = MOEJIT_OP_COMBINE, .combine = {.hidden = 512, .dtype = MOEJIT_DTYPE_F16}},
    {.op = MOEJIT_OP_DISPATCH_LAYOUT, .dispatch_layout = {.num_experts = 256, .num_ranks = 8, .topk = 8}},
    {.op = MOEJIT_OP_PERMUTE_BACKWARD, .permute_backward = {.hidden = 7168, .dtype = MOEJIT_DTYPE_BF16, .has_scale = 1}},
    {.op = MOEJIT_OP_COMBINE_BACKWARD, .combine_backward = {.hidden = 100, .dtype = MOEJIT_DTYPE_F16}},
    {.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = {.route = {.num_experts = 256, .topk = 8,
                                                                  .score = MOEJIT_SCORE_SIGMOID}}},
    {.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = {.route = {.num_experts = 2048, .topk = 4}}},
    {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 64, .topk = 4, .padded = 1, .max_replicas = 2,
                                      .num_physical_experts = 72, .replay = MOEJIT_REPLAY_GIVEN}},
    {.op = MOEJIT_OP_CAPACITY, .capacity = {.num_experts = 64, .topk = 8, .shared_slots = 1}},
    {.op = MOEJIT_OP_CAPACITY, .capacity = {.num_experts = 128, .topk = 2, .policy = MOEJIT_DROP_POSITION}},
};
#define N_EVERY_OP (sizeof k_every_op / sizeof k_every_op[0])

/* Programmatic dependent launch (moejit_config.pdl): every extern "C" entry point of every op
 * starts with mj::pdl_begin() — the kernel waits for the one before it before touching memory —
 * and the helper's griddepcontrol instructions exist only behind the sm_90 guard. */
static void test_every_entry_waits_for_the_previous_kernel(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EVERY_OP; i++) {
        char *src, name[128];
        source_of(&k_every_op[i], &src);
        assert_int_equal(moejit_kernel_name(&k_every_op[i], name, sizeof name), MOEJIT_OK);
        mj_kernel_id id;
        mj_kernel_plan plan;
        assert_int_equal(mj_kernel_id_from_desc(&k_every_op[i], &id), MOEJIT_OK);
        mj_plan(&id, &plan);
        /* every planned entry is emitted once, and its body opens with the prologue */
        int entries = 0;
        for (const char *p = strstr(src, "extern \"C\" __global__"); p; p = strstr(p + 1, "extern \"C\" __global__")) {
            const char *body = strstr(p, ")\n{\n");
            assert_non_null(body);
            if (strncmp(body + 4, MJ_ENTRY_PROLOGUE, strlen(MJ_ENTRY_PROLOGUE)))
                fail_msg("%s: entry %d does not start with mj::pdl_begin():\n%.200s", name, entries, p);
            entries++;
        }
        assert_int_equal(entries, plan.n_entries);
        assert_int_equal(count(src, MJ_ENTRY_PROLOGUE), plan.n_entries);
        /* the helper: wait, then launch_dependents, both inside the sm_90 guard */
        const char *helper = strstr(src, "__device__ __forceinline__ void pdl_begin()");
        assert_non_null(helper);
        const char *guard = strstr(helper, "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900\n");
        const char *wait = strstr(helper, "asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");");
        const char *launch = strstr(helper, "asm volatile(\"griddepcontrol.launch_dependents;\"");
        const char *endif = strstr(helper, "#endif");
        const char *end = strstr(helper, "\n}\n");
        assert_true(guard && wait && launch && endif && end);
        assert_true(guard < wait && wait < launch && launch < endif && endif < end);
        assert_int_equal(count(src, "asm volatile(\"griddepcontrol"), 2); /* nowhere else */
        free(src);
    }
}

/* The guard is what keeps sm_80 compiling: the source as it is compiles for sm_80 (and sm_90a),
 * the same source with the guard opened does not (griddepcontrol is an sm_90 instruction), so the
 * instructions are really emitted where the guard lets them through. */
static void test_pdl_guard_compiles_below_sm90(void **state)
{
    (void)state;
    char *src, *log;
    source_of(&(moejit_kernel_desc){.op = MOEJIT_OP_PERMUTE, .permute = {.hidden = 64}}, &src);
    assert_int_equal(nvrtc_compile_for(src, "sm_80", &log), MOEJIT_OK);
    free(log);
    assert_int_equal(nvrtc_compile_for(src, "sm_90a", &log), MOEJIT_OK);
    free(log);
    char *guard = strstr(src, "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900\n");
    assert_non_null(guard);
    const char open[] = "#if 1";
    memcpy(guard, open, strlen(open));
    memset(guard + strlen(open), ' ', strlen("#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900") - strlen(open));
    assert_int_equal(nvrtc_compile_for(src, "sm_90a", &log), MOEJIT_OK);
    free(log);
    assert_int_equal(nvrtc_compile_for(src, "sm_80", &log), MOEJIT_ERR_COMPILE);
    if (!strstr(log, "griddepcontrol")) fail_msg("the sm_80 failure does not name griddepcontrol:\n%s", log);
    free(log);
    free(src);
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
        cmocka_unit_test(test_every_entry_waits_for_the_previous_kernel),
        cmocka_unit_test(test_pdl_guard_compiles_below_sm90),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
