// moejit kernel_templates/permute_combine_backward.cuh — the backward of permute and combine: the
// gradient of permute (each token's K rows of grad_out summed back, optionally scaled per expert)
// and the gradients of combine (grad_y: each row of y gets its weight times its token's grad_out;
// grad_weights: the dot product of a token's grad_out with each of its K rows of y). See
// include/moejit.h for the exact meaning. Pasted after permute_combine.cuh (Store, Vec, VecElems,
// Rows).
//
// Two entry points each. The throughput one: a block per token, grid-stride. The latency one, for
// small batches (chosen at launch from T·K, MJ_ROWS_BACKWARD_LATENCY_SLOTS): at small T a block per
// token leaves most SMs idle and each thread waits one memory latency per slot in turn, so it
// spreads a token over blocks (permute: column slices of a block's width; combine: a block per
// (token, slot)) and a thread issues the loads of up to kBatch slots before it sums them. Every
// sum keeps the throughput entry's order: the two give the same bits. A row is kChunks chunks of N = kVecBytes / element size
// elements; thread j takes chunks j, j + kThreads, … A chunk is one vector when the base pointers
// are aligned to kVecBytes (a uniform branch), else N single elements: the same elements either
// way, so the order of grad_weights' sums depends on H and the dtype only, as the C reference
// (mj_rows_dot) has it. No atomics: every element written has one writer.
//
// Expects a Cfg struct (emitted by codegen) with: Dtype, kHidden, kVecBytes, kThreads, and
// kHasScale (permute backward only) and kZeroRows (combine backward: rows a zeroing block checks).

namespace mj {

// PermuteBackwardParams and CombineBackwardParams are emitted by codegen in front of the
// templates from MJ_PERMUTE_BACKWARD_PARAMS and MJ_COMBINE_BACKWARD_PARAMS in
// src/ops/permute_combine/permute_combine.h.

template <class Cfg>
struct Chunks {
    typedef typename Cfg::Dtype D;
    static constexpr int kElemBytes = (int)sizeof(typename D::Storage);
    static constexpr int N = Cfg::kVecBytes / kElemBytes;
    static constexpr int kCount = Cfg::kHidden / N;
    static constexpr int kRowBytes = Rows<Cfg>::kRowBytes;
    static constexpr int kPerThread = (kCount + Cfg::kThreads - 1) / Cfg::kThreads;
    static_assert(kCount * N == Cfg::kHidden, "chunks must tile a row");

    template <bool Wide>
    static __device__ __forceinline__ void load(const void *row, int c, float (&v)[N])
    {
        if constexpr (Wide) {
            u32 w[Vec<Cfg::kVecBytes>::kWords];
            load_vec<Cfg::kVecBytes>(row, c, w);
            VecElems<D, Cfg::kVecBytes>::to_float(w, v);
        } else {
#pragma unroll
            for (int j = 0; j < N; j++) {
                u32 w[1];
                float f[1];
                load_vec<kElemBytes>(row, c * N + j, w);
                VecElems<D, kElemBytes>::to_float(w, f);
                v[j] = f[0];
            }
        }
    }

    // A chunk as loaded, converted later: half the registers of floats for 16-bit rows, so that a
    // thread can hold several slots' chunks in flight.
    template <bool Wide>
    struct Raw {
        static constexpr int kWords = Wide ? Vec<Cfg::kVecBytes>::kWords : N;
        u32 w[kWords];
        __device__ __forceinline__ void load(const void *row, int c)
        {
            if constexpr (Wide) {
                load_vec<Cfg::kVecBytes>(row, c, w);
            } else {
#pragma unroll
                for (int j = 0; j < N; j++) {
                    u32 one[1];
                    load_vec<kElemBytes>(row, c * N + j, one);
                    w[j] = one[0];
                }
            }
        }
        __device__ __forceinline__ void to_float(float (&v)[N]) const
        {
            if constexpr (Wide) {
                VecElems<D, Cfg::kVecBytes>::to_float(w, v);
            } else {
#pragma unroll
                for (int j = 0; j < N; j++) {
                    const u32 one[1] = {w[j]};
                    float f[1];
                    VecElems<D, kElemBytes>::to_float(one, f);
                    v[j] = f[0];
                }
            }
        }
    };

