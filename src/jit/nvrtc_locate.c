#include "jit/nvrtc_locate.h"

#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

static const char *const k_sonames[] = {"libnvrtc.so.13", "libnvrtc.so.12"};

#if defined(__x86_64__)
#define MJ_ELF_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define MJ_ELF_MACHINE EM_AARCH64
#else
#define MJ_ELF_MACHINE 0
#endif

static int read_at(int fd, void *buf, size_t n, off_t off)
{
    return pread(fd, buf, n, off) == (ssize_t)n;
}

/* 1 if path is a readable 64-bit ELF shared object for this machine. */
static int elf_usable(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    Elf64_Ehdr eh;
    int ok = read_at(fd, &eh, sizeof eh, 0) && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
             eh.e_ident[EI_CLASS] == ELFCLASS64 && (MJ_ELF_MACHINE == 0 || eh.e_machine == MJ_ELF_MACHINE);
    close(fd);
    return ok;
}

int mj_elf_build_id(const char *path, char *hex, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int found = -1;
    Elf64_Ehdr eh;
    if (!read_at(fd, &eh, sizeof eh, 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
        goto done;
    for (int i = 0; i < eh.e_phnum && found < 0; i++) {
        Elf64_Phdr ph;
        if (!read_at(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph))) break;
        if (ph.p_type != PT_NOTE || ph.p_filesz > 65536) continue;
        unsigned char *notes = malloc(ph.p_filesz);
        if (!notes) break;
        if (read_at(fd, notes, ph.p_filesz, (off_t)ph.p_offset)) {
            size_t at = 0;
            while (at + sizeof(Elf64_Nhdr) <= ph.p_filesz) {
                Elf64_Nhdr nh;
                memcpy(&nh, notes + at, sizeof nh);
                size_t name_at = at + sizeof nh, desc_at = name_at + ((nh.n_namesz + 3u) & ~3u);
                size_t next = desc_at + ((nh.n_descsz + 3u) & ~3u);
                if (next > ph.p_filesz) break;
                if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && !memcmp(notes + name_at, "GNU", 4) &&
                    nh.n_descsz * 2 + 1 <= cap) {
                    for (unsigned j = 0; j < nh.n_descsz; j++) sprintf(hex + 2 * j, "%02x", notes[desc_at + j]);
                    found = 0;
                    break;
                }
                at = next;
            }
        }
        free(notes);
    }
done:
    close(fd);
    return found;
}

static int try_dir(const char *dir, const char *name, char *out, size_t cap)
{
    if (!dir || !*dir) return 0;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return 0;
    return elf_usable(out);
}

/* Search a ':'-separated list of directories. */
static int try_path_list(const char *list, const char *name, char *out, size_t cap)
{
    if (!list) return 0;
    char dir[PATH_MAX];
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0 && n < sizeof dir) {
            memcpy(dir, p, n);
            dir[n] = '\0';
            if (try_dir(dir, name, out, cap)) return 1;
        }
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

/* /etc/ld.so.cache, new format ("glibc-ld.so.cache1.1"), possibly behind the old one. String
 * offsets are relative to the new-format header. We only need name → path lookups. */
