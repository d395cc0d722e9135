/* The moejit command-line program: help, source, prewarm, cache ls, and bad input (exit 2 with a
 * message naming the flag). Runs the built binary as a user would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static char g_out[1 << 16];

/* Run the CLI with a NULL-terminated argument list; output in g_out. */
#define cli(...) mjt_cli(NULL, g_out, sizeof g_out, __VA_ARGS__)
#define CLI(...) cli(__VA_ARGS__, NULL)

#define EXPECT_OUTPUT(needle)                                                                              \
    do {                                                                                                   \
        if (!strstr(g_out, needle)) fail_msg("output lacks \"%s\":\n%s", needle, g_out);                   \
    } while (0)

static void test_help(void **state)
{
    (void)state;
    assert_int_equal(CLI("--help"), 0);
    EXPECT_OUTPUT("commands:");
    assert_int_equal(CLI("--version"), 0);
    EXPECT_OUTPUT(MOEJIT_VERSION_STRING);
    const char *cmds[] = {"source", "prewarm", "cache"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(CLI(cmds[i], "--help"), 0);
        EXPECT_OUTPUT("usage: moejit ");
    }
    assert_int_equal(CLI("cache", "ls", "--help"), 0);
    EXPECT_OUTPUT("usage: moejit cache");
    assert_int_equal(CLI("frobnicate"), 2);
    EXPECT_OUTPUT("unknown command \"frobnicate\"");
    assert_int_equal(cli(NULL), 2);
}

static void test_source(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--experts", "384", "--topk", "8", "--score", "sigmoid", "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("moejit_route_sigmoid_e384_k8_bf16(const mj::RouteParams p)");
    EXPECT_OUTPUT("kExperts = 384;");
    /* bad input: exit 2 and the field and value named */
    assert_int_equal(CLI("source", "--experts", "8", "--topk", "9"), 2);
    EXPECT_OUTPUT("topk = 9 exceeds num_experts = 8");
    assert_int_equal(CLI("source", "--experts", "abc", "--topk", "9"), 2);
    EXPECT_OUTPUT("--experts = \"abc\"");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--dtype", "f64"), 2);
    EXPECT_OUTPUT("--dtype = \"f64\" must be one of");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--score", "relu"), 2);
    EXPECT_OUTPUT("--score = \"relu\"");
    assert_int_equal(CLI("source", "--topk", "8"), 2);
    EXPECT_OUTPUT("--experts and --topk are required");
    assert_int_equal(CLI("source", "--experts", "64,128", "--topk", "8"), 2);
    EXPECT_OUTPUT("describes 2 kernels");
    assert_int_equal(CLI("source", "--experts", "5000", "--topk", "8"), 2);
    EXPECT_OUTPUT("num_experts = 5000 exceeds the maximum");
}

static void test_prewarm_and_ls(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--experts", "60,160", "--topk", "4", "--dtype", "bf16",
                         "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_softmax_e60_k4_bf16");
    EXPECT_OUTPUT("2 compiled, 0 already cached, 0 failed");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--experts", "60,160", "--topk", "4", "--dtype", "bf16",
                         "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("cached    sm_90a   moejit_route_softmax_e160_k4_bf16");
    EXPECT_OUTPUT("0 compiled, 2 already cached, 0 failed");
    assert_int_equal(CLI("cache", "--cache-dir", dir, "ls"), 0);
    EXPECT_OUTPUT("E=60 K=4 score=softmax dtype=bf16");
    EXPECT_OUTPUT("E=160 K=4 score=softmax dtype=bf16");
    EXPECT_OUTPUT("2 entries in");
    /* a bad spec compiles nothing and exits 2 */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--experts", "0", "--topk", "1", "--cache-dir", dir), 2);
    EXPECT_OUTPUT("num_experts = 0");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--experts", "64", "--topk", "2", "--jobs", "0", "--cache-dir",
                         dir),
                     2);
    EXPECT_OUTPUT("--jobs = \"0\"");
    /* a failing compile: exit 1, the reason printed */
    char *argv[] = {MOEJIT_CLI, "prewarm", "--arch", "sm_90a", "--experts", "64", "--topk", "2", "--cache-dir", dir, NULL};
    const char *env[] = {"MOEJIT_EXTRA_NVRTC_FLAGS=--no-such-option", NULL};
    assert_int_equal(mjt_run(argv, env, g_out, sizeof g_out), 1);
    EXPECT_OUTPUT("failed    sm_90a   moejit_route_softmax_e64_k2_f32");
    EXPECT_OUTPUT("1 failed");
    mjt_rmtree(dir);
}

static void test_prewarm_needs_arch_without_gpu(void **state)
{
    (void)state;
    if (mjt_gpu_available()) skip();
    assert_int_equal(CLI("prewarm", "--experts", "64", "--topk", "2", "--cache-dir", "/tmp/unused-moejit-cache"), 2);
    EXPECT_OUTPUT("no --arch given and no GPU");
}

/* CI runs the README's test command: keep .ci/run and README.md in step. */
static void test_readme_matches_ci(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/README.md", MOEJIT_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048], test_cmd[2048] = "";
    while (fgets(line, sizeof line, f))
        if (strstr(line, "ctest") && !test_cmd[0]) snprintf(test_cmd, sizeof test_cmd, "%s", line);
    fclose(f);
    assert_true(test_cmd[0]);
    test_cmd[strcspn(test_cmd, "\n")] = '\0';
    snprintf(path, sizeof path, "%s/.ci/run", MOEJIT_SOURCE_DIR);
    f = fopen(path, "r");
    assert_non_null(f);
    static char ci[1 << 16];
    size_t n = fread(ci, 1, sizeof ci - 1, f);
    ci[n] = '\0';
    fclose(f);
    if (!strstr(ci, test_cmd)) fail_msg(".ci/run does not run the README test command:\n%s", test_cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_source),
        cmocka_unit_test(test_prewarm_and_ls),
        cmocka_unit_test(test_prewarm_needs_arch_without_gpu),
        cmocka_unit_test(test_readme_matches_ci),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
