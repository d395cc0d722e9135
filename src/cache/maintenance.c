#include "cache/maintenance.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

/* ---- listing ---------------------------------------------------------------------------------- */

typedef struct entry_info {
    char key[33];
    uint64_t bytes;
    struct timespec used; /* mtime: the last-use stamp */
} entry_info;

typedef struct entry_list {
    entry_info *v;
    size_t n, cap;
    int oom;
} entry_list;

static int collect(const char *key, const char *path, const struct stat *st, void *user)
{
    (void)path;
    entry_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        entry_info *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return 1;
        }
        l->v = v, l->cap = cap;
    }
    entry_info *e = &l->v[l->n++];
    memcpy(e->key, key, sizeof e->key);
    e->bytes = (uint64_t)st->st_size;
    e->used = st->st_mtim;
    return 0;
}

static moejit_status list_entries(mj_cache *c, entry_list *l)
{
    memset(l, 0, sizeof *l);
    moejit_status st = mj_cache_foreach(c, collect, l);
    if (st == MOEJIT_OK && l->oom) st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory listing the cache");
    if (st != MOEJIT_OK) free(l->v);
    return st;
}

static moejit_status need_writable(mj_cache *c, const char *what)
{
    if (mj_cache_writable(c)) return MOEJIT_OK;
    return mj_fail(MOEJIT_ERR_IO, "%s: the cache %s is not writable (MOEJIT_CACHE=ro or off, or a write failed)", what,
                   mj_cache_root(c)[0] ? mj_cache_root(c) : "(off)");
}

/* unlink, where losing a race to another remover is fine. 1 removed, 0 gone already, -1 error. */
static int remove_file(const char *path)
{
    if (unlink(path) == 0) return 1;
    if (errno == ENOENT) return 0;
    mj_warn("cannot remove %s: %s", path, strerror(errno));
    return -1;
}

/* ---- prefix lookup ---------------------------------------------------------------------------- */

enum { AMBIGUOUS_SHOWN = 8 };

typedef struct prefix_search {
    char prefix[33];
    size_t len;
    char first[33];
    size_t matches;
    char shown[AMBIGUOUS_SHOWN][33];
} prefix_search;

static int match_prefix(const char *key, const char *path, const struct stat *st, void *user)
{
    (void)path, (void)st;
    prefix_search *s = user;
    if (strncmp(key, s->prefix, s->len)) return 0;
    if (s->matches < AMBIGUOUS_SHOWN) memcpy(s->shown[s->matches], key, 33);
    if (s->matches++ == 0) memcpy(s->first, key, 33);
    return 0;
}

static int cmp_key33(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

moejit_status mj_cache_find_prefix(mj_cache *c, const char *prefix, char key_out[33])
{
    key_out[0] = '\0';
    const size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n > 32)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "key \"%s\" must be 1 to 32 hex digits", prefix ? prefix : "");
    prefix_search s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)prefix[i]))
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "key \"%s\" is not hexadecimal (at '%c')", prefix, prefix[i]);
        s.prefix[i] = (char)tolower((unsigned char)prefix[i]);
    }
    s.len = n;
    if (!mj_cache_readable(c)) return mj_fail(MOEJIT_ERR_NOT_FOUND, "the disk cache is off");
    moejit_status st = mj_cache_foreach(c, match_prefix, &s);
    if (st != MOEJIT_OK) return st;
    if (s.matches == 0) return mj_fail(MOEJIT_ERR_NOT_FOUND, "no cache entry has a key starting with \"%s\" in %s", s.prefix, mj_cache_root(c));
    if (s.matches > 1) {
        const size_t shown = s.matches < AMBIGUOUS_SHOWN ? s.matches : AMBIGUOUS_SHOWN;
        qsort(s.shown, shown, sizeof s.shown[0], cmp_key33);
        mj_fail(MOEJIT_ERR_AMBIGUOUS, "key prefix \"%s\" matches %zu entries; give more digits:", s.prefix, s.matches);
        for (size_t i = 0; i < shown; i++) mj_error_append(" %s", s.shown[i]);
        if (s.matches > shown) mj_error_append(" …");
        return MOEJIT_ERR_AMBIGUOUS;
    }
    memcpy(key_out, s.first, 33);
    return MOEJIT_OK;
}

/* ---- verify ----------------------------------------------------------------------------------- */

moejit_status mj_cache_check_entry(const char *key_hex, const char *path)
{
    mj_cache_blob blob;
    moejit_status st = mj_cache_read_file(path, &blob);
    if (st != MOEJIT_OK) return st;
    char hex[33], name[128];
    mj_entry_key_of(blob.view.key_record, blob.view.key_record_len, hex);
    if (strcmp(hex, key_hex))
        st = mj_fail(MOEJIT_ERR_CORRUPT, "%s: its key record hashes to %s, not to the file's name %s", path, hex, key_hex);
    else if (!mj_meta_get(blob.view.meta, blob.view.meta_len, "entry", name, sizeof name) || !name[0])
        st = mj_fail(MOEJIT_ERR_CORRUPT, "%s: the metadata names no entry point", path);
    else if (blob.view.cubin_len < 4 || memcmp(blob.view.cubin, "\x7f" "ELF", 4))
        st = mj_fail(MOEJIT_ERR_CORRUPT, "%s: the %zu-byte cubin is not an ELF image", path, blob.view.cubin_len);
    mj_cache_blob_free(&blob);
    return st;
}

