/* moejit prewarm: compile kernels into the disk cache for explicit archs, without a GPU. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "jit/context.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: moejit prewarm [--arch ARCH…] [--jobs N] [--cache-dir DIR] [--progress auto|bar|lines]\n"
            "                      (--model NAME… | --manifest FILE… | <kernel spec>)\n"
            "Compile kernels into the disk cache so that the GPU hosts never compile. No GPU or driver is\n"
            "needed; the entries are valid on any host with the same NVRTC build. Prints what was compiled,\n"
            "what was already cached and what failed, then a summary with the wall time. A kernel that was\n"
            "compiled but could not be written to the cache (MOEJIT_CACHE=ro or off, a directory that is\n"
            "not writable or not a directory) failed: its line and the summary say why.\n"
            "Exit status 0 when every kernel is in the cache, 1 if anything failed (the rest is still\n"
            "built), 2 for bad usage.\n"
            "With MOEJIT_NO_COMPILE=1 nothing is compiled: every kernel not in the cache fails, which makes\n"
            "`MOEJIT_NO_COMPILE=1 moejit prewarm …` the check that a prewarmed cache is complete.\n\n"
            "  --arch ARCH       SM target, e.g. sm_90a (H100/H200), sm_100a (B200); repeatable.\n"
            "                    Without --arch, the current GPU's arch (needs a GPU).\n"
            "  --jobs N          parallel NVRTC compiles (default: bounded by cores and by memory)\n"
            "  --cache-dir DIR   cache directory (default: MOEJIT_CACHE_DIR, then ~/.cache/moejit)\n"
            "  --progress MODE   bar: one updating line; lines: a line per kernel; auto (default): a bar\n"
            "                    when stdout is a terminal, else lines\n\n%s\n%s",
            select_options_help, spec_options_help);
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct progress {
    int bar;
    const kernel_item *const *items; /* the item of each descriptor */
    size_t n;                        /* descriptors */
    int compiled, cached, failed, not_stored;
    double t0;
} progress;

static void draw_bar(const progress *p, size_t done, size_t total)
{
    enum { WIDTH = 30 };
    const int filled = total ? (int)(done * WIDTH / total) : WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '-';
    bar[WIDTH] = '\0';
    printf("\r\033[K[%s] %zu/%zu  %d compiled  %d cached  %d failed  %.1f s", bar, done, total, p->compiled, p->cached,
           p->failed, now_seconds() - p->t0);
    fflush(stdout);
}

/* A multi-line failure detail, its continuation lines indented under the kernel's line. */
static void print_indented(const char *text)
{
    for (const char *p = text; *p; p++) {
        putchar(*p);
        if (*p == '\n' && p[1]) fputs("    ", stdout);
    }
    putchar('\n');
}

static void on_done(const moejit_prewarm_result *r, size_t index, size_t done, size_t total, void *user)
{
    progress *p = user;
    const kernel_item *it = p->items[index % p->n];
    if (p->bar) printf("\r\033[K");
    if (r->status != MOEJIT_OK) {
        p->failed++;
        p->not_stored += r->outcome == MOEJIT_PREWARM_NOT_STORED;
        printf("failed    %-8s %s (%s): %s: ", r->arch, r->name[0] ? r->name : "?", it->origin,
               moejit_status_str(r->status));
        print_indented(r->error);
    } else {
        const int cached = r->outcome == MOEJIT_PREWARM_CACHED;
        cached ? p->cached++ : p->compiled++;
        if (!p->bar)
            printf("%-9s %-8s %-44s %s %7.0f ms\n", cached ? "cached" : "compiled", r->arch, r->name, r->key,
                   r->seconds * 1e3);
    }
    if (p->bar) draw_bar(p, done, total);
    else fflush(stdout);
}

/* sm_<digits>[letter]: what NVRTC's -arch takes for a real SM (the library checks again). */
static int arch_ok(const char *a)
{
    if (strncmp(a, "sm_", 3) || !(a[3] >= '0' && a[3] <= '9') || strlen(a) > 15) return 0;
    const char *p = a + 3;
    while (*p >= '0' && *p <= '9') p++;
    return *p == '\0' || (p[0] >= 'a' && p[0] <= 'z' && p[1] == '\0');
}

enum { OPT_ARCH = 2000, OPT_JOBS, OPT_CACHE_DIR, OPT_PROGRESS, MAX_ARCHS = 16 };

