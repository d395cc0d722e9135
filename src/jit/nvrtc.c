/* NVRTC through dlopen. We declare the handful of entry points we use ourselves; nvrtc.h from the
 * toolkit gives the types. */
#include "jit/nvrtc.h"

#include <dlfcn.h>
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

struct mj_nvrtc {
    void *handle;
    int major, minor;
    int no_minimal; /* this NVRTC rejected -minimal: never pass it again */
    char version[16];
    nvrtcResult (*version_fn)(int *, int *);
    nvrtcResult (*create)(nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
    nvrtcResult (*destroy)(nvrtcProgram *);
    nvrtcResult (*compile)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*cubin_size)(nvrtcProgram, size_t *);
    nvrtcResult (*cubin)(nvrtcProgram, char *);
    nvrtcResult (*log_size)(nvrtcProgram, size_t *);
    nvrtcResult (*log)(nvrtcProgram, char *);
    const char *(*error_string)(nvrtcResult);
};

moejit_status mj_compile_options_build(const char *arch, const char *extra_flags, mj_compile_options *out)
{
    memset(out, 0, sizeof *out);
    if (!arch || strncmp(arch, "sm_", 3) != 0 || strlen(arch) > 16 || arch[3] < '0' || arch[3] > '9')
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "arch = \"%s\" is not an SM target such as sm_90a",
                       arch ? arch : "(null)");
    size_t used = 0;
    /* Copy one option into storage and append it to argv and key_text. */
#define ADD_OPTION(text)                                                                                      \
    do {                                                                                                      \
        const char *t_ = (text);                                                                              \
        size_t n_ = strlen(t_);                                                                               \
        if (out->argc >= MJ_MAX_OPTIONS || used + n_ + 1 > sizeof out->storage ||                             \
            strlen(out->key_text) + n_ + 2 > sizeof out->key_text)                                            \
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "NVRTC options too long (MOEJIT_EXTRA_NVRTC_FLAGS = \"%s\")", \
                           extra_flags ? extra_flags : "");                                                   \
        memcpy(out->storage + used, t_, n_ + 1);                                                              \
        out->argv[out->argc++] = out->storage + used;                                                         \
        used += n_ + 1;                                                                                       \
        strcat(out->key_text, t_);                                                                            \
        strcat(out->key_text, "\n");                                                                          \
    } while (0)

    char arch_opt[32];
    snprintf(arch_opt, sizeof arch_opt, "-arch=%s", arch);
    ADD_OPTION(arch_opt);
    ADD_OPTION("-std=c++17");
    if (extra_flags) {
        char token[1024];
        const char *p = extra_flags;
        while (*p) {
            while (*p == ' ' || *p == '\t') p++;
            size_t n = strcspn(p, " \t");
            if (n == 0) break;
            if (n >= sizeof token)
                return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "MOEJIT_EXTRA_NVRTC_FLAGS: an option of %zu characters is too long", n);
            memcpy(token, p, n);
            token[n] = '\0';
            ADD_OPTION(token);
            p += n;
        }
    }
#undef ADD_OPTION
    return MOEJIT_OK;
}

moejit_status mj_nvrtc_open(const mj_nvrtc_identity *identity, mj_nvrtc **out)
{
    *out = NULL;
    void *h = dlopen(identity->path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return mj_fail(MOEJIT_ERR_NO_NVRTC, "dlopen(\"%s\") failed: %s", identity->path, dlerror());
    mj_nvrtc *nv = calloc(1, sizeof *nv);
    if (!nv) {
        dlclose(h);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory loading NVRTC");
    }
    nv->handle = h;
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&nv->version_fn, "nvrtcVersion"},       {(void **)&nv->create, "nvrtcCreateProgram"},
        {(void **)&nv->destroy, "nvrtcDestroyProgram"},   {(void **)&nv->compile, "nvrtcCompileProgram"},
        {(void **)&nv->cubin_size, "nvrtcGetCUBINSize"},  {(void **)&nv->cubin, "nvrtcGetCUBIN"},
        {(void **)&nv->log_size, "nvrtcGetProgramLogSize"}, {(void **)&nv->log, "nvrtcGetProgramLog"},
        {(void **)&nv->error_string, "nvrtcGetErrorString"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot) {
            moejit_status st = mj_fail(MOEJIT_ERR_NO_NVRTC, "%s has no symbol %s (NVRTC 12.0 or newer is required)",
                                       identity->path, syms[i].name);
            mj_nvrtc_close(nv);
            return st;
        }
    }
    if (nv->version_fn(&nv->major, &nv->minor) != NVRTC_SUCCESS) {
        mj_nvrtc_close(nv);
        return mj_fail(MOEJIT_ERR_NO_NVRTC, "nvrtcVersion failed in %s", identity->path);
    }
    snprintf(nv->version, sizeof nv->version, "%d.%d", nv->major, nv->minor);
    *out = nv;
    return MOEJIT_OK;
}

void mj_nvrtc_close(mj_nvrtc *nv)
{
    if (!nv) return;
    /* dlclose is skipped on purpose: NVRTC keeps thread-local state that may outlive us. */
    free(nv);
}

const char *mj_nvrtc_version(const mj_nvrtc *nv) { return nv->version; }

/* Whether a log line reports an error ("k.cu(12): error: …", "nvrtc: error: …", "error #20-D: …"),
 * not a warning that mentions one ("parsing restarts here after previous syntax error"). */
