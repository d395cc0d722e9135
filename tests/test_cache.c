/* The disk cache: entry format, hits and misses, corrupt entries (never loaded, replaced), modes,
 * strict mode, compile failures. CPU only (NVRTC, no GPU). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/entry.h"
#include "cache/store.h"
#include "support.h"

static moejit_kernel_desc desc_e(int experts)
{
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
    d.route.num_experts = experts, d.route.topk = 4, d.route.dtype = MOEJIT_DTYPE_BF16;
    return d;
}

static moejit_ctx *open_ctx(const char *dir, moejit_cache_mode mode)
{
    moejit_config cfg = {.cache_dir = dir, .cache_mode = mode};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    return ctx;
}

static moejit_prewarm_result prewarm(moejit_ctx *ctx, moejit_kernel_desc d)
{
    moejit_prewarm_result r;
    moejit_status st = moejit_prewarm(ctx, &d, 1, "sm_90a", &r);
    if (st != MOEJIT_OK) fail_msg("prewarm: %s: %s", moejit_status_str(st), r.error);
    return r;
}

static void entry_path(const char *dir, const char *key, char *path, size_t cap)
{
    snprintf(path, cap, "%s/v1/%.2s/%s.mjc", dir, key, key + 2);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* The format rejects every truncation and thousands of random byte flips. */
static void test_entry_format(void **state)
{
    (void)state;
    const char key[] = "key record", meta[] = "entry=x\n", src[] = "source text", cubin[] = "\x7f" "ELF cubin bytes";
    mj_entry_view in = {(const uint8_t *)key, sizeof key, meta, sizeof meta - 1, src, sizeof src, (const uint8_t *)cubin,
                        sizeof cubin, 1234};
    uint8_t *blob;
    size_t len;
    assert_int_equal(mj_entry_encode(&in, &blob, &len), MOEJIT_OK);
    mj_entry_view out;
    assert_int_equal(mj_entry_decode(blob, len, &out), MOEJIT_OK);
    assert_int_equal(out.cubin_len, sizeof cubin);
    assert_memory_equal(out.cubin, cubin, sizeof cubin);
    assert_memory_equal(out.key_record, key, sizeof key);
    assert_int_equal(out.created, 1234);
    char v[16];
    assert_true(mj_meta_get(out.meta, out.meta_len, "entry", v, sizeof v));
    assert_string_equal(v, "x");
    for (size_t cut = 0; cut < len; cut++) assert_int_equal(mj_entry_decode(blob, cut, &out), MOEJIT_ERR_CORRUPT);
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int i = 0; i < 5000; i++) {
        size_t at = (size_t)(mjt_next(&rng) % len);
        uint8_t bit = (uint8_t)(1u << (mjt_next(&rng) % 8));
        blob[at] ^= bit;
        if (mj_entry_decode(blob, len, &out) != MOEJIT_ERR_CORRUPT) fail_msg("flip of byte %zu accepted", at);
        blob[at] ^= bit;
    }
    free(blob);
}

static void test_hit_and_miss(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_ctx *ctx = open_ctx(dir, MOEJIT_CACHE_RW);
    moejit_prewarm_result a = prewarm(ctx, desc_e(96));
    assert_int_equal(a.outcome, MOEJIT_PREWARM_COMPILED);
    moejit_close(ctx);
    /* A new context (as a new process would) finds it on disk. */
    ctx = open_ctx(dir, MOEJIT_CACHE_RW);
    moejit_prewarm_result b = prewarm(ctx, desc_e(96));
    assert_int_equal(b.outcome, MOEJIT_PREWARM_CACHED);
    assert_string_equal(a.key, b.key);
    moejit_prewarm_result c = prewarm(ctx, desc_e(97)); /* another shape: a miss */
    assert_int_equal(c.outcome, MOEJIT_PREWARM_COMPILED);
    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    assert_int_equal(s.disk_hits, 1);
    assert_int_equal(s.disk_misses, 1);
    assert_int_equal(s.compiles, 1);
    assert_int_equal(s.disk_writes, 1);
    /* No temp files are left behind. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    assert_int_equal(mjt_count_files(tmp), 0);
    snprintf(tmp, sizeof tmp, "%s/v1", dir);
    assert_int_equal(mjt_count_files(tmp), 2);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

typedef void (*damage_fn)(const char *path, const char *dir);

static void truncate_half(const char *path, const char *dir)
{
    (void)dir;
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
}
static void truncate_to_header(const char *path, const char *dir)
{
    (void)dir;
    assert_int_equal(truncate(path, 40), 0);
}
static void empty_file(const char *path, const char *dir)
{
    (void)dir;
    assert_int_equal(truncate(path, 0), 0);
}
static void flip_cubin_byte(const char *path, const char *dir)
{
    (void)dir;
    size_t len;
    uint8_t *b = read_file(path, &len);
    b[len - 100] ^= 0x10; /* inside the cubin */
    write_file(path, b, len);
    free(b);
}
static void flip_header_byte(const char *path, const char *dir)
{
    (void)dir;
    size_t len;
    uint8_t *b = read_file(path, &len);
    b[20] ^= 0x01; /* key record length */
    write_file(path, b, len);
    free(b);
}
/* A valid entry of another shape, copied under this key's name. */
static void other_entry(const char *path, const char *dir)
{
    moejit_ctx *ctx = open_ctx(dir, MOEJIT_CACHE_RW);
    moejit_prewarm_result o = prewarm(ctx, desc_e(200));
    moejit_close(ctx);
    char other[8192];
    entry_path(dir, o.key, other, sizeof other);
    size_t len;
    uint8_t *b = read_file(other, &len);
    write_file(path, b, len);
    free(b);
}

