/*
 * moejit — shape-specialised Mixture-of-Experts routing kernels, compiled at first use.
 *
 * moejit turns a routing *shape* (experts, top-k, groups, scoring, dtype…) into CUDA C++ in which
 * every size is a compile-time constant, compiles it with NVRTC the first time it is needed, keeps
 * the cubin in an on-disk cache keyed by an XXH3-128 hash, and launches it through the CUDA Driver
 * API on the caller's stream. libcuda and libnvrtc are loaded with dlopen(): the library itself
 * links only libc, libdl and libpthread, so it loads on machines without a driver, where source
 * generation and prewarming (compiling into the cache for an explicit arch) keep working.
 *
 * Conventions used throughout this header
 *  - Every function that can fail returns a moejit_status; MOEJIT_OK is 0. moejit_last_error()
 *    describes the calling thread's most recent moejit call: on failure which argument or field,
 *    which value, the NVRTC log, the cache path…; "" after a success (every function clears it
 *    on entry).
 *  - Device pointers are plain `void *` (what cudaMalloc, cuMemAlloc and torch's data_ptr() give).
 *  - Streams are moejit_stream, which is the same type as CUstream and cudaStream_t; NULL is the
 *    legacy default stream.
 *  - Launches run in the calling thread's current CUDA context (the one cudaSetDevice or PyTorch
 *    made current). If the thread has none, the primary context of moejit_config.device is
 *    retained and made current.
 *  - Specs, arguments and the configuration are plain structs. Zero-initialise them ({0} or
 *    memset) and set what you need: every zero field means "the default" as documented per field.
 *    Each ends in `reserved` words that must stay zero: later versions give them meanings (zero
 *    keeping today's behaviour), so structs never change size or move a field and binaries built
 *    against this header keep working with later libraries. A library that meets a non-zero
 *    reserved word it does not know returns MOEJIT_ERR_UNSUPPORTED naming it.
 *  - All functions are thread-safe. A moejit_ctx may be shared by any number of threads.
 *    Concurrent first uses of one kernel compile it once: within a context (the other threads
 *    wait for it), and across processes sharing a cache directory through a best-effort per-key
 *    lock (moejit_config.cache_lock_timeout_ms). Disk trouble (read-only, full, permission
 *    denied, corrupt entries, a crash mid-write) never fails a call: one warning, then the cache
 *    is bypassed or the entry recompiled. (Except moejit_prewarm, whose job is the disk entry.)
 *
 * This header is the stable API. Defining MOEJIT_EXPERIMENTAL_API before including it adds a
 * section of functions that may still change between minor versions (counters, multi-arch
 * prewarm with progress, fused batch limits). The C references that define each operation's
 * meaning are in moejit_reference.h.
 *
 * Version: MOEJIT_VERSION_STRING at compile time, moejit_version_number() at run time. Before 1.0
 * the ABI may change between minor versions (0.1 → 0.2), never between patch releases.
 */
#ifndef MOEJIT_H
#define MOEJIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOEJIT_VERSION_MAJOR 0
#define MOEJIT_VERSION_MINOR 2
#define MOEJIT_VERSION_PATCH 0
#define MOEJIT_VERSION_STRING "0.2.0"
/* major·10000 + minor·100 + patch: 200 for 0.2.0 */
#define MOEJIT_VERSION_NUMBER (MOEJIT_VERSION_MAJOR * 10000 + MOEJIT_VERSION_MINOR * 100 + MOEJIT_VERSION_PATCH)

#if defined(__GNUC__) && !defined(MOEJIT_STATIC_DEFINE)
#define MOEJIT_API __attribute__((visibility("default")))
#else
#define MOEJIT_API
#endif

/* A context: configuration, the disk cache and the kernels loaded in this process (see Context). */
typedef struct moejit_ctx moejit_ctx;

/*-************************************************************************************************
 *  Status codes
 **************************************************************************************************/
typedef enum moejit_status {
    MOEJIT_OK = 0,
    MOEJIT_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, negative count, stride too small, misaligned */
    MOEJIT_ERR_INVALID_SPEC = 2,     /* a spec field out of range or inconsistent (K > E, E = 0…) */
    MOEJIT_ERR_UNSUPPORTED = 3,      /* valid but beyond what this build supports (E > max…) */
    MOEJIT_ERR_OUT_OF_MEMORY = 4,    /* host allocation failed */
    MOEJIT_ERR_NO_NVRTC = 5,         /* libnvrtc could not be loaded */
    MOEJIT_ERR_COMPILE = 6,          /* NVRTC rejected the generated source. last_error: NVRTC's error,
                                        the options, the key, where the source and the full log were
                                        written (MOEJIT_DUMP_DIR when set, else <cache>/failed/ when
                                        writable, else ${TMPDIR:-/tmp}/moejit-<uid>/failed/, as
                                        <kernel>-<key prefix>.cu and .log) and the log's first 5
                                        error lines */
    MOEJIT_ERR_NO_DRIVER = 7,        /* libcuda.so.1 missing or cuInit failed */
    MOEJIT_ERR_NO_DEVICE = 8,        /* a driver but no usable GPU */
    MOEJIT_ERR_CUDA = 9,             /* a Driver API call failed (name and code in last_error) */
    MOEJIT_ERR_CACHE_MISS = 10,      /* strict mode (MOEJIT_NO_COMPILE=1) and the kernel is not cached */
    MOEJIT_ERR_IO = 11,              /* a file could not be read or written */
    MOEJIT_ERR_NOT_FOUND = 12,       /* no such cache entry, preset or file */
    MOEJIT_ERR_CORRUPT = 13,         /* a cache entry failed verification */
    MOEJIT_ERR_AMBIGUOUS = 14        /* a key prefix matches more than one cache entry */
} moejit_status;

/* Static name of a status ("MOEJIT_ERR_INVALID_SPEC"). Never NULL. */
MOEJIT_API const char *moejit_status_str(moejit_status status);

/* What the calling thread's most recent moejit call said: "" after a success; after a failure,
 * the detail (field and value, NVRTC log and options, file path, driver error…). Never NULL. ctx
 * may be NULL (the detail is per thread). Valid until the thread's next moejit call. */
MOEJIT_API const char *moejit_last_error(const moejit_ctx *ctx);

/*-************************************************************************************************
 *  Version of the library in use (which may be newer than the header a program was built with)
 **************************************************************************************************/
MOEJIT_API unsigned moejit_version_number(void);       /* MOEJIT_VERSION_NUMBER of the library */
MOEJIT_API const char *moejit_version_string(void);    /* "0.2.0" */

/*-************************************************************************************************
 *  Limits of this build
 **************************************************************************************************/
#define MOEJIT_MAX_EXPERTS 4096 /* E: a warp per token up to 1024, a block per token above */
#define MOEJIT_MAX_TOPK 64      /* K, and the most shared slots S */
#define MOEJIT_MAX_ALIGN_EXPERTS 4096 /* E of align (local experts) */
#define MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS 1048576 /* Eg of align's expert_map (global experts), 2^20 */
#define MOEJIT_ALIGN_MIN_BLOCK 1      /* align block sizes: powers of two in [1, 1024] */
#define MOEJIT_ALIGN_MAX_BLOCK 1024
#define MOEJIT_MAX_MX_COLS 65536      /* C of mx_scales (scales per row) */

/*-************************************************************************************************
 *  Context
 **************************************************************************************************/
/* Same type as CUstream and cudaStream_t. */
typedef struct CUstream_st *moejit_stream;

typedef enum moejit_cache_mode {
    MOEJIT_CACHE_FROM_ENV = 0, /* MOEJIT_CACHE=rw|ro|off, default rw */
    MOEJIT_CACHE_RW = 1,       /* read entries, publish new ones */
    MOEJIT_CACHE_RO = 2,       /* read entries, never write (read-only images) */
    MOEJIT_CACHE_OFF = 3       /* memory only */
} moejit_cache_mode;

typedef enum moejit_log_level {
    MOEJIT_LOG_FROM_ENV = 0, /* MOEJIT_LOG=warn|info|debug, default warn */
    MOEJIT_LOG_SILENT = 1,
    MOEJIT_LOG_WARN = 2,
    MOEJIT_LOG_INFO = 3,
    MOEJIT_LOG_DEBUG = 4
} moejit_log_level;

/* Context configuration. Every zero/NULL field falls back to the environment, then the default. */
typedef struct moejit_config {
    const char *cache_dir;       /* MOEJIT_CACHE_DIR, else $XDG_CACHE_HOME/moejit, else ~/.cache/moejit */
    moejit_cache_mode cache_mode;
    int no_compile;              /* 1: a cache miss is MOEJIT_ERR_CACHE_MISS (MOEJIT_NO_COMPILE=1) */
    int always_compile;          /* 1: ignore cached entries and recompile (MOEJIT_ALWAYS_COMPILE=1) */
    const char *dump_dir;        /* MOEJIT_DUMP_DIR: write source, log and cubin of every compile */
    const char *extra_nvrtc_flags; /* MOEJIT_EXTRA_NVRTC_FLAGS, space separated; part of the key */
    moejit_log_level log_level;  /* messages go to stderr */
    int device;                  /* CUDA ordinal used when the calling thread has no current context */
    int compile_jobs;            /* parallel NVRTC compiles in moejit_prewarm(); 0: bounded by cores and memory */
    uint64_t cache_max_bytes;    /* MOEJIT_CACHE_MAX_BYTES ("512M", "2G"…): after each publish, the least
                                    recently used entries are removed until the cache fits; 0: no limit */
    int cache_lock_timeout_ms;   /* MOEJIT_CACHE_LOCK_TIMEOUT_MS: how long a process waits for another one
                                    compiling the same kernel into the same cache (a per-key flock);
                                    0: the environment, else 10000; < 0: no lock (duplicate compiles
                                    across processes are harmless, only slower). Best effort: where
                                    locks cannot be had (read-only cache, NFS without lockd) it
                                    compiles without one, and after the timeout it compiles too. */
    int pdl;                     /* programmatic dependent launch (PDL) on sm_90 and newer: each kernel may
                                    be scheduled while the kernel before it on the stream finishes, and
                                    waits for it on the GPU before touching memory (hides the gap between
                                    dependent launches, eagerly and in CUDA graphs). 0: MOEJIT_PDL=0|1,
                                    default on; 1: on; 2: off. Used where the device is sm_90+ and the
                                    driver 12.3+ (else plain launches); results are identical either way. */
    uint32_t reserved0;          /* 0 */
    uint64_t reserved[7];        /* 0 */
} moejit_config;

