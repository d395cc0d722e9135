/* Helpers shared by the test suites: temp dirs, fresh random inputs, device memory, running the
 * CLI, and route result comparison. */
#ifndef MOEJIT_TEST_SUPPORT_H
#define MOEJIT_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>
#include <cmocka.h>

#include "moejit.h"
#include "moejit_reference.h"

/* ---- files ---- */
/* Create a fresh directory under $TMPDIR (or /tmp); path must hold 4096 bytes. */
void mjt_tmpdir(char *path);
void mjt_rmtree(const char *path);
/* A fresh temp directory (dir: 4096 bytes) and a context whose disk cache lives in it. */
moejit_ctx *mjt_open_tmp(char *dir);
/* Prewarm descs (n) for arch into a fresh cache: every one must compile; skip() without NVRTC. */
void mjt_expect_compiles(const moejit_kernel_desc *descs, size_t n, const char *arch);
/* Number of regular files under a directory tree (0 if it does not exist). */
int mjt_count_files(const char *path);

/* ---- randomness: fresh per run, reproducible with MOEJIT_TEST_SEED ---- */
typedef struct mjt_rng {
    uint64_t s;
} mjt_rng;
/* Seed from MOEJIT_TEST_SEED or the clock, printed once per process. */
void mjt_rng_init(mjt_rng *r);
uint64_t mjt_next(mjt_rng *r);
double mjt_uniform(mjt_rng *r);     /* [0, 1) */
double mjt_normal(mjt_rng *r);      /* N(0, 1) */

/* MOEJIT_TEST_QUICK=1: GPU tests thin their sweeps (every n-th shape, smaller batches) — for
 * compute-sanitizer, which slows kernels by two orders of magnitude. */
int mjt_quick(void);
/* In quick mode keep only every `every`-th item i; always keep all otherwise. */
int mjt_keep(int i, int every);
/* In quick mode at most `cap` (a batch size); n otherwise. */
int64_t mjt_quick_cap(int64_t n, int64_t cap);

/* ---- GPU (through the library's own driver loader) ---- */
/* 1 if a CUDA device is usable; tests call skip() otherwise. */
int mjt_gpu_available(void);
void *mjt_dev_alloc(size_t bytes);
void mjt_dev_free(void *p);
void mjt_h2d(void *dst, const void *src, size_t bytes);
void mjt_d2h(void *dst, const void *src, size_t bytes);
void mjt_dev_fill(void *p, unsigned char byte, size_t bytes);
void mjt_sync(void);

/* ---- contexts ---- */
/* After bad input: nothing was compiled, launched or written to `dir`; closes ctx, removes dir. */
void mjt_expect_nothing_ran(moejit_ctx *ctx, const char *dir);
/* The last call returned `want` and its message contains `needle`. */
void mjt_expect_error(moejit_status got, moejit_status want, const char *needle);

/* ctest's SKIP_RETURN_CODE for the GPU suites (tests/CMakeLists.txt): a suite made only of GPU
 * tests exits with it when no device is usable, so that ctest reports it as skipped, not passed. */
#define MJT_SKIP_CODE 77
/* The exit status of a GPU suite from cmocka's count of failed tests. */
int mjt_gpu_suite_status(int failed);

/* GPU suites: group setup/teardown opening mjt_gpu_ctx on a fresh cache directory when a device is
 * usable; without one mjt_gpu_ctx stays NULL and the tests skip(). */
extern moejit_ctx *mjt_gpu_ctx;
int mjt_gpu_setup(void **state);
int mjt_gpu_teardown(void **state);

/* ---- cubins ---- */
/* cubin is an EM_CUDA ELF for sm (e_flags bits 8..15); fails the test naming `what`. */
void mjt_check_cubin(const void *cubin, size_t len, int sm, const char *what);
/* The same for the cache entry `key` published under cache directory dir. */
void mjt_check_cached_cubin(const char *dir, const char *key, int sm);

/* ---- processes ---- */
/* Run argv (argv[0] a path) and capture stdout+stderr into out (NUL-terminated, truncated to cap).
 * Returns the exit status, or -1 if it could not run or was killed. */
int mjt_run(char *const argv[], const char *const env_overrides[], char *out, size_t cap);

/* Read fd to its end into out (NUL-terminated, truncated to cap), close it, wait for pid and
 * return its wait status. */
int mjt_collect(int fd, pid_t pid, char *out, size_t cap);

/* Run the moejit CLI (MOEJIT_CLI) with a NULL-terminated argument list and optional environment
 * overrides ("NAME=value", NULL-terminated; may be NULL). Output as in mjt_run. */
int mjt_cli(const char *const env_overrides[], char *out, size_t cap, const char *first, ...);

