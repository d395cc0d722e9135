/* align as a kernel family: its normalised shape, validation, naming, launch plan and codegen,
 * and the pieces route_align reuses for its own copy of align (geometry, Cfg, entries). */
#ifndef MOEJIT_OP_ALIGN_H
#define MOEJIT_OP_ALIGN_H

#include "moejit.h"

struct mj_kernel_plan;
struct mj_strbuf;

/* Align spec after normalisation: padding-free, compared with memcmp. */
typedef struct mj_align_shape {
    int32_t experts;    /* E */
    int32_t block_size; /* B */
} mj_align_shape;

/* Validate an align spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_align_normalize(const moejit_align_spec *spec, mj_align_shape *out);

/* block_size is a power of two in [MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK]; `spec_name`
 * starts the message ("align spec"). */
moejit_status mj_align_check_block(const char *spec_name, int block_size);

/* How an align Cfg is laid out (the constants of align.cuh's Cfg contract). */
typedef struct mj_align_geom {
    int experts;     /* E (E + S inside route_align) */
    int block_size;  /* B */
    int threads;     /* block size of every align entry */
    int count_warps; /* warps that rank a tile; their histogram rows fit the histogram budget */
    int tile;        /* ids per tile */
    int expert_bits; /* bits of an expert id in a rank code */
    int small_ids;   /* the largest batch of the small entry (0: E too large for it) */
} mj_align_geom;

/* The geometry of align's kernels for E experts and block size B (route_align's fallback too). */
void mj_align_geom_default(int experts, int block_size, mj_align_geom *g);
/* Any geometry: `threads` per block, histogram rows within hist_budget bytes, `tile` ids a tile,
 * up to `small_ids` ids (rounded up to 32) on the small path where E allows it. */
void mj_align_geom_make(int experts, int block_size, int threads, int hist_budget, int tile, int small_ids,
                        mj_align_geom *g);
/* Shared memory in ints of the single and scatter kernels, enough for the small path too
 * (align.cuh's Align<Cfg>::kSmemInts). */
int mj_align_smem_ints(const mj_align_geom *g);

/* Entries of align inside a module, counted from its first align entry. */
enum {
    MJ_ALIGN_SINGLE = 0,
    MJ_ALIGN_COUNT = 1,
    MJ_ALIGN_SCAN = 2,
    MJ_ALIGN_SCATTER = 3,
    MJ_ALIGN_SMALL = 4, /* decode batches, up to small_ids */
    MJ_ALIGN_ENTRIES = 5
};

/* Plan entries first .. first+4 for a geometry. */
void mj_align_plan_entries(struct mj_kernel_plan *plan, int first, const mj_align_geom *g);
/* `struct <cfg> { … };` for a geometry. */
void mj_align_emit_cfg(struct mj_strbuf *sb, const char *cfg, const mj_align_geom *g);
/* The extern "C" entries first .. first+4 of plan, on Cfg `cfg`. */
void mj_align_emit_entries(struct mj_strbuf *sb, const struct mj_kernel_plan *plan, int first, const char *cfg);

struct mj_op;
extern const struct mj_op mj_op_align;

#endif