/* Create a context. cfg may be NULL (everything from the environment). Never touches the GPU:
 * the driver is loaded at the first launch, NVRTC at the first compile. */
MOEJIT_API moejit_status moejit_open(const moejit_config *cfg, moejit_ctx **out);

/* Release a context and every kernel it loaded. NULL is a no-op. No launch may be in flight in
 * another thread on this context. */
MOEJIT_API void moejit_close(moejit_ctx *ctx);

/* The cache directory this context uses (absolute), or "" when the cache is off. */
MOEJIT_API const char *moejit_ctx_cache_dir(const moejit_ctx *ctx);

/*-************************************************************************************************
 *  Operation 1: route — gating and top-k selection (docs/DESIGN.md §2.1)
 *
 *  In:  logits [T, row_stride] (f32, bf16 or f16), optional bias [E] (f32).
 *  Out: ids [T, K+S] int32 and weights [T, K+S] f32, row-major, contiguous.
 *  0. With a soft cap, logits become softcap·tanh(x/softcap). Weights, and softmax scores, read a
 *     NaN logit as -inf and ±inf as ±FLT_MAX, so that every weight is finite for any input; the
 *     other scores rank the logits as they are (±inf the extremes, NaN below every number).
 *  1. s = score(logits): softmax over the row, sigmoid or sqrt(softplus) per element (f32 math).
 *  2. sel = s + bias (the bias changes the selection only, never the weights).
 *  3. Groups (G > 1): the E experts form G consecutive groups of E/G; a group scores the best
 *     (max) or the sum of the two best (top2_sum) sel of its experts; only the experts of the TG
 *     best groups stay candidates.
 *  4. The K largest sel → ids, in descending order of sel; ties go to the lower index (expert or
 *     group) and an expert whose logit (or sel) is NaN ranks below every number. weights = s[ids].
 *     score_after_topk: the K largest raw logits (+ bias) are chosen, then weights = softmax over
 *     those K logits (softmax) or score(logit) (sigmoid, sqrt_softplus).
 *  5. renormalize: weights /= sum(weights) when the sum > 0 (never a division by zero).
 *  6. Shared slots (S > 0, sglang's fused shared experts): slot K+j holds id E+j and weight (sum of
 *     the K routed weights after step 5) / routed_scaling_factor.
 *  7. scale_output: every slot, shared ones included, is multiplied by routed_scaling_factor (so
 *     with renormalisation a shared weight is 1.0). Weights are clamped to FLT_MAX (reached only
 *     with extreme factors).
 *  Serving options (each off by default, each a compile-time part of the shape):
 *  8. Padded batches (spec.padded): args.num_valid points at a device int32 n read by the kernel
 *     itself, so a CUDA graph captured once serves every n. Rows t >= clamp(n, 0, T) read no
 *     logits: every slot gets id -1 and weight 0 (logical id -1, no load counted). align, permute,
 *     combine and dispatch_layout skip -1 ids.
 *  9. Routing replay (spec.replay): RECORD also writes the logical ids (what step 4 chose, the
 *     shared slots E+j) to args.logical_ids [T, K+S] in spec.logical_id_dtype. GIVEN reads the
 *     routed ids from the first K columns of each row of args.logical_ids instead of choosing:
 *     the row's scores, renormalisation, scaling and shared slots follow steps 0-7 exactly, so the
 *     weights are bit-identical to those route gave when it chose the same ids in the same order.
 *     A given id outside [0, E) gets id -1 and weight 0 and adds nothing to the sums.
 * 10. Expert placement with redundant experts (spec.max_replicas = R > 0, EPLB): logical expert e
 *     has c = replica_count[e] replicas (read clamped to [1, R]) whose physical ids are
 *     logical_to_physical[e·R + 0 .. c-1]; routed slot k of token t goes to replica (t·K + k) mod c
 *     (vLLM's rule: consecutive slots of the batch cycle through a hot expert's replicas,
 *     deterministic and stateless). ids then hold physical ids in [0, P), P =
 *     spec.num_physical_experts; a map entry outside [0, P) gives -1 (dropped downstream, weight
 *     kept). Shared slot j gets id P + j.
 * 11. Load counters (spec.load_counter): args.expert_load[id] += 1 (int32 or int64, integer adds,
 *     so exact and order-free) for every routed slot of a valid row whose final id is in [0, P)
 *     (P = E without placement) — the statistic EPLB rebalances from. The caller zeroes it.
 * 12. ids are written in spec.id_dtype: int32, int64 (torch.topk's and DeepEP's) or int16.
 * 13. Auxiliary-loss statistics (spec.aux_stats, Megatron-Core's load-balancing and z losses; the
 *     losses themselves: route_losses, their gradient: route_backward). Each row's aux scores
 *     p[t,e] come from the logits as route reads them (soft cap, NaN as -inf, ±inf as ±FLT_MAX; no
 *     bias, no groups): softmax routing (with or without score_after_topk) → softmax over the
 *     row; sigmoid → σ(x)/(Σ_row σ + 1e-20) (Megatron); sqrt_softplus → the same normalisation of
 *     its score (our extension). LOAD_BALANCE and SEQ_LOAD_BALANCE add Σ_t p[t,e] (fixed point,
 *     2^-32 units) to aux->prob_sums and the count of route's own K picks (logical ids, shared
 *     slots excluded) to aux->counts, per sequence with SEQ_LOAD_BALANCE ([S, E]; a token outside
 *     [off[0], off[S]) counts nowhere), else [1, E]. Z_LOSS writes lse_t = logsumexp of the row
 *     (0 for a row of NaN) to aux->lse. Integer adds only: bit-identical run to run. Not with
 *     padded, replay = given or route_align (MOEJIT_ERR_UNSUPPORTED). Each row's p is computed
 *     from the row route already holds (the logits are read once); a segment accumulates a
 *     contiguous run of tokens in shared memory and adds it once per sequence it met (grid
 *     capped). The aux scores of sigmoid routing are the ranking's fast sigmoid (~1e-6 relative).
 *  Non-finite logits, in short: a NaN expert weighs 0 and is chosen only when fewer than K
 *  experts have a number; a row of nothing but NaN gets ids 0..K-1 (by index) and zero weights;
 *  +inf experts share a softmax row's weight evenly (each reads as FLT_MAX).
 *  Output is bit-identical run to run. The reference computes each score exactly and rounds it
 *  to f32; the kernels use f32 math functions (a few ulp), so selections agree except between
 *  scores that differ by about 1e-6 relative, and weights agree to about 1e-6 relative.
 **************************************************************************************************/
typedef enum moejit_dtype {
    MOEJIT_DTYPE_F32 = 0,
    MOEJIT_DTYPE_BF16 = 1,
    MOEJIT_DTYPE_F16 = 2
} moejit_dtype;

typedef enum moejit_score {
    MOEJIT_SCORE_SOFTMAX = 0,
    MOEJIT_SCORE_SIGMOID = 1,
    MOEJIT_SCORE_SQRT_SOFTPLUS = 2 /* sqrt(softplus(x)) */
} moejit_score;

typedef enum moejit_group_score {
    MOEJIT_GROUP_SCORE_MAX = 0,      /* a group scores its best expert */
    MOEJIT_GROUP_SCORE_TOP2_SUM = 1  /* a group scores the sum of its two best (DeepSeek-V3) */
} moejit_group_score;

/* Integer types of id arrays. */
typedef enum moejit_index_dtype {
    MOEJIT_INDEX_INT32 = 0,
    MOEJIT_INDEX_INT64 = 1,
    MOEJIT_INDEX_INT16 = 2
} moejit_index_dtype;

/* Routing replay (route step 9). */
typedef enum moejit_replay {
    MOEJIT_REPLAY_OFF = 0,
    MOEJIT_REPLAY_RECORD = 1, /* also write the logical ids to args.logical_ids */
    MOEJIT_REPLAY_GIVEN = 2   /* take the routed ids from args.logical_ids, compute their weights */
} moejit_replay;

/* Auxiliary-loss statistics (route step 13), flags of moejit_route_spec.aux_stats. */
#define MOEJIT_AUX_LOAD_BALANCE 1u     /* switch load balancing: prob_sums and counts [1, E] */
#define MOEJIT_AUX_SEQ_LOAD_BALANCE 2u /* per sequence (DeepSeek-V3): prob_sums and counts [S, E] */
#define MOEJIT_AUX_Z_LOSS 4u           /* router z-loss: lse [T] */

