/* The moejit command-line program: help, source, prewarm, cache ls, and bad input (exit 2 with a
 * message naming the flag). Runs the built binary as a user would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

static char g_out[1 << 18]; /* a whole route_align source fits */

/* Run the CLI with a NULL-terminated argument list; output in g_out. */
#define cli(...) mjt_cli(NULL, g_out, sizeof g_out, __VA_ARGS__)
#define CLI(...) cli(__VA_ARGS__, NULL)
#define CLI_ENV(env, ...) mjt_cli(env, g_out, sizeof g_out, __VA_ARGS__, NULL)

#define EXPECT_OUTPUT(needle)                                                                              \
    do {                                                                                                   \
        if (!strstr(g_out, needle)) fail_msg("output lacks \"%s\":\n%s", needle, g_out);                   \
    } while (0)
#define EXPECT_NO_OUTPUT(needle)                                                                           \
    do {                                                                                                   \
        if (strstr(g_out, needle)) fail_msg("output has \"%s\":\n%s", needle, g_out);                      \
    } while (0)

static int output_lines(void)
{
    int n = 0;
    for (const char *p = g_out; *p; p++) n += *p == '\n';
    return n;
}

/* The rest of the output line that starts with `label` (into buf), or fail. */
static void output_value(const char *label, char *buf, size_t cap)
{
    const char *p = strstr(g_out, label);
    if (!p) fail_msg("output lacks \"%s\":\n%s", label, g_out);
    p += strlen(label);
    snprintf(buf, cap, "%.*s", (int)strcspn(p, "\n"), p);
}

static int file_contains(const char *path, const char *needle)
{
    static char text[1 << 18];
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    const size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return strstr(text, needle) != NULL;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

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

    /* every option a command takes is in its help, and so are the exit statuses */
    static const char *const spec_flags[] = {"--op", "--experts", "--topk", "--score", "--dtype", "--groups",
                                             "--topk-groups", "--group-score", "--bias", "--softcap",
                                             "--score-after-topk", "--renormalize", "--scale-output",
                                             "--scaling-factor", "--shared-slots", "--hidden", "--row-scale",
                                             "--block-size", "--id-dtype", "--global-experts", "--cols", "--model",
                                             "--manifest", "--list-models", "--aux-stats", "--seq-offset-dtype",
                                             "route_losses"};
    for (int c = 0; c < 2; c++) {
        assert_int_equal(CLI(c ? "prewarm" : "source", "--help"), 0);
        for (size_t i = 0; i < sizeof spec_flags / sizeof spec_flags[0]; i++) EXPECT_OUTPUT(spec_flags[i]);
        EXPECT_OUTPUT("Exit status");
    }
    EXPECT_OUTPUT("--arch");
    EXPECT_OUTPUT("--jobs");
    EXPECT_OUTPUT("--cache-dir");
    EXPECT_OUTPUT("--progress");
    assert_int_equal(CLI("source", "--help"), 0);
    EXPECT_OUTPUT("--out DIR");
    assert_int_equal(CLI("cache", "--help"), 0);
    static const char *const cache_flags[] = {"--cache-dir", "--remove", "--max-bytes", "-o FILE", "--output", "Exit status"};
    for (size_t i = 0; i < sizeof cache_flags / sizeof cache_flags[0]; i++) EXPECT_OUTPUT(cache_flags[i]);
    assert_int_equal(CLI("--help"), 0);
    EXPECT_OUTPUT("exit status");
}

/* An unknown option or a missing value: one line naming it and a pointer to --help (GNU), exit
 * 2 — not the whole help. */
static void test_bad_option(void **state)
{
    (void)state;
    const char *cmds[] = {"source", "prewarm", "cache"};
    char want[128];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(CLI(cmds[i], "--frobnicate"), 2);
        snprintf(want, sizeof want, "moejit %s: unrecognized option '--frobnicate'\n", cmds[i]);
        EXPECT_OUTPUT(want);
        snprintf(want, sizeof want, "try 'moejit %s --help'\n", cmds[i]);
        EXPECT_OUTPUT(want);
        EXPECT_NO_OUTPUT("usage:");
        assert_int_equal(output_lines(), 2);
    }
    assert_int_equal(CLI("source", "--experts"), 2);
    EXPECT_OUTPUT("moejit source: option '--experts' requires an argument\ntry 'moejit source --help'\n");
    assert_int_equal(output_lines(), 2);
    assert_int_equal(CLI("prewarm", "--model", "mixtral", "stray"), 2);
    EXPECT_OUTPUT("moejit prewarm: unexpected argument \"stray\"\ntry 'moejit prewarm --help'\n");
    assert_int_equal(CLI("cache", "frob"), 2);
    EXPECT_OUTPUT("moejit cache: unknown subcommand \"frob\"");
    EXPECT_NO_OUTPUT("usage:");
    assert_int_equal(output_lines(), 2);
    assert_int_equal(CLI("cache"), 2);
    EXPECT_OUTPUT("moejit cache: a subcommand is required");
    assert_int_equal(output_lines(), 2);
    assert_int_equal(CLI("frobnicate"), 2);
    EXPECT_OUTPUT("moejit: unknown command \"frobnicate\"");
    EXPECT_OUTPUT("try 'moejit --help'");
    assert_int_equal(output_lines(), 2);
}

