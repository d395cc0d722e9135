/* moejit cache: inspect and maintain the disk cache. The store operations live in cache/
 * (store.c, maintenance.c); this file parses flags and prints. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "jit/context.h"
#include "cache/entry.h"
#include "jit/key.h"
#include "cache/maintenance.h"
#include "cache/store.h"

static const char cache_help[] =
    "usage: moejit cache [--cache-dir DIR] <subcommand> [options]\n"
    "Inspect and maintain the disk cache of compiled kernels.\n\n"
    "  ls                    one line per entry: key, op, arch, size, age, last use, shape\n"
    "  show KEY              everything in an entry's header, key record and metadata\n"
    "  source KEY            the entry's generated CUDA C++, to stdout\n"
    "  cubin KEY [-o FILE]   the raw cubin, to stdout or FILE (-o, --output; then `cuobjdump -sass FILE`)\n"
    "  verify [--remove]     check every entry in full (size, checksum, key, ELF); with --remove\n"
    "                        delete the bad ones. Exit status 1 while a bad entry remains\n"
    "  gc [--max-bytes N]    remove the least recently used entries until the cache holds at most N\n"
    "                        bytes (suffixes K, M, G, T; default MOEJIT_CACHE_MAX_BYTES), and temp\n"
    "                        files of interrupted writes older than an hour\n"
    "  clear                 remove every entry\n\n"
    "KEY is a key as `cache ls` prints it, or any prefix of it that names one entry.\n"
    "\"Last use\" is the entry's modification time: set when it is written and refreshed on every\n"
    "load from disk (never the access time), so gc removes what has not been loaded for longest.\n"
    "The directory is --cache-dir DIR, else MOEJIT_CACHE_DIR, else $XDG_CACHE_HOME/moejit or\n"
    "~/.cache/moejit. With MOEJIT_CACHE=ro the commands that delete refuse to run.\n"
    "Exit status 0 on success, 1 if the operation failed (or verify left a bad entry), 2 for bad usage.\n";

static void human_size(double bytes, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

static void human_age(double seconds, char *buf, size_t cap)
{
    if (seconds < 0) seconds = 0;
    if (seconds < 120) snprintf(buf, cap, "%.0fs", seconds);
    else if (seconds < 7200) snprintf(buf, cap, "%.0fm", seconds / 60);
    else if (seconds < 172800) snprintf(buf, cap, "%.0fh", seconds / 3600);
    else snprintf(buf, cap, "%.0fd", seconds / 86400);
}

static void utc_time(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm)) snprintf(buf, cap, "%lld", (long long)t);
}

/* Report a failed store operation; usage-like failures (bad or ambiguous key) exit 2. */
static int fail(const char *what, moejit_status st)
{
    cli_report(what, st);
    return st == MOEJIT_ERR_INVALID_ARGUMENT || st == MOEJIT_ERR_AMBIGUOUS ? CLI_USAGE : CLI_FAILED;
}

/* ---- ls ---------------------------------------------------------------------------------------- */

typedef struct ls_row {
    char key[33];
    char *line;
} ls_row;

typedef struct ls_state {
    ls_row *rows;
    size_t n, cap;
    int oom;
} ls_state;

