/* Store maintenance (src/cache/maintenance.c): key-prefix lookup, verify, least-recently-used gc,
 * stale temp files, clear, size parsing, and the MOEJIT_CACHE_MAX_BYTES limit applied after a
 * publish. Synthetic entries (no NVRTC) except for the last test. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/entry.h"
#include "jit/key.h"
#include "cache/maintenance.h"
#include "cache/store.h"
#include "support.h"

/* Publish a synthetic entry whose key record is "record <i>" and whose cubin is `cubin_len` bytes
 * of an ELF-looking blob. The key is written to key (33 bytes). */
static void plant(mj_cache *c, int i, size_t cubin_len, char *key)
{
    char record[64], meta[64];
    snprintf(record, sizeof record, "record %d", i);
    snprintf(meta, sizeof meta, "entry=moejit_test_%d\nop=route\narch=sm_90a\n", i);
    uint8_t *cubin = calloc(1, cubin_len);
    assert_non_null(cubin);
    memcpy(cubin, "\x7f" "ELF", 4);
    mj_entry_key_of(record, strlen(record), key);
    mj_entry_view v = {.key_record = (const uint8_t *)record, .key_record_len = strlen(record), .meta = meta,
                       .meta_len = strlen(meta), .source = "src", .source_len = 3, .cubin = cubin,
                       .cubin_len = cubin_len, .created = 1};
    assert_int_equal(mj_cache_publish(c, key, &v), MOEJIT_OK);
    free(cubin);
}

static void set_mtime(mj_cache *c, const char *key, time_t when)
{
    char path[4200];
    assert_int_equal(mj_cache_entry_path(c, key, path, sizeof path), 0);
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static int exists(mj_cache *c, const char *key)
{
    char path[4200];
    mj_cache_entry_path(c, key, path, sizeof path);
    return access(path, F_OK) == 0;
}

static mj_cache *open_store(char *dir)
{
    mjt_tmpdir(dir);
    mj_cache *c;
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RW, &c), MOEJIT_OK);
    return c;
}

static void test_prefix_lookup(void **state)
{
    (void)state;
    char dir[4096], keys[40][33], got[33];
    mj_cache *c = open_store(dir);
    for (int i = 0; i < 40; i++) plant(c, i, 64, keys[i]);
    /* full key, a unique prefix, upper case */
    assert_int_equal(mj_cache_find_prefix(c, keys[3], got), MOEJIT_OK);
    assert_string_equal(got, keys[3]);
    char prefix[33];
    for (size_t n = 1; n <= 32; n++) {
        snprintf(prefix, sizeof prefix, "%.*s", (int)n, keys[5]);
        int matches = 0;
        for (int i = 0; i < 40; i++) matches += !strncmp(keys[i], prefix, n);
        moejit_status st = mj_cache_find_prefix(c, prefix, got);
        if (matches > 1) {
            assert_int_equal(st, MOEJIT_ERR_AMBIGUOUS);
            assert_non_null(strstr(moejit_last_error(NULL), "give more digits"));
            assert_non_null(strstr(moejit_last_error(NULL), keys[5]));
        } else {
            assert_int_equal(st, MOEJIT_OK);
            assert_string_equal(got, keys[5]);
            for (char *p = prefix; *p; p++)
                if (*p >= 'a') *p = (char)(*p - 'a' + 'A');
            assert_int_equal(mj_cache_find_prefix(c, prefix, got), MOEJIT_OK);
            assert_string_equal(got, keys[5]);
            break;
        }
    }
    /* 40 keys over 16 first digits: some digit is shared */
    int shared = 0;
    for (int i = 0; i < 40 && !shared; i++)
        for (int j = i + 1; j < 40 && !shared; j++)
            if (keys[i][0] == keys[j][0]) {
                snprintf(prefix, sizeof prefix, "%c", keys[i][0]);
                assert_int_equal(mj_cache_find_prefix(c, prefix, got), MOEJIT_ERR_AMBIGUOUS);
                shared = 1;
            }
    assert_true(shared);
    snprintf(prefix, sizeof prefix, "%s", keys[0]);
    prefix[31] = prefix[31] == '0' ? '1' : '0';
    int clash = 0;
    for (int i = 0; i < 40; i++) clash |= !strcmp(keys[i], prefix);
    if (!clash) assert_int_equal(mj_cache_find_prefix(c, prefix, got), MOEJIT_ERR_NOT_FOUND);
    assert_int_equal(mj_cache_find_prefix(c, "xyz", got), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(moejit_last_error(NULL), "\"xyz\" is not hexadecimal"));
    assert_int_equal(mj_cache_find_prefix(c, "", got), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_int_equal(mj_cache_find_prefix(c, "0123456789abcdef0123456789abcdef0", got), MOEJIT_ERR_INVALID_ARGUMENT);
    mj_cache_close(c);
    mjt_rmtree(dir);
}

typedef struct verify_log {
    int bad, removed;
    char text[8192];
} verify_log;

static void on_verify(const char *key, const char *path, moejit_status st, const char *detail, int removed, void *user)
{
    (void)path;
    verify_log *l = user;
    if (st == MOEJIT_OK) return;
    l->bad++;
    l->removed += removed;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s: %s\n", key, detail);
}

static void rewrite(const char *path, long at, uint8_t xor_mask, long truncate_to)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    if (xor_mask) {
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, at), 1);
        b ^= xor_mask;
        assert_int_equal(pwrite(fd, &b, 1, at), 1);
    }
    if (truncate_to >= 0) assert_int_equal(ftruncate(fd, truncate_to), 0);
    close(fd);
}

