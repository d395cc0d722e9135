/* Corrupt entries (issue 8): truncation at every offset (every header offset through the whole
 * library), thousands of random byte flips, a valid entry under another key's name, entries of
 * another NVRTC build, library version or format, and files that are not entries at all (a FIFO,
 * a directory, links, a huge sparse file). Never loaded, never a crash or a hang, replaced on the
 * next miss. CPU only (NVRTC). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/entry.h"
#include "jit/build.h"
#include "jit/key.h"
#include "cache/maintenance.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"
#include "cache/store.h"
#include "common/strbuf.h"
#include "stress.h"

#define ARCH "sm_90a"

typedef struct fixture {
    char dir[4096];
    char path[4300];     /* the entry's file */
    moejit_kernel_desc desc;
    mj_key key;          /* its key and record */
    uint8_t *good;       /* the valid entry's bytes */
    size_t len;
    moejit_ctx *ctx;     /* a read-write context on dir */
} fixture;

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void spill(const char *path, const uint8_t *b, size_t len)
{
    unlink(path); /* a fresh inode, as a writer would leave */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    close(fd);
}

static void setup(fixture *f, int experts)
{
    memset(f, 0, sizeof *f);
    mjt_tmpdir(f->dir);
    f->desc.op = MOEJIT_OP_ROUTE;
    f->desc.route.num_experts = experts;
    f->desc.route.topk = 4;
    f->desc.route.dtype = MOEJIT_DTYPE_BF16;
    moejit_config cfg = {.cache_dir = f->dir, .log_level = MOEJIT_LOG_SILENT};
    assert_int_equal(moejit_open(&cfg, &f->ctx), MOEJIT_OK);
    mj_kernel_id id;
    mj_kernel_plan plan;
    assert_int_equal(mj_kernel_id_from_desc(&f->desc, &id), MOEJIT_OK);
    assert_int_equal(mj_jit_key(f->ctx, &id, ARCH, &plan, &f->key), MOEJIT_OK);
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(f->ctx, &f->desc, 1, ARCH, &r), MOEJIT_OK);
    assert_string_equal(r.key, f->key.hex);
    snprintf(f->path, sizeof f->path, "%s/v1/%.2s/%s.mjc", f->dir, f->key.hex, f->key.hex + 2);
    f->good = slurp(f->path, &f->len);
}

static void teardown(fixture *f)
{
    moejit_close(f->ctx);
    mj_key_free(&f->key);
    free(f->good);
    mjt_rmtree(f->dir);
}

/* Build through the library: returns 1 if it came from the disk. The cubin is checked. */
static int build(fixture *f)
{
    mj_kernel_id id;
    mj_built b;
    assert_int_equal(mj_kernel_id_from_desc(&f->desc, &id), MOEJIT_OK);
    moejit_status st = mj_jit_build(f->ctx, &id, ARCH, 0, &b);
    if (st != MOEJIT_OK) fail_msg("build: %s: %s", moejit_status_str(st), moejit_last_error(NULL));
    assert_true(b.cubin_len > 4 && !memcmp(b.cubin, "\x7f" "ELF", 4));
    const int from_disk = b.from_disk;
    mj_built_free(&b);
    return from_disk;
}

/* After damage: the build compiles (never loads the damaged file), counts one bad entry (when the
 * damage is visible as an entry), and leaves a valid entry in place. */
static void expect_replaced(fixture *f, const char *what, int counted_bad)
{
    moejit_stats s0, s1;
    moejit_ctx_stats(f->ctx, &s0);
    if (build(f)) fail_msg("%s: the damaged entry was loaded", what);
    moejit_ctx_stats(f->ctx, &s1);
    if (s1.bad_entries - s0.bad_entries != (uint64_t)counted_bad)
        fail_msg("%s: %llu bad entries counted", what, (unsigned long long)(s1.bad_entries - s0.bad_entries));
    assert_int_equal(s1.compiles - s0.compiles, 1);
    if (mj_cache_check_entry(f->key.hex, f->path) != MOEJIT_OK)
        fail_msg("%s: not replaced by a valid entry: %s", what, moejit_last_error(NULL));
    if (!build(f)) fail_msg("%s: the replacement is not used", what);
}

/* Every truncation of a real entry is rejected in memory; every cut inside the header and the
 * first sections, and a stride through the rest, is rejected by the store's reader (which removes
 * the file); every header offset goes through the library and is replaced. */