/* Per-expert load counters (route step 11). */
typedef enum moejit_load_counter {
    MOEJIT_LOAD_NONE = 0,
    MOEJIT_LOAD_INT32 = 1,
    MOEJIT_LOAD_INT64 = 2
} moejit_load_counter;

typedef struct moejit_route_spec {
    int32_t num_experts;           /* E, 1..MOEJIT_MAX_EXPERTS */
    int32_t topk;                  /* K, 1..min(E, MOEJIT_MAX_TOPK) */
    moejit_score score;            /* default softmax */
    moejit_dtype dtype;            /* logits dtype, default f32 */
    int32_t num_groups;            /* G: 0 or 1 = ungrouped; E % G == 0 */
    int32_t topk_groups;           /* TG: groups kept, 0 = all G */
    moejit_group_score group_score;
    int32_t has_bias;              /* 1: args.bias [E] f32 is added for the selection only */
    float softcap;                 /* > 0: logits become softcap·tanh(x/softcap) first; 0 = off */
    int32_t score_after_topk;      /* 1: top-K on raw logits, then score only those K */
    int32_t renormalize;           /* 1: weights /= their sum (when the sum > 0) */
    int32_t scale_output;          /* 1: every weight (shared slots too) *= routed_scaling_factor */
    float routed_scaling_factor;   /* 0 means 1.0; else a finite positive normal float */
    int32_t shared_slots;          /* S fused shared-expert slots appended to each row */
    int32_t padded;                /* 1: args.num_valid bounds the rows routed (step 8) */
    moejit_index_dtype id_dtype;   /* of args.ids; default int32 (step 12) */
    int32_t max_replicas;          /* R > 0: expert placement with args.logical_to_physical (step 10) */
    int32_t num_physical_experts;  /* P: physical ids are in [0, P); required with placement, else 0 */
    moejit_load_counter load_counter; /* count each expert's routed slots in args.expert_load (step 11) */
    moejit_replay replay;          /* record or replay the logical ids (step 9) */
    moejit_index_dtype logical_id_dtype; /* of args.logical_ids with replay; default int32 */
    uint32_t aux_stats;            /* MOEJIT_AUX_* flags: statistics for the auxiliary losses (step 13) */
    moejit_index_dtype seq_offset_dtype; /* of aux->seq_offsets (MOEJIT_AUX_SEQ_LOAD_BALANCE): int32 or int64 */
    uint32_t reserved[9];          /* 0 */
} moejit_route_spec;

/* Auxiliary-loss statistics (route step 13; route_losses; route_backward). Device pointers. */
typedef struct moejit_aux_stats {
    uint64_t *prob_sums;     /* [N, E]: Σ_t p[t,e] over the tokens of each sequence (N = S with
                                MOEJIT_AUX_SEQ_LOAD_BALANCE, else 1), in units of 2^-32 (unsigned fixed
                                point: integer adds, hence exact and order-free); added to (zero it) */
    int32_t *counts;         /* [N, E]: routed slots (t, k) of each sequence with logical id e; added to */
    float *lse;              /* [T]: logsumexp of each row (MOEJIT_AUX_Z_LOSS), written */
    const void *seq_offsets; /* [S+1] of spec.seq_offset_dtype: sequence s holds the tokens
                                [off[s], off[s+1]); off[0] = 0, non-decreasing, off[S] = T (cu_seqlens) */
    int64_t num_seqs;        /* S >= 1 with MOEJIT_AUX_SEQ_LOAD_BALANCE, else ignored */
    uint64_t reserved[3];    /* 0 */
} moejit_aux_stats;

typedef struct moejit_route_args {
    const void *logits;   /* device [T, row_stride] of spec.dtype, aligned to the element size */
    const float *bias;    /* device [E]; required when spec.has_bias, else ignored */
    void *ids;            /* device [T, K+S] of spec.id_dtype (int32 by default) */
    float *weights;       /* device [T, K+S] */
    int64_t num_tokens;   /* T >= 0; T == 0 launches nothing */
    int64_t row_stride;   /* elements between consecutive rows of logits; 0 means E; must be >= E */
    const int32_t *num_valid;           /* spec.padded: device [1], the rows to route (step 8) */
    const int32_t *logical_to_physical; /* spec.max_replicas = R: device [E, R] (step 10) */
    const int32_t *replica_count;       /* spec.max_replicas: device [E] */
    void *expert_load;    /* spec.load_counter: device [P] (P = E without placement), added to */
    void *logical_ids;    /* spec.replay: device [T, K+S] of spec.logical_id_dtype, written (RECORD)
                             or read (GIVEN: the first K columns) */
    const moejit_aux_stats *aux; /* spec.aux_stats: host struct of device buffers (step 13) */
    uint64_t reserved[4]; /* 0 */
} moejit_route_args;

/* Route a batch on `stream`. The first call for a shape generates, compiles (or loads from the
 * disk cache) and loads its kernel; later calls are a lookup and one cuLaunchKernel. Bad specs or
 * arguments return an error before anything is compiled, written or launched. */
MOEJIT_API moejit_status moejit_route(moejit_ctx *ctx, const moejit_route_spec *spec,
                                      const moejit_route_args *args, moejit_stream stream);

/* Built-in routing presets: "mixtral" (8/2), "qwen3-moe" (128/8), "qwen3-next" (512/10), "gpt-oss"
 * (128/4, top-k then softmax), "deepseek-v3" (256/8, 8 groups, 4 kept, sigmoid + bias, top2_sum,
 * scale 2.5), "kimi-k2" (384/8, sigmoid + bias, scale 2.827), "glm-4.5" (160/8, sigmoid + bias,
 * scale 2.5), "llama-4" (16/1, sigmoid after top-k). Fills *spec (dtype bf16; set your own).
 * MOEJIT_ERR_NOT_FOUND for an unknown name. */
MOEJIT_API moejit_status moejit_route_preset(const char *model, moejit_route_spec *spec);

/* Name of preset i (0-based), or NULL past the last one. */
MOEJIT_API const char *moejit_route_preset_name(size_t i);

/*-************************************************************************************************
 *  Operation 1b: route_backward — the gradient of route's weights w.r.t. the logits (docs/DESIGN.md §2.1b)
 *
 *  In:  the forward's logits [T, row_stride] (spec.route.dtype; re-read, not saved), its ids
 *       [T, K+S] as route wrote them (only the first K columns are read), grad_weights [T, K+S]
 *       f32 (dL/dweights). Out: grad_logits [T, E] f32, row stride E, every element written.
 *  grad_logits is exactly the derivative of route's weights (steps 0-7) w.r.t. the logits with
 *  the selection (the ids) held constant, i.e. dL/dx = Σ_j grad_weights[j]·dweights[j]/dx:
 *    - bias and groups only move the selection: they change nothing here (no bias is read);
 *    - softmax over the row: every expert of the row gets s_e·(D_e − Σ_k D_k·s_k), D the weight
 *      gradient reaching the score of each chosen expert (0 for the others, which therefore get
 *      −s_e·Σ_k D_k·s_k: nonzero, except that renormalisation makes that sum 0); sigmoid and
 *      sqrt(softplus): D_e·score'(x_e) for the chosen,
 *      0 for the others; score_after_topk with softmax: the softmax Jacobian over the K chosen
 *      logits; soft cap: times 1 − tanh²(x/cap);
 *    - renormalisation w/Σw (when the sum is > 0, as the forward), scale_output (× factor), and the
 *      shared slots, whose weight is the routed sum / factor (× factor with scale_output): their
 *      gradient flows to every routed weight (with renormalisation the routed sum is the constant 1
 *      and they get none). A weight the forward clamped to FLT_MAX gets no gradient.
 *  Ids: an id outside [0, E) (-1: a padded row, a dropped slot, a given id route rejected) gets no
 *  gradient and adds nothing to the sums; a row without a valid id gets zeros. A repeated id (given
 *  ids may repeat) gets the sum of its slots' gradients, in slot order. ids are read in
 *  spec.route.id_dtype; with placement (spec.route.max_replicas > 0) route's ids are physical, so
 *  pass the logical ids it recorded (spec.route.replay = record, args.logical_ids), read in
 *  spec.route.logical_id_dtype. The other serving options (padded, load counters) change nothing.
 *  Non-finite logits, as the forward reads them: NaN is -inf, so it gets a gradient of exactly 0;
 *  ±inf is ±FLT_MAX and gets the derivative there (finite; 0 under a soft cap). Every output is
 *  finite when grad_weights are (and their products with the scaling factor stay below FLT_MAX).
 *  Auxiliary losses (spec.route.aux_stats, args.grad_losses not NULL): the gradient of
 *  gl[0]·L_aux + gl[1]·L_seq + gl[2]·L_z (route_losses) is added in the same pass, the counts held
 *  constant: with g_e = gl[0]·E·c_e/(K·T²) + gl[1]·E·c_{s,e}/(S·K·L_s²) (c_e = Σ_s counts[s,e];
 *  s the token's sequence, L_s its length), softmax aux scores give p_e·(g_e − Σ_j g_j·p_j),
 *  normalised scores (σ or sqrt_softplus, n = Σ score + 1e-20) score'(x_e)/n·(g_e − Σ_j g_j·p_j),
 *  and the z loss gl[2]·2·lse_t/T·softmax_e; times the soft cap's derivative, 0 for NaN logits.
 *  The whole row is read then (once). grad_weights stays required (zeros for losses alone).
 *  Kernels: a segment of a warp per token up to 1024 experts (several tokens a warp below 32), a
 *  block per token above; reductions in a fixed order, no atomics: bit-identical run to run. The
 *  reference computes in double; kernels agree with it to about 1e-5 relative (f32 math), or to
 *  about 1e-6 of Σ|grad_weights|·factor where terms of that size cancel.
 **************************************************************************************************/