static void test_verify(void **state)
{
    (void)state;
    char dir[4096], keys[6][33], path[4200], other[4200];
    mj_cache *c = open_store(dir);
    for (int i = 0; i < 6; i++) plant(c, i, 256, keys[i]);
    mj_cache_verify_stats s;
    verify_log log = {0};
    assert_int_equal(mj_cache_verify(c, 0, on_verify, &log, &s), MOEJIT_OK);
    assert_int_equal(s.checked, 6);
    assert_int_equal(s.bad, 0);

    mj_cache_entry_path(c, keys[0], path, sizeof path);
    rewrite(path, 200, 0x04, -1); /* a flipped payload byte: checksum */
    mj_cache_entry_path(c, keys[1], path, sizeof path);
    rewrite(path, 0, 0, 30); /* truncated inside the header */
    mj_cache_entry_path(c, keys[2], path, sizeof path);
    mj_cache_entry_path(c, keys[3], other, sizeof other);
    assert_int_equal(rename(other, path), 0); /* a valid entry under another key's name */
    /* A valid frame and checksum, but the cubin is not an ELF image. */
    char record[] = "not elf";
    char bad_key[33];
    mj_entry_key_of(record, strlen(record), bad_key);
    mj_entry_view v = {.key_record = (const uint8_t *)record, .key_record_len = strlen(record), .meta = "entry=x\n",
                       .meta_len = 8, .source = "", .source_len = 0, .cubin = (const uint8_t *)"PTX!", .cubin_len = 4};
    assert_int_equal(mj_cache_publish(c, bad_key, &v), MOEJIT_OK);

    assert_int_equal(mj_cache_verify(c, 0, on_verify, &log, &s), MOEJIT_OK);
    assert_int_equal(s.checked, 6); /* 4 and 5 intact, 3 moved onto 2, plus the non-ELF one */
    assert_int_equal(s.bad, 4);
    assert_int_equal(s.removed, 0);
    assert_non_null(strstr(log.text, "checksum"));
    assert_non_null(strstr(log.text, "hashes to"));
    assert_non_null(strstr(log.text, "not an ELF image"));
    assert_true(exists(c, keys[0]));

    memset(&log, 0, sizeof log);
    assert_int_equal(mj_cache_verify(c, 1, on_verify, &log, &s), MOEJIT_OK);
    assert_int_equal(s.bad, 4);
    assert_int_equal(s.removed, 4);
    assert_int_equal(log.removed, 4);
    assert_false(exists(c, keys[0]));
    assert_true(exists(c, keys[4]) && exists(c, keys[5]));
    assert_int_equal(mj_cache_verify(c, 0, NULL, NULL, &s), MOEJIT_OK);
    assert_int_equal(s.checked, 2);
    assert_int_equal(s.bad, 0);
    mj_cache_close(c);

    /* --remove needs a writable store */
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RO, &c), MOEJIT_OK);
    assert_int_equal(mj_cache_verify(c, 1, NULL, NULL, &s), MOEJIT_ERR_IO);
    mj_cache_close(c);
    mjt_rmtree(dir);
}

typedef struct gc_log {
    char removed[16][33];
    int n;
} gc_log;

static void on_gc(const char *key, uint64_t bytes, time_t last_use, void *user)
{
    (void)bytes, (void)last_use;
    gc_log *l = user;
    if (l->n < 16) memcpy(l->removed[l->n], key, 33);
    l->n++;
}