typedef struct verify_state {
    mj_cache *c;
    int remove_bad;
    mj_cache_verify_fn fn;
    void *user;
    mj_cache_verify_stats stats;
} verify_state;

static int verify_one(const char *key, const char *path, const struct stat *st_, void *user)
{
    (void)st_;
    verify_state *v = user;
    v->stats.checked++;
    moejit_status st = mj_cache_check_entry(key, path);
    int removed = 0;
    if (st != MOEJIT_OK) {
        v->stats.bad++;
        if (v->remove_bad && remove_file(path) >= 0) removed = 1, v->stats.removed++;
    }
    if (v->fn) v->fn(key, path, st, st == MOEJIT_OK ? "" : mj_error_text(), removed, v->user);
    return 0;
}

moejit_status mj_cache_verify(mj_cache *c, int remove_bad, mj_cache_verify_fn fn, void *user,
                              mj_cache_verify_stats *out)
{
    verify_state v = {.c = c, .remove_bad = remove_bad, .fn = fn, .user = user};
    if (out) memset(out, 0, sizeof *out);
    moejit_status st = remove_bad ? need_writable(c, "cache verify --remove") : MOEJIT_OK;
    if (st == MOEJIT_OK) st = mj_cache_foreach(c, verify_one, &v);
    if (out) *out = v.stats;
    return st;
}

/* ---- gc --------------------------------------------------------------------------------------- */

/* Oldest use first; equal stamps by key, so the order never depends on the directory's. */
static int by_last_use(const void *a, const void *b)
{
    const entry_info *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec) return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    if (x->used.tv_nsec != y->used.tv_nsec) return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
    return strcmp(x->key, y->key);
}

moejit_status mj_cache_gc(mj_cache *c, uint64_t max_bytes, const char *keep_key, double temp_grace_seconds,
                          mj_cache_gc_fn fn, void *user, mj_cache_gc_stats *out)
{
    mj_cache_gc_stats s;
    memset(&s, 0, sizeof s);
    if (out) *out = s;
    moejit_status st = need_writable(c, "cache gc");
    if (st != MOEJIT_OK) return st;
    s.temps_removed = mj_cache_sweep_temps(c, temp_grace_seconds);
    entry_list l;
    if ((st = list_entries(c, &l)) != MOEJIT_OK) return st;
    for (size_t i = 0; i < l.n; i++) s.bytes_before += l.v[i].bytes;
    s.entries_before = l.n;
    uint64_t total = s.bytes_before;
    if (max_bytes > 0 && total > max_bytes) {
        qsort(l.v, l.n, sizeof *l.v, by_last_use);
        for (size_t i = 0; i < l.n && total > max_bytes; i++) {
            if (keep_key && !strcmp(l.v[i].key, keep_key)) continue;
            char path[4200];
            if (mj_cache_entry_path(c, l.v[i].key, path, sizeof path)) continue;
            const int r = remove_file(path);
            if (r < 0) continue;
            total -= l.v[i].bytes; /* r == 0: another process removed it; it is gone either way */
            if (r > 0) {
                s.entries_removed++;
                s.bytes_removed += l.v[i].bytes;
                if (fn) fn(l.v[i].key, l.v[i].bytes, l.v[i].used.tv_sec, user);
            }
        }
    }
    s.entries_after = s.entries_before - s.entries_removed;
    s.bytes_after = s.bytes_before - s.bytes_removed;
    free(l.v);
    if (out) *out = s;
    return MOEJIT_OK;
}

moejit_status mj_cache_clear(mj_cache *c, uint64_t *entries_removed, uint64_t *bytes_removed)
{
    uint64_t n = 0, bytes = 0;
    moejit_status st = need_writable(c, "cache clear");
    entry_list l = {0};
    if (st == MOEJIT_OK) st = list_entries(c, &l);
    for (size_t i = 0; st == MOEJIT_OK && i < l.n; i++) {
        char path[4200];
        if (mj_cache_entry_path(c, l.v[i].key, path, sizeof path) == 0 && remove_file(path) > 0) {
            n++;
            bytes += l.v[i].bytes;
        }
    }
    if (st == MOEJIT_OK) mj_cache_sweep_temps(c, MJ_CACHE_TEMP_GRACE_SECONDS);
    free(l.v);
    if (entries_removed) *entries_removed = n;
    if (bytes_removed) *bytes_removed = bytes;
    return st;
}

/* ---- sizes ------------------------------------------------------------------------------------ */

int mj_parse_size(const char *text, uint64_t *out)
{
    if (!text || !isdigit((unsigned char)text[0])) return -1;
    uint64_t v = 0;
    const char *p = text;
    for (; isdigit((unsigned char)*p); p++) {
        const uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    int shift = 0;
    switch (toupper((unsigned char)*p)) {
    case '\0': break;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    case 'B': shift = 0; break;
    default: return -1;
    }
    if (*p) {
        const char *unit = p + 1;
        if (toupper((unsigned char)*p) == 'B') {
            if (*unit) return -1;
        } else if (*unit && strcasecmp(unit, "B") && strcasecmp(unit, "iB")) {
            return -1;
        }
    }
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}