typedef struct moejit_route_backward_spec {
    moejit_route_spec route; /* the forward's spec, as given to moejit_route */
    uint32_t reserved[8];    /* 0 */
} moejit_route_backward_spec;

typedef struct moejit_route_backward_args {
    const void *logits;        /* device [T, row_stride] of spec.route.dtype: the forward's input */
    const void *ids;           /* device [T, K+S]: the forward's ids (logical ones with placement, see
                                  above); the first K columns are read */
    const float *grad_weights; /* device [T, K+S] f32: the loss's gradient w.r.t. the forward's weights */
    float *grad_logits;        /* device [T, E] f32, written whole */
    int64_t num_tokens;        /* T >= 0; T == 0 launches nothing */
    int64_t row_stride;        /* elements between rows of logits; 0 means E; must be >= E */
    const float *grad_losses;  /* spec.route.aux_stats: device [3] f32, dL/d(aux, seq_aux, z) as
                                  route_losses writes them; NULL: the losses get no gradient */
    const moejit_aux_stats *aux; /* with grad_losses: the forward's counts and seq_offsets (prob_sums
                                  and lse are not read) */
    uint64_t reserved[6];      /* 0 */
} moejit_route_backward_args;

/* grad_logits of a batch on `stream`. Bad specs or arguments return an error before anything is
 * compiled, written or launched. */
MOEJIT_API moejit_status moejit_route_backward(moejit_ctx *ctx, const moejit_route_backward_spec *spec,
                                               const moejit_route_backward_args *args, moejit_stream stream);

/*-************************************************************************************************
 *  Operation 1c: route_losses — the auxiliary losses from route's statistics (docs/DESIGN.md §2.1c)
 *
 *  In: route's aux statistics (moejit_aux_stats: prob_sums, counts, lse, seq_offsets), T, S.
 *  Out: losses [3] f32 = (L_aux, L_seq, L_z), an unrequested one 0, without coefficients (the
 *  caller multiplies, Megatron's aux_loss_coeff / z_loss_coeff):
 *    L_aux = E/(K·T²) · Σ_e P_e·c_e                 P_e = Σ_s prob_sums[s,e]·2^-32, c_e = Σ_s counts[s,e]
 *    L_seq = 1/S · Σ_s Σ_e c_{s,e}·E/(K·L_s) · P_{s,e}/L_s   (a sequence with L_s = 0 adds 0)
 *    L_z   = 1/T · Σ_t lse_t²
 *  One block, in double, every sum in a fixed order (strided per thread, then a fixed tree):
 *  bit-identical run to run. T == 0 writes zeros. spec.aux_stats must be the forward's.
 **************************************************************************************************/
typedef struct moejit_route_losses_spec {
    int32_t num_experts;                 /* E, 1..MOEJIT_MAX_EXPERTS */
    int32_t topk;                        /* K, 1..min(E, MOEJIT_MAX_TOPK) */
    uint32_t aux_stats;                  /* MOEJIT_AUX_* flags (the forward's), at least one */
    moejit_index_dtype seq_offset_dtype; /* of seq_offsets: int32 or int64 */
    uint32_t reserved[4];                /* 0 */
} moejit_route_losses_spec;

typedef struct moejit_route_losses_args {
    const moejit_aux_stats *aux; /* host struct of route's device statistics */
    float *losses;               /* device [3] f32, written */
    int64_t num_tokens;          /* T >= 0 */
    uint64_t reserved[5];        /* 0 */
} moejit_route_losses_args;

/* The losses on `stream`: one launch of one block. */
MOEJIT_API moejit_status moejit_route_losses(moejit_ctx *ctx, const moejit_route_losses_spec *spec,
                                             const moejit_route_losses_args *args, moejit_stream stream);

/*-************************************************************************************************
 *  Operation 2: align — token→expert dispatch maps (docs/DESIGN.md §2.2)
 *
 *  In:  ids [T, K] of spec.id_dtype (int32, int64 or int16), row-major (the ids of route, or any
 *       top-k). Expert parallelism: E counts this rank's (local) experts, and each id becomes a
 *       local expert id or is dropped ("not on this rank"; -1, route's padding, always is):
 *         no map (default): local = id - args.first_expert (TensorRT-LLM's local_expert_offset,
 *                          0 by default), dropped unless in [0, E);
 *         spec.global_experts = Eg > 0: local = args.expert_map[id] (vLLM's expert_map, global →
 *                          local, -1 = not on this rank), dropped when id is outside [0, Eg) or the
 *                          entry outside [0, E). first_expert must then be 0, and a map without
 *                          spec.global_experts is an error (never read as local ids).
 *       An id is never truncated: an int64 id beyond int32 (or any negative id) is outside both
 *       ranges, so it is dropped. Every output below speaks of local experts.
 *  Out (each optional: NULL = not wanted), with N = T·K and the flat index i = t·K + k:
 *    counts [E]          valid (t, k) per expert.
 *    offsets [E+1]       offsets[e] = Σ_{j<e} round_up(counts[j], B); offsets[E] = total_padded.
 *    sorted_ids [cap]    positions offsets[e] .. offsets[e]+counts[e]-1 hold the flat indices of
 *                        expert e in ascending order; the rest of expert e's range, up to
 *                        offsets[e+1], holds the padding value N. Positions >= total_padded are
 *                        not written (vLLM fills them with N too; its consumers stop at the total).
 *    block_expert [cap/B] expert of each block of B rows; -1 for the blocks at or beyond
 *                        total_padded (padding-only tail blocks, as vLLM).
 *    total_padded [1]    offsets[E].
 *    slot_of [T, K]      position of (t, k) in sorted_ids, -1 when its id was dropped (the inverse
 *                        map that un-permutes the experts' outputs).
 *  Pad to capacity (spec.expert_capacity = C > 0; Megatron's pad_to_capacity, after moejit_capacity
 *  or on its own as the position policy): every expert's range is exactly R = round_up(C, B) rows,
 *  offsets[e] = e·R and total_padded = E·R whatever the ids (static shapes for graphs and
 *  grouped GEMMs); the (t, k) of an expert beyond its first C by flat index are dropped (slot_of
 *  -1, nothing overflows); counts[e] = min(count, C), and the range's rows after them hold the
 *  padding value N. sorted_ids then needs E·R entries (moejit_align_capacity() says so). Batches
 *  up to 32768 ids run in one launch whatever E·R, larger ones in three (the decode path is not
 *  used).
 *  route_align has no such option: run route, capacity and align.
 *  Deterministic: the order inside an expert is the flat index order, whatever the batch size
 *  (atomics-based peers order by arrival). Batches of more than 32768 ids run in three launches
 *  over tiles of the batch and need a caller-provided workspace (no hidden allocation: launches
 *  stay capturable in CUDA graphs); moejit_align_workspace_bytes() says how much, 0 for one-launch
 *  batches.
 *
 *  Mapping to the peers:
 *    vLLM moe_align_block_size(topk_ids, E, B, sorted_token_ids, experts_ids, num_tokens_post_pad)
 *      sorted_token_ids = sorted_ids, experts_ids = block_expert, num_tokens_post_pad =
 *      total_padded; its buffer size numel + E·(B-1) (capped at numel·B) is moejit_align_capacity().
 *      Its expert_map (global → local, -1 elsewhere) is args.expert_map with spec.global_experts
 *      = its length, as with ignore_invalid_experts: the maps are over the local experts.
 *    Fast-LLM SparseMap (pad_to_multiple = B): sparse_rows = slot_of, expert_ends[e] =
 *      offsets[e+1], expert_pad_begins[e] = offsets[e] + counts[e], num_rows = total_padded,
 *      num_rows_unpadded = N, num_rows_dense = T, num_experts_per_token = K.
 **************************************************************************************************/
typedef struct moejit_align_spec {
    int32_t num_experts; /* E (local experts), 1..MOEJIT_MAX_ALIGN_EXPERTS */
    int32_t block_size;  /* B: a power of two in [MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK] */
    moejit_index_dtype id_dtype; /* of args.ids; default int32 */
    int32_t global_experts; /* Eg in 1..MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS: ids are global, mapped by
                               args.expert_map [Eg]; 0: no map */
    int32_t expert_capacity; /* C > 0: pad to capacity (Megatron's pad_to_capacity, static shapes): every
                                expert's range is round_up(C, B) rows, (t, k) past the first C of an
                                expert (by flat index) dropped; see above. 0: off. A run-time value:
                                every C shares one kernel */
    uint32_t reserved[3]; /* 0 */
} moejit_align_spec;

/* The outputs of align (device memory, int32, 4-byte aligned). Shared by align and route_align. */
typedef struct moejit_align_outputs {
    int32_t *counts;          /* [E] or NULL */
    int32_t *offsets;         /* [E+1] or NULL */
    int32_t *sorted_ids;      /* [sorted_capacity] or NULL */
    int64_t sorted_capacity;  /* entries of sorted_ids; 0 means moejit_align_capacity(); must be >= it */
    int32_t *block_expert;    /* [sorted_capacity / B] or NULL */
    int32_t *total_padded;    /* [1] or NULL */
    int32_t *slot_of;         /* [T, K] or NULL */
    void *workspace;          /* device scratch of workspace_bytes; only when the batch needs one */
    size_t workspace_bytes;   /* >= moejit_align_workspace_bytes() */
    uint64_t reserved[7];     /* 0 */
} moejit_align_outputs;