static void test_truncation(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 200);
    mj_entry_view v;
    for (size_t cut = 0; cut < f.len; cut++)
        if (mj_entry_decode(f.good, cut, &v) != MOEJIT_ERR_CORRUPT) fail_msg("a cut at %zu was accepted", cut);

    mj_cache *c;
    assert_int_equal(mj_cache_open(f.dir, MOEJIT_CACHE_RW, &c), MOEJIT_OK);
    int store_cuts = 0;
    for (size_t cut = 0; cut < f.len; cut += cut < 512 ? 1 : 997) {
        spill(f.path, f.good, cut);
        mj_cache_blob blob;
        if (mj_cache_load(c, f.key.hex, f.key.record, f.key.record_len, &blob) != MOEJIT_ERR_CORRUPT)
            fail_msg("the store loaded an entry cut at %zu", cut);
        assert_int_equal(access(f.path, F_OK), -1); /* removed */
        store_cuts++;
    }
    mj_cache_close(c);

    int library_cuts = 0;
    for (size_t cut = 0; cut <= MJ_ENTRY_HEADER_SIZE + 8; cut++) {
        spill(f.path, f.good, cut);
        char what[64];
        snprintf(what, sizeof what, "cut at %zu", cut);
        expect_replaced(&f, what, 1);
        library_cuts++;
    }
    fprintf(stderr, "[ figures  ] truncation: entry of %zu bytes; cuts rejected in memory=%zu, by the store=%d, "
            "through the library (recompiled, replaced)=%d; loaded=0\n", f.len, f.len, store_cuts, library_cuts);
    teardown(&f);
}

/* Random byte flips (and bursts of random bytes) anywhere in the file: the store rejects and
 * removes every one; a sample goes through the library and is replaced. */
static void test_byte_flips(void **state)
{
    (void)state;
    enum { STORE_FLIPS = 5000, LIBRARY_FLIPS = 30 };
    fixture f;
    setup(&f, 201);
    mjt_rng rng;
    mjt_rng_init(&rng);
    uint8_t *b = malloc(f.len);
    assert_non_null(b);
    mj_cache *c;
    assert_int_equal(mj_cache_open(f.dir, MOEJIT_CACHE_RW, &c), MOEJIT_OK);
    int bursts = 0;
    for (int i = 0; i < STORE_FLIPS; i++) {
        memcpy(b, f.good, f.len);
        size_t at = (size_t)(mjt_next(&rng) % f.len);
        if (i % 10 == 9) { /* a burst: up to 64 random bytes */
            const size_t n = 1 + (size_t)(mjt_next(&rng) % 64);
            int changed = 0;
            for (size_t k = 0; k < n && at + k < f.len; k++) {
                const uint8_t x = (uint8_t)mjt_next(&rng);
                changed |= x != b[at + k];
                b[at + k] = x;
            }
            if (!changed) b[at] ^= 0x80;
            bursts++;
        } else {
            b[at] ^= (uint8_t)(1u << (mjt_next(&rng) % 8));
        }
        spill(f.path, b, f.len);
        mj_cache_blob blob;
        if (mj_cache_load(c, f.key.hex, f.key.record, f.key.record_len, &blob) != MOEJIT_ERR_CORRUPT)
            fail_msg("flip %d at byte %zu was loaded", i, at);
        if (i % 100 == 0) { /* `cache verify` sees it too */
            spill(f.path, b, f.len);
            assert_int_not_equal(mj_cache_check_entry(f.key.hex, f.path), MOEJIT_OK);
        }
    }
    mj_cache_close(c);
    for (int i = 0; i < LIBRARY_FLIPS; i++) {
        memcpy(b, f.good, f.len);
        b[(size_t)(mjt_next(&rng) % f.len)] ^= (uint8_t)(1u << (mjt_next(&rng) % 8));
        spill(f.path, b, f.len);
        expect_replaced(&f, "byte flip", 1);
    }
    free(b);
    fprintf(stderr, "[ figures  ] byte flips: %d in the store (%d bursts of random bytes), %d through the library; "
            "loaded=0 crashes=0\n", STORE_FLIPS, bursts, LIBRARY_FLIPS);
    teardown(&f);
}

/* The key record with field `which` replaced by `value`. */
static mj_key forged_key(const mj_key *key, int which, const char *value)
{
    mj_strbuf sb;
    mj_sb_init(&sb);
    for (int i = 0; i < MJ_KEY_FIELDS; i++) {
        const uint8_t *field;
        size_t n;
        assert_int_equal(mj_key_record_field(key->record, key->record_len, i, &field, &n), 0);
        if (i == which) mj_sb_field(&sb, value, strlen(value));
        else mj_sb_field(&sb, field, n);
    }
    assert_true(mj_sb_ok(&sb));
    mj_key k;
    k.record = (uint8_t *)mj_sb_take(&sb, &k.record_len);
    mj_entry_key_of(k.record, k.record_len, k.hex);
    return k;
}