int cmd_prewarm(int argc, char **argv)
{
    struct option opts[SELECT_OPTION_COUNT + 6];
    select_options_table(opts);
    opts[SELECT_OPTION_COUNT] = (struct option){"arch", required_argument, NULL, OPT_ARCH};
    opts[SELECT_OPTION_COUNT + 1] = (struct option){"jobs", required_argument, NULL, OPT_JOBS};
    opts[SELECT_OPTION_COUNT + 2] = (struct option){"cache-dir", required_argument, NULL, OPT_CACHE_DIR};
    opts[SELECT_OPTION_COUNT + 3] = (struct option){"progress", required_argument, NULL, OPT_PROGRESS};
    opts[SELECT_OPTION_COUNT + 4] = (struct option){"help", no_argument, NULL, 'h'};
    opts[SELECT_OPTION_COUNT + 5] = (struct option){0};
    select_options so;
    memset(&so, 0, sizeof so);
    const char *archs[MAX_ARCHS], *cache_dir = NULL, *progress_mode = "auto";
    int n_archs = 0, usage = 0;
    long jobs = 0;
    int c;
    optind = 1;
    while (!usage && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help(stdout);
            select_options_free(&so);
            return CLI_OK;
        case OPT_ARCH:
            if (n_archs == MAX_ARCHS) cli_error("--arch: at most %d archs", MAX_ARCHS), usage = 1;
            else if (!arch_ok(optarg))
                cli_error("--arch: \"%s\" is not an SM target such as sm_90a or sm_100a", optarg), usage = 1;
            else archs[n_archs++] = optarg;
            break;
        case OPT_JOBS: usage = cli_parse_int("--jobs", optarg, 1, 1024, &jobs) != 0; break;
        case OPT_CACHE_DIR:
            usage = cli_nonempty("--cache-dir", optarg) != 0;
            cache_dir = optarg;
            break;
        case OPT_PROGRESS:
            if (strcmp(optarg, "auto") && strcmp(optarg, "bar") && strcmp(optarg, "lines"))
                cli_error("--progress: \"%s\" is not one of auto, bar, lines", optarg), usage = 1;
            progress_mode = optarg;
            break;
        default: {
            const int taken = select_options_take(&so, c, optarg);
            if (taken < 0) usage = 1;
            else if (!taken) usage = 2; /* getopt said why */
        }
        }
    }
    if (usage) {
        select_options_free(&so);
        return usage == 2 ? cli_usage_hint() : CLI_USAGE;
    }
    kernel_list items;
    const int rc = select_finish(argc, argv, &so, &items);
    select_options_free(&so);
    if (rc >= 0) return rc;

    /* The buildable descriptors; the invalid entries are reported now and count as failed. */
    moejit_kernel_desc *descs = calloc(items.n ? items.n : 1, sizeof *descs);
    const kernel_item **origin = calloc(items.n ? items.n : 1, sizeof *origin);
    if (!descs || !origin) {
        cli_error("out of memory");
        kernel_list_free(&items), free(descs), free(origin);
        return CLI_FAILED;
    }
    size_t n = 0;
    int invalid = 0;
    for (size_t i = 0; i < items.n; i++) {
        if (items.v[i].invalid) {
            printf("failed    %-8s %s\n", "-", items.v[i].error);
            invalid++;
            continue;
        }
        descs[n] = items.v[i].desc;
        origin[n++] = &items.v[i];
    }

    moejit_ctx *ctx;
    moejit_status st = cli_open(cache_dir, (int)jobs, &ctx);
    if (st != MOEJIT_OK) {
        cli_report(NULL, st);
        kernel_list_free(&items), free(descs), free(origin);
        return CLI_USAGE; /* bad configuration (environment or flags) */
    }
    char device_arch[16];
    if (n_archs == 0) {
        st = moejit_ctx_device_arch(ctx, device_arch, sizeof device_arch);
        if (st != MOEJIT_OK) {
            cli_error("no --arch given and no GPU to take it from (%s); pass --arch sm_90a", moejit_last_error(ctx));
            moejit_close(ctx);
            kernel_list_free(&items), free(descs), free(origin);
            return CLI_USAGE;
        }
        archs[n_archs++] = device_arch;
    }

    const size_t total = n * (size_t)n_archs;
    moejit_prewarm_result *res = calloc(total ? total : 1, sizeof *res);
    progress p = {.items = origin, .n = n, .t0 = now_seconds()};
    p.bar = !strcmp(progress_mode, "bar") ||
            (!strcmp(progress_mode, "auto") && isatty(STDOUT_FILENO) && !(getenv("TERM") && !strcmp(getenv("TERM"), "dumb")));
    if (!res) cli_error("out of memory");
    else if (total) {
        if (p.bar) draw_bar(&p, 0, total);
        moejit_prewarm_archs(ctx, descs, n, archs, (size_t)n_archs, res, on_done, &p);
        if (p.bar) printf("\r\033[K");
    }
    const int failed = p.failed + invalid;
    char not_stored[48] = "";
    if (p.not_stored) snprintf(not_stored, sizeof not_stored, " (%d not stored in the cache)", p.not_stored);
    printf("prewarm: %zu kernel%s for %d arch%s: %d compiled, %d already cached, %d failed%s in %.2f s (cache: %s%s)",
           n + (size_t)invalid, n + (size_t)invalid == 1 ? "" : "s", n_archs, n_archs == 1 ? "" : "s", p.compiled,
           p.cached, failed, not_stored, now_seconds() - p.t0, moejit_ctx_cache_dir(ctx)[0] ? moejit_ctx_cache_dir(ctx) : "off",
           ctx->cfg.no_compile ? "; MOEJIT_NO_COMPILE=1: nothing compiled" : "");
    if (items.duplicates) printf(" [%zu duplicate%s skipped]", items.duplicates, items.duplicates == 1 ? "" : "s");
    printf("\n");
    const int status = (failed || !res) ? CLI_FAILED : CLI_OK;
    free(res), free(descs), free(origin);
    kernel_list_free(&items);
    moejit_close(ctx);
    return status;
}