/* Every error line of a command reads "moejit <command>: …" (getopt's included). */
static void test_error_prefix(void **state)
{
    (void)state;
    char dir[4096], missing[4200];
    mjt_tmpdir(dir);
    snprintf(missing, sizeof missing, "%s/missing.json", dir);
    const char *bogus[] = {"MOEJIT_CACHE=bogus", NULL};
    static const struct {
        const char *cmd;
        int status;
        int bogus_env;
        const char *args[6];
    } cases[] = {
        {"source", 2, 0, {"--experts", "abc", "--topk", "1"}},
        {"source", 2, 0, {"--frobnicate"}},
        {"source", 2, 0, {"--model", "gpt-5"}},
        {"source", 2, 0, {"--experts", "8", "--topk", "9"}},
        {"prewarm", 2, 0, {"--arch", "hopper", "--model", "mixtral"}},
        {"prewarm", 2, 0, {"--manifest", "MISSING"}},
        {"prewarm", 2, 1, {"--arch", "sm_90a", "--model", "mixtral"}},
        {"cache", 2, 0, {"gc", "--max-bytes", "x"}},
        {"cache", 1, 0, {"--cache-dir", "DIR", "show", "0123"}},
        {"cache", 2, 0, {"--output"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[10] = {MOEJIT_CLI, (char *)cases[i].cmd};
        int n = 2;
        for (int a = 0; a < 6 && cases[i].args[a]; a++)
            argv[n++] = !strcmp(cases[i].args[a], "MISSING") ? missing
                        : !strcmp(cases[i].args[a], "DIR")   ? dir
                                                              : (char *)cases[i].args[a];
        argv[n] = NULL;
        assert_int_equal(mjt_run(argv, cases[i].bogus_env ? bogus : NULL, g_out, sizeof g_out), cases[i].status);
        char prefix[64], hint[64];
        snprintf(prefix, sizeof prefix, "moejit %s: ", cases[i].cmd);
        snprintf(hint, sizeof hint, "try 'moejit %s --help'", cases[i].cmd);
        for (const char *line = g_out; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] != 0))
            if (strncmp(line, prefix, strlen(prefix)) && strncmp(line, hint, strlen(hint)))
                fail_msg("case %zu: a line does not start with \"%s\":\n%s", i, prefix, g_out);
    }
    mjt_rmtree(dir);
}

/* List flags: an empty item is an error naming the flag and the value; numbers are checked against
 * the library's limits for that flag and op; a value flag given twice is an error; arguments have
 * no length limit. */
