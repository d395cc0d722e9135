/* The deployment side of the CLI, run as an operator would: prewarm of presets and manifests
 * (twice: the second compiles nothing), a manifest with bad entries, strict mode hit and miss,
 * `source --out`, and every `cache` subcommand (ls, show, source, cubin, verify on a planted
 * corrupt entry, gc in least-recently-used order, clear, key prefixes). CPU only. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/fault.h"
#include "cache/store.h"
#include "support.h"

static char g_out[1 << 17];

#define CLI(...) mjt_cli(NULL, g_out, sizeof g_out, __VA_ARGS__, NULL)
#define CLI_ENV(env, ...) mjt_cli(env, g_out, sizeof g_out, __VA_ARGS__, NULL)

#define EXPECT_OUTPUT(needle)                                                                              \
    do {                                                                                                   \
        if (!strstr(g_out, needle)) fail_msg("output lacks \"%s\":\n%s", needle, g_out);                   \
    } while (0)
#define EXPECT_NO_OUTPUT(needle)                                                                           \
    do {                                                                                                   \
        if (strstr(g_out, needle)) fail_msg("output has \"%s\":\n%s", needle, g_out);                      \
    } while (0)

/* The entries of a cache directory, sorted by key. */
typedef struct entries {
    char key[16][33];
    char path[16][4200];
    int n;
} entries;

static int collect(const char *key, const char *path, const struct stat *st, void *user)
{
    (void)st;
    entries *e = user;
    if (e->n < 16) {
        snprintf(e->key[e->n], sizeof e->key[0], "%s", key);
        snprintf(e->path[e->n], sizeof e->path[0], "%s", path);
    }
    e->n++;
    return 0;
}

static entries list(const char *dir)
{
    entries e;
    memset(&e, 0, sizeof e);
    mj_cache *c;
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RO, &c), MOEJIT_OK);
    assert_int_equal(mj_cache_foreach(c, collect, &e), MOEJIT_OK);
    mj_cache_close(c);
    return e;
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
    const char *subs[] = {"ls", "show", "source", "cubin", "verify", "gc", "clear"};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(CLI("cache", subs[i], "--help"), 0);
        EXPECT_OUTPUT("usage: moejit cache");
        EXPECT_OUTPUT(subs[i]);
    }
    assert_int_equal(CLI("prewarm", "--help"), 0);
    EXPECT_OUTPUT("--manifest FILE.json");
    EXPECT_OUTPUT("--list-models");
    assert_int_equal(CLI("source", "--help"), 0);
    EXPECT_OUTPUT("--out DIR");
    assert_int_equal(CLI("prewarm", "--list-models"), 0);
    for (size_t i = 0; moejit_route_preset_name(i); i++) EXPECT_OUTPUT(moejit_route_preset_name(i));
    EXPECT_OUTPUT("kimi-k2      route      E=384 K=8 score=sigmoid bias renormalize scale=2.827");
    /* usage errors name the flag and the value */
    assert_int_equal(CLI("prewarm", "--arch", "hopper", "--model", "mixtral"), 2);
    EXPECT_OUTPUT("moejit prewarm: --arch: \"hopper\" is not an SM target");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral,gpt-5"), 2);
    EXPECT_OUTPUT("moejit prewarm: --model: \"gpt-5\" is not a preset");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral", "--dtype", "fp8"), 2);
    EXPECT_OUTPUT("moejit prewarm: --dtype: \"fp8\" is not one of");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral", "--progress", "fancy"), 2);
    EXPECT_OUTPUT("moejit prewarm: --progress: \"fancy\"");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a"), 2);
    EXPECT_OUTPUT("no kernels selected");
    assert_int_equal(CLI("source", "--op", "permute", "--hidden", "64", "--experts", "8"), 2);
    EXPECT_OUTPUT("--experts does not apply to --op permute");
    assert_int_equal(CLI("source", "--op", "gather", "--hidden", "64"), 2);
    EXPECT_OUTPUT("moejit source: --op: \"gather\" is not one of route, align, route_align, route_backward, mx_scales, "
                  "dispatch_layout, permute, combine, permute_backward, combine_backward, capacity, "
                  "route_losses\n");
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "32", "--dtype", "bf16"), 2);
    EXPECT_OUTPUT("--dtype does not apply to --op align");
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "24"), 2);
    EXPECT_OUTPUT("align spec: block_size = 24 must be a power of two in [1, 1024]");
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "2048"), 2);
    EXPECT_OUTPUT("moejit source: --block-size: \"2048\" is not an integer in 1..1024");
    assert_int_equal(CLI("source", "--op", "align", "--experts", "64", "--block-size", "1"), 0);
    EXPECT_OUTPUT("static constexpr int kBlockSize = 1;");
    assert_int_equal(CLI("source", "--op", "route_align", "--experts", "64", "--topk", "4"), 2);
    EXPECT_OUTPUT("--block-size is required with --op route_align");
    assert_int_equal(CLI("source", "--op", "mx_scales", "--hidden", "64"), 2);
    EXPECT_OUTPUT("--hidden does not apply to --op mx_scales");
    assert_int_equal(CLI("cache", "frob"), 2);
    EXPECT_OUTPUT("unknown subcommand \"frob\"");
    assert_int_equal(CLI("cache", "show"), 2);
    EXPECT_OUTPUT("a KEY (or a prefix of one) is required");
    assert_int_equal(CLI("cache", "ls", "--remove"), 2);
    EXPECT_OUTPUT("--remove applies to `cache verify` only");
    assert_int_equal(CLI("cache", "gc", "--max-bytes", "12 parsecs"), 2);
    EXPECT_OUTPUT("moejit cache: gc: --max-bytes: \"12 parsecs\"");
}