static int collect(const char *key, const char *path, const struct stat *st, void *user)
{
    ls_state *s = user;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        ls_row *rows = realloc(s->rows, cap * sizeof *rows);
        if (!rows) return s->oom = 1;
        s->rows = rows, s->cap = cap;
    }
    mj_entry_summary sum;
    char meta[4096], op[32], arch[32], shape[1024], size[32], age[32], used[32], line[1400];
    if (mj_cache_peek(path, &sum, meta, sizeof meta) != MOEJIT_OK) {
        snprintf(line, sizeof line, "%s  (unreadable or corrupt: run `moejit cache verify`)", key);
    } else {
        mj_meta_get(meta, strlen(meta), "op", op, sizeof op);
        mj_meta_get(meta, strlen(meta), "arch", arch, sizeof arch);
        mj_meta_get(meta, strlen(meta), "shape", shape, sizeof shape);
        human_size((double)sum.file_size, size, sizeof size);
        const double now = (double)time(NULL);
        human_age(now - (double)sum.created, age, sizeof age);
        human_age(now - (double)st->st_mtime, used, sizeof used);
        snprintf(line, sizeof line, "%s  %-7s %-8s %10s %6s %6s  %s", key, op, arch, size, age, used, shape);
    }
    ls_row *r = &s->rows[s->n];
    memcpy(r->key, key, sizeof r->key);
    if (!(r->line = strdup(line))) return s->oom = 1;
    s->n++;
    return 0;
}

static int by_key(const void *a, const void *b) { return strcmp(((const ls_row *)a)->key, ((const ls_row *)b)->key); }

static int cache_ls(mj_cache *c)
{
    ls_state s = {0};
    moejit_status st = mj_cache_foreach(c, collect, &s);
    int rc = CLI_OK;
    if (st != MOEJIT_OK) rc = fail("ls", st);
    else if (s.oom) cli_error("ls: out of memory"), rc = CLI_FAILED;
    else {
        qsort(s.rows, s.n, sizeof *s.rows, by_key);
        printf("%-32s  %-7s %-8s %10s %6s %6s  %s\n", "KEY", "OP", "ARCH", "SIZE", "AGE", "USED", "SHAPE");
        for (size_t i = 0; i < s.n; i++) puts(s.rows[i].line);
        printf("%zu entr%s in %s\n", s.n, s.n == 1 ? "y" : "ies", mj_cache_root(c));
    }
    for (size_t i = 0; i < s.n; i++) free(s.rows[i].line);
    free(s.rows);
    return rc;
}

/* ---- one entry: show, source, cubin ---------------------------------------------------------- */

static int entry_path_of(mj_cache *c, const char *what, const char *prefix, char *key, char *path, size_t cap)
{
    moejit_status st = mj_cache_find_prefix(c, prefix, key);
    if (st != MOEJIT_OK) return fail(what, st);
    if (mj_cache_entry_path(c, key, path, cap)) {
        cli_error("%s: the path of %s is too long", what, key);
        return CLI_FAILED;
    }
    return CLI_OK;
}

/* Print a key record field: text as is, the source by size and hash (it is shown by `source`). */
static void show_record_field(const mj_cache_blob *b, int i, const char *label)
{
    const uint8_t *f;
    size_t n;
    if (mj_key_record_field(b->view.key_record, b->view.key_record_len, i, &f, &n)) {
        printf("  %-16s (missing)\n", label);
        return;
    }
    if (i == MJ_KEY_FIELD_SOURCE) {
        const int same = n == b->view.source_len && !memcmp(f, b->view.source, n);
        printf("  %-16s %zu bytes, %s the stored source\n", label, n, same ? "identical to" : "DIFFERENT FROM");
        return;
    }
    /* Options are one per line in the record: show them on one line. */
    while (n && (f[n - 1] == '\n' || f[n - 1] == ' ')) n--;
    printf("  %-16s ", label);
    for (size_t j = 0; j < n; j++) putchar(f[j] == '\n' ? ' ' : f[j]);
    putchar('\n');
}