static void test_list_values(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--dtype", "bf16,,f32"), 2);
    EXPECT_OUTPUT("moejit source: --dtype: \"bf16,,f32\": item 2 is empty\n");
    assert_int_equal(CLI("source", "--experts", "64,", "--topk", "8"), 2);
    EXPECT_OUTPUT("moejit source: --experts: \"64,\": item 2 is empty\n");
    assert_int_equal(CLI("source", "--experts", ",64", "--topk", "8"), 2);
    EXPECT_OUTPUT("moejit source: --experts: \",64\": item 1 is empty\n");
    assert_int_equal(CLI("source", "--experts", "", "--topk", "8"), 2);
    EXPECT_OUTPUT("moejit source: --experts: the value is empty\n");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral,"), 2);
    EXPECT_OUTPUT("moejit prewarm: --model: \"mixtral,\": item 2 is empty\n");
    assert_int_equal(CLI("source", "--op", "combine", "--hidden", "64,,128"), 2);
    EXPECT_OUTPUT("moejit source: --hidden: \"64,,128\": item 2 is empty\n");
    /* an empty path would silently mean "not given" (the default cache, the current directory) */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral", "--cache-dir", ""), 2);
    EXPECT_OUTPUT("moejit prewarm: --cache-dir: the value is empty\n");
    assert_int_equal(CLI("cache", "--cache-dir", "", "ls"), 2);
    EXPECT_OUTPUT("moejit cache: --cache-dir: the value is empty\n");
    assert_int_equal(CLI("source", "--model", "mixtral", "--out", ""), 2);
    EXPECT_OUTPUT("moejit source: --out: the value is empty\n");

    /* each flag's range is the library's */
    static const struct {
        const char *args[8];
        long min, max;
        const char *flag, *value;
    } ranges[] = {
        {{"--experts", "-1", "--topk", "8"}, 1, MOEJIT_MAX_EXPERTS, "--experts", "-1"},
        {{"--experts", "64", "--topk", "65"}, 1, MOEJIT_MAX_TOPK, "--topk", "65"},
        {{"--experts", "64", "--topk", "8", "--shared-slots", "-1"}, 0, MOEJIT_MAX_TOPK, "--shared-slots", "-1"},
        {{"--experts", "64", "--topk", "8", "--groups", "0"}, 1, MOEJIT_MAX_EXPERTS, "--groups", "0"},
        {{"--op", "align", "--experts", "0", "--block-size", "16"}, 1, MOEJIT_MAX_ALIGN_EXPERTS, "--experts", "0"},
        {{"--op", "align", "--experts", "64", "--block-size", "0"}, MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK,
         "--block-size", "0"},
        {{"--op", "align", "--experts", "64", "--block-size", "2048"}, MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK,
         "--block-size", "2048"},
        {{"--op", "align", "--experts", "64", "--block-size", "16", "--global-experts", "-1"}, 0,
         MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS, "--global-experts", "-1"},
        {{"--op", "align", "--experts", "64", "--block-size", "16", "--global-experts", "1048577"}, 0,
         MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS, "--global-experts", "1048577"},
        {{"--op", "permute", "--hidden", "0"}, 1, MOEJIT_MAX_HIDDEN, "--hidden", "0"},
        {{"--op", "mx_scales", "--cols", "100000"}, 1, MOEJIT_MAX_MX_COLS, "--cols", "100000"},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        char *argv[12] = {MOEJIT_CLI, "source"};
        int n = 2;
        for (int a = 0; a < 8 && ranges[i].args[a]; a++) argv[n++] = (char *)ranges[i].args[a];
        argv[n] = NULL;
        assert_int_equal(mjt_run(argv, NULL, g_out, sizeof g_out), 2);
        char want[160];
        snprintf(want, sizeof want, "moejit source: %s: \"%s\" is not an integer in %ld..%ld\n", ranges[i].flag,
                 ranges[i].value, ranges[i].min, ranges[i].max);
        EXPECT_OUTPUT(want);
    }

    /* the second value of a flag would silently replace the first */
    assert_int_equal(CLI("source", "--experts", "64", "--experts", "128", "--topk", "8"), 2);
    EXPECT_OUTPUT("moejit source: --experts is given twice (\"64\", then \"128\"): give one comma list");

    /* no length limit: 600 values (1199 characters) of --experts, 150 --model names */
    static char experts[4096], models[4096];
    for (int i = 0; i < 600; i++) strcat(experts, i ? ",8" : "8");
    for (int i = 0; i < 150; i++) strcat(models, i ? ",llama-4" : "llama-4");
    assert_true(strlen(experts) > 1023 && strlen(models) > 1023);
    assert_int_equal(CLI("source", "--experts", experts, "--topk", "2"), 0); /* 599 duplicates of one kernel */
    EXPECT_OUTPUT("moejit_route_softmax_e8_k2_f32(const mj::RouteParams p)");
    assert_int_equal(CLI("source", "--model", models, "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("moejit_route_sigmoid_e16_k1_after_bf16(const mj::RouteParams p)");
}

/* --op route_backward takes route's flags (or a preset refined by them), and its manifest entries
 * route's fields; what does not change the gradient (groups, bias, serving options) makes no other
 * kernel. */
static void test_route_backward(void **state)
{
    (void)state;
    char dir[4096], manifest[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/m.json", dir);
    assert_int_equal(CLI("source", "--op", "route_backward", "--model", "deepseek-v3", "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("struct MoejitRouteBackwardCfg {");
    EXPECT_OUTPUT("moejit_route_backward_sigmoid_e256_k8_renorm_x2p5_bf16(const mj::RouteBackwardParams p)");
    assert_int_equal(CLI("source", "--op", "route_backward", "--experts", "128", "--topk", "8", "--renormalize",
                         "--score", "sigmoid", "--groups", "8", "--topk-groups", "4", "--bias"),
                     0);
    EXPECT_OUTPUT("moejit_route_backward_sigmoid_e128_k8_renorm_f32(const mj::RouteBackwardParams p)");
    assert_int_equal(CLI("source", "--op", "route_backward", "--experts", "64", "--topk", "4", "--block-size", "16"), 2);
    EXPECT_OUTPUT("moejit source: --block-size does not apply to --op route_backward");
    assert_int_equal(CLI("source", "--op", "route_backward", "--experts", "64", "--topk", "4", "--replicas", "2",
                         "--physical-experts", "80"),
                     2);
    EXPECT_OUTPUT("route.max_replicas = 2 (placement)");

    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "route_backward", "--model", "mixtral", "--dtype",
                         "bf16", "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_backward_softmax_e8_k2_renorm_bf16");
    write_text(manifest, "[{\"model\": \"mixtral\", \"op\": \"route_backward\", \"dtype\": \"bf16\"},\n"
                         " {\"op\": \"route_backward\", \"num_experts\": 8, \"topk\": 2, \"renormalize\": true,\n"
                         "  \"has_bias\": true, \"padded\": true, \"dtype\": \"bf16\"}]");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 0);
    EXPECT_OUTPUT("0 compiled, 1 already cached, 0 failed"); /* both entries are the same kernel */
    write_text(manifest, "[{\"op\": \"route_backward\", \"num_experts\": 8, \"topk\": 2, \"block_size\": 4}]");
    assert_int_equal(CLI("source", "--manifest", manifest), 1);
    EXPECT_OUTPUT("block_size");
    mjt_rmtree(dir);
}

/* The auxiliary losses: route and route_backward take --aux-stats (one set of lb, seq, z) and
 * --seq-offset-dtype, --op route_losses the forward's E, K (or a preset's) and statistics; manifest
 * entries give the same kernels; bad values name the flag (or field) and the value. */
static void test_aux_losses(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--experts", "256", "--topk", "8", "--score", "sigmoid", "--aux-stats", "lb,seq,z",
                         "--seq-offset-dtype", "int64"),
                     0);
    EXPECT_OUTPUT("moejit_route_sigmoid_e256_k8_auxlbseqz64_f32(const mj::RouteParams p)");
    EXPECT_OUTPUT("static constexpr int kAuxStats = 7;");
    assert_int_equal(CLI("source", "--op", "route_backward", "--model", "kimi-k2", "--dtype", "bf16", "--aux-stats", "z"), 0);
    EXPECT_OUTPUT("moejit_route_backward_sigmoid_e384_k8_renorm_x2p827_auxz_bf16(const mj::RouteBackwardParams p)");
    assert_int_equal(CLI("source", "--op", "route_losses", "--experts", "256", "--topk", "8", "--aux-stats", "z,lb"), 0);
    EXPECT_OUTPUT("moejit_route_losses_e256_k8_lbz(const mj::RouteLossesParams p)");
    EXPECT_OUTPUT("static constexpr int kAuxStats = 5;");
    assert_int_equal(CLI("source", "--op", "route_losses", "--model", "deepseek-v3", "--aux-stats", "seq",
                         "--seq-offset-dtype", "int64"),
                     0);
    EXPECT_OUTPUT("moejit_route_losses_e256_k8_seq64(const mj::RouteLossesParams p)");
    EXPECT_OUTPUT("typedef long long SeqOffT;");

    /* bad values and combinations */
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--aux-stats", "lb,balance"), 2);
    EXPECT_OUTPUT("moejit source: --aux-stats: \"balance\" is not one of lb, seq, z\n");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--aux-stats", "lb,"), 2);
    EXPECT_OUTPUT("moejit source: --aux-stats: \"lb,\": item 2 is empty\n");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--aux-stats", "seq", "--seq-offset-dtype", "int16"), 2);
    EXPECT_OUTPUT("moejit source: --seq-offset-dtype: \"int16\" is not one of int32, int64\n");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--aux-stats", "lb", "--padded"), 2);
    EXPECT_OUTPUT("aux_stats = 0x1 with padded = 1");
    assert_int_equal(CLI("source", "--op", "route_align", "--model", "mixtral", "--block-size", "16", "--aux-stats", "z"), 2);
    EXPECT_OUTPUT("moejit source: --aux-stats does not apply to --op route_align\n");
    assert_int_equal(CLI("source", "--op", "route_losses", "--experts", "64", "--topk", "4"), 2);
    EXPECT_OUTPUT("moejit source: --aux-stats is required with --op route_losses");
    assert_int_equal(CLI("source", "--op", "route_losses", "--aux-stats", "lb"), 2);
    EXPECT_OUTPUT("moejit source: --experts and --topk are required with --op route_losses (or give --model NAME)");
    assert_int_equal(CLI("source", "--op", "route_losses", "--experts", "64", "--topk", "4", "--aux-stats", "lb",
                         "--dtype", "bf16"),
                     2);
    EXPECT_OUTPUT("moejit source: --dtype does not apply to --op route_losses\n");
    assert_int_equal(CLI("source", "--op", "route_losses", "--experts", "64", "--topk", "4", "--aux-stats", "lb",
                         "--score", "sigmoid"),
                     2);
    EXPECT_OUTPUT("moejit source: --score does not apply to --op route_losses\n");
    assert_int_equal(CLI("source", "--op", "route_losses", "--experts", "8", "--topk", "9", "--aux-stats", "lb"), 2);
    EXPECT_OUTPUT("route_losses spec: topk = 9 exceeds num_experts = 8");

    /* prewarm by flags, then a manifest of the same kernels compiles nothing */
    char dir[4096], manifest[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/m.json", dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "route_losses", "--model", "deepseek-v3,mixtral",
                         "--aux-stats", "lb,seq,z", "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_losses_e256_k8_lbseqz");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_losses_e8_k2_lbseqz");
    EXPECT_OUTPUT("2 compiled, 0 already cached, 0 failed"); /* one kernel a preset, whatever the dtype */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "route_backward", "--model", "mixtral", "--dtype", "bf16",
                         "--aux-stats", "lb,z", "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_backward_softmax_e8_k2_renorm_auxlbz_bf16");
    write_text(manifest,
               "[{\"model\": \"deepseek-v3\", \"op\": \"route_losses\", \"aux_stats\": [\"lb\", \"seq\", \"z\"]},\n"
               " {\"op\": \"route_losses\", \"num_experts\": 8, \"topk\": 2, \"aux_stats\": \"z,seq,lb\",\n"
               "  \"seq_offset_dtype\": \"int32\"},\n"
               " {\"model\": \"mixtral\", \"op\": \"route_backward\", \"dtype\": \"bf16\", \"aux_stats\": \"lb,z\"}]");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 0);
    EXPECT_OUTPUT("0 compiled, 3 already cached, 0 failed");
    assert_int_equal(CLI("cache", "--cache-dir", dir, "ls"), 0);
    EXPECT_OUTPUT("losses E=256 K=8 aux=lb,seq,z seq_offsets=int32");
    EXPECT_OUTPUT("aux=lb,z");
    write_text(manifest, "[{\"op\": \"route\", \"num_experts\": 64, \"topk\": 4, \"aux_stats\": \"lb,x\"},\n"
                         " {\"op\": \"route_losses\", \"num_experts\": 64, \"topk\": 4, \"aux_stats\": 3},\n"
                         " {\"op\": \"route_losses\", \"num_experts\": 64, \"topk\": 4, \"aux_stats\": \"seq\",\n"
                         "  \"seq_offset_dtype\": \"int16\"},\n"
                         " {\"op\": \"route_losses\", \"model\": \"mixtral\", \"aux_stats\": \"z\", \"dtype\": \"bf16\"},\n"
                         " {\"op\": \"route_losses\", \"num_experts\": 64, \"topk\": 4}]");
    assert_int_equal(CLI("source", "--manifest", manifest, "--out", dir), 1);
    EXPECT_OUTPUT("m.json: [0] (route): field \"aux_stats\": expected \"lb\", \"seq\", \"z\" joined by commas");
    EXPECT_OUTPUT("got a string \"lb,x\"");
    EXPECT_OUTPUT("m.json: [1] (route_losses): field \"aux_stats\": expected");
    EXPECT_OUTPUT("got an integer 3");
    EXPECT_OUTPUT("m.json: [2] (route_losses): field \"seq_offset_dtype\": expected one of \"int32\", \"int64\", got a "
                  "string \"int16\"");
    EXPECT_OUTPUT("m.json: [3] (route_losses): unknown field \"dtype\" (route_losses fields: num_experts, topk, "
                  "aux_stats, seq_offset_dtype)");
    EXPECT_OUTPUT("m.json: [4]: MOEJIT_ERR_INVALID_SPEC: route_losses spec: aux_stats = 0x0 must be a non-empty set");
    mjt_rmtree(dir);
}