    template <bool Wide>
    static __device__ __forceinline__ void store(void *row, int c, const float (&v)[N])
    {
        if constexpr (Wide) {
            u32 w[Vec<Cfg::kVecBytes>::kWords];
            VecElems<D, Cfg::kVecBytes>::from_float(v, w);
            store_vec<Cfg::kVecBytes>(row, c, w);
        } else {
#pragma unroll
            for (int j = 0; j < N; j++) {
                u32 w[1];
                const float f[1] = {v[j]};
                VecElems<D, kElemBytes>::from_float(f, w);
                store_vec<kElemBytes>(row, c * N + j, w);
            }
        }
    }

    // Chunks [c0, c1) of a row to zero.
    template <bool Wide>
    static __device__ __forceinline__ void zero(void *row, int c0, int c1)
    {
        float z[N];
#pragma unroll
        for (int j = 0; j < N; j++) z[j] = 0.0f;
#pragma unroll 4
        for (int c = c0 + threadIdx.x; c < c1; c += Cfg::kThreads) store<Wide>(row, c, z);
    }

    // Are these base pointers (NULL counts as aligned) all aligned to the wide vectors?
    static __device__ __forceinline__ bool wide_ok(const void *a, const void *b, const void *c)
    {
        return ((reinterpret_cast<u64>(a) | reinterpret_cast<u64>(b) | reinterpret_cast<u64>(c)) % Cfg::kVecBytes) == 0;
    }
};

// ---- permute backward -------------------------------------------------------------------------

// Chunk c of grad_x[t] = Σ_k scale · grad_out[slot_of[t, k]], k in order (the same sum on every
// run and for every kBatch). kBatch slots' loads are issued before their adds.
template <class Cfg, bool Wide, int kBatch>
__device__ __forceinline__ void permute_backward_chunk(const PermuteBackwardParams &p, i64 t, int c)
{
    typedef Chunks<Cfg> C;
    const int *slots = p.slot_of + t * p.topk;
    float acc[C::N];
#pragma unroll
    for (int j = 0; j < C::N; j++) acc[j] = 0.0f;
    for (int k0 = 0; k0 < p.topk; k0 += kBatch) {
        typename C::template Raw<Wide> g[kBatch];
        float s[kBatch];
        bool use[kBatch];
#pragma unroll
        for (int b = 0; b < kBatch; b++) {
            const int k = k0 + b;
            const int slot = k < p.topk ? __ldg(slots + k) : -1;
            use[b] = slot >= 0 && (i64)slot < p.num_rows; // else dropped
            s[b] = 1.0f;
            if constexpr (Cfg::kHasScale) {
                const int e = use[b] ? __ldg(p.ids + t * p.topk + k) : -1;
                use[b] = use[b] && e >= 0 && e < p.num_experts; // else the forward wrote a zero row
                if (use[b]) s[b] = __ldg(p.scale + e);
            }
            if (use[b]) g[b].load(static_cast<const char *>(p.grad_out) + (i64)slot * C::kRowBytes, c);
        }
#pragma unroll
        for (int b = 0; b < kBatch; b++) {
            if (!use[b]) continue;
            float v[C::N];
            g[b].to_float(v);
#pragma unroll
            for (int j = 0; j < C::N; j++) acc[j] = __fmaf_rn(v[j], s[b], acc[j]);
        }
    }
    C::template store<Wide>(static_cast<char *>(p.grad_x) + t * C::kRowBytes, c, acc);
}

template <class Cfg>
__device__ __forceinline__ void permute_backward_rows(const PermuteBackwardParams &p)
{
    typedef Chunks<Cfg> C;
    const bool wide = C::wide_ok(p.grad_out, p.grad_x, nullptr);
    for (i64 t = blockIdx.x; t < p.num_tokens; t += gridDim.x)
        for (int c = threadIdx.x; c < C::kCount; c += Cfg::kThreads) {
            if (wide) permute_backward_chunk<Cfg, true, 1>(p, t, c);
            else permute_backward_chunk<Cfg, false, 1>(p, t, c);
        }
}

// The latency entry: block u takes token u / S, chunks [(u % S)·kThreads, +kThreads) (S slices a row).
template <class Cfg>
__device__ __forceinline__ void permute_backward_slices(const PermuteBackwardParams &p)
{
    typedef Chunks<Cfg> C;
    constexpr int S = (C::kCount + Cfg::kThreads - 1) / Cfg::kThreads;
    const bool wide = C::wide_ok(p.grad_out, p.grad_x, nullptr);
    for (i64 u = blockIdx.x; u < p.num_tokens * S; u += gridDim.x) {
        const int c = (int)(u % S) * Cfg::kThreads + threadIdx.x;
        if (c >= C::kCount) continue;
        if (wide) permute_backward_chunk<Cfg, true, 8>(p, u / S, c);
        else permute_backward_chunk<Cfg, false, 8>(p, u / S, c);
    }
}

// ---- combine backward -------------------------------------------------------------------------

// The sum of v over the block in mj_rows_dot's order: a butterfly over each warp, then (with more
// than one warp) one over the warps' sums padded with +0. red: kThreads / 32 floats of shared
// memory, not in use by a reduction another warp may still be reading (the caller alternates two).
// The result is valid in warp 0.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float *red)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    constexpr int kWarps = kThreads / 32;
    if constexpr (kWarps > 1) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        if (lane == 0) red[warp] = v;
        __syncthreads();
        if (warp == 0) {
            v = lane < kWarps ? red[lane] : 0.0f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
        }
    }
    return v;
}

