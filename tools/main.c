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
    "exit status: 0 success, 1 something requested failed (the rest is still done), 2 bad usage\n"
    "\n"
    "environment: MOEJIT_CACHE_DIR, MOEJIT_CACHE=rw|ro|off, MOEJIT_CACHE_MAX_BYTES, MOEJIT_NO_COMPILE,\n"
    "MOEJIT_ALWAYS_COMPILE, MOEJIT_DUMP_DIR, MOEJIT_LOG=silent|warn|info|debug, MOEJIT_EXTRA_NVRTC_FLAGS,\n"
    "MOEJIT_NVRTC_PATH\n";

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
        char *argv0; /* getopt's messages start with argv[0]: make them "moejit <command>: …" too */
    } commands[] = {
        {"source", cmd_source, "moejit source"},
        {"prewarm", cmd_prewarm, "moejit prewarm"},
        {"cache", cmd_cache, "moejit cache"},
    };
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
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) {
            cli_command = commands[i].name;
            argv[1] = commands[i].argv0;
            return commands[i].run(argc - 1, argv + 1);
        }
    cli_error("unknown command \"%s\" (source, prewarm, cache)", cmd);
    return cli_usage_hint();
}
