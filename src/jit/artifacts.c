#include "jit/artifacts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/store.h"
#include "common/error.h"
#include "common/log.h"

/* <dir>/<entry>-<first 12 hex of the key>.<ext>: the names of dumped and failed compiles. */
static void artifact_path(char *buf, size_t cap, const char *dir, const char *entry, const char *key_hex, const char *ext)
{
    snprintf(buf, cap, "%s/%s-%.12s.%s", dir, entry, key_hex, ext);
}

/* Write a whole file. 0, or -1 with errno set. */
static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    int err = errno;
    if (fclose(f) != 0 && ok) ok = 0, err = errno;
    errno = err;
    return ok ? 0 : -1;
}

int mj_dump_compile(const moejit_ctx *ctx, const char *entry, const char *key_hex, const char *source,
                    const mj_compile_options *options, const mj_compile_output *out)
{
    if (!ctx->cfg.dump_dir[0]) return 0;
    if (mkdir(ctx->cfg.dump_dir, 0777) != 0 && errno != EEXIST) {
        mj_warn("MOEJIT_DUMP_DIR = %s: cannot create it: %s", ctx->cfg.dump_dir, strerror(errno));
        return 0;
    }
    struct {
        const char *ext;
        const void *data;
        size_t len;
    } files[] = {
        {"cu", source, strlen(source)},
        {"log", out->log ? out->log : "", out->log ? strlen(out->log) : 0},
        {"cubin", out->cubin, out->cubin_len},
        {"options", options->key_text, strlen(options->key_text)},
    };
    int written = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!files[i].data) continue;
        char path[PATH_MAX + 256];
        artifact_path(path, sizeof path, ctx->cfg.dump_dir, entry, key_hex, files[i].ext);
        if (write_file(path, files[i].data, files[i].len) == 0) written += i < 2;
        else mj_warn("MOEJIT_DUMP_DIR: cannot write %s: %s", path, strerror(errno));
    }
    return written == 2;
}

/* The source and log of a failed compile into dir (created if missing). 0, or -1 with the
 * reason in why. */
static int save_into(const char *dir, mode_t mode, const char *entry, const char *key_hex, const char *source,
                     const char *log, char *why, size_t why_cap)
{
    char path[PATH_MAX + 256];
    const char *what = dir;
    if (mj_mkdir_p(dir, mode) == 0) {
        artifact_path(path, sizeof path, dir, entry, key_hex, "cu");
        what = path;
        if (write_file(path, source, strlen(source)) == 0) {
            artifact_path(path, sizeof path, dir, entry, key_hex, "log");
            if (write_file(path, log, strlen(log)) == 0) return 0;
        }
    }
    snprintf(why, why_cap, "%s: %s", what, strerror(errno));
    return -1;
}

/* ${TMPDIR:-/tmp}/moejit-<uid>: ours alone (0700, owned by us, not a link), or -1 with why. */
static int private_tmp_dir(char *dir, size_t cap, char *why, size_t why_cap)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || tmp[0] != '/') tmp = "/tmp";
    snprintf(dir, cap, "%s/moejit-%u", tmp, (unsigned)geteuid());
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, why_cap, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(why, why_cap, "%s is not a directory of uid %u", dir, (unsigned)geteuid());
        return -1;
    }
    return 0;
}

void mj_report_failed_compile(const moejit_ctx *ctx, const char *entry, const char *key_hex, const char *source,
                              const char *log, int dumped)
{
    char dir[PATH_MAX + 64], why[2 * PATH_MAX] = "";
    int saved = 0;
    if (dumped) {
        snprintf(dir, sizeof dir, "%s", ctx->cfg.dump_dir);
        saved = 1;
    }
    if (!saved && mj_cache_writable(ctx->cache)) {
        snprintf(dir, sizeof dir, "%s/failed", mj_cache_root(ctx->cache));
        saved = save_into(dir, 0777, entry, key_hex, source, log, why, sizeof why) == 0;
    }
    if (!saved && private_tmp_dir(dir, sizeof dir - 8, why, sizeof why) == 0) {
        strcat(dir, "/failed");
        saved = save_into(dir, 0700, entry, key_hex, source, log, why, sizeof why) == 0;
    }
    mj_error_append("\nkey: %s", key_hex);
    if (saved) {
        char path[PATH_MAX + 256];
        artifact_path(path, sizeof path, dir, entry, key_hex, "cu");
        mj_error_append("\nsource: %s", path);
        artifact_path(path, sizeof path, dir, entry, key_hex, "log");
        mj_error_append("\nfull log: %s", path);
    } else {
        mj_error_append("\nsource and log not saved: %s", why);
    }
    mj_nvrtc_append_log_excerpt(log, MJ_COMPILE_ERROR_LINES);
}