// Slot k of token t: grad_weights[t, k], and grad_y for the row r = slot_of[t,k] when the token
// owns it (sorted_ids[r] is t*K+k). Every branch is uniform over the block.
template <class Cfg, bool Wide>
__device__ __forceinline__ void combine_backward_slot(const CombineBackwardParams &p, i64 t, int k,
                                                      float (&red)[2][Cfg::kThreads / 32], int &n_sums)
{
    typedef Chunks<Cfg> C;
    const char *g = static_cast<const char *>(p.grad_out) + t * C::kRowBytes;
    const i64 flat = t * p.topk + k;
    const int slot = __ldg(p.slot_of + flat);
    const bool kept = slot >= 0 && (i64)slot < p.num_rows;
    // grad_y's owner test and weight before the dot product: their loads overlap its loads
    const bool owner = p.grad_y && kept && (i64)__ldg(p.sorted_ids + slot) == flat;
    const float w = owner ? __ldg(p.weights + flat) : 0.0f;
    if (p.grad_weights) {
        float acc = 0.0f;
        if (kept) {
            const char *y = static_cast<const char *>(p.y) + (i64)slot * C::kRowBytes;
#pragma unroll 4
            for (int c = threadIdx.x; c < C::kCount; c += Cfg::kThreads) {
                float gv[C::N], yv[C::N];
                C::template load<Wide>(g, c, gv);
                C::template load<Wide>(y, c, yv);
#pragma unroll
                for (int j = 0; j < C::N; j++) acc = __fmaf_rn(gv[j], yv[j], acc);
            }
            acc = block_sum<Cfg::kThreads>(acc, red[n_sums++ & 1]);
        }
        if (threadIdx.x == 0) p.grad_weights[flat] = acc; // 0 for a dropped slot
    }
    if (owner) {
        char *dst = static_cast<char *>(p.grad_y) + (i64)slot * C::kRowBytes;
#pragma unroll 4
        for (int c = threadIdx.x; c < C::kCount; c += Cfg::kThreads) {
            float v[C::N];
            C::template load<Wide>(g, c, v);
#pragma unroll
            for (int j = 0; j < C::N; j++) v[j] = __fmul_rn(w, v[j]);
            C::template store<Wide>(dst, c, v);
        }
    }
}