/* --model names the route kernels of presets; with --op route_align (and --block-size) their
 * route_align kernels; route flags refine the preset — the same kernels as manifest "model"
 * entries. Ops without presets take no --model. */
static void test_model_ops(void **state)
{
    (void)state;
    char dir[4096], manifest[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/m.json", dir);
    assert_int_equal(CLI("source", "--op", "route_align", "--model", "deepseek-v3", "--block-size", "64", "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("extern \"C\" __global__");
    EXPECT_OUTPUT("moejit_route_align_sigmoid_e256_k8_g8_tg4_top2sum_bias_renorm_x2p5_bf16_b64");

    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "route_align", "--model", "mixtral", "--block-size", "16",
                         "--dtype", "bf16", "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_align_softmax_e8_k2_renorm_bf16_b16");
    write_text(manifest, "[{\"model\": \"mixtral\", \"op\": \"route_align\", \"block_size\": 16, \"dtype\": \"bf16\"}]");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 0);
    EXPECT_OUTPUT("0 compiled, 1 already cached, 0 failed"); /* the manifest's kernel is the same */

    /* route flags refine the preset, as manifest fields do */
    assert_int_equal(CLI("source", "--model", "qwen3-moe", "--shared-slots", "1", "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("moejit_route_softmax_e128_k8_renorm_x1u_s1_bf16(const mj::RouteParams p)");
    write_text(manifest, "[{\"model\": \"qwen3-moe\", \"shared_slots\": 1, \"dtype\": \"bf16\"}]");
    assert_int_equal(CLI("source", "--manifest", manifest), 0);
    EXPECT_OUTPUT("moejit_route_softmax_e128_k8_renorm_x1u_s1_bf16(const mj::RouteParams p)");
    assert_int_equal(CLI("source", "--model", "mixtral", "--topk", "9", "--dtype", "bf16"), 2);
    EXPECT_OUTPUT("moejit source: --model mixtral (bf16): MOEJIT_ERR_INVALID_SPEC: route spec: topk = 9 exceeds "
                  "num_experts = 8");

    assert_int_equal(CLI("source", "--op", "route_align", "--block-size", "64"), 2);
    EXPECT_OUTPUT("moejit source: --experts and --topk are required with --op route_align (or give --model NAME)");
    assert_int_equal(CLI("source", "--model", "mixtral", "--op", "route_align"), 2);
    EXPECT_OUTPUT("moejit source: --block-size is required with --op route_align");
    assert_int_equal(CLI("source", "--model", "mixtral", "--op", "combine", "--hidden", "64"), 2);
    EXPECT_OUTPUT("moejit source: --model gives route, route_align, route_backward or route_losses kernels (presets are "
                  "routings); --op combine");
    write_text(manifest, "[{\"model\": \"mixtral\", \"op\": \"combine\", \"hidden\": 64}]");
    assert_int_equal(CLI("source", "--manifest", manifest), 1);
    EXPECT_OUTPUT("field \"model\": presets are routings");
    mjt_rmtree(dir);
}

/* A routed scaling factor or soft cap that is not a finite positive normal float (0 = off for the
 * cap) is an error, on the command line, in manifests and in the library: 1e-50 used to round to
 * 0 and silently become the default 1.0. */
static void test_float_values(void **state)
{
    (void)state;
    static const struct {
        const char *flag, *value, *why;
    } bad[] = {
        {"--scaling-factor", "1e-50", "must be a finite positive normal float: it rounds to 0 as a float"},
        {"--scaling-factor", "1e-400", "must be a finite positive normal float: it rounds to 0 as a float"},
        {"--scaling-factor", "1e-40", "must be a finite positive normal float: it is subnormal as a float"},
        {"--scaling-factor", "0", "must be a finite positive normal float: it is not positive"},
        {"--scaling-factor", "-2.5", "must be a finite positive normal float: it is not positive"},
        {"--scaling-factor", "inf", "must be a finite positive normal float: it is not finite"},
        {"--scaling-factor", "1e39", "must be a finite positive normal float: it overflows a float"},
        {"--scaling-factor", "2.5x", "is not a number"},
        {"--softcap", "1e-50", "must be 0 (off) or a finite positive normal float: it rounds to 0 as a float"},
        {"--softcap", "1e-40", "must be 0 (off) or a finite positive normal float: it is subnormal as a float"},
        {"--softcap", "-1", "must be 0 (off) or a finite positive normal float: it is not positive"},
        {"--softcap", "nan", "must be 0 (off) or a finite positive normal float: it is not finite"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--scale-output", bad[i].flag, bad[i].value), 2);
        char want[256];
        snprintf(want, sizeof want, "moejit source: %s: \"%s\" %s", bad[i].flag, bad[i].value, bad[i].why);
        EXPECT_OUTPUT(want);
    }
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--softcap", "0"), 0); /* off */
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--scale-output", "--scaling-factor", "2.5"), 0);
    EXPECT_OUTPUT("moejit_route_softmax_e64_k8_x2p5_f32");

    char dir[4096], manifest[4200], out[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/m.json", dir);
    snprintf(out, sizeof out, "%s/src", dir);
    write_text(manifest, "[{\"op\": \"route\", \"num_experts\": 64, \"topk\": 8, \"scale_output\": true, "
                         "\"routed_scaling_factor\": 1e-50},\n"
                         " {\"op\": \"route\", \"num_experts\": 64, \"topk\": 8, \"softcap\": 1e-40},\n"
                         " {\"op\": \"route\", \"num_experts\": 64, \"topk\": 8, \"routed_scaling_factor\": 0},\n"
                         " {\"op\": \"route\", \"num_experts\": 64, \"topk\": 8, \"softcap\": 0}]");
    assert_int_equal(CLI("source", "--manifest", manifest, "--out", out), 1);
    EXPECT_OUTPUT("m.json: [0] (route): field \"routed_scaling_factor\": expected a finite positive normal float, got a real");
    EXPECT_OUTPUT("(it rounds to 0 as a float)");
    EXPECT_OUTPUT("m.json: [1] (route): field \"softcap\": expected 0 or a finite positive normal float, got a real");
    EXPECT_OUTPUT("(it is subnormal as a float (below 1.2e-38))");
    EXPECT_OUTPUT("m.json: [2] (route): field \"routed_scaling_factor\": expected a finite positive normal float, got "
                  "an integer 0 (it is not positive)");
    EXPECT_OUTPUT("source: wrote 1 file to");

    /* the library: a subnormal factor or cap is invalid (0 still means the default 1.0) */
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
    d.route.num_experts = 64, d.route.topk = 8, d.route.scale_output = 1;
    assert_int_equal(moejit_validate(&d), MOEJIT_OK);
    d.route.routed_scaling_factor = 1e-40f;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC,
                     "route spec: routed_scaling_factor = 9.99995e-41 must be a finite positive normal float");
    d.route.routed_scaling_factor = 0;
    d.route.softcap = 1e-40f;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC,
                     "route spec: softcap = 9.99995e-41 must be 0 (off) or a finite positive normal float");
    mjt_rmtree(dir);
}

/* A failed compile prints NVRTC's error, the options and the first error lines of the log — not
 * the generated source — and where the full log and the source were written: MOEJIT_DUMP_DIR,
 * else <cache>/failed/, else ${TMPDIR}/moejit-<uid>/failed/ when the cache cannot be written. */
static void test_compile_failure_report(void **state)
{
    (void)state;
    char dir[4096], want[4400], path[4400];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_70", "--experts", "64", "--topk", "2", "--cache-dir", dir), 1);
    EXPECT_OUTPUT("failed    sm_70    moejit_route_softmax_e64_k2_f32 (kernel spec flags): MOEJIT_ERR_COMPILE: NVRTC");
    EXPECT_OUTPUT("\n    options: -arch=sm_70 -std=c++17");
    EXPECT_OUTPUT("\n    log:\n      nvrtc: error: invalid value for --gpu-architecture (-arch)\n");
    EXPECT_NO_OUTPUT("Generated by moejit");
    EXPECT_NO_OUTPUT("namespace mj");
    if (output_lines() > 9) fail_msg("%d lines for one failed kernel:\n%s", output_lines(), g_out);
    output_value("    source: ", path, sizeof path);
    snprintf(want, sizeof want, "%s/failed/moejit_route_softmax_e64_k2_f32-", dir);
    if (strncmp(path, want, strlen(want))) fail_msg("source at %s, not under %s", path, want);
    assert_true(file_contains(path, "moejit_route_softmax_e64_k2_f32"));
    output_value("    full log: ", path, sizeof path);
    if (strncmp(path, want, strlen(want))) fail_msg("log at %s, not under %s", path, want);
    assert_true(file_contains(path, "invalid value for --gpu-architecture"));

    /* many errors: the first 5 and a count */
    const char *broken[] = {"MOEJIT_EXTRA_NVRTC_FLAGS=-Dnamespace=1", NULL};
    assert_int_equal(CLI_ENV(broken, "prewarm", "--arch", "sm_90a", "--experts", "64", "--topk", "2", "--cache-dir", dir), 1);
    int errors = 0;
    for (const char *p = g_out; (p = strstr(p, "): error: ")); p++) errors++;
    assert_int_equal(errors, 5);
    EXPECT_OUTPUT(" more errors in the full log)");
    output_value("    full log: ", path, sizeof path);
    assert_true(file_contains(path, "error"));

    /* a read-only cache: the files go to ${TMPDIR}/moejit-<uid>/failed/ */
    char tmpdir_env[4200];
    snprintf(tmpdir_env, sizeof tmpdir_env, "TMPDIR=%s", dir);
    const char *ro[] = {"MOEJIT_CACHE=ro", tmpdir_env, NULL};
    assert_int_equal(CLI_ENV(ro, "prewarm", "--arch", "sm_70", "--experts", "64", "--topk", "2", "--cache-dir", dir), 1);
    output_value("    source: ", path, sizeof path);
    snprintf(want, sizeof want, "%s/moejit-%u/failed/moejit_route_softmax_e64_k2_f32-", dir, (unsigned)geteuid());
    if (strncmp(path, want, strlen(want))) fail_msg("source at %s, not under %s", path, want);
    assert_true(file_contains(path, "moejit_route_softmax_e64_k2_f32"));

    /* MOEJIT_DUMP_DIR: the dumped files */
    char dump_env[4200];
    snprintf(dump_env, sizeof dump_env, "MOEJIT_DUMP_DIR=%s/dump", dir);
    const char *dump[] = {dump_env, NULL};
    assert_int_equal(CLI_ENV(dump, "prewarm", "--arch", "sm_70", "--experts", "64", "--topk", "2", "--cache-dir", dir), 1);
    output_value("    full log: ", path, sizeof path);
    snprintf(want, sizeof want, "%s/dump/moejit_route_softmax_e64_k2_f32-", dir);
    if (strncmp(path, want, strlen(want))) fail_msg("log at %s, not under %s", path, want);
    assert_true(file_contains(path, "invalid value for --gpu-architecture"));
    mjt_rmtree(dir);
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
    EXPECT_OUTPUT("moejit source: --experts: \"abc\" is not an integer in 1..4096");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--dtype", "f64"), 2);
    EXPECT_OUTPUT("moejit source: --dtype: \"f64\" is not one of f32, bf16, f16");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--score", "relu"), 2);
    EXPECT_OUTPUT("moejit source: --score: \"relu\" is not one of");
    assert_int_equal(CLI("source", "--topk", "8"), 2);
    EXPECT_OUTPUT("--experts and --topk are required");
    assert_int_equal(CLI("source", "--experts", "64,128", "--topk", "8"), 2);
    EXPECT_OUTPUT("describes 2 kernels");
    assert_int_equal(CLI("source", "--experts", "5000", "--topk", "8"), 2);
    EXPECT_OUTPUT("moejit source: --experts: \"5000\" is not an integer in 1..4096");
}

/* route's serving options by flags and by manifest fields: the same kernel either way. */
static void test_serving_options(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--padded", "--replicas", "2", "--physical-experts",
                         "80", "--load-counter", "int32", "--replay", "given", "--id-dtype", "int64"),
                     0);
    EXPECT_OUTPUT("moejit_route_softmax_e64_k4_pad_r2p80_load32_given_ids64_f32(const mj::RouteParams p)");
    EXPECT_OUTPUT("kPhysicalExperts = 80;");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--replay", "sometimes"), 2);
    EXPECT_OUTPUT("moejit source: --replay: \"sometimes\" is not one of off, record, given");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "4", "--replicas", "2"), 2);
    EXPECT_OUTPUT("num_physical_experts = 0 must be 1..");
    char dir[4096], manifest[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/m.json", dir);
    write_text(manifest, "[{\"op\": \"route\", \"num_experts\": 64, \"topk\": 4, \"padded\": true, "
                         "\"max_replicas\": 2, \"num_physical_experts\": 80, \"load_counter\": \"int32\", "
                         "\"replay\": \"given\", \"id_dtype\": \"int64\"}]");
    assert_int_equal(CLI("source", "--manifest", manifest), 0);
    EXPECT_OUTPUT("moejit_route_softmax_e64_k4_pad_r2p80_load32_given_ids64_f32(const mj::RouteParams p)");
    write_text(manifest, "[{\"op\": \"route\", \"num_experts\": 64, \"topk\": 4, \"load_counter\": \"int8\"}]");
    assert_int_equal(CLI("source", "--manifest", manifest), 1); /* as any bad manifest entry */
    EXPECT_OUTPUT("field \"load_counter\": expected one of \"none\", \"int32\", \"int64\", got a string \"int8\"");
    mjt_rmtree(dir);
}