static int is_error_line(const char *line, size_t n)
{
    for (size_t i = 0; i + 6 <= n; i++) {
        if (memcmp(line + i, "error", 5)) continue;
        if (line[i + 5] == ':' || (line[i + 5] == ' ' && i + 6 < n && line[i + 6] == '#')) return 1;
    }
    return 0;
}

void mj_nvrtc_append_log_excerpt(const char *log, int max_lines)
{
    enum { LINE_CAP = 200 }; /* a line longer than this is cut, visibly */
    for (int pass = 0; pass < 2; pass++) { /* error lines; without any, the first lines */
        int shown = 0, more = 0;
        for (const char *p = log; *p;) {
            const char *end = strchr(p, '\n');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            const char *line = p;
            p = end ? end + 1 : p + n;
            while (n && (line[n - 1] == '\r' || line[n - 1] == ' ')) n--;
            if (!n || (pass == 0 && !is_error_line(line, n))) continue;
            if (shown == max_lines) {
                more++;
                continue;
            }
            mj_error_append(shown++ ? "\n  " : "\nlog:\n  ");
            if (n <= LINE_CAP) {
                mj_error_append_raw(line, n);
                continue;
            }
            size_t keep = LINE_CAP;
            while (keep && ((unsigned char)line[keep] & 0xc0) == 0x80) keep--; /* a UTF-8 boundary */
            mj_error_append_raw(line, keep);
            mj_error_append("…");
        }
        if (more) mj_error_append("\n  (%d more %s in the full log)", more, pass ? "lines" : "errors");
        if (shown) return;
    }
    mj_error_append("\nlog: (empty)");
}

moejit_status mj_nvrtc_compile(mj_nvrtc *nv, const char *source, const char *program_name,
                               const mj_compile_options *options, mj_compile_output *out)
{
    memset(out, 0, sizeof *out);
    /* Two flags that change how NVRTC works, never what it produces, so they stay out of the key:
     * -no-cache: NVRTC >= 12.9 keeps a cache of its own, which would hide our misses and double the
     *            disk use;
     * -minimal:  skips NVRTC's implicit runtime declarations our sources do not use: 5-7% faster
     *            compiles, byte-identical cubins (checked on every preset). */
    const char *argv[MJ_MAX_OPTIONS + 2];
    int argc = options->argc;
    memcpy(argv, options->argv, sizeof(char *) * (size_t)argc);
    if (nv->major > 12 || (nv->major == 12 && nv->minor >= 9)) argv[argc++] = "-no-cache";
    const int minimal_at = argc;
    if (!nv->no_minimal && (nv->major > 12 || (nv->major == 12 && nv->minor >= 4))) argv[argc++] = "-minimal";

    nvrtcProgram prog;
    nvrtcResult r = nv->create(&prog, source, program_name, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS)
        return mj_fail(MOEJIT_ERR_COMPILE, "nvrtcCreateProgram(%s) failed: %s", program_name, nv->error_string(r));
    r = nv->compile(prog, argc, argv);
    if (r == NVRTC_ERROR_INVALID_OPTION && argc > minimal_at) { /* an NVRTC without -minimal? */
        argc = minimal_at;
        nv->destroy(&prog);
        r = nv->create(&prog, source, program_name, 0, NULL, NULL);
        if (r == NVRTC_SUCCESS) r = nv->compile(prog, argc, argv);
        if (r == NVRTC_SUCCESS) nv->no_minimal = 1; /* it was -minimal: drop it from now on */
    }
    size_t log_len = 0;
    if (nv->log_size(prog, &log_len) == NVRTC_SUCCESS && log_len > 0) {
        out->log = malloc(log_len + 1);
        if (out->log && nv->log(prog, out->log) == NVRTC_SUCCESS) out->log[log_len] = '\0';
        else if (out->log) out->log[0] = '\0';
    }
    moejit_status st = MOEJIT_OK;
    if (r != NVRTC_SUCCESS) {
        st = mj_fail(MOEJIT_ERR_COMPILE, "NVRTC %s failed to compile %s: %s\noptions:", nv->version, program_name,
                     nv->error_string(r));
        for (int i = 0; i < argc; i++) mj_error_append(" %s", argv[i]);
    } else if (nv->cubin_size(prog, &out->cubin_len) != NVRTC_SUCCESS || out->cubin_len == 0) {
        st = mj_fail(MOEJIT_ERR_COMPILE, "NVRTC produced no CUBIN for %s (is the arch option a real SM target?)",
                     program_name);
    } else if (!(out->cubin = malloc(out->cubin_len))) {
        st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory for a %zu-byte CUBIN", out->cubin_len);
    } else if (nv->cubin(prog, out->cubin) != NVRTC_SUCCESS) {
        st = mj_fail(MOEJIT_ERR_COMPILE, "nvrtcGetCUBIN failed for %s", program_name);
    }
    nv->destroy(&prog);
    if (st != MOEJIT_OK) {
        free(out->cubin);
        out->cubin = NULL;
        out->cubin_len = 0;
    }
    return st;
}

void mj_compile_output_free(mj_compile_output *out)
{
    free(out->cubin);
    free(out->log);
    memset(out, 0, sizeof *out);
}

void mj_nvrtc_use_minimal(mj_nvrtc *nv, int on) { nv->no_minimal = !on; }
