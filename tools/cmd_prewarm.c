/* moejit prewarm: compile kernels into the disk cache for explicit archs, without a GPU. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: moejit prewarm --arch ARCH [--arch ARCH…] [--jobs N] [--cache-dir DIR] <kernel spec>\n"
            "Compile kernels into the disk cache so that the GPU hosts never compile. No GPU or driver is\n"
            "needed; the entries are valid on any host with the same NVRTC build. For each kernel a line says\n"
            "whether it was compiled or already cached; the exit status is 1 if any kernel failed.\n\n"
            "  --arch ARCH      SM target, e.g. sm_90a (H100/H200), sm_100a (B200); repeatable.\n"
            "                   Without --arch, the current GPU's arch (needs a GPU).\n"
            "  --jobs N         parallel NVRTC compiles (default: bounded by cores and memory)\n"
            "  --cache-dir DIR  cache directory (default: MOEJIT_CACHE_DIR, then ~/.cache/moejit)\n\n%s",
            spec_options_help);
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { OPT_ARCH = 2000, OPT_JOBS, OPT_CACHE_DIR, MAX_ARCHS = 16 };

int cmd_prewarm(int argc, char **argv)
{
    struct option opts[SPEC_OPTION_COUNT + 5];
    memcpy(opts, spec_long_options, sizeof spec_long_options);
    opts[SPEC_OPTION_COUNT] = (struct option){"arch", required_argument, NULL, OPT_ARCH};
    opts[SPEC_OPTION_COUNT + 1] = (struct option){"jobs", required_argument, NULL, OPT_JOBS};
    opts[SPEC_OPTION_COUNT + 2] = (struct option){"cache-dir", required_argument, NULL, OPT_CACHE_DIR};
    opts[SPEC_OPTION_COUNT + 3] = (struct option){"help", no_argument, NULL, 'h'};
    opts[SPEC_OPTION_COUNT + 4] = (struct option){0};
    spec_options so = {0};
    const char *archs[MAX_ARCHS], *cache_dir = NULL;
    int n_archs = 0;
    long jobs = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(stdout); return CLI_OK;
        case OPT_ARCH:
            if (n_archs == MAX_ARCHS) {
                fprintf(stderr, "moejit prewarm: at most %d --arch\n", MAX_ARCHS);
                return CLI_USAGE;
            }
            archs[n_archs++] = optarg;
            break;
        case OPT_JOBS:
            if (cli_parse_int("--jobs", optarg, 1, 1024, &jobs)) return CLI_USAGE;
            break;
        case OPT_CACHE_DIR: cache_dir = optarg; break;
        default:
            if (!spec_options_take(&so, c, optarg)) {
                help(stderr);
                return CLI_USAGE;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moejit prewarm: unexpected argument \"%s\"\n", argv[optind]);
        return CLI_USAGE;
    }
    moejit_kernel_desc *descs;
    int n = spec_options_build(&so, &descs);
    if (n < 0) return CLI_USAGE;
    for (int i = 0; i < n; i++) {
        moejit_status st = moejit_validate(&descs[i]);
        if (st != MOEJIT_OK) {
            cli_report("prewarm", st);
            free(descs);
            return CLI_USAGE;
        }
    }

    moejit_ctx *ctx;
    moejit_status st = cli_open(cache_dir, (int)jobs, &ctx);
    if (st != MOEJIT_OK) {
        cli_report("prewarm", st);
        free(descs);
        return CLI_FAILED;
    }
    char device_arch[16];
    if (n_archs == 0) {
        st = moejit_device_arch(ctx, device_arch, sizeof device_arch);
        if (st != MOEJIT_OK) {
            fprintf(stderr, "moejit prewarm: no --arch given and no GPU to take it from (%s); pass --arch sm_90a\n",
                    moejit_last_error(ctx));
            moejit_close(ctx);
            free(descs);
            return CLI_USAGE;
        }
        archs[n_archs++] = device_arch;
    }

    moejit_prewarm_result *res = calloc((size_t)n, sizeof *res);
    int compiled = 0, cached = 0, failed = 0;
    const double t0 = now_seconds();
    for (int a = 0; a < n_archs && res; a++) {
        moejit_prewarm(ctx, descs, (size_t)n, archs[a], res);
        for (int i = 0; i < n; i++) {
            if (res[i].status != MOEJIT_OK) {
                failed++;
                printf("failed    %-8s %s: %s\n", archs[a], res[i].name[0] ? res[i].name : "(invalid spec)",
                       res[i].error);
            } else {
                int is_cached = res[i].outcome == MOEJIT_PREWARM_CACHED;
                is_cached ? cached++ : compiled++;
                printf("%-9s %-8s %-44s %s %7.0f ms\n", is_cached ? "cached" : "compiled", archs[a], res[i].name,
                       res[i].key, res[i].seconds * 1e3);
            }
        }
    }
    if (!res) fprintf(stderr, "moejit prewarm: out of memory\n");
    printf("prewarm: %d kernel%s for %d arch%s: %d compiled, %d already cached, %d failed in %.2f s (cache: %s)\n", n,
           n == 1 ? "" : "s", n_archs, n_archs == 1 ? "" : "s", compiled, cached, failed, now_seconds() - t0,
           moejit_cache_dir(ctx)[0] ? moejit_cache_dir(ctx) : "off");
    const int status = (failed || !res) ? CLI_FAILED : CLI_OK;
    free(res);
    free(descs);
    moejit_close(ctx);
    return status;
}