static int cache_show(mj_cache *c, const char *prefix)
{
    char key[33], path[4200];
    int rc = entry_path_of(c, "show", prefix, key, path, sizeof path);
    if (rc != CLI_OK) return rc;
    struct stat st;
    mj_entry_summary sum;
    char meta[1 << 14], when[64];
    printf("key              %s\npath             %s\n", key, path);
    if (stat(path, &st) == 0) {
        utc_time(st.st_mtime, when, sizeof when);
        printf("file size        %lld bytes\nlast use         %s (modification time)\n", (long long)st.st_size, when);
    }
    moejit_status ps = mj_cache_peek(path, &sum, meta, sizeof meta);
    if (ps == MOEJIT_OK) {
        utc_time((time_t)sum.created, when, sizeof when);
        printf("format           %u, header %u bytes\ncreated          %s\n", MJ_ENTRY_FORMAT, MJ_ENTRY_HEADER_SIZE, when);
    }
    const moejit_status vs = mj_cache_check_entry(key, path);
    if (vs != MOEJIT_OK) {
        printf("verification     FAILED: %s\n", moejit_last_error(NULL));
        if (ps == MOEJIT_OK) printf("metadata (unverified):\n%s", meta);
        return CLI_FAILED;
    }
    mj_cache_blob b;
    moejit_status st2 = mj_cache_read_file(path, &b);
    if (st2 != MOEJIT_OK) return fail("show", st2);
    printf("verification     ok (size, XXH3-64 checksum, key record hash, ELF cubin)\n");
    printf("sections         key record %zu, metadata %zu, source %zu, cubin %zu bytes\n", b.view.key_record_len,
           b.view.meta_len, b.view.source_len, b.view.cubin_len);
    printf("key record:\n");
    static const char *const labels[MJ_KEY_FIELDS] = {"schema", "library", "source", "nvrtc options",
                                                      "arch", "nvrtc version", "nvrtc build id"};
    for (int i = 0; i < MJ_KEY_FIELDS; i++) show_record_field(&b, i, labels[i]);
    printf("metadata:\n");
    const char *m = b.view.meta, *end = m + b.view.meta_len;
    while (m < end) {
        const char *nl = memchr(m, '\n', (size_t)(end - m));
        const size_t n = nl ? (size_t)(nl - m) : (size_t)(end - m);
        printf("  %.*s\n", (int)n, m);
        m += n + 1;
    }
    mj_cache_blob_free(&b);
    return CLI_OK;
}