typedef struct moejit_align_args {
    const void *ids;          /* device [T, K] of spec.id_dtype, aligned to its size; may be NULL when T == 0 */
    int64_t num_tokens;       /* T >= 0 */
    int32_t topk;             /* K >= 1: columns of ids */
    int32_t first_expert;     /* without a map: the global id of local expert 0 (default 0) */
    moejit_align_outputs out;
    const int32_t *expert_map; /* spec.global_experts = Eg: device [Eg], global → local or -1
                                  (may be NULL when T == 0); NULL without a map */
    uint64_t reserved[5];     /* 0 */
} moejit_align_args;

/* Build the dispatch maps on `stream`. T·K and the capacity must fit in int32 (the maps hold
 * int32 positions). T == 0 still writes counts, offsets and total_padded (zeros); nothing is
 * launched when no output is wanted. Bad specs or arguments return an error before anything is
 * compiled or launched. */
MOEJIT_API moejit_status moejit_align(moejit_ctx *ctx, const moejit_align_spec *spec, const moejit_align_args *args,
                                      moejit_stream stream);

/* Entries sorted_ids needs for T tokens of K ids: N + min(E, N)·(B-1), the largest possible
 * padded total (vLLM's max_num_tokens_padded); with spec.expert_capacity = C, E·round_up(C, B). block_expert then needs capacity / B entries. */
MOEJIT_API moejit_status moejit_align_capacity(const moejit_align_spec *spec, int64_t num_tokens, int32_t topk,
                                               int64_t *capacity);

/* Bytes of workspace moejit_align() needs for T tokens of K ids: 0 for batches done in one launch
 * (N = T·K up to 32768 ids, whatever the capacity), else 4·(E·(ceil(N/4096) + 3) + 1). Its content
 * before a launch does not matter, so one buffer serves every launch on a stream. */
MOEJIT_API moejit_status moejit_align_workspace_bytes(const moejit_align_spec *spec, int64_t num_tokens,
                                                      int32_t topk, size_t *bytes);

/*-************************************************************************************************
 *  Operation 3: route_align — route, then align, in one launch for decode batches (docs/DESIGN.md §2.3)
 *
 *  Exactly moejit_route() followed by moejit_align() over the route output: ids [T, K+S] with
 *  E+S experts (the shared slots' ids E..E+S-1 are aligned like any expert, so their rows get
 *  blocks too), flat index t·(K+S)+k. Up to a token limit (moejit_route_align_fused_tokens(): 64
 *  up to E = 1024, fewer or none where the ids outgrow a block's shared memory, 0 above 1024
 *  experts) it is one launch: on sm_90 and newer a cluster of up to 8 blocks, each routing its
 *  share of the tokens (a warp a token), exchanging the ids through distributed shared memory and
 *  writing a share of align's maps; below sm_90 (no clusters) one block, up to 8 tokens. Beyond,
 *  transparently, the route kernel then align's launches, with identical results (no workspace
 *  either way up to the limit). Every scoring mode and serving option of route is supported; with placement the
 *  ids are physical and align covers P+S experts (P = spec.route.num_physical_experts). Padded
 *  rows (-1) are dropped by align.
 **************************************************************************************************/
typedef struct moejit_route_align_spec {
    moejit_route_spec route;
    int32_t block_size; /* B of align: a power of two in [MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK] */
    uint32_t reserved[7]; /* 0 */
} moejit_route_align_spec;

typedef struct moejit_route_align_args {
    moejit_route_args route;    /* as moejit_route(); ids and weights are required */
    moejit_align_outputs align; /* as moejit_align() over E+S experts, T tokens of K+S ids */
    uint64_t reserved[4];       /* 0 */
} moejit_route_align_args;

MOEJIT_API moejit_status moejit_route_align(moejit_ctx *ctx, const moejit_route_align_spec *spec,
                                            const moejit_route_align_args *args, moejit_stream stream);

/* moejit_align_capacity() / moejit_align_workspace_bytes() for E+S experts and K+S ids per token. */
MOEJIT_API moejit_status moejit_route_align_capacity(const moejit_route_align_spec *spec, int64_t num_tokens,
                                                     int64_t *capacity);
MOEJIT_API moejit_status moejit_route_align_workspace_bytes(const moejit_route_align_spec *spec,
                                                            int64_t num_tokens, size_t *bytes);

/*-************************************************************************************************
 *  Operation 4: mx_scales — mxfp8 e8m0 scales to the blocked (swizzled) layout (docs/DESIGN.md §2.5)
 *
 *  The layout tcgen05 / cuBLAS read block scales in, as torchao's to_blocked(): a matrix of
 *  [rows, C] uint8 scales is padded with zeros to [Rp, Cp] = [round_up(rows, 128), round_up(C, 4)]
 *  and cut into 128×4 tiles stored row-major by tile (tile (rb, cb) is the (rb·Cp/4 + cb)-th 512
 *  bytes); inside a tile, scale (r, c) sits at byte (r % 32)·16 + (r / 32)·4 + c.
 *    3D: in [G, R, C] (one matrix per expert: weights) → out [G, Rp·Cp], each group blocked alone.
 *    2D with M groups: in [M, C] whose rows are split into G consecutive groups by group_ends
 *      (activations: group g is rows group_ends[g-1] .. group_ends[g]-1, group_ends[-1] = 0) →
 *      each group blocked alone, padded to a multiple of 128 rows, the groups concatenated; an
 *      empty group takes no rows. out holds moejit_mx_scales_blocked_bytes(): every byte of it is
 *      written (zeros after the last group). Rows after group_ends[G-1] belong to no group.
 *    2D with K groups: in [M, C] whose columns are split into G consecutive groups by group_ends
 *      (weight gradients: C = total K / 32, K the contraction dimension cut by expert; group g is
 *      columns group_ends[g-1] .. group_ends[g]-1, group_ends[-1] = 0) → each group's [M, C_g]
 *      blocked alone as [Rp, round_up(C_g, 4)] (Rp = round_up(M, 128): every group has all M
 *      rows), the groups concatenated: group g starts at byte Rp·Σ_{h<g} round_up(C_h, 4) and
 *      holds its tiles (rb, cb) at (rb·round_up(C_g, 4)/4 + cb)·512; an empty group takes no
 *      bytes. torchao's triton_mx_block_rearrange_2d_K_groups. out holds
 *      moejit_mx_scales_blocked_bytes(): every byte of it is written (zeros after the last group).
 *      Columns after group_ends[G-1] belong to no group.
 *  The inverse maps blocked back to plain (for checks): it writes only the rows and columns that
 *  exist in the plain tensor and belong to a group. Output is bit-identical to the reference.
 *  group_ends stays on the device (sizes are data-dependent), so the kernel cannot report bad
 *  offsets: it reads them as a running maximum clamped to [0, M] (M groups) or [0, C] (K groups)
 *  (decreasing ends make empty groups) and never touches memory outside the tensors; the
 *  reference rejects them.
 **************************************************************************************************/
typedef struct moejit_mx_scales_spec {
    int32_t cols; /* C: scales per row (K / 32 for mxfp8), 1..MOEJIT_MAX_MX_COLS */
    uint32_t reserved[7]; /* 0 */
} moejit_mx_scales_spec;

typedef enum moejit_mx_layout {
    MOEJIT_MX_3D = 0,          /* [G, R, C], every group R rows (expert weights) */
    MOEJIT_MX_2D_GROUPS = 1,   /* [M, C], groups of rows given by group_ends (activations) */
    MOEJIT_MX_2D_K_GROUPS = 2  /* [M, C], groups of columns given by group_ends (weight gradients) */
} moejit_mx_layout;

typedef struct moejit_mx_scales_args {
    moejit_mx_layout layout;
    const void *in;             /* moejit_mx_scales: plain; moejit_mx_scales_inverse: blocked */
    void *out;                  /* moejit_mx_scales: blocked; moejit_mx_scales_inverse: plain */
    int64_t groups;             /* G >= 0 */
    int64_t rows;               /* 3D: R rows per group; 2D: M rows in all (K groups: every group's rows) */
    const int32_t *group_ends;  /* 2D: device [G] (host memory for the references), 4-byte aligned:
                                   ends of row groups (M groups) or of column groups (K groups) */
    int64_t row_stride;         /* bytes between rows of the plain tensor; 0 means C; >= C */
    int64_t group_stride;       /* 3D: bytes between groups of the plain tensor; 0 means R·row_stride */
    uint64_t reserved[8];       /* 0 */
} moejit_mx_scales_args;

/* Plain → blocked on `stream`. The blocked tensor must be 16-byte aligned (it is read and written
 * in 16-byte pieces); the plain one may have any alignment and strides (16-byte accesses when
 * they allow it). Nothing is launched when the blocked tensor is empty. */
MOEJIT_API moejit_status moejit_mx_scales(moejit_ctx *ctx, const moejit_mx_scales_spec *spec,
                                          const moejit_mx_scales_args *args, moejit_stream stream);

/* Blocked → plain on `stream` (args.in is blocked, args.out plain). */
MOEJIT_API moejit_status moejit_mx_scales_inverse(moejit_ctx *ctx, const moejit_mx_scales_spec *spec,
                                                  const moejit_mx_scales_args *args, moejit_stream stream);

/* Size of the blocked tensor: 3D G·Rp·Cp; 2D the largest the groups can need: M groups
 * round_down(M + 127·G, 128)·Cp (each group wastes at most 127 rows), K groups
 * Rp·round_down(C + 3·G, 4) (each group wastes at most 3 columns; torchao allocates Rp·(C + 4·G),
 * of which this is the prefix, the rest zeros). rows is M for both 2D layouts. */