/* Two presets into an empty directory, then again: the second run compiles nothing. */
static void test_prewarm_models_twice(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral", "--model", "llama-4", "--cache-dir", dir), 0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_softmax_e8_k2_renorm_bf16");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_sigmoid_e16_k1_after_f32");
    EXPECT_OUTPUT("prewarm: 4 kernels for 1 arch: 4 compiled, 0 already cached, 0 failed in");
    assert_int_equal(list(dir).n, 4);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "llama-4,mixtral", "--cache-dir", dir), 0);
    EXPECT_OUTPUT("cached    sm_90a   moejit_route_softmax_e8_k2_renorm_f32");
    EXPECT_OUTPUT("prewarm: 4 kernels for 1 arch: 0 compiled, 4 already cached, 0 failed");
    EXPECT_NO_OUTPUT("compiled  ");
    assert_int_equal(list(dir).n, 4);
    /* the bar (forced: stdout is a pipe here) ends in the same summary; duplicates are built once */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral", "--dtype", "bf16", "--model", "mixtral",
                         "--progress", "bar", "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("[##############################] 1/1  0 compiled  1 cached  0 failed");
    EXPECT_OUTPUT("prewarm: 1 kernel for 1 arch: 0 compiled, 1 already cached, 0 failed");
    EXPECT_OUTPUT("[1 duplicate skipped]");
    /* the grouped preset (8 groups, 4 kept, top2_sum) compiles like the others */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "deepseek-v3", "--dtype", "bf16", "--cache-dir", dir), 0);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_sigmoid_e256_k8_g8_tg4_top2sum_bias_renorm_x2p5_bf16");
    EXPECT_OUTPUT("0 failed");
    mjt_rmtree(dir);
}

/* A manifest with good entries and bad ones: exit 1, each bad entry named with its field, the
 * good entries compiled. */