/* `source` and `cubin`: one verified section, raw. */
static int cache_section(mj_cache *c, const char *prefix, int cubin, const char *output)
{
    const char *what = cubin ? "cubin" : "source";
    if (cubin && !output && isatty(STDOUT_FILENO)) {
        cli_error("cubin: the cubin is binary; redirect stdout to a file or pass -o FILE");
        return CLI_USAGE;
    }
    char key[33], path[4200];
    int rc = entry_path_of(c, what, prefix, key, path, sizeof path);
    if (rc != CLI_OK) return rc;
    moejit_status st = mj_cache_check_entry(key, path);
    mj_cache_blob b = {0};
    if (st == MOEJIT_OK) st = mj_cache_read_file(path, &b);
    if (st != MOEJIT_OK) return fail(what, st);
    const void *data = cubin ? (const void *)b.view.cubin : (const void *)b.view.source;
    const size_t len = cubin ? b.view.cubin_len : b.view.source_len;
    FILE *f = output ? fopen(output, "wb") : stdout;
    if (!f) {
        cli_error("%s: -o: \"%s\": cannot create it: %s", what, output, strerror(errno));
        mj_cache_blob_free(&b);
        return CLI_FAILED;
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok = (output ? fclose(f) : fflush(f)) == 0 && ok;
    mj_cache_blob_free(&b);
    if (!ok) {
        cli_error("%s: writing %s failed: %s", what, output ? output : "stdout", strerror(errno));
        return CLI_FAILED;
    }
    if (output) fprintf(stderr, "wrote %zu bytes to %s\n", len, output);
    return CLI_OK;
}

/* ---- verify, gc, clear ------------------------------------------------------------------------- */

static void on_verify(const char *key, const char *path, moejit_status st, const char *detail, int removed, void *user)
{
    (void)path, (void)user;
    if (st != MOEJIT_OK) printf("%-8s %s  %s: %s\n", removed ? "removed" : "bad", key, moejit_status_str(st), detail);
}

static int cache_verify(mj_cache *c, int remove_bad)
{
    mj_cache_verify_stats s;
    moejit_status st = mj_cache_verify(c, remove_bad, on_verify, NULL, &s);
    if (st != MOEJIT_OK) return fail("verify", st);
    printf("verify: %zu entr%s checked, %zu bad, %zu removed (%s)\n", s.checked, s.checked == 1 ? "y" : "ies", s.bad,
           s.removed, mj_cache_root(c));
    if (s.bad > s.removed && !remove_bad) printf("run `moejit cache verify --remove` to delete the bad entries\n");
    return s.bad > s.removed ? CLI_FAILED : CLI_OK;
}

static void on_gc(const char *key, uint64_t bytes, time_t last_use, void *user)
{
    (void)user;
    char size[32], age[32];
    human_size((double)bytes, size, sizeof size);
    human_age(difftime(time(NULL), last_use), age, sizeof age);
    printf("removed  %s  %10s  last used %s ago\n", key, size, age);
}

static int cache_gc(mj_cache *c, uint64_t max_bytes)
{
    mj_cache_gc_stats s;
    moejit_status st = mj_cache_gc(c, max_bytes, NULL, MJ_CACHE_TEMP_GRACE_SECONDS, on_gc, NULL, &s);
    if (st != MOEJIT_OK) return fail("gc", st);
    char before[32], after[32], removed[32], limit[32];
    human_size((double)s.bytes_before, before, sizeof before);
    human_size((double)s.bytes_after, after, sizeof after);
    human_size((double)s.bytes_removed, removed, sizeof removed);
    if (max_bytes) {
        human_size((double)max_bytes, limit, sizeof limit);
        printf("gc: limit %s: %llu entries (%s) before, %llu (%s) after; removed %llu (%s) and %llu stale temp file%s\n",
               limit, (unsigned long long)s.entries_before, before, (unsigned long long)s.entries_after, after,
               (unsigned long long)s.entries_removed, removed, (unsigned long long)s.temps_removed,
               s.temps_removed == 1 ? "" : "s");
    } else {
        printf("gc: no size limit (--max-bytes N or MOEJIT_CACHE_MAX_BYTES): %llu entries (%s) kept; removed %llu stale "
               "temp file%s\n",
               (unsigned long long)s.entries_before, before, (unsigned long long)s.temps_removed,
               s.temps_removed == 1 ? "" : "s");
    }
    return CLI_OK;
}

static int cache_clear(mj_cache *c)
{
    uint64_t n, bytes;
    moejit_status st = mj_cache_clear(c, &n, &bytes);
    if (st != MOEJIT_OK) return fail("clear", st);
    char size[32];
    human_size((double)bytes, size, sizeof size);
    printf("clear: removed %llu entr%s (%s) from %s\n", (unsigned long long)n, n == 1 ? "y" : "ies", size,
           mj_cache_root(c));
    return CLI_OK;
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

enum { OPT_CACHE_DIR = 3000, OPT_REMOVE, OPT_MAX_BYTES };

typedef struct sub {
    const char *name;
    int takes_key;
    const char *flags; /* the only flags it accepts besides --cache-dir and --help */
} sub;

static const sub k_subs[] = {
    {"ls", 0, ""}, {"show", 1, ""}, {"source", 1, ""}, {"cubin", 1, "-o"},
    {"verify", 0, "--remove"}, {"gc", 0, "--max-bytes"}, {"clear", 0, ""},
};

int cmd_cache(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"remove", no_argument, NULL, OPT_REMOVE},
        {"max-bytes", required_argument, NULL, OPT_MAX_BYTES},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *cache_dir = NULL, *output = NULL, *max_text = NULL, *positional[3];
    int remove_bad = 0, n_pos = 0, c;
    optind = 1;
    /* Flags may come before or after the subcommand ("-" in the optstring keeps the order). */
    while ((c = getopt_long(argc, argv, "-ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(cache_help, stdout); return CLI_OK;
        case OPT_CACHE_DIR:
            if (cli_nonempty("--cache-dir", optarg)) return CLI_USAGE;
            cache_dir = optarg;
            break;
        case OPT_REMOVE: remove_bad = 1; break;
        case OPT_MAX_BYTES: max_text = optarg; break;
        case 'o': output = optarg; break;
        case 1:
            if (n_pos == 3) {
                cli_error("unexpected argument \"%s\"", optarg);
                return cli_usage_hint();
            }
            positional[n_pos++] = optarg;
            break;
        default: return cli_usage_hint(); /* getopt said why */
        }
    }
    if (n_pos == 0) {
        cli_error("a subcommand is required (ls, show, source, cubin, verify, gc, clear)");
        return cli_usage_hint();
    }
    const sub *s = NULL;
    for (size_t i = 0; i < sizeof k_subs / sizeof k_subs[0]; i++)
        if (!strcmp(positional[0], k_subs[i].name)) s = &k_subs[i];
    if (!s) {
        cli_error("unknown subcommand \"%s\" (ls, show, source, cubin, verify, gc, clear)", positional[0]);
        return cli_usage_hint();
    }
    if (n_pos != 1 + s->takes_key) {
        if (s->takes_key && n_pos == 1) cli_error("%s: a KEY (or a prefix of one) is required", s->name);
        else cli_error("%s: unexpected argument \"%s\"", s->name, positional[n_pos - 1]);
        return cli_usage_hint();
    }
    const struct {
        int given;
        const char *flag;
    } flags[] = {{remove_bad, "--remove"}, {max_text != NULL, "--max-bytes"}, {output != NULL, "-o"}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].given && strcmp(s->flags, flags[i].flag)) {
            cli_error("%s: %s applies to `cache %s` only", s->name, flags[i].flag,
                      !strcmp(flags[i].flag, "--remove") ? "verify" : !strcmp(flags[i].flag, "-o") ? "cubin" : "gc");
            return CLI_USAGE;
        }
    uint64_t max_bytes = 0;
    if (max_text && mj_parse_size(max_text, &max_bytes)) {
        cli_error("gc: --max-bytes: \"%s\" is not a byte count such as 1073741824, 512M or 2G", max_text);
        return CLI_USAGE;
    }

    moejit_ctx *ctx;
    moejit_status st = cli_open(cache_dir, 0, &ctx);
    if (st != MOEJIT_OK) {
        cli_report(NULL, st);
        return CLI_USAGE; /* bad configuration (environment or flags) */
    }
    if (!moejit_ctx_cache_dir(ctx)[0]) {
        cli_error("the disk cache is off (MOEJIT_CACHE=off)");
        moejit_close(ctx);
        return CLI_FAILED;
    }
    if (!max_text) max_bytes = ctx->cfg.cache_max_bytes; /* MOEJIT_CACHE_MAX_BYTES */
    mj_cache *store;
    st = mj_cache_open(moejit_ctx_cache_dir(ctx), ctx->cfg.cache_mode, &store);
    moejit_close(ctx);
    if (st != MOEJIT_OK) return fail(NULL, st);

    const char *key = s->takes_key ? positional[1] : NULL;
    int rc;
    if (!strcmp(s->name, "ls")) rc = cache_ls(store);
    else if (!strcmp(s->name, "show")) rc = cache_show(store, key);
    else if (!strcmp(s->name, "source")) rc = cache_section(store, key, 0, NULL);
    else if (!strcmp(s->name, "cubin")) rc = cache_section(store, key, 1, output);
    else if (!strcmp(s->name, "verify")) rc = cache_verify(store, remove_bad);
    else if (!strcmp(s->name, "gc")) rc = cache_gc(store, max_bytes);
    else rc = cache_clear(store);
    mj_cache_close(store);
    return rc;
}
