/* moejit — the command-line program: generate, prewarm and inspect kernels. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: moejit <command> [options]\n"
    "\n"
    "commands:\n"
    "  source    print or write the generated CUDA C++ of kernels (compiles nothing)\n"
    "  prewarm   compile kernels (model presets, manifests, specs) into the disk cache for explicit\n"
    "            archs (no GPU needed)\n"
    "  cache     inspect and maintain the disk cache: ls, show, source, cubin, verify, gc, clear\n"
    "\n"
    "  moejit <command> --help   describes a command\n"
    "  moejit --version          prints the library version\n"
    "\n"
    "environment: MOEJIT_CACHE_DIR, MOEJIT_CACHE=rw|ro|off, MOEJIT_CACHE_MAX_BYTES, MOEJIT_NO_COMPILE,\n"
    "MOEJIT_ALWAYS_COMPILE, MOEJIT_DUMP_DIR, MOEJIT_LOG=silent|warn|info|debug, MOEJIT_EXTRA_NVRTC_FLAGS,\n"
    "MOEJIT_NVRTC_PATH\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("moejit %s\n", MOEJIT_VERSION_STRING);
        return CLI_OK;
    }
    if (!strcmp(cmd, "source")) return cmd_source(argc - 1, argv + 1);
    if (!strcmp(cmd, "prewarm")) return cmd_prewarm(argc - 1, argv + 1);
    if (!strcmp(cmd, "cache")) return cmd_cache(argc - 1, argv + 1);
    fprintf(stderr, "moejit: unknown command \"%s\"\n\n%s", cmd, usage);
    return CLI_USAGE;
}