static void test_manifest(void **state)
{
    (void)state;
    char dir[4096], manifest[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/shapes.json", dir);
    write_text(manifest, "{\"kernels\": [\n"
                         "  {\"model\": \"llama-4\", \"dtype\": \"bf16\"},\n"
                         "  {\"op\": \"route\", \"num_experts\": 60, \"topk\": \"4\"},\n"
                         "  {\"op\": \"route\", \"num_experts\": 60, \"topk\": 4, \"score\": \"sigmoid\", \"dtype\": \"bf16\",\n"
                         "   \"has_bias\": true, \"renormalize\": 1, \"routed_scaling_factor\": 2.5, \"scale_output\": true},\n"
                         "  {\"op\": \"permute\", \"hidden\": 64, \"dtype\": [\"bf16\", \"f16\"], \"has_scale\": true},\n"
                         "  {\"op\": \"combine\", \"hidden\": 64, \"dtyp\": \"bf16\"},\n"
                         "  {\"op\": \"route\", \"num_experts\": 8, \"topk\": 9},\n"
                         "  {\"model\": \"mixtral\", \"op\": \"route_align\", \"block_size\": 16, \"dtype\": \"bf16\"},\n"
                         "  {\"op\": \"align\", \"num_experts\": 64, \"block_size\": 32},\n"
                         "  {\"op\": \"mx_scales\", \"cols\": 8},\n"
                         "  {\"op\": \"mx_scales\", \"model\": \"mixtral\"}\n"
                         "]}\n");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 1);
    EXPECT_OUTPUT("shapes.json: kernels[1] (route): field \"topk\": expected an integer in int32 range, got a string \"4\"");
    EXPECT_OUTPUT("shapes.json: kernels[4] (combine): unknown field \"dtyp\" (combine fields: hidden, dtype)");
    EXPECT_OUTPUT("shapes.json: kernels[5]: MOEJIT_ERR_INVALID_SPEC: route spec: topk = 9 exceeds num_experts = 8");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_sigmoid_e16_k1_after_bf16");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_sigmoid_e60_k4_bias_renorm_x2p5_bf16");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_permute_h64_bf16_scale");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_permute_h64_f16_scale");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_route_align_softmax_e8_k2_renorm_bf16_b16");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_align_e64_b32");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_mx_scales_c8");
    EXPECT_OUTPUT("shapes.json: kernels[9] (mx_scales): field \"model\": presets are routings");
    EXPECT_OUTPUT("prewarm: 11 kernels for 1 arch: 7 compiled, 0 already cached, 4 failed");
    assert_int_equal(list(dir).n, 7);

    /* file-level problems are usage errors naming the file and the place */
    write_text(manifest, "{\"kernels\": [\n  {\"op\": \"route\",}\n]}\n");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 2);
    EXPECT_OUTPUT("shapes.json:2:");
    write_text(manifest, "{\"shapes\": []}");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 2);
    EXPECT_OUTPUT("unknown top-level field \"shapes\"");
    /* a manifest that selects nothing is an error (a generator that lost its entries), and so is
     * a directory given as one */
    const char *empty[] = {"[]", "{\"kernels\": []}", " [ ]\n"};
    for (int i = 0; i < 3; i++) {
        write_text(manifest, empty[i]);
        assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 2);
        char want[4400];
        snprintf(want, sizeof want, "moejit prewarm: --manifest: %s: the kernel list is empty\n", manifest);
        EXPECT_OUTPUT(want);
    }
    assert_int_equal(CLI("source", "--manifest", dir), 2);
    char want[4400];
    snprintf(want, sizeof want, "moejit source: --manifest: %s is a directory, not a JSON file\n", dir);
    EXPECT_OUTPUT(want);
    /* a bare list works too, and source --out writes one file per kernel of it */
    write_text(manifest, "[{\"op\": \"combine\", \"hidden\": 7168, \"dtype\": \"bf16\"}, {\"model\": \"mixtral\"}]");
    char out[4300];
    snprintf(out, sizeof out, "%s/src/deep", dir);
    assert_int_equal(CLI("source", "--manifest", manifest, "--out", out), 0);
    EXPECT_OUTPUT("source: wrote 3 files to");
    char file[4400];
    snprintf(file, sizeof file, "%s/moejit_combine_h7168_bf16.cu", out);
    assert_int_equal(access(file, R_OK), 0);
    snprintf(file, sizeof file, "%s/moejit_route_softmax_e8_k2_renorm_f32.cu", out);
    assert_int_equal(access(file, R_OK), 0);
    assert_int_equal(CLI("source", "--manifest", manifest), 2);
    EXPECT_OUTPUT("describes 3 kernels; give --out DIR");
    assert_int_equal(CLI("source", "--op", "permute", "--hidden", "4096", "--row-scale", "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("moejit_permute_h4096_bf16_scale(const mj::PermuteParams p)");
    mjt_rmtree(dir);
}

/* The backward ops: flags, sources, manifest entries. */
static void test_backward_ops(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--op", "permute_backward", "--hidden", "4096", "--row-scale", "--dtype", "bf16"), 0);
    EXPECT_OUTPUT("moejit_permute_backward_h4096_bf16_scale(const mj::PermuteBackwardParams p)");
    assert_int_equal(CLI("source", "--op", "combine_backward", "--hidden", "7168", "--dtype", "f16"), 0);
    EXPECT_OUTPUT("moejit_combine_backward_h7168_f16(const mj::CombineBackwardParams p)");
    assert_int_equal(CLI("source", "--op", "combine_backward", "--hidden", "64", "--row-scale"), 2);
    EXPECT_OUTPUT("moejit source: --row-scale does not apply to --op combine_backward");
    assert_int_equal(CLI("source", "--op", "permute_backward"), 2);
    EXPECT_OUTPUT("moejit source: --hidden is required with --op permute_backward");

    char dir[4096], manifest[4200];
    mjt_tmpdir(dir);
    snprintf(manifest, sizeof manifest, "%s/train.json", dir);
    write_text(manifest, "[{\"op\": \"permute_backward\", \"hidden\": 64, \"dtype\": [\"bf16\", \"f32\"], \"has_scale\": true},\n"
                         " {\"op\": \"combine_backward\", \"hidden\": 64, \"dtype\": \"bf16\"},\n"
                         " {\"op\": \"combine_backward\", \"hidden\": 64, \"has_scale\": true},\n"
                         " {\"op\": \"permute_backward\", \"hidden\": 0}]\n");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--manifest", manifest, "--cache-dir", dir), 1);
    EXPECT_OUTPUT("compiled  sm_90a   moejit_permute_backward_h64_bf16_scale");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_permute_backward_h64_f32_scale");
    EXPECT_OUTPUT("compiled  sm_90a   moejit_combine_backward_h64_bf16");
    EXPECT_OUTPUT("train.json: [2] (combine_backward): unknown field \"has_scale\" (combine_backward fields: hidden, dtype)");
    EXPECT_OUTPUT("train.json: [3]: MOEJIT_ERR_INVALID_SPEC: permute_backward spec: hidden = 0 must be >= 1");
    assert_int_equal(list(dir).n, 3);
    mjt_rmtree(dir);
}

/* MOEJIT_NO_COMPILE=1: a cached kernel is a hit; a missing one fails naming its key, and nothing
 * is compiled or written. */
static void test_strict_mode(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "llama-4", "--dtype", "bf16", "--cache-dir", dir), 0);
    const char *strict[] = {"MOEJIT_NO_COMPILE=1", NULL}, *strict_ro[] = {"MOEJIT_NO_COMPILE=1", "MOEJIT_CACHE=ro", NULL};
    assert_int_equal(CLI_ENV(strict_ro, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--dtype", "bf16",
                             "--cache-dir", dir),
                     0);
    EXPECT_OUTPUT("cached    sm_90a   moejit_route_sigmoid_e16_k1_after_bf16");
    EXPECT_OUTPUT("0 compiled, 1 already cached, 0 failed");
    EXPECT_OUTPUT("MOEJIT_NO_COMPILE=1: nothing compiled");
    assert_int_equal(CLI_ENV(strict, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--cache-dir", dir), 1);
    EXPECT_OUTPUT("failed    sm_90a   moejit_route_sigmoid_e16_k1_after_f32");
    EXPECT_OUTPUT("MOEJIT_ERR_CACHE_MISS");
    EXPECT_OUTPUT("MOEJIT_NO_COMPILE=1 and kernel moejit_route_sigmoid_e16_k1_after_f32");
    EXPECT_OUTPUT("0 compiled, 1 already cached, 1 failed");
    assert_int_equal(list(dir).n, 1);
    mjt_rmtree(dir);
}

/* prewarm's job is to fill the cache: a kernel that is compiled but cannot be stored (MOEJIT_CACHE=ro
 * or off, a cache "directory" that is a file or under one) fails, on its line and in the summary,
 * with the directory and the reason, and the exit status is 1. A read-only cache that already
 * holds everything is a success. */
static void test_prewarm_not_stored(void **state)
{
    (void)state;
    char dir[4096], file[4200], want[16384];
    mjt_tmpdir(dir);
    const char *ro[] = {"MOEJIT_CACHE=ro", NULL}, *off[] = {"MOEJIT_CACHE=off", NULL};
    assert_int_equal(CLI_ENV(ro, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--dtype", "bf16", "--cache-dir", dir), 1);
    snprintf(want, sizeof want,
             "failed    sm_90a   moejit_route_sigmoid_e16_k1_after_bf16 (--model llama-4 (bf16)): MOEJIT_ERR_IO: compiled, "
             "but not stored in the cache %s: the cache is read-only (MOEJIT_CACHE=ro)\n",
             dir);
    EXPECT_OUTPUT(want);
    EXPECT_OUTPUT("0 compiled, 0 already cached, 1 failed (1 not stored in the cache)");
    assert_int_equal(list(dir).n, 0);

    assert_int_equal(CLI_ENV(off, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--dtype", "bf16"), 1);
    EXPECT_OUTPUT("MOEJIT_ERR_IO: compiled, but not stored: the disk cache is off (MOEJIT_CACHE=off)\n");
    EXPECT_OUTPUT("1 failed (1 not stored in the cache)");
    EXPECT_OUTPUT("(cache: off)");

    /* a regular file as the cache directory, by flag and by environment, and a path under it */
    snprintf(file, sizeof file, "%s/not-a-dir", dir);
    write_text(file, "x");
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "llama-4", "--cache-dir", file), 1);
    snprintf(want, sizeof want, "compiled, but not stored in the cache %s: cannot create %s/tmp: %s is not a directory\n",
             file, file, file);
    EXPECT_OUTPUT(want);
    EXPECT_OUTPUT("moejit_route_sigmoid_e16_k1_after_f32 (--model llama-4 (f32)): MOEJIT_ERR_IO");
    EXPECT_OUTPUT("moejit_route_sigmoid_e16_k1_after_bf16 (--model llama-4 (bf16)): MOEJIT_ERR_IO");
    EXPECT_OUTPUT("0 compiled, 0 already cached, 2 failed (2 not stored in the cache)");
    char env_dir[4300];
    snprintf(env_dir, sizeof env_dir, "MOEJIT_CACHE_DIR=%s/sub", file);
    const char *under_file[] = {env_dir, NULL};
    assert_int_equal(CLI_ENV(under_file, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--dtype", "bf16"), 1);
    snprintf(want, sizeof want, "compiled, but not stored in the cache %s/sub: cannot create %s/sub/tmp: %s is not a directory\n",
             file, file, file);
    EXPECT_OUTPUT(want);

    /* everything already there: a read-only cache is fine, strict or not */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "llama-4", "--cache-dir", dir), 0);
    EXPECT_OUTPUT("2 compiled, 0 already cached, 0 failed");
    assert_int_equal(CLI_ENV(ro, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--cache-dir", dir), 0);
    EXPECT_OUTPUT("0 compiled, 2 already cached, 0 failed in");
    EXPECT_NO_OUTPUT("not stored");
    /* … but one more kernel is not */
    assert_int_equal(CLI_ENV(ro, "prewarm", "--arch", "sm_90a", "--model", "llama-4", "--op", "route", "--experts", "17",
                             "--dtype", "bf16", "--cache-dir", dir),
                     1);
    EXPECT_OUTPUT("1 failed (1 not stored in the cache)");
    mjt_rmtree(dir);
}

/* The same through the library with a failing disk (fault injection: CI runs as root, where
 * chmod stops nothing): moejit_prewarm returns MOEJIT_ERR_IO and every result is
 * MOEJIT_PREWARM_NOT_STORED with the write's error; nothing is left in the cache. */
static void test_prewarm_publish_fault(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_config cfg = {.cache_dir = dir, .log_level = MOEJIT_LOG_SILENT};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_kernel_desc d[2];
    memset(d, 0, sizeof d);
    for (int i = 0; i < 2; i++) d[i].op = MOEJIT_OP_COMBINE, d[i].combine.hidden = 40 + i;
    moejit_prewarm_result r[2];
    mj_fault_fail(MJ_FAULT_RENAME, ENOSPC, 1);
    const moejit_status st = moejit_prewarm(ctx, d, 2, "sm_90a", r);
    const unsigned long injected = mj_fault_injected();
    mj_fault_clear();
    assert_int_equal(st, MOEJIT_ERR_IO);
    assert_true(injected >= 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].status, MOEJIT_ERR_IO);
        assert_int_equal(r[i].outcome, MOEJIT_PREWARM_NOT_STORED);
        if (!strstr(r[i].error, "compiled, but not stored in the cache") || !strstr(r[i].error, dir) ||
            !strstr(r[i].error, strerror(ENOSPC)))
            fail_msg("result %d: %s", i, r[i].error);
    }
    moejit_close(ctx);
    assert_int_equal(list(dir).n, 0);
    /* the disk is fine again: compiled and stored */
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    assert_int_equal(moejit_prewarm(ctx, d, 2, "sm_90a", r), MOEJIT_OK);
    for (int i = 0; i < 2; i++) assert_int_equal(r[i].outcome, MOEJIT_PREWARM_COMPILED);
    moejit_close(ctx);
    assert_int_equal(list(dir).n, 2);
    mjt_rmtree(dir);
}

/* An EM_CUDA ELF for sm_90 (e_flags bits 8..15). */
static void check_cubin_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    Elf64_Ehdr h;
    assert_int_equal(fread(&h, 1, sizeof h, f), sizeof h);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fclose(f);
    assert_memory_equal(h.e_ident, ELFMAG, SELFMAG);
    assert_int_equal(h.e_ident[EI_CLASS], ELFCLASS64);
    assert_int_equal(h.e_machine, 190 /* EM_CUDA */);
    assert_int_equal((h.e_flags >> 8) & 0xff, 90);
    assert_true(h.e_shoff > 0 && (long)h.e_shoff < size);
}

static void set_used(const char *path, time_t when)
{
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static long file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static void test_cache_commands(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--model", "mixtral", "--dtype", "f32", "--cache-dir", dir), 0);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "combine", "--hidden", "32,48", "--dtype", "f32",
                         "--cache-dir", dir),
                     0);
    entries e = list(dir);
    assert_int_equal(e.n, 3);

    assert_int_equal(CLI("cache", "ls", "--cache-dir", dir), 0);
    EXPECT_OUTPUT("KEY                               OP      ARCH           SIZE    AGE   USED  SHAPE");
    EXPECT_OUTPUT("route   sm_90a");
    EXPECT_OUTPUT("combine sm_90a");
    EXPECT_OUTPUT("E=8 K=2 score=softmax dtype=f32 renormalize");
    EXPECT_OUTPUT("H=48 dtype=f32");
    EXPECT_OUTPUT("3 entries in");

    /* show / source / cubin by a unique prefix */
    char prefix[33];
    int plen = 1;
    for (;; plen++) {
        int clash = 0;
        for (int i = 1; i < e.n; i++) clash |= !strncmp(e.key[0], e.key[i], (size_t)plen);
        if (!clash) break;
    }
    snprintf(prefix, sizeof prefix, "%.*s", plen, e.key[0]);
    assert_int_equal(CLI("cache", "--cache-dir", dir, "show", prefix), 0);
    EXPECT_OUTPUT(e.key[0]);
    EXPECT_OUTPUT("verification     ok");
    EXPECT_OUTPUT("schema           moejit-key-1");
    EXPECT_OUTPUT("arch             sm_90a");
    EXPECT_OUTPUT("nvrtc options    -arch=sm_90a");
    EXPECT_OUTPUT("identical to the stored source");
    EXPECT_OUTPUT("  entry=moejit_");
    assert_int_equal(CLI("cache", "--cache-dir", dir, "source", e.key[0]), 0);
    EXPECT_OUTPUT("// Generated by moejit");
    EXPECT_OUTPUT("extern \"C\" __global__");

    char cubin[4300], cmd[16384];
    snprintf(cubin, sizeof cubin, "%s/k.cubin", dir);
    assert_int_equal(CLI("cache", "--cache-dir", dir, "cubin", prefix, "-o", cubin), 0);
    check_cubin_file(cubin);
    /* raw on stdout too, byte for byte the same */
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' cache --cache-dir . cubin %s > k2.cubin && cmp k.cubin k2.cubin", dir,
             MOEJIT_CLI, e.key[0]);
    char *sh[] = {"/bin/sh", "-c", cmd, NULL};
    if (mjt_run(sh, NULL, g_out, sizeof g_out) != 0) fail_msg("%s\n%s", cmd, g_out);
    /* Where a cuobjdump is installed, it reads the cubin. */
    char *probe[] = {"/bin/sh", "-c", "command -v cuobjdump", NULL};
    if (mjt_run(probe, NULL, g_out, sizeof g_out) == 0) {
        snprintf(cmd, sizeof cmd, "cuobjdump -sass '%s'", cubin);
        if (mjt_run(sh, NULL, g_out, sizeof g_out) != 0) fail_msg("cuobjdump failed:\n%s", g_out);
        EXPECT_OUTPUT("Function : moejit_");
    } else {
        print_message("[ info     ] no cuobjdump on PATH: checked the cubin's ELF header (EM_CUDA, sm_90)\n");
    }

    /* an ambiguous or unknown prefix */
    int shared = 0;
    for (int i = 0; i < e.n && !shared; i++)
        for (int j = i + 1; j < e.n && !shared; j++) shared = e.key[i][0] == e.key[j][0] ? i + 1 : 0;
    if (shared) {
        snprintf(prefix, sizeof prefix, "%c", e.key[shared - 1][0]);
        assert_int_equal(CLI("cache", "--cache-dir", dir, "show", prefix), 2);
        EXPECT_OUTPUT("MOEJIT_ERR_AMBIGUOUS");
        EXPECT_OUTPUT("give more digits");
    }
    assert_int_equal(CLI("cache", "--cache-dir", dir, "cubin", "0123456789abcdef0123456789abcdef", "-o", cubin), 1);
    EXPECT_OUTPUT("MOEJIT_ERR_NOT_FOUND");

    /* verify: clean; then a planted corrupt entry is reported, and removed with --remove */
    assert_int_equal(CLI("cache", "--cache-dir", dir, "verify"), 0);
    EXPECT_OUTPUT("verify: 3 entries checked, 0 bad, 0 removed");
    int fd = open(e.path[1], O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\xff\xff\xff\xff", 4, file_size(e.path[1]) - 200), 4);
    close(fd);
    assert_int_equal(CLI("cache", "--cache-dir", dir, "verify"), 1);
    EXPECT_OUTPUT("bad      ");
    EXPECT_OUTPUT(e.key[1]);
    EXPECT_OUTPUT("checksum mismatch");
    EXPECT_OUTPUT("verify: 3 entries checked, 1 bad, 0 removed");
    assert_int_equal(CLI("cache", "--cache-dir", dir, "show", e.key[1]), 1);
    EXPECT_OUTPUT("verification     FAILED");
    assert_int_equal(CLI("cache", "--cache-dir", dir, "verify", "--remove"), 0);
    EXPECT_OUTPUT("removed  ");
    EXPECT_OUTPUT("verify: 3 entries checked, 1 bad, 1 removed");
    assert_int_equal(list(dir).n, 2);
    const char *ro[] = {"MOEJIT_CACHE=ro", NULL};
    assert_int_equal(CLI_ENV(ro, "cache", "--cache-dir", dir, "clear"), 1);
    EXPECT_OUTPUT("not writable");
    mjt_rmtree(dir);
}

/* gc keeps the cache under the limit and removes the least recently used first. */
static void test_gc(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "combine", "--hidden", "8,16,24,32", "--cache-dir", dir), 0);
    entries e = list(dir);
    assert_int_equal(e.n, 4);
    /* last use: entry 2 oldest, then 0, then 3, then 1 */
    const time_t now = time(NULL);
    set_used(e.path[2], now - 4000);
    set_used(e.path[0], now - 3000);
    set_used(e.path[3], now - 2000);
    set_used(e.path[1], now - 1000);
    char limit[32];
    snprintf(limit, sizeof limit, "%ld", file_size(e.path[3]) + file_size(e.path[1]));
    assert_int_equal(CLI("cache", "--cache-dir", dir, "gc", "--max-bytes", limit), 0);
    char *first = strstr(g_out, e.key[2]), *second = strstr(g_out, e.key[0]);
    if (!first || !second || first > second) fail_msg("gc did not remove %s then %s:\n%s", e.key[2], e.key[0], g_out);
    EXPECT_OUTPUT("4 entries");
    EXPECT_OUTPUT("2 (");
    assert_int_not_equal(access(e.path[2], F_OK), 0);
    assert_int_not_equal(access(e.path[0], F_OK), 0);
    assert_int_equal(access(e.path[1], F_OK), 0);
    assert_int_equal(access(e.path[3], F_OK), 0);
    /* under the limit: nothing to do; MOEJIT_CACHE_MAX_BYTES is the default limit */
    assert_int_equal(CLI("cache", "--cache-dir", dir, "gc", "--max-bytes", "1G"), 0);
    EXPECT_OUTPUT("removed 0 (0 B)");
    const char *limit1[] = {"MOEJIT_CACHE_MAX_BYTES=1", NULL};
    assert_int_equal(CLI_ENV(limit1, "cache", "--cache-dir", dir, "gc"), 0);
    EXPECT_OUTPUT("gc: limit 1 B: 2 entries");
    assert_int_equal(list(dir).n, 0);
    /* clear */
    assert_int_equal(CLI("prewarm", "--arch", "sm_90a", "--op", "combine", "--hidden", "8", "--cache-dir", dir), 0);
    assert_int_equal(CLI("cache", "--cache-dir", dir, "clear"), 0);
    EXPECT_OUTPUT("clear: removed 1 entry");
    assert_int_equal(list(dir).n, 0);
    mjt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),        cmocka_unit_test(test_prewarm_models_twice),
        cmocka_unit_test(test_manifest),    cmocka_unit_test(test_backward_ops), cmocka_unit_test(test_strict_mode),
        cmocka_unit_test(test_prewarm_not_stored), cmocka_unit_test(test_prewarm_publish_fault),
        cmocka_unit_test(test_cache_commands), cmocka_unit_test(test_gc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