/* Each kind of damage: the entry is a miss, the kernel is recompiled (never loaded from the bad
 * file), the count of bad entries goes up, and the file is replaced by a valid one. */
static void test_corrupt_entries(void **state)
{
    (void)state;
    struct {
        const char *what;
        damage_fn damage;
    } cases[] = {{"truncated to half", truncate_half}, {"truncated inside the header", truncate_to_header},
                 {"empty", empty_file}, {"flipped cubin byte", flip_cubin_byte},
                 {"flipped header byte", flip_header_byte}, {"another key's entry", other_entry}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[4096], path[8192];
        mjt_tmpdir(dir);
        moejit_ctx *ctx = open_ctx(dir, MOEJIT_CACHE_RW);
        moejit_prewarm_result first = prewarm(ctx, desc_e(128));
        moejit_close(ctx);
        entry_path(dir, first.key, path, sizeof path);
        cases[i].damage(path, dir);

        ctx = open_ctx(dir, MOEJIT_CACHE_RW);
        moejit_prewarm_result again = prewarm(ctx, desc_e(128));
        if (again.outcome != MOEJIT_PREWARM_COMPILED) fail_msg("%s: damaged entry was used", cases[i].what);
        moejit_stats s;
        moejit_ctx_stats(ctx, &s);
        if (s.bad_entries != 1) fail_msg("%s: bad_entries = %llu", cases[i].what, (unsigned long long)s.bad_entries);
        moejit_close(ctx);
        mj_cache_blob blob;
        assert_int_equal(mj_cache_read_file(path, &blob), MOEJIT_OK); /* replaced by a valid entry */
        mj_cache_blob_free(&blob);
        ctx = open_ctx(dir, MOEJIT_CACHE_RW);
        assert_int_equal(prewarm(ctx, desc_e(128)).outcome, MOEJIT_PREWARM_CACHED);
        moejit_close(ctx);
        mjt_rmtree(dir);
    }
}

/* prewarm into a cache it cannot write: the kernel compiles but fails (MOEJIT_PREWARM_NOT_STORED,
 * MOEJIT_ERR_IO), naming the directory and why. */
static void expect_not_stored(moejit_ctx *ctx, moejit_kernel_desc d, const char *why)
{
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r), MOEJIT_ERR_IO);
    assert_int_equal(r.status, MOEJIT_ERR_IO);
    assert_int_equal(r.outcome, MOEJIT_PREWARM_NOT_STORED);
    if (!strstr(r.error, "compiled, but not stored") || !strstr(r.error, why))
        fail_msg("detail lacks \"%s\": %s", why, r.error);
    assert_true(r.name[0] && r.key[0]);
}