MOEJIT_API moejit_status moejit_mx_scales_blocked_bytes(const moejit_mx_scales_spec *spec, moejit_mx_layout layout,
                                                        int64_t groups, int64_t rows, size_t *bytes);

/*-************************************************************************************************
 *  Operation 5: dispatch_layout — what an all-to-all needs to know, from routing ids (docs/DESIGN.md §2.6)
 *
 *  DeepEP's get_dispatch_layout, for R ranks holding E/R consecutive experts each (expert e lives
 *  on rank e / (E/R)). In: ids [T, K] of spec.id_dtype; an id outside [0, E) (-1: padding,
 *  dropped) is skipped (an int64 id is never truncated: 2^32 + 3 is not expert 3). Out (each
 *  optional: NULL = not wanted):
 *    tokens_per_rank [R]        tokens with at least one id on rank r;
 *    tokens_per_node [R / ranks_per_node]  tokens with at least one id on a rank of node n (DeepEP's
 *                               num_tokens_per_rdma_rank; nodes of spec.ranks_per_node consecutive
 *                               ranks, 8 by default, DeepEP's NUM_MAX_NVL_PEERS);
 *    tokens_per_expert [E]      (t, k) whose id is e: a token carrying an expert twice counts twice
 *                               (route never does; DeepEP counts the same way);
 *    is_token_in_rank [T, R]    1 byte each (torch.bool): 1 when token t has an id on rank r, else 0.
 *  Every output is fully written (no zeroing needed), in one launch, deterministically (integer
 *  counts). moejit does not communicate: these feed DeepEP's dispatch or NCCL's all_to_all.
 **************************************************************************************************/
typedef struct moejit_dispatch_layout_spec {
    int32_t num_experts;         /* E, 1..MOEJIT_MAX_EXPERTS + MOEJIT_MAX_TOPK (physical, shared slots included) */
    int32_t num_ranks;           /* R >= 1, dividing E */
    int32_t topk;                /* K, 1..MOEJIT_MAX_TOPK*2: columns of ids */
    moejit_index_dtype id_dtype; /* of args.ids; default int32 */
    int32_t ranks_per_node;      /* ranks of a node for tokens_per_node, dividing R; 0 means 8, or R
                                    when R < 8 (one node, as DeepEP) */
    uint32_t reserved[3];        /* 0 */
} moejit_dispatch_layout_spec;

typedef struct moejit_dispatch_layout_args {
    const void *ids;             /* device [T, K] of spec.id_dtype, aligned to its size; may be NULL when T == 0 */
    int64_t num_tokens;          /* T >= 0, T·K < 2^31 */
    int32_t *tokens_per_rank;    /* device [R] or NULL */
    int32_t *tokens_per_node;    /* device [R / ranks_per_node] or NULL */
    int32_t *tokens_per_expert;  /* device [E] or NULL */
    uint8_t *is_token_in_rank;   /* device [T, R] (any alignment) or NULL */
    uint64_t reserved[8];        /* 0 */
} moejit_dispatch_layout_args;

/* Compute the dispatch layout on `stream`. T == 0 still writes the counts (zeros); nothing is
 * launched when no output is wanted. Bad specs or arguments return an error before anything is
 * compiled or launched. */
MOEJIT_API moejit_status moejit_dispatch_layout(moejit_ctx *ctx, const moejit_dispatch_layout_spec *spec,
                                                const moejit_dispatch_layout_args *args, moejit_stream stream);

/*-************************************************************************************************
 *  Operation 6: capacity — expert capacity and token dropping (Megatron-Core; docs/DESIGN.md §2.7)
 *
 *  Applied to route's outputs, in place, between route and align. In: ids [T, K+S] of
 *  spec.id_dtype and weights [T, K+S] f32, row-major; only the first K columns are routed slots
 *  (the S shared slots after them are never dropped nor counted). With the flat index i = t·K + k
 *  of routed slot (t, k), every expert e keeps at most C of the slots whose id is e:
 *    MOEJIT_DROP_PROBS     the C with the largest weight; among equal weights the lower flat index
 *                          (weights compare as numbers: -0 equals +0, NaN is below every number).
 *    MOEJIT_DROP_POSITION  the first C by flat index ("tokens at the end of the batch are dropped").
 *  A dropped slot gets id -1 and weight 0, which align, permute, combine and dispatch_layout skip.
 *  Ids already -1, or outside [0, E) (an int64 id is never truncated), are left alone and count
 *  for no expert. Optional outputs: tokens_per_expert [E] (slots per expert before dropping:
 *  Megatron's tokens_per_expert, for the aux loss) and kept [E] (after: min(count, C)).
 *  The capacity C, per expert:
 *    args.capacity > 0:           C = args.capacity (capacity_factor must then be 0);
 *    args.capacity_factor > 0:    C = ceil((T·K / E) · capacity_factor) computed in double, exactly
 *                                 Megatron's get_capacity(num_tokens = T·K, num_experts = E,
 *                                 capacity_factor), then raised to args.min_capacity when that is
 *                                 larger (moejit_capacity_of() returns it: size align's
 *                                 expert_capacity and buffers with it).
 *  Megatron's topk_softmax_with_capacity masks [T, E] columns: since route never repeats an expert
 *  in a row, its tokens per expert are these slots per expert, and its masks match this op's
 *  (where torch.topk's order among equal weights is unspecified, ties go to the lower index here).
 *  Deterministic, no float atomics: bit-identical run to run and to moejit_capacity_reference().
 *  Kernel: one block per expert, each reading the T·K routed ids (O(E·T·K) id reads, from L2 for
 *  the most part): position in one pass with a block prefix scan; probs in one pass when the
 *  expert is within capacity, else five (a radix select of the C-th largest weight in 8-bit
 *  digits, then the drops). Suited to E up to a few hundred at training batch sizes.
 *  Padding to capacity (Megatron's pad_to_capacity, static shapes): align's spec.expert_capacity.
 **************************************************************************************************/
typedef enum moejit_drop_policy {
    MOEJIT_DROP_PROBS = 0,   /* keep the C largest weights (Megatron's drop_policy="probs", its default) */
    MOEJIT_DROP_POSITION = 1 /* keep the first C by flat index (drop_policy="position") */
} moejit_drop_policy;

typedef struct moejit_capacity_spec {
    int32_t num_experts;         /* E, 1..MOEJIT_MAX_EXPERTS (physical experts with placement) */
    int32_t topk;                /* K routed columns, 1..MOEJIT_MAX_TOPK */
    int32_t shared_slots;        /* S shared columns after them (route's), 0..MOEJIT_MAX_TOPK; never dropped */
    moejit_index_dtype id_dtype; /* of args.ids; default int32 */
    moejit_drop_policy policy;   /* default MOEJIT_DROP_PROBS */
    uint32_t reserved[3];        /* 0 */
} moejit_capacity_spec;

typedef struct moejit_capacity_args {
    void *ids;                  /* device [T, K+S] of spec.id_dtype, read and written (dropped: -1) */
    float *weights;             /* device [T, K+S] f32, read (probs) and written (dropped: 0) */
    int64_t num_tokens;         /* T >= 0, T·K < 2^31 */
    double capacity_factor;     /* > 0 (finite): C from Megatron's formula; 0 with args.capacity */
    int32_t capacity;           /* > 0: C itself, and capacity_factor = 0; 0: from capacity_factor */
    int32_t min_capacity;       /* >= 0: C is at least this (Megatron's min_capacity), with capacity_factor */
    int32_t *tokens_per_expert; /* device [E] or NULL: slots per expert before dropping */
    int32_t *kept;              /* device [E] or NULL: slots per expert kept, min(count, C) */
    uint64_t reserved[6];       /* 0 */
} moejit_capacity_args;

/* Drop what exceeds each expert's capacity, in place on `stream` (see above). One launch of E
 * blocks; T == 0 writes the wanted counts (zeros). Bad specs or arguments (capacity and
 * capacity_factor both or neither set, a factor that is not finite and positive, C beyond int32)
 * return an error before anything is compiled, written or launched. */
MOEJIT_API moejit_status moejit_capacity(moejit_ctx *ctx, const moejit_capacity_spec *spec,
                                         const moejit_capacity_args *args, moejit_stream stream);

/* Megatron's get_capacity(num_tokens·topk, num_experts, capacity_factor, min_capacity):
 * ceil((T·K / E) · factor) in double, at least min_capacity (0: no minimum), into *capacity.
 * MOEJIT_ERR_UNSUPPORTED when it passes INT32_MAX. */
MOEJIT_API moejit_status moejit_capacity_of(int64_t num_tokens, int32_t topk, int32_t num_experts,
                                            double capacity_factor, int32_t min_capacity, int32_t *capacity);

/*-************************************************************************************************
 *  Operations: permute and combine — moving hidden states to and from expert order
 *
 *  The two ends of a MoE layer around the experts, using the maps align produces (docs/DESIGN.md §2.2):
 *  sorted_ids [R] holds, for each row r of the expert-ordered buffer, the flat index t*K+k of the
 *  (token, slot) it carries, or a padding value (anything outside [0, T*K); align writes T*K);
 *  slot_of [T, K] holds the row where (t, k) landed.
 *
 *  permute: out[r] = x[sorted_ids[r] / K], times scale[ids[sorted_ids[r]]] with spec.has_scale
 *           (a per-expert factor; in f32, rounded to nearest even). Padding rows, and with
 *           has_scale rows whose expert is outside [0, E), are zero.
 *  combine: out[t] = sum over k = 0..K-1, in that order, of weights[t,k] * y[slot_of[t,k]],
 *           accumulated in f32 with fused multiply-adds and rounded once to spec.dtype; a slot
 *           outside [0, R) (a dropped (t, k)) adds nothing.
 *  H and the dtype are compile-time constants of the kernel; T, K, R and E are arguments.
 *  Output is bit-identical to the C references (NaN payloads aside) and run to run.
 **************************************************************************************************/
