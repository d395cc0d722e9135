/* align — token→expert dispatch maps (moejit.h Operation 2, docs/DESIGN.md §2.2).
 *
 * The op's one header: its normalised shape, the geometry of its kernels, its parameters (one
 * table for C and CUDA), the batch layout and argument checks shared by the launch and the
 * reference, and what route_align reuses for its own copy of align. Plain C (no CUDA header).
 *   spec.c       validate and normalise a spec, the geometry, the batch layout, argument checks
 *   codegen.c    the launch plan, the Cfg and entry points: where a shape becomes CUDA source
 *   launch.c     moejit_align and its size helpers: one launch (small or onepass), or three over tiles
 *   reference.c  moejit_align_reference: the plain counting sort that defines the maps */
#ifndef MOEJIT_OPS_ALIGN_H
#define MOEJIT_OPS_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"

struct mj_kernel_plan;
struct mj_strbuf;
struct mj_kernel;

/* Align spec after normalisation: padding-free, compared with memcmp. route_align builds one
 * over E+S experts for its fallback (mj_route_align_fallback_shape: no map, route's ids). */
typedef struct mj_align_shape {
    int32_t experts;        /* E (local experts) */
    int32_t block_size;     /* B */
    int32_t id_dtype;       /* moejit_index_dtype of the ids */
    int32_t global_experts; /* Eg > 0: ids go through expert_map [Eg]; 0: id - first_expert */
} mj_align_shape;

/* Validate an align spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_align_normalize(const moejit_align_spec *spec, mj_align_shape *out);

/* block_size is a power of two in [MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK]; `spec_name`
 * starts the message ("align spec"). */
moejit_status mj_align_check_block(const char *spec_name, int block_size);

/* How an align Cfg is laid out (the constants of align.cuh's Cfg contract). */
typedef struct mj_align_geom {
    int experts;        /* E (E + S inside route_align) */
    int block_size;     /* B */
    int id_dtype;       /* moejit_index_dtype of ids in global memory (Cfg::Id) */
    int global_experts; /* Eg of the expert map, 0 without one */
    int threads;        /* block size of every align entry */
    int count_warps;    /* warps that rank a tile; their histogram rows fit the histogram budget */
    int tile;           /* ids per tile */
    int expert_bits;    /* bits of an expert id in a rank code */
    int small_ids;      /* the largest batch of the small entry (0: E too large for it) */
    int onepass_tile;   /* the most ids a block of onepass ranks (<= tile) */
} mj_align_geom;

/* The geometry of align's kernels for a shape (route_align's fallback too). */
void mj_align_geom_for(const mj_align_shape *s, mj_align_geom *g);
/* Any geometry: `threads` per block, histogram rows within hist_budget bytes, `tile` ids a tile,
 * up to `small_ids` ids (rounded up to 32) on the small path where E allows it; int32 ids and no
 * map (set id_dtype and global_experts after). */
void mj_align_geom_make(int experts, int block_size, int threads, int hist_budget, int tile, int small_ids,
                        mj_align_geom *g);
/* Shared memory in ints of the scan and scatter kernels (and of single in route_align's fused
 * kernel), enough for the small path too (align.cuh's Align<Cfg>::kSmemInts). */
int mj_align_smem_ints(const mj_align_geom *g);
/* … of the small path alone (align.cuh's kSmallSmemInts), and of onepass (kOnepassSmemInts). */
int mj_align_small_smem_ints(const mj_align_geom *g);
int mj_align_onepass_smem_ints(const mj_align_geom *g);

/* Entries of align inside a module, counted from its first align entry. */
enum {
    MJ_ALIGN_ONEPASS = 0, /* one launch of a grid, up to MJ_ALIGN_ONEPASS_MAX_IDS */
    MJ_ALIGN_COUNT = 1,
    MJ_ALIGN_SCAN = 2,
    MJ_ALIGN_SCATTER = 3,
    MJ_ALIGN_SMALL = 4, /* decode batches, up to small_ids */
    MJ_ALIGN_ENTRIES = 5
};

/* Plan entries first .. first+4 for a geometry. */
void mj_align_plan_entries(struct mj_kernel_plan *plan, int first, const mj_align_geom *g);
/* align's parameter struct and template (route_align pastes them beside route's). */
void mj_align_emit_template(struct mj_strbuf *sb);
/* `struct <cfg> { … };` for a geometry. */
void mj_align_emit_cfg(struct mj_strbuf *sb, const char *cfg, const mj_align_geom *g);
/* The extern "C" entries first .. first+4 of plan, on Cfg `cfg`. */
void mj_align_emit_entries(struct mj_strbuf *sb, const struct mj_kernel_plan *plan, int first, const char *cfg);

/* The kernels' parameters (mj::AlignParams in align.cuh is emitted from this table). ids are of
 * the shape's id dtype; expert_map is read only with a map, first_expert only without one (0
 * inside route_align). */