/* ---- route inputs and checks ---- */
/* Logits [T, stride] of spec->dtype (host memory, malloc'ed) and bias [E] (if spec->has_bias), drawn
 * fresh so that no row has a near-tie at its top-K boundary (the GPU and the reference may differ
 * in the last bit of an exp). */
void *mjt_route_inputs(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, float **bias);

/* The same with rows that are random permutations of an evenly spaced grid and a negligible bias:
 * the order of the picks, not only their set, is clear of rounding (placement depends on it). */
void *mjt_route_inputs_ordered(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, float **bias);

/* moejit_route_reference over row chunks on all cores. */
void mjt_route_reference_parallel(const moejit_route_spec *spec, const void *logits, int64_t T, int64_t stride,
                                  const float *bias, int32_t *ids, float *w);

/* fn over [0, n) in chunks, on all cores. */
void mjt_parallel_for(int64_t n, void (*fn)(int64_t begin, int64_t end, void *user), void *user);

/* Compare GPU output with the reference row by row: ids equal as sets, every slot written,
 * weights within rel_tol relative. Fails the test with a message naming the row. */
void mjt_check_route(const moejit_route_spec *spec, int64_t T, const int32_t *ref_ids, const float *ref_w,
                     const int32_t *ids, const float *w, double rel_tol, const char *what);

/* The issue-4 edge sweep: E in {1, 3, 60, 72, 160, 384, 1000, 1025, 2048, 4096} with group
 * layouts (none, TG = G, G = E, irregular), K up to min(E, 64) including K = E, S in {0, 1, 2},
 * every score and dtype in turn. Writes up to cap specs; returns the count. */
int mjt_route_edge_sweep(moejit_route_spec *out, int cap);

/* Largest relative weight error seen by mjt_check_route in this process. */
double mjt_max_weight_error(void);

/* ---- align outputs ---- */
/* Outputs are poisoned with this byte (0x5a5a5a5a: no position, id, count or -1 any test makes),
 * so that a missing write, or a write where none belongs, shows in a full comparison. */
#define MJT_POISON 0x5a

/* The six outputs of align (counts, offsets, sorted_ids, block_expert, total_padded, slot_of),
 * poisoned, on the host or the device. */
typedef struct mjt_align_bufs {
    int32_t *buf[6];
    size_t len[6]; /* int32 each */
    int on_device;
} mjt_align_bufs;

/* Buffers for E experts, block size B, a sorted_ids capacity and N = T·K ids. */
mjt_align_bufs mjt_align_bufs_new(int E, int B, int64_t capacity, int64_t N, int on_device);
void mjt_align_bufs_poison(mjt_align_bufs *b);
void mjt_align_bufs_free(mjt_align_bufs *b);
/* The outputs selected by `want` (bit i: output i above; NULL = not wanted). */
moejit_align_outputs mjt_align_select(const mjt_align_bufs *b, unsigned want, int64_t capacity);
#define MJT_ALIGN_ALL 63u

/* route_align shapes the GPU suite runs and the compile sweep compiles: the presets' scoring
 * (ungrouped), every scoring mode and dtype, shared slots, a soft cap, the widest slot rows. */
extern const moejit_route_align_spec mjt_route_align_shapes[];
extern const size_t mjt_route_align_shape_count;
/* Every int32 of device outputs equal to the host reference's; fails naming the first difference. */
void mjt_align_compare(const mjt_align_bufs *dev, const mjt_align_bufs *ref, const char *what);

/* ---- align ids of any type, through first_expert or an expert map ---- */
int mjt_index_bytes(moejit_index_dtype t); /* 4, 8 or 2 */
int64_t mjt_index_get(const void *ids, moejit_index_dtype t, int64_t i);
/* The values an id of type t can hold. */
int64_t mjt_index_min(moejit_index_dtype t);
int64_t mjt_index_max(moejit_index_dtype t);
/* An expert map [Eg] (malloc'ed) of local ids in [0, E), -1 (not on this rank), and entries out
 * of range on both sides, which align must drop too. */
int32_t *mjt_align_draw_map(mjt_rng *rng, int E, int Eg);
/* N ids of spec->id_dtype (malloc'ed): mostly ids of local experts (through first_expert, or the
 * map's range [0, Eg) with spec->global_experts), the rest just outside on both sides, -1, the
 * type's extremes and, for int64, ids that a truncation to 32 bits would bring into range. */
void *mjt_align_draw_ids(mjt_rng *rng, const moejit_align_spec *spec, int32_t first_expert, int64_t N);
/* The local expert of an id, or -1, written from moejit.h's definition: with a map, map[id] for
 * id in [0, Eg) when in [0, E); without, id - first_expert when first_expert <= id < first_expert + E. */
int mjt_align_expected_local(const moejit_align_spec *spec, int32_t first_expert, const int32_t *map, int64_t id);

#endif