#define MOEJIT_MAX_HIDDEN 65536 /* H */

typedef struct moejit_permute_spec {
    int32_t hidden;     /* H, 1..MOEJIT_MAX_HIDDEN */
    moejit_dtype dtype; /* of x and out, default f32 */
    int32_t has_scale;  /* 1: multiply each row by args.scale[its expert] */
    uint32_t reserved[5]; /* 0 */
} moejit_permute_spec;

typedef struct moejit_permute_args {
    const void *x;             /* device [T, H] of spec.dtype; may be NULL when T == 0 */
    const int32_t *sorted_ids; /* device [R] */
    const int32_t *ids;        /* device [T, K] routing ids; required when spec.has_scale */
    const float *scale;        /* device [E] f32; required when spec.has_scale */
    void *out;                 /* device [R, H] of spec.dtype */
    int64_t num_tokens;        /* T >= 0, T * K < 2^31 */
    int32_t topk;              /* K >= 1: slots per token in sorted_ids' flat indices */
    int32_t num_experts;       /* E >= 1 when spec.has_scale (bounds ids), else ignored */
    int64_t num_rows;          /* R >= 0; R == 0 launches nothing */
    uint64_t reserved[8];      /* 0 */
} moejit_permute_args;

typedef struct moejit_combine_spec {
    int32_t hidden;     /* H, 1..MOEJIT_MAX_HIDDEN */
    moejit_dtype dtype; /* of y and out, default f32 */
    uint32_t reserved[6]; /* 0 */
} moejit_combine_spec;

typedef struct moejit_combine_args {
    const void *y;          /* device [R, H] of spec.dtype, rows in expert order; may be NULL when R == 0 */
    const int32_t *slot_of; /* device [T, K] */
    const float *weights;   /* device [T, K] f32 */
    void *out;              /* device [T, H] of spec.dtype */
    int64_t num_tokens;     /* T >= 0; T == 0 launches nothing */
    int32_t topk;           /* K >= 1 */
    uint32_t reserved0;     /* 0 */
    int64_t num_rows;       /* R >= 0 */
    uint64_t reserved[9];   /* 0 */
} moejit_combine_args;

/* Gather rows into expert order on `stream` (see above). */
MOEJIT_API moejit_status moejit_permute(moejit_ctx *ctx, const moejit_permute_spec *spec,
                                        const moejit_permute_args *args, moejit_stream stream);

/* Weighted sum of each token's expert rows on `stream` (see above). */
MOEJIT_API moejit_status moejit_combine(moejit_ctx *ctx, const moejit_combine_spec *spec,
                                        const moejit_combine_args *args, moejit_stream stream);

/*-************************************************************************************************
 *  Operations: permute and combine backward — their gradients, for training
 *
 *  The gradients of the two operations above through the same maps (align writes them inverse to
 *  each other: slot_of[i] = r exactly when sorted_ids[r] = i, for every kept flat index i = t*K+k).
 *  Like the forward they are deterministic without atomics — every output element has one writer,
 *  every sum a fixed order — and bit-identical to their C references (NaN payloads aside) and run
 *  to run. H and the dtype are compile-time constants of the kernel; T, K, R and E are arguments.
 *  "Gradient" means that of the forward's real-number math: the forward's roundings to the dtype
 *  count as the identity (what autograd does).
 *
 *  permute backward: grad_out [R, H] (the gradient of permute's out) → grad_x [T, H]:
 *      grad_x[t] = sum over k = 0..K-1, in that order, of grad_out[slot_of[t,k]] · s, accumulated in
 *      f32 with fused multiply-adds (acc = fma(g, s, acc), from +0) and rounded once to spec.dtype,
 *      where s = scale[ids[t,k]] with spec.has_scale, else 1. A slot outside [0, R) (dropped) adds
 *      nothing, and so, with has_scale, does an expert outside [0, E) (a row the forward zeroed).
 *      This is permute's gradient whenever slot_of is the inverse of sorted_ids.
 *  combine backward: grad_out [T, H] (the gradient of combine's out) → either or both of
 *      grad_y [R, H] (spec.dtype), one row r at a time, with i = sorted_ids[r]:
 *          grad_y[r] = weights[i] · grad_out[i / K] (an f32 product, rounded once to spec.dtype)
 *          when i is in [0, T*K) and slot_of[i] == r (row r is the row (i/K, i%K) read), else 0
 *          (padding rows, rows whose slot was dropped). Every row of grad_y is written exactly once.
 *      grad_weights [T, K] (f32): sum over h = 0..H-1 of grad_out[t,h] · y[slot_of[t,k], h] in f32,
 *          in a fixed order that depends on H and the dtype only (DESIGN.md §2.4: P threads each
 *          chain fused multiply-adds over their chunks of N consecutive elements, then butterfly
 *          sums over each warp's 32 partials and over the warps' sums); 0 when slot_of[t,k] is
 *          outside [0, R) (a dropped slot).
 *      These are combine's gradients whenever sorted_ids names (t, k) at every kept slot_of[t,k]:
 *      align's maps, and still so after slots are dropped by setting slot_of[t,k] = -1.
 **************************************************************************************************/
typedef struct moejit_permute_backward_spec {
    int32_t hidden;       /* H, 1..MOEJIT_MAX_HIDDEN */
    moejit_dtype dtype;   /* of grad_out and grad_x (the forward's dtype), default f32 */
    int32_t has_scale;    /* 1: the forward scaled rows per expert (args.scale[ids]); so is the gradient */
    uint32_t reserved[5]; /* 0 */
} moejit_permute_backward_spec;

typedef struct moejit_permute_backward_args {
    const void *grad_out;   /* device [R, H] of spec.dtype, in expert order; may be NULL when R == 0 */
    const int32_t *slot_of; /* device [T, K]: the row where (t, k) landed (align's inverse map) */
    const int32_t *ids;     /* device [T, K] routing ids; required when spec.has_scale (and R > 0) */
    const float *scale;     /* device [E] f32; required when spec.has_scale (and R > 0) */
    void *grad_x;           /* device [T, H] of spec.dtype */
    int64_t num_tokens;     /* T >= 0; T == 0 launches nothing */
    int32_t topk;           /* K >= 1 */
    int32_t num_experts;    /* E >= 1 when spec.has_scale (bounds ids), else ignored */
    int64_t num_rows;       /* R >= 0; with R == 0 every slot is dropped and grad_x is zero */
    uint64_t reserved[8];   /* 0 */
} moejit_permute_backward_args;

typedef struct moejit_combine_backward_spec {
    int32_t hidden;       /* H, 1..MOEJIT_MAX_HIDDEN */
    moejit_dtype dtype;   /* of grad_out, y and grad_y (the forward's dtype), default f32 */
    uint32_t reserved[6]; /* 0 */
} moejit_combine_backward_spec;

typedef struct moejit_combine_backward_args {
    const void *grad_out;      /* device [T, H] of spec.dtype; may be NULL when T == 0 */
    const void *y;             /* device [R, H] of spec.dtype, combine's rows; read for grad_weights only
                                  (may be NULL without it, or when R == 0) */
    const int32_t *slot_of;    /* device [T, K] */
    const float *weights;      /* device [T, K] f32, combine's weights; read for grad_y only */
    const int32_t *sorted_ids; /* device [R]: the flat index t*K+k each row carries, or padding (anything
                                  outside [0, T*K)); align's map; read for grad_y only */
    void *grad_y;              /* device [R, H] of spec.dtype, or NULL: not wanted */
    float *grad_weights;       /* device [T, K] f32, or NULL: not wanted */
    int64_t num_tokens;        /* T >= 0, T * K < 2^31 (sorted_ids are int32) */
    int32_t topk;              /* K >= 1 */
    uint32_t reserved0;        /* 0 */
    int64_t num_rows;          /* R >= 0 */
    uint64_t reserved[8];      /* 0 */
} moejit_combine_backward_args;

/* The gradient of permute: grad_x from grad_out, on `stream` (see above). One launch: T blocks, or
 * for small batches (T·K <= 4096) T times a row's slices, with the same sums. */
MOEJIT_API moejit_status moejit_permute_backward(moejit_ctx *ctx, const moejit_permute_backward_spec *spec,
                                                 const moejit_permute_backward_args *args, moejit_stream stream);

/* The gradients of combine: grad_y and/or grad_weights from grad_out, on `stream` (see above). One
 * launch (a block per token — for small batches, T·K <= 4096, a block per (token, slot), with the
 * same sums — and with grad_y a block per 32 rows for the rows no token owns);
 * nothing is launched when neither output is wanted (both NULL) or there is nothing to write. */
MOEJIT_API moejit_status moejit_combine_backward(moejit_ctx *ctx, const moejit_combine_backward_spec *spec,
                                                 const moejit_combine_backward_args *args, moejit_stream stream);

/*-************************************************************************************************
 *  Kernel descriptors: one operation and its spec, for prewarm and source generation
 **************************************************************************************************/