/* align's id dtypes and expert maps: flags (lists, like the others) and manifest fields give the
 * same kernels; bad values are named. */
static void test_align_ids_and_maps(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "16", "--id-dtype", "int64",
                         "--global-experts", "300"),
                     0);
    EXPECT_OUTPUT("moejit_align_e64_b16_i64_g300_onepass(const mj::AlignParams p)");
    EXPECT_OUTPUT("typedef long long Id;");
    EXPECT_OUTPUT("static constexpr int kGlobalExperts = 300;");
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "16", "--id-dtype", "int8"), 2);
    EXPECT_OUTPUT("moejit source: --id-dtype: \"int8\" is not one of int32, int64, int16\n");
    assert_int_equal(CLI("source", "--op", "route_align", "--model", "mixtral", "--block-size", "16", "--global-experts",
                         "16"),
                     2);
    EXPECT_OUTPUT("moejit source: --global-experts does not apply to --op route_align");

    char dir[4096], manifest[4200], file[4400];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "16", "--id-dtype", "int32,int16",
                         "--global-experts", "0,8", "--out", dir),
                     0);
    EXPECT_OUTPUT("source: wrote 4 files to");
    static const char *const names[] = {"moejit_align_e64_b16", "moejit_align_e64_b16_g8", "moejit_align_e64_b16_i16",
                                        "moejit_align_e64_b16_i16_g8"};
    for (int i = 0; i < 4; i++) {
        snprintf(file, sizeof file, "%s/%s.cu", dir, names[i]);
        if (access(file, R_OK)) fail_msg("%s was not written", file);
    }
    snprintf(manifest, sizeof manifest, "%s/m.json", dir);
    write_text(manifest, "[{\"op\": \"align\", \"num_experts\": 64, \"block_size\": 16, \"id_dtype\": \"int16\", "
                         "\"global_experts\": 8}]");
    assert_int_equal(CLI("source", "--manifest", manifest), 0);
    EXPECT_OUTPUT("moejit_align_e64_b16_i16_g8_onepass(const mj::AlignParams p)");
    write_text(manifest, "[{\"op\": \"align\", \"num_experts\": 64, \"block_size\": 16, \"id_dtype\": \"int8\"},"
                         " {\"op\": \"align\", \"num_experts\": 64, \"block_size\": 16, \"global_experts\": -1}]");
    assert_int_equal(CLI("source", "--manifest", manifest, "--out", dir), 1);
    EXPECT_OUTPUT("m.json: [0] (align): field \"id_dtype\": expected one of \"int32\", \"int64\", \"int16\", got "
                  "a string \"int8\"");
    EXPECT_OUTPUT("m.json: [1]: MOEJIT_ERR_INVALID_SPEC: align spec: global_experts = -1 must be >= 0");
    mjt_rmtree(dir);
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
    EXPECT_OUTPUT("moejit prewarm: --experts: \"0\" is not an integer in 1..4096");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--experts", "64", "--topk", "2", "--groups", "3", "--cache-dir",
                         dir),
                     2);
    EXPECT_OUTPUT("moejit prewarm: kernel spec flags: MOEJIT_ERR_INVALID_SPEC: route spec: num_groups = 3 does not divide "
                  "num_experts = 64");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--experts", "64", "--topk", "2", "--jobs", "0", "--cache-dir",
                         dir),
                     2);
    EXPECT_OUTPUT("moejit prewarm: --jobs: \"0\" is not an integer in 1..1024");
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
        cmocka_unit_test(test_bad_option),
        cmocka_unit_test(test_error_prefix),
        cmocka_unit_test(test_list_values),
        cmocka_unit_test(test_model_ops),
        cmocka_unit_test(test_route_backward),
        cmocka_unit_test(test_aux_losses),
        cmocka_unit_test(test_float_values),
        cmocka_unit_test(test_compile_failure_report),
        cmocka_unit_test(test_source),
        cmocka_unit_test(test_serving_options),
        cmocka_unit_test(test_align_ids_and_maps),
        cmocka_unit_test(test_prewarm_and_ls),
        cmocka_unit_test(test_prewarm_needs_arch_without_gpu),
        cmocka_unit_test(test_readme_matches_ci),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
