/* moejit cache: inspect the disk cache. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "entry.h"
#include "store.h"

static void help(FILE *f)
{
    fprintf(f, "usage: moejit cache [--cache-dir DIR] ls\n"
               "  ls    one line per entry: key, op, arch, size, age, last use, shape\n"
               "The directory is --cache-dir, else MOEJIT_CACHE_DIR, else $XDG_CACHE_HOME/moejit or ~/.cache/moejit.\n");
}

typedef struct ls_row {
    char key[33];
    char line[1024];
} ls_row;

typedef struct ls_state {
    ls_row *rows;
    size_t n, cap;
    int bad;
} ls_state;

static void human_size(double bytes, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (bytes >= 1024 && u < 3) bytes /= 1024, u++;
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

static int collect(const char *key, const char *path, const struct stat *st, void *user)
{
    ls_state *s = user;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        ls_row *rows = realloc(s->rows, cap * sizeof *rows);
        if (!rows) return 1;
        s->rows = rows, s->cap = cap;
    }
    ls_row *r = &s->rows[s->n++];
    snprintf(r->key, sizeof r->key, "%s", key);
    mj_entry_summary sum;
    char meta[2048], op[32], arch[32], shape[400], size[32], age[32], used[32];
    if (mj_cache_peek(path, &sum, meta, sizeof meta) != MOEJIT_OK) {
        s->bad++;
        snprintf(r->line, sizeof r->line, "%s  (unreadable or corrupt: run `moejit cache verify`)", key);
        return 0;
    }
    mj_meta_get(meta, strlen(meta), "op", op, sizeof op);
    mj_meta_get(meta, strlen(meta), "arch", arch, sizeof arch);
    mj_meta_get(meta, strlen(meta), "shape", shape, sizeof shape);
    human_size((double)sum.file_size, size, sizeof size);
    const double now = (double)time(NULL);
    human_age(now - (double)sum.created, age, sizeof age);
    human_age(now - (double)st->st_mtime, used, sizeof used);
    snprintf(r->line, sizeof r->line, "%s  %-6s %-8s %10s %6s %6s  %s", key, op, arch, size, age, used, shape);
    return 0;
}

static int by_key(const void *a, const void *b) { return strcmp(((const ls_row *)a)->key, ((const ls_row *)b)->key); }

static int cache_ls(moejit_ctx *ctx)
{
    mj_cache *c;
    moejit_status st = mj_cache_open(moejit_cache_dir(ctx), MOEJIT_CACHE_RO, &c);
    if (st != MOEJIT_OK) {
        cli_report("cache ls", st);
        return CLI_FAILED;
    }
    ls_state s = {0};
    st = mj_cache_foreach(c, collect, &s);
    mj_cache_close(c);
    if (st != MOEJIT_OK) {
        cli_report("cache ls", st);
        free(s.rows);
        return CLI_FAILED;
    }
    qsort(s.rows, s.n, sizeof *s.rows, by_key);
    printf("%-32s  %-6s %-8s %10s %6s %6s  %s\n", "KEY", "OP", "ARCH", "SIZE", "AGE", "USED", "SHAPE");
    for (size_t i = 0; i < s.n; i++) puts(s.rows[i].line);
    printf("%zu entr%s in %s\n", s.n, s.n == 1 ? "y" : "ies", moejit_cache_dir(ctx));
    free(s.rows);
    return CLI_OK;
}

enum { OPT_CACHE_DIR = 3000 };

int cmd_cache(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *cache_dir = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            return CLI_OK;
        }
        if (c == OPT_CACHE_DIR) cache_dir = optarg;
        else {
            help(stderr);
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        help(stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[optind];
    if (strcmp(sub, "ls")) {
        fprintf(stderr, "moejit cache: unknown subcommand \"%s\"\n", sub);
        help(stderr);
        return CLI_USAGE;
    }
    if (optind + 1 < argc && !strcmp(argv[optind + 1], "--help")) {
        help(stdout);
        return CLI_OK;
    }
    moejit_ctx *ctx;
    moejit_status st = cli_open(cache_dir, 0, &ctx);
    if (st != MOEJIT_OK) {
        cli_report("cache", st);
        return CLI_FAILED;
    }
    if (!moejit_cache_dir(ctx)[0]) {
        fprintf(stderr, "moejit cache: the disk cache is off (MOEJIT_CACHE=off)\n");
        moejit_close(ctx);
        return CLI_FAILED;
    }
    int rc = cache_ls(ctx);
    moejit_close(ctx);
    return rc;
}