typedef enum moejit_op {
    MOEJIT_OP_ROUTE = 1,
    MOEJIT_OP_ALIGN = 2,
    MOEJIT_OP_ROUTE_ALIGN = 3, /* one module holds the fused kernel and the fallback's kernels */
    MOEJIT_OP_MX_SCALES = 4,   /* one module per C holds every layout, both directions */
    MOEJIT_OP_DISPATCH_LAYOUT = 5,
    MOEJIT_OP_PERMUTE = 10,
    MOEJIT_OP_COMBINE = 11,
    MOEJIT_OP_PERMUTE_BACKWARD = 12,
    MOEJIT_OP_COMBINE_BACKWARD = 13,
    MOEJIT_OP_ROUTE_BACKWARD = 14,
    MOEJIT_OP_CAPACITY = 15,
    MOEJIT_OP_ROUTE_LOSSES = 16
} moejit_op;

typedef struct moejit_kernel_desc {
    moejit_op op;
    uint32_t reserved; /* 0 */
    union {
        moejit_route_spec route;             /* MOEJIT_OP_ROUTE */
        moejit_align_spec align;             /* MOEJIT_OP_ALIGN */
        moejit_route_align_spec route_align; /* MOEJIT_OP_ROUTE_ALIGN */
        moejit_mx_scales_spec mx_scales;     /* MOEJIT_OP_MX_SCALES */
        moejit_dispatch_layout_spec dispatch_layout; /* MOEJIT_OP_DISPATCH_LAYOUT */
        moejit_permute_spec permute;         /* MOEJIT_OP_PERMUTE */
        moejit_combine_spec combine;         /* MOEJIT_OP_COMBINE */
        moejit_permute_backward_spec permute_backward; /* MOEJIT_OP_PERMUTE_BACKWARD */
        moejit_combine_backward_spec combine_backward; /* MOEJIT_OP_COMBINE_BACKWARD */
        moejit_route_backward_spec route_backward; /* MOEJIT_OP_ROUTE_BACKWARD */
        moejit_capacity_spec capacity;       /* MOEJIT_OP_CAPACITY */
        moejit_route_losses_spec route_losses; /* MOEJIT_OP_ROUTE_LOSSES */
    };
} moejit_kernel_desc;

/* Validate a descriptor without compiling anything (same checks and messages as a launch). */
MOEJIT_API moejit_status moejit_validate(const moejit_kernel_desc *desc);

/* Generated CUDA C++ for a descriptor: every size a compile-time constant, an extern "C" entry
 * point whose name states the shape. Compiles nothing, needs no GPU. *src is malloc'ed and
 * NUL-terminated; free it with moejit_free(). len may be NULL. */
MOEJIT_API moejit_status moejit_source(moejit_ctx *ctx, const moejit_kernel_desc *desc, char **src,
                                       size_t *len);

/* Name of the descriptor's kernel entry point (e.g. "moejit_route_sigmoid_e384_k8_bf16") into buf.
 * Returns MOEJIT_ERR_INVALID_ARGUMENT if it does not fit in cap bytes (the NUL included). */
MOEJIT_API moejit_status moejit_kernel_name(const moejit_kernel_desc *desc, char *buf, size_t cap);

/* Release memory returned by moejit (moejit_source). NULL is a no-op. */
MOEJIT_API void moejit_free(void *p);

/*-************************************************************************************************
 *  Prewarm: compile into the disk cache for an explicit arch, without a GPU
 **************************************************************************************************/
typedef enum moejit_prewarm_outcome {
    MOEJIT_PREWARM_FAILED = 0,     /* status says why (invalid spec, compile error, strict-mode miss…) */
    MOEJIT_PREWARM_COMPILED = 1,   /* compiled and written to the disk cache */
    MOEJIT_PREWARM_CACHED = 2,     /* a valid entry was already on disk (a read-only cache is fine) */
    MOEJIT_PREWARM_NOT_STORED = 3  /* compiled, but the entry could not be written: status is
                                      MOEJIT_ERR_IO and error names the cache directory and why (the
                                      cache is off or read-only, a write failed: not a directory,
                                      permission denied, disk full…) */
} moejit_prewarm_outcome;

typedef struct moejit_prewarm_result {
    moejit_status status;          /* MOEJIT_OK exactly when outcome is COMPILED or CACHED */
    moejit_prewarm_outcome outcome;
    char key[33];                /* XXH3-128 key, 32 hex digits */
    char name[96];               /* entry point name */
    char arch[24];               /* the arch it was built for */
    double seconds;              /* wall time spent on this kernel */
    char error[1024];            /* the failure detail, "" on success; a longer one ends in "…" */
    uint64_t reserved[8];        /* 0 */
} moejit_prewarm_result;

/* Compile each descriptor for `arch` ("sm_90a", "sm_100a"…; NULL: the current device's arch) into
 * the cache. results (may be NULL) receives one entry per descriptor. Compiles run in parallel
 * (config.compile_jobs). A descriptor succeeds only when its entry is in the disk cache afterwards
 * — found there or written now: unlike launches, prewarm fails (MOEJIT_ERR_IO,
 * MOEJIT_PREWARM_NOT_STORED) when the cache is off, read-only or cannot be written. Returns
 * MOEJIT_OK when every descriptor succeeded, else the first error. */
MOEJIT_API moejit_status moejit_prewarm(moejit_ctx *ctx, const moejit_kernel_desc *descs, size_t n,
                                        const char *arch, moejit_prewarm_result *results);

#ifdef MOEJIT_EXPERIMENTAL_API
/*-************************************************************************************************
 *  Experimental: may change between minor versions. Define MOEJIT_EXPERIMENTAL_API to use.
 **************************************************************************************************/
#ifndef MOEJIT_H_EXPERIMENTAL
#define MOEJIT_H_EXPERIMENTAL

/* ---- Runtime information: counters and the device's arch ---- */
typedef struct moejit_stats {
    uint64_t kernels;       /* kernels resident in the in-process registry */
    uint64_t compiles;      /* NVRTC compiles done by this context */
    uint64_t disk_hits;     /* kernels found in the disk cache */
    uint64_t disk_misses;   /* disk lookups that found nothing usable */
    uint64_t disk_writes;   /* entries published */
    uint64_t bad_entries;   /* corrupt or mismatched entries found (and removed) */
    uint64_t launches;      /* kernel launches */
    uint64_t build_waits;   /* builds that waited for another thread of this context building the same
                               kernel (in-process single flight) instead of building it again */
    uint64_t lock_waits;    /* builds that waited for another process's per-key lock */
    uint64_t lock_timeouts; /* … and gave up after the timeout, compiling anyway */
    uint64_t lock_failures; /* builds that found no lock to take (read-only cache, ENOLCK…) */
    uint64_t disk_write_errors; /* failed publishes; the first one warned, then the cache stays memory-only */
    uint64_t temps_swept;   /* stale temp files of interrupted publishes removed on the publish path */
    uint64_t reserved[8];   /* 0 (written as 0: room for later counters) */
} moejit_stats;

/* The counters of this context since moejit_open (disk_write_errors and temps_swept: of its
 * cache directory handle). */
MOEJIT_API moejit_status moejit_ctx_stats(const moejit_ctx *ctx, moejit_stats *out);

/* Programmatic dependent launch (moejit_config.pdl, MOEJIT_PDL): *requested is 1 when this
 * context's configuration asks for it (the default), 0 when it was turned off; never touches the
 * GPU. *active (may be NULL) is 1 when launches on the calling thread's current device use it
 * (requested, a device of compute capability 9.0 or newer, a 12.3 or newer driver): asking for it
 * loads the driver, so without one it is MOEJIT_ERR_NO_DRIVER / MOEJIT_ERR_NO_DEVICE (*requested
 * is still set). */
MOEJIT_API moejit_status moejit_ctx_pdl(moejit_ctx *ctx, int *requested, int *active);

/* The arch string NVRTC targets for the current device (e.g. "sm_90a"), into buf (>= 16 bytes).
 * Loads the driver; MOEJIT_ERR_NO_DRIVER / MOEJIT_ERR_NO_DEVICE without one. */
MOEJIT_API moejit_status moejit_ctx_device_arch(moejit_ctx *ctx, char *buf, size_t cap);

/* ---- Prewarm for several archs, with progress ---- */
/* Progress of a prewarm: called once per kernel as it finishes, with its result, its index in
 * the results array, and how many of the total are done. Called from worker threads, one call
 * at a time. */
typedef void (*moejit_prewarm_fn)(const moejit_prewarm_result *result, size_t index, size_t done, size_t total,
                                  void *user);

/* moejit_prewarm for several archs at once, with progress: results (may be NULL) receives
 * n * n_archs entries, results[a * n + i] for descriptor i and archs[a]; every (descriptor,
 * arch) pair shares one pool of compile jobs. on_done may be NULL. */
MOEJIT_API moejit_status moejit_prewarm_archs(moejit_ctx *ctx, const moejit_kernel_desc *descs, size_t n,
                                              const char *const *archs, size_t n_archs,
                                              moejit_prewarm_result *results, moejit_prewarm_fn on_done, void *user);

/* ---- route_align ---- */
/* The most tokens the one-launch path takes for this shape on sm_90+ (larger batches use the
 * fallback; below sm_90 it takes at most 8). */
MOEJIT_API moejit_status moejit_route_align_fused_tokens(const moejit_route_align_spec *spec, int64_t *tokens);

#endif /* MOEJIT_H_EXPERIMENTAL */
#endif /* MOEJIT_EXPERIMENTAL_API */

#ifdef __cplusplus
}
#endif
#endif /* MOEJIT_H */