static void write_temp(const char *dir, const char *name, time_t mtime)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/tmp/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("partial", f);
    fclose(f);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_gc_lru(void **state)
{
    (void)state;
    char dir[4096], keys[10][33];
    mj_cache *c = open_store(dir);
    const time_t now = time(NULL);
    /* Entry i was last used i hours ago… except that entry 7, the second oldest, was just used. */
    for (int i = 0; i < 10; i++) plant(c, i, 1000, keys[i]);
    for (int i = 0; i < 10; i++) set_mtime(c, keys[i], now - 3600 * (time_t)(10 - i));
    set_mtime(c, keys[1], now);
    char path[4200];
    mj_cache_entry_path(c, keys[0], path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    const uint64_t size = (uint64_t)st.st_size;

    write_temp(dir, "abandoned.1.tmp", now - 7200);
    write_temp(dir, "inflight.2.tmp", now);

    /* no limit: only the stale temp file goes */
    mj_cache_gc_stats s;
    assert_int_equal(mj_cache_gc(c, 0, NULL, MJ_CACHE_TEMP_GRACE_SECONDS, NULL, NULL, &s), MOEJIT_OK);
    assert_int_equal(s.temps_removed, 1);
    assert_int_equal(s.entries_removed, 0);
    assert_int_equal(s.entries_before, 10);
    assert_int_equal(s.bytes_before, 10 * size);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    assert_int_equal(mjt_count_files(tmp), 1);

    /* room for 6.5 entries: the 4 least recently used go, oldest first: 0, 2, 3, 4 */
    gc_log log = {0};
    assert_int_equal(mj_cache_gc(c, 6 * size + size / 2, NULL, MJ_CACHE_TEMP_GRACE_SECONDS, on_gc, &log, &s), MOEJIT_OK);
    assert_int_equal(s.entries_removed, 4);
    assert_int_equal(s.bytes_after, 6 * size);
    assert_true(s.bytes_after <= 6 * size + size / 2);
    assert_int_equal(log.n, 4);
    assert_string_equal(log.removed[0], keys[0]);
    assert_string_equal(log.removed[1], keys[2]);
    assert_string_equal(log.removed[2], keys[3]);
    assert_string_equal(log.removed[3], keys[4]);
    assert_true(exists(c, keys[1])); /* old, but used recently */
    for (int i = 5; i < 10; i++) assert_true(exists(c, keys[i]));

    /* a load is a use: it refreshes the stamp, so entry 5 (now the oldest) survives */
    mj_cache_blob blob;
    assert_int_equal(mj_cache_load(c, keys[5], NULL, 0, &blob), MOEJIT_OK);
    mj_cache_blob_free(&blob);
    assert_int_equal(mj_cache_gc(c, 5 * size, NULL, MJ_CACHE_TEMP_GRACE_SECONDS, NULL, NULL, &s), MOEJIT_OK);
    assert_int_equal(s.entries_removed, 1);
    assert_true(exists(c, keys[5]));
    assert_false(exists(c, keys[6]));

    /* keep_key is never removed, even when it alone is over the limit */
    assert_int_equal(mj_cache_gc(c, 1, keys[8], MJ_CACHE_TEMP_GRACE_SECONDS, NULL, NULL, &s), MOEJIT_OK);
    assert_int_equal(s.entries_after, 1);
    assert_true(exists(c, keys[8]));

    /* clear: every entry; the fresh temp file of a publish in flight stays */
    plant(c, 20, 100, keys[0]);
    uint64_t n, bytes;
    assert_int_equal(mj_cache_clear(c, &n, &bytes), MOEJIT_OK);
    assert_int_equal(n, 2);
    assert_true(bytes > 0);
    snprintf(tmp, sizeof tmp, "%s/v1", dir);
    assert_int_equal(mjt_count_files(tmp), 0);
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    assert_int_equal(mjt_count_files(tmp), 1);
    mj_cache_close(c);

    /* gc and clear need a writable store */
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RO, &c), MOEJIT_OK);
    assert_int_equal(mj_cache_gc(c, 1, NULL, 0, NULL, NULL, &s), MOEJIT_ERR_IO);
    assert_int_equal(mj_cache_clear(c, &n, &bytes), MOEJIT_ERR_IO);
    mj_cache_close(c);
    mjt_rmtree(dir);
}

static void test_parse_size(void **state)
{
    (void)state;
    struct {
        const char *text;
        uint64_t value;
    } ok[] = {{"0", 0},           {"1048576", 1048576},  {"1K", 1024},   {"1k", 1024},          {"512M", 512ull << 20},
              {"2G", 2ull << 30}, {"2GiB", 2ull << 30}, {"3gb", 3ull << 30}, {"1T", 1ull << 40}, {"100B", 100}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 7;
        if (mj_parse_size(ok[i].text, &v) != 0 || v != ok[i].value) fail_msg("\"%s\" parsed as %llu", ok[i].text, (unsigned long long)v);
    }
    const char *bad[] = {"", "-1", "M", "12X", "1.5G", "1 G", "1GG", "99999999999999999999", "20000000T", "1Bi"};
    uint64_t v;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (mj_parse_size(bad[i], &v) == 0) fail_msg("\"%s\" was accepted", bad[i]);
}