static int try_ld_so_cache(const char *name, char *out, size_t cap)
{
    int fd = open("/etc/ld.so.cache", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    char *buf = NULL;
    int found = 0;
    if (fstat(fd, &st) || st.st_size < 48 || st.st_size > (64 << 20)) goto done;
    buf = malloc((size_t)st.st_size);
    if (!buf || !read_at(fd, buf, (size_t)st.st_size, 0)) goto done;
    size_t size = (size_t)st.st_size, base = 0;
    static const char old_magic[] = "ld.so-1.7.0", new_magic[] = "glibc-ld.so.cache1.1";
    if (!memcmp(buf, old_magic, sizeof old_magic - 1)) {
        uint32_t nold;
        memcpy(&nold, buf + 12, 4);
        base = (16 + (size_t)nold * 12 + 7) & ~(size_t)7;
    }
    if (base + 48 > size || memcmp(buf + base, new_magic, sizeof new_magic - 1)) goto done;
    uint32_t nlibs;
    memcpy(&nlibs, buf + base + 20, 4);
    for (uint32_t i = 0; i < nlibs && !found; i++) {
        size_t at = base + 48 + (size_t)i * 24;
        if (at + 24 > size) break;
        uint32_t key, value;
        memcpy(&key, buf + at + 4, 4);
        memcpy(&value, buf + at + 8, 4);
        if (base + key >= size || base + value >= size) continue;
        const char *k = buf + base + key, *v = buf + base + value;
        if (!memchr(k, 0, size - base - key) || !memchr(v, 0, size - base - value)) continue;
        if (!strcmp(k, name) && strlen(v) < cap && elf_usable(v)) {
            strcpy(out, v);
            found = 1;
        }
    }
done:
    free(buf);
    close(fd);
    return found;
}

static int resolve(const char *name, char *out, size_t cap)
{
    static const char *const default_dirs[] = {"/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu",
                                               "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                                               "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib"};
    if (try_path_list(getenv("LD_LIBRARY_PATH"), name, out, cap)) return 1;
    if (try_ld_so_cache(name, out, cap)) return 1;
    for (size_t i = 0; i < sizeof default_dirs / sizeof default_dirs[0]; i++)
        if (try_dir(default_dirs[i], name, out, cap)) return 1;
    /* Beyond the loader: where toolkits usually live. */
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    char dir[PATH_MAX];
    for (size_t i = 0; i < 3; i++) {
        if (!homes[i] || !*homes[i]) continue;
        snprintf(dir, sizeof dir, "%s/lib64", homes[i]);
        if (try_dir(dir, name, out, cap)) return 1;
        snprintf(dir, sizeof dir, "%s/lib", homes[i]);
        if (try_dir(dir, name, out, cap)) return 1;
    }
    return 0;
}

/* "libnvrtc.so.13.0.88" → "13.0.88"; falls back to the soname's major. */
static void version_from_path(const char *path, char *out, size_t cap)
{
    char real[PATH_MAX];
    const char *file = realpath(path, real) ? real : path;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const char *v = strstr(base, ".so.");
    snprintf(out, cap, "%s", v ? v + 4 : "unknown");
}

moejit_status mj_nvrtc_locate(mj_nvrtc_identity *out)
{
    memset(out, 0, sizeof *out);
    const char *forced = getenv("MOEJIT_NVRTC_PATH");
    if (forced && *forced) {
        if (!elf_usable(forced))
            return mj_fail(MOEJIT_ERR_NO_NVRTC, "MOEJIT_NVRTC_PATH = %s is not a readable 64-bit shared library for this machine",
                           forced);
        snprintf(out->path, sizeof out->path, "%s", forced);
    } else {
        int found = 0;
        for (size_t i = 0; i < sizeof k_sonames / sizeof k_sonames[0] && !found; i++)
            found = resolve(k_sonames[i], out->path, sizeof out->path);
        if (!found)
            return mj_fail(MOEJIT_ERR_NO_NVRTC,
                           "NVRTC not found: looked for libnvrtc.so.13 and libnvrtc.so.12 in LD_LIBRARY_PATH, "
                           "/etc/ld.so.cache, the system library directories, $CUDA_HOME, $CUDA_PATH and "
                           "/usr/local/cuda; set MOEJIT_NVRTC_PATH to the library file");
    }
    version_from_path(out->path, out->version, sizeof out->version);
    if (mj_elf_build_id(out->path, out->build_id, sizeof out->build_id) != 0) {
        /* No build id note: size and mtime still change with every install of another build. */
        struct stat st;
        if (stat(out->path, &st) == 0)
            snprintf(out->build_id, sizeof out->build_id, "nobuildid-%lld-%lld", (long long)st.st_size,
                     (long long)st.st_mtime);
        else
            snprintf(out->build_id, sizeof out->build_id, "nobuildid");
    }
    return MOEJIT_OK;
}
