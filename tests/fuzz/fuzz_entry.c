/* Fuzz the cache entry reader: the in-memory decoder, header parser, metadata and key-record
 * field readers, and the store's file readers on the same bytes written as an entry file (load
 * with its key check and bad-entry removal, peek as `cache ls` does, full verify, prefix lookup,
 * gc). */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/entry.h"
#include "jit/key.h"
#include "cache/maintenance.h"
#include "cache/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_root[4096];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void cleanup(void)
{
    if (g_root[0]) nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/moejit-fuzz-entry-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g_root)) abort();
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_root[0]) setup();
    char buf[64];
    mj_entry_view v;
    const uint8_t *f;
    size_t fl;
    /* in memory */
    if (size >= MJ_ENTRY_HEADER_SIZE) {
        mj_entry_header h;
        (void)mj_entry_header_parse(data, &h);
    }
    const int decoded = mj_entry_decode(data, size, &v) == MOEJIT_OK;
    if (decoded) {
        if (v.key_record + v.key_record_len > data + size || v.cubin + v.cubin_len > data + size) abort();
        static const char *const fields[] = {"entry", "op", "shape", "arch", "nvrtc", "kernel", "", "e"};
        for (int i = 0; i < 8; i++) {
            (void)mj_meta_get(v.meta, v.meta_len, fields[i], buf, sizeof buf);
            (void)mj_meta_get(v.meta, v.meta_len, fields[i], buf, 1);
        }
        for (int i = 0; i < MJ_KEY_FIELDS + 2; i++) (void)mj_key_record_field(v.key_record, v.key_record_len, i, &f, &fl);
    }
    (void)mj_meta_get((const char *)data, size, "entry", buf, sizeof buf);
    for (int i = 0; i < MJ_KEY_FIELDS + 2; i++) (void)mj_key_record_field(data, size, i, &f, &fl);

    /* as a file in a store: the key is its record's when it decodes (so it can be a hit) */
    char key[33];
    if (decoded) mj_entry_key_of(v.key_record, v.key_record_len, key);
    else snprintf(key, sizeof key, "0123456789abcdef0123456789abcdef");
    mj_cache *c;
    if (mj_cache_open(g_root, MOEJIT_CACHE_RW, &c) != MOEJIT_OK) abort();
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/v1", g_root);
    mkdir(dir, 0777);
    snprintf(dir, sizeof dir, "%s/v1/%.2s", g_root, key);
    mkdir(dir, 0777);
    if (mj_cache_entry_path(c, key, path, sizeof path)) abort();
    FILE *out = fopen(path, "wb");
    if (!out) abort();
    if (size && fwrite(data, 1, size, out) != size) abort();
    fclose(out);

    mj_entry_summary sum;
    char meta[256];
    (void)mj_cache_peek(path, &sum, meta, sizeof meta);
    (void)mj_cache_check_entry(key, path);
    mj_cache_blob blob;
    if (mj_cache_read_file(path, &blob) == MOEJIT_OK) mj_cache_blob_free(&blob);
    char found[33];
    (void)mj_cache_find_prefix(c, "0", found);
    mj_cache_verify_stats vs;
    (void)mj_cache_verify(c, 0, NULL, NULL, &vs);
    if (decoded) { /* the record of the file itself: a hit unless the view lies */
        if (mj_cache_load(c, key, v.key_record, v.key_record_len, &blob) == MOEJIT_OK) mj_cache_blob_free(&blob);
    } else { /* a mismatching record: a miss, and the bad file is removed */
        if (mj_cache_load(c, key, "record", 6, &blob) == MOEJIT_OK) abort();
    }
    mj_cache_gc_stats gs;
    (void)mj_cache_gc(c, 1, NULL, 0, NULL, NULL, &gs); /* removes whatever is left */
    mj_cache_close(c);
    unlink(path);
    return 0;
}