// Rows r0 .. r0 + 31 of grad_y: zero those no token owns (sorted_ids[r] outside [0, T*K), or
// naming a slot that reads another row), chunks [c0, c1) of each. Together with the tokens' rows:
// every row once.
template <class Cfg, bool Wide>
__device__ __forceinline__ void combine_backward_zero(const CombineBackwardParams &p, i64 r0, int c0, int c1,
                                                      unsigned &mask)
{
    typedef Chunks<Cfg> C;
    const i64 flat_end = p.num_tokens * p.topk;
    if (threadIdx.x < 32) {
        const i64 r = r0 + threadIdx.x;
        bool zero = false;
        if (r < p.num_rows) {
            const int i = __ldg(p.sorted_ids + r);
            zero = i < 0 || (i64)i >= flat_end || (i64)__ldg(p.slot_of + i) != r;
        }
        const unsigned m = __ballot_sync(0xffffffffu, zero);
        if (threadIdx.x == 0) mask = m;
    }
    __syncthreads();
    for (unsigned m = mask; m; m &= m - 1)
        C::template zero<Wide>(static_cast<char *>(p.grad_y) + (r0 + __ffs(m) - 1) * C::kRowBytes, c0, c1);
    __syncthreads(); // the next ballot rewrites mask
}

// Blocks [0, U) take the work units (kPerSlot: U = T·K (token, slot) pairs, the latency entry; else
// U = T tokens); with grad_y, blocks [U, U + ceil(R / 32)·Z) zero 32 rows each, whole (Z = 1) or,
// in the latency entry, a slice of a block's width each (Z = the slices of a row: at T = 1 most
// of grad_y is padding to zero, and 32 rows a block left the stores on a few SMs). The launch
// covers both, grid-stride beyond.
template <class Cfg, bool kPerSlot>
__device__ __forceinline__ void combine_backward_rows(const CombineBackwardParams &p)
{
    static_assert(Cfg::kThreads % 32 == 0, "whole warps");
    static_assert(Cfg::kZeroRows == 32, "a zeroing block checks a warp's ballot of rows");
    __shared__ float red[2][Cfg::kThreads / 32];
    __shared__ unsigned mask;
    const bool wide = Chunks<Cfg>::wide_ok(p.grad_out, p.y, p.grad_y);
    constexpr int Z = kPerSlot ? (Chunks<Cfg>::kCount + Cfg::kThreads - 1) / Cfg::kThreads : 1;
    const i64 zero_blocks = p.grad_y ? (p.num_rows + Cfg::kZeroRows - 1) / Cfg::kZeroRows * Z : 0;
    // Work units: tokens (throughput: a block takes a token's K slots in turn) or, latency, (t, k) pairs.
    const i64 units = kPerSlot ? p.num_tokens * p.topk : p.num_tokens;
    int n_sums = 0;
    for (i64 u = blockIdx.x; u < units + zero_blocks; u += gridDim.x) {
        if (u < units) {
            const i64 t = kPerSlot ? u / p.topk : u;
            for (int k = kPerSlot ? (int)(u % p.topk) : 0, k_end = kPerSlot ? k + 1 : p.topk; k < k_end; k++) {
                if (wide) combine_backward_slot<Cfg, true>(p, t, k, red, n_sums);
                else combine_backward_slot<Cfg, false>(p, t, k, red, n_sums);
            }
        } else {
            const i64 z = u - units, r0 = z / Z * Cfg::kZeroRows;
            const int c0 = Z == 1 ? 0 : (int)(z % Z) * Cfg::kThreads;
            const int c1 = Z == 1 || c0 + Cfg::kThreads > Chunks<Cfg>::kCount ? Chunks<Cfg>::kCount : c0 + Cfg::kThreads;
            if (wide) combine_backward_zero<Cfg, true>(p, r0, c0, c1, mask);
            else combine_backward_zero<Cfg, false>(p, r0, c0, c1, mask);
        }
    }
}

} // namespace mj