static void test_cache_modes(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    /* ro: compiles, writes nothing, and prewarm says so */
    moejit_ctx *ctx = open_ctx(dir, MOEJIT_CACHE_RO);
    expect_not_stored(ctx, desc_e(64), "the cache is read-only (moejit_config.cache_mode)");
    moejit_close(ctx);
    assert_int_equal(mjt_count_files(dir), 0);
    /* ro on a warm cache: reads, and that is a success */
    ctx = open_ctx(dir, MOEJIT_CACHE_RW);
    prewarm(ctx, desc_e(64));
    moejit_close(ctx);
    ctx = open_ctx(dir, MOEJIT_CACHE_RO);
    assert_int_equal(prewarm(ctx, desc_e(64)).outcome, MOEJIT_PREWARM_CACHED);
    moejit_close(ctx);
    /* off: neither */
    ctx = open_ctx(dir, MOEJIT_CACHE_OFF);
    assert_string_equal(moejit_ctx_cache_dir(ctx), "");
    expect_not_stored(ctx, desc_e(64), "the disk cache is off (moejit_config.cache_mode)");
    expect_not_stored(ctx, desc_e(65), "the disk cache is off");
    moejit_close(ctx);
    char v1[4200];
    snprintf(v1, sizeof v1, "%s/v1", dir);
    assert_int_equal(mjt_count_files(v1), 1);
    /* A cache "directory" that is a file: one warning, memory only; prewarm fails naming it. */
    char file[4200], why[4400];
    snprintf(file, sizeof file, "%s/not-a-dir", dir);
    write_file(file, (const uint8_t *)"x", 1);
    ctx = open_ctx(file, MOEJIT_CACHE_RW);
    snprintf(why, sizeof why, "%s is not a directory", file);
    expect_not_stored(ctx, desc_e(66), why);
    expect_not_stored(ctx, desc_e(67), why); /* the store stopped writing: the first failure is the reason */
    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    assert_int_equal(s.disk_writes, 0);
    assert_int_equal(s.compiles, 2);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

static void test_strict_and_always(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_config cfg = {.cache_dir = dir, .no_compile = 1};
    moejit_ctx *strict;
    assert_int_equal(moejit_open(&cfg, &strict), MOEJIT_OK);
    moejit_kernel_desc d = desc_e(384);
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(strict, &d, 1, "sm_90a", &r), MOEJIT_ERR_CACHE_MISS);
    /* The message names the kernel, the key, the shape and the cache directory. */
    assert_non_null(strstr(r.error, "moejit_route_softmax_e384_k4_bf16"));
    assert_non_null(strstr(r.error, r.key));
    assert_non_null(strstr(r.error, "E=384 K=4"));
    assert_non_null(strstr(r.error, dir));
    assert_int_equal(mjt_count_files(dir), 0);
    moejit_ctx *ctx = open_ctx(dir, MOEJIT_CACHE_RW);
    prewarm(ctx, d);
    moejit_close(ctx);
    assert_int_equal(moejit_prewarm(strict, &d, 1, "sm_90a", &r), MOEJIT_OK);
    assert_int_equal(r.outcome, MOEJIT_PREWARM_CACHED);
    moejit_close(strict);

    cfg = (moejit_config){.cache_dir = dir, .always_compile = 1};
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    assert_int_equal(prewarm(ctx, d).outcome, MOEJIT_PREWARM_COMPILED);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* A compile that fails reports the options and the first errors of the NVRTC log, and is dumped;
 * the detail names the dumped source and log. */
static void test_compile_failure(void **state)
{
    (void)state;
    char dir[4096], dump[4200];
    mjt_tmpdir(dir);
    snprintf(dump, sizeof dump, "%s/dump", dir);
    moejit_config cfg = {.cache_dir = dir, .extra_nvrtc_flags = "--no-such-nvrtc-option", .dump_dir = dump};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_kernel_desc d = desc_e(32);
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r), MOEJIT_ERR_COMPILE);
    assert_int_equal(r.status, MOEJIT_ERR_COMPILE);
    assert_non_null(strstr(r.error, "--no-such-nvrtc-option"));
    assert_non_null(strstr(r.error, "options:"));
    assert_non_null(strstr(r.error, "log:"));
    assert_true(mjt_count_files(dump) >= 3); /* .cu, .log, .options */
    char cu[4400], line[4500];
    snprintf(cu, sizeof cu, "%s/%s-%.12s.cu", dump, r.name, r.key);
    assert_int_equal(access(cu, R_OK), 0);
    snprintf(line, sizeof line, "\nsource: %s\n", cu);
    if (!strstr(r.error, line)) fail_msg("detail lacks \"%s\": %s", line, r.error);
    assert_null(strstr(r.error, "// Generated by moejit")); /* the source is in the file, not the detail */
    snprintf(cu, sizeof cu, "%s/v1", dir);
    assert_int_equal(mjt_count_files(cu), 0); /* nothing published */
    moejit_close(ctx);
    mjt_rmtree(dir);
}

static void test_nvrtc_missing(void **state)
{
    (void)state;
    setenv("MOEJIT_NVRTC_PATH", "/nonexistent/libnvrtc.so.13", 1);
    moejit_ctx *ctx = open_ctx(NULL, MOEJIT_CACHE_OFF);
    moejit_kernel_desc d = desc_e(32);
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r), MOEJIT_ERR_NO_NVRTC);
    assert_non_null(strstr(r.error, "/nonexistent/libnvrtc.so.13"));
    char *src;
    assert_int_equal(moejit_source(ctx, &d, &src, NULL), MOEJIT_OK); /* source needs no NVRTC */
    moejit_free(src);
    moejit_close(ctx);
    unsetenv("MOEJIT_NVRTC_PATH");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_format),      cmocka_unit_test(test_hit_and_miss),
        cmocka_unit_test(test_corrupt_entries),   cmocka_unit_test(test_cache_modes),
        cmocka_unit_test(test_strict_and_always), cmocka_unit_test(test_compile_failure),
        cmocka_unit_test(test_nvrtc_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