#define MJ_ALIGN_PARAMS(X, S)                                                                              \
    X(S, const void *, ids)                                                                               \
    X(S, const int32_t *, expert_map)                                                                     \
    X(S, int32_t, n)                                                                                      \
    X(S, int32_t, capacity)                                                                               \
    X(S, int32_t *, counts)                                                                               \
    X(S, int32_t *, offsets)                                                                              \
    X(S, int32_t *, sorted_ids)                                                                           \
    X(S, int32_t *, block_expert)                                                                         \
    X(S, int32_t *, total_padded)                                                                         \
    X(S, int32_t *, slot_of)                                                                              \
    X(S, int32_t *, ws)                                                                                   \
    X(S, int32_t, num_tiles)                                                                              \
    X(S, int32_t, first_expert)                                                                           \
    X(S, int32_t, expert_capacity)
typedef struct mj_align_params {
    MJ_ALIGN_PARAMS(MJ_PARAM_DECL, _)
} mj_align_params;

/* The largest batch (N ids) of onepass. Each of its blocks reads all N ids and counts them with
 * shared atomics, so its time grows with N; the three launches read each id twice in all but pay
 * two more launches and a one-block scan of P·E cells, 15–17 µs nearly flat from 8192 ids up.
 * Measured (H100, E = 128/256, K = 8, int32 ids, bench_ops align, both paths at every T): onepass
 * 14.0 µs against 15.7–16.1 at 32768 ids, 20.8 against 16.5–16.8 at 65536. */
#define MJ_ALIGN_ONEPASS_MAX_IDS 32768

/* How a batch runs (mj_align_layout.path): the small entry (one warp ranks, n <= small_ids, no
 * capacity), onepass, or count, scan and scatter over tiles with a workspace. AUTO: the default
 * choice; a forced path serves measurements (bench_ops times each threshold from both sides). */
enum { MJ_ALIGN_PATH_AUTO = -1, MJ_ALIGN_PATH_SMALL = 0, MJ_ALIGN_PATH_ONEPASS = 1, MJ_ALIGN_PATH_TILED = 2 };

/* How a batch runs, decided from sizes alone (so launches are capturable in CUDA graphs). */
typedef struct mj_align_layout {
    int64_t n;        /* N = T·K */
    int64_t capacity; /* entries sorted_ids needs: N + min(E, N)·(B-1) */
    int path;         /* MJ_ALIGN_PATH_SMALL, _ONEPASS or _TILED */
    int tiles;        /* P (tiled) */
    size_t ws_bytes;  /* workspace (tiled; 0 on the one-launch paths) */
    int blocks;       /* grid of onepass, or of the tiled path's scatter kernel */
} mj_align_layout;

/* Layout of T tokens of K ids over E experts with block size B, for align's default geometry;
 * `op` names the caller in messages ("align", "route_align"). Rejects T < 0, K < 1 and batches
 * whose positions pass int32. expert_capacity > 0 (pad to capacity): every expert takes
 * round_up(C, B) rows, E·round_up(C, B) in all, and the decode entry is not used. `path`:
 * MJ_ALIGN_PATH_AUTO, or a path to force (the small one only where it applies). */
moejit_status mj_align_layout_for(const char *op, int experts, int block_size, int64_t num_tokens, int64_t topk,
                                  int32_t expert_capacity, int path, mj_align_layout *out);

/* Check ids of `id_dtype` (when N > 0: not NULL, aligned to their size) and the outputs against
 * a layout, and fill the kernel parameters (no map, first_expert 0). `check_workspace` is 0 for
 * the reference, which needs none. */
moejit_status mj_align_check_outputs(const char *op, const mj_align_layout *l, const void *ids, int id_dtype,
                                     const moejit_align_outputs *o, int check_workspace, mj_align_params *p);

/* Every check of a moejit_align call (the launch's and the reference's): the spec normalised into
 * *shape, the batch's layout on `path` (MJ_ALIGN_PATH_AUTO but in measurements), the outputs and
 * the kernel parameters. `check_workspace` is 0 for the reference, which needs none. */
moejit_status mj_align_check_call(const moejit_align_spec *spec, const moejit_align_args *args, int check_workspace,
                                  int path, mj_align_shape *shape, mj_align_layout *l, mj_align_params *p);

/* align args' own reserved words (the outputs' are checked with them). */
moejit_status mj_align_check_args_reserved(const moejit_align_args *a);

/* 1 if any output is wanted. */
int mj_align_wants_output(const mj_align_params *p);

/* Launch align's entries (from `first`) of k for p: the layout picks the small entry, onepass
 * or three launches. */
moejit_status mj_align_run(moejit_ctx *ctx, const struct mj_kernel *k, int first, const mj_align_layout *l,
                           const mj_align_params *p, moejit_stream stream);

/* moejit_align on a given path (MJ_ALIGN_PATH_AUTO: moejit_align itself); a forced path lets
 * bench_ops time both sides of each threshold without a switch in the library. A forced tiled
 * path needs the workspace its layout says (mj_align_layout_for with that path). */
moejit_status mj_align_launch(moejit_ctx *ctx, const moejit_align_spec *spec, const moejit_align_args *args, int path,
                              moejit_stream stream);

/* align's counting sort for a shape, on host memory described by checked kernel parameters
 * (ids of s->id_dtype, expert_map a host pointer; route_align's reference runs it over E+S
 * experts). */
moejit_status mj_align_reference_run(const mj_align_shape *s, const mj_align_params *p);

struct mj_op;
extern const struct mj_op mj_op_align;

#endif