/* The limit is applied after each publish: the entry just written stays, older ones go. */
static void test_max_bytes_after_publish(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
    d.route.num_experts = 16, d.route.topk = 2;
    moejit_prewarm_result r[3];
    moejit_config cfg = {.cache_dir = dir, .compile_jobs = 1};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r[0]), MOEJIT_OK);
    moejit_close(ctx);
    char v1[4200];
    snprintf(v1, sizeof v1, "%s/v1", dir);
    assert_int_equal(mjt_count_files(v1), 1); /* besides the entry: tmp/ and the key's lock file */

    setenv("MOEJIT_CACHE_MAX_BYTES", "1", 1);
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    d.route.topk = 3;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r[1]), MOEJIT_OK);
    moejit_close(ctx);
    assert_int_equal(mjt_count_files(v1), 1); /* only the new one */
    mj_cache *c;
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RO, &c), MOEJIT_OK);
    assert_true(exists(c, r[1].key));
    assert_false(exists(c, r[0].key));
    mj_cache_close(c);

    setenv("MOEJIT_CACHE_MAX_BYTES", "lots", 1);
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(moejit_last_error(NULL), "MOEJIT_CACHE_MAX_BYTES = \"lots\""));
    unsetenv("MOEJIT_CACHE_MAX_BYTES");

    /* the config field works without the environment; 1 MiB holds both entries */
    cfg.cache_max_bytes = 1 << 20;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    d.route.topk = 4;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r[2]), MOEJIT_OK);
    moejit_close(ctx);
    assert_int_equal(mjt_count_files(v1), 2);
    mjt_rmtree(dir);
}

typedef struct progress_log {
    int calls, wrong;
    size_t last_done, seen[4];
} progress_log;

/* Runs on worker threads: records, the test asserts afterwards. */
static void on_progress(const moejit_prewarm_result *r, size_t index, size_t done, size_t total, void *user)
{
    progress_log *p = user;
    /* one call at a time, counting up */
    if (total != 4 || index >= 4 || done != p->last_done + 1 || r->status != MOEJIT_OK) {
        p->wrong++;
        return;
    }
    p->last_done = done;
    p->seen[index]++;
    p->calls++;
}

/* Several archs in one pool: results[a * n + i], one progress call per kernel; failures keep a
 * marked, bounded detail. */
static void test_prewarm_archs(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_config cfg = {.cache_dir = dir, .compile_jobs = 2};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_kernel_desc d[2] = {{.op = MOEJIT_OP_COMBINE}, {.op = MOEJIT_OP_PERMUTE}};
    d[0].combine.hidden = 16, d[1].permute.hidden = 16;
    const char *archs[2] = {"sm_90a", "sm_100a"};
    moejit_prewarm_result r[4];
    progress_log p = {0};
    assert_int_equal(moejit_prewarm_archs(ctx, d, 2, archs, 2, r, on_progress, &p), MOEJIT_OK);
    assert_int_equal(p.wrong, 0);
    assert_int_equal(p.calls, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(p.seen[i], 1);
        assert_string_equal(r[i].arch, archs[i / 2]);
        assert_int_equal(r[i].outcome, MOEJIT_PREWARM_COMPILED);
    }
    assert_non_null(strstr(r[0].name, "moejit_combine_h16_f32"));
    assert_non_null(strstr(r[3].name, "moejit_permute_h16_f32"));
    assert_string_not_equal(r[0].key, r[2].key); /* the arch is part of the key */
    moejit_close(ctx);

    /* a failed compile: the detail (error, options, files, first log lines) fits the field whole */
    cfg.extra_nvrtc_flags = "--no-such-nvrtc-option";
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    d[0].combine.hidden = 17;
    assert_int_equal(moejit_prewarm(ctx, d, 1, "sm_90a", r), MOEJIT_ERR_COMPILE);
    const size_t n = strlen(r[0].error);
    assert_true(n < sizeof r[0].error);
    assert_true(n > 3 && strcmp(r[0].error + n - 3, "…"));
    assert_non_null(strstr(r[0].error, "full log: "));
    moejit_close(ctx);
    mjt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_lookup), cmocka_unit_test(test_verify),
        cmocka_unit_test(test_gc_lru),        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_max_bytes_after_publish), cmocka_unit_test(test_prewarm_archs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