/* The valid entry re-encoded with another key record (its checksum is right). */
static uint8_t *reencode(const uint8_t *good, size_t len, const mj_key *k, size_t *out_len)
{
    mj_entry_view v;
    assert_int_equal(mj_entry_decode(good, len, &v), MOEJIT_OK);
    v.key_record = k->record;
    v.key_record_len = k->record_len;
    uint8_t *blob;
    assert_int_equal(mj_entry_encode(&v, &blob, out_len), MOEJIT_OK);
    return blob;
}

/* After an upgrade of NVRTC (another build id) or of moejit (another library version), old
 * entries have other keys: never looked up, left for gc. Copied under the current key's name they
 * are rejected (the key record differs) and replaced. A future entry format is rejected too. */
static void test_stale_and_foreign_entries(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 202);
    const struct {
        const char *what;
        int field;
        const char *value;
    } stale[] = {{"another NVRTC build id", MJ_KEY_FIELD_NVRTC_BUILD, "0123456789abcdef0123456789abcdef01234567"},
                 {"another NVRTC version", MJ_KEY_FIELD_NVRTC_VERSION, "12.4.99"},
                 {"another moejit version", MJ_KEY_FIELD_LIBRARY, "0.0.9"},
                 {"another key schema", MJ_KEY_FIELD_SCHEMA, "moejit-key-0"}};
    mj_cache *c;
    assert_int_equal(mj_cache_open(f.dir, MOEJIT_CACHE_RW, &c), MOEJIT_OK);
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        mj_key old = forged_key(&f.key, stale[i].field, stale[i].value);
        assert_string_not_equal(old.hex, f.key.hex);
        size_t n;
        uint8_t *blob = reencode(f.good, f.len, &old, &n);
        /* (a) under its own name: a valid entry of the old build, which we never use */
        char old_path[4300];
        snprintf(old_path, sizeof old_path, "%s/v1/%.2s/%s.mjc", f.dir, old.hex, old.hex + 2);
        char sub[4300];
        snprintf(sub, sizeof sub, "%s/v1/%.2s", f.dir, old.hex);
        mkdir(sub, 0777);
        spill(old_path, blob, n);
        assert_int_equal(mj_cache_check_entry(old.hex, old_path), MOEJIT_OK);
        unlink(f.path);
        if (build(&f)) fail_msg("%s: a build came from the disk with no entry of its key", stale[i].what);
        assert_int_equal(mj_cache_check_entry(old.hex, old_path), MOEJIT_OK); /* untouched */
        /* (b) under the current key's name: rejected, replaced */
        spill(f.path, blob, n);
        expect_replaced(&f, stale[i].what, 1);
        free(blob);
        mj_key_free(&old);
    }
    mj_cache_close(c);

    /* a future format version (same layout otherwise, checksum right) */
    uint8_t *b = malloc(f.len);
    memcpy(b, f.good, f.len);
    b[8] = 2;
    spill(f.path, b, f.len);
    expect_replaced(&f, "format version 2", 1);
    free(b);

    /* a valid entry of another kernel, under this key's name */
    moejit_kernel_desc other = f.desc;
    other.route.num_experts = 203;
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(f.ctx, &other, 1, ARCH, &r), MOEJIT_OK);
    char other_path[4300];
    snprintf(other_path, sizeof other_path, "%s/v1/%.2s/%.30s.mjc", f.dir, r.key, r.key + 2);
    size_t n;
    b = slurp(other_path, &n);
    spill(f.path, b, n);
    free(b);
    expect_replaced(&f, "another key's entry", 1);
    teardown(&f);
}

/* Files that are not entries where an entry belongs: no hang (a FIFO), no crash, no huge read;
 * each is a miss, removed where it can be, and replaced. */
static void test_not_entries(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 204);

    unlink(f.path);
    assert_int_equal(mkfifo(f.path, 0644), 0);
    expect_replaced(&f, "a FIFO", 1);

    unlink(f.path);
    assert_int_equal(mkdir(f.path, 0755), 0);
    expect_replaced(&f, "an empty directory", 1);

    unlink(f.path);
    assert_int_equal(symlink("/dev/zero", f.path), 0);
    expect_replaced(&f, "a link to /dev/zero", 1);

    unlink(f.path);
    assert_int_equal(symlink(f.path, f.path), 0); /* ELOOP: unreadable, a miss, not "bad" */
    expect_replaced(&f, "a link to itself", 0);

    unlink(f.path);
    int fd = open(f.path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)MJ_ENTRY_MAX_BYTES + 4096), 0); /* sparse */
    close(fd);
    expect_replaced(&f, "a file over the size limit", 1);

    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_byte_flips),
        cmocka_unit_test(test_stale_and_foreign_entries),
        cmocka_unit_test(test_not_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
