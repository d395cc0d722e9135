// moejit kernel_templates/permute_combine_backward.cuh — the backward of permute and combine: the
// gradient of permute (each token's K rows of grad_out summed back, optionally scaled per expert)
// and the gradients of combine (grad_y: each row of y gets its weight times its token's grad_out;
// grad_weights: the dot product of a token's grad_out with each of its K rows of y). See
// include/moejit.h for the exact meaning. Pasted after permute_combine.cuh (Store, Vec, VecElems,
// Rows).
//
// One block per token, grid-stride. A row is kChunks chunks of N = kVecBytes / element size
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

    template <bool Wide>
    static __device__ __forceinline__ void zero(void *row)
    {
        float z[N];
#pragma unroll
        for (int j = 0; j < N; j++) z[j] = 0.0f;
#pragma unroll 4
        for (int c = threadIdx.x; c < kCount; c += Cfg::kThreads) store<Wide>(row, c, z);
    }

    // Are these base pointers (NULL counts as aligned) all aligned to the wide vectors?
    static __device__ __forceinline__ bool wide_ok(const void *a, const void *b, const void *c)
    {
        return ((reinterpret_cast<u64>(a) | reinterpret_cast<u64>(b) | reinterpret_cast<u64>(c)) % Cfg::kVecBytes) == 0;
    }
};

// ---- permute backward -------------------------------------------------------------------------

template <class Cfg, bool Wide>
__device__ __forceinline__ void permute_backward_token(const PermuteBackwardParams &p, i64 t)
{
    typedef Chunks<Cfg> C;
    const int *slots = p.slot_of + t * p.topk;
    char *dst = static_cast<char *>(p.grad_x) + t * C::kRowBytes;
    for (int c = threadIdx.x; c < C::kCount; c += Cfg::kThreads) {
        float acc[C::N];
#pragma unroll
        for (int j = 0; j < C::N; j++) acc[j] = 0.0f;
        for (int k = 0; k < p.topk; k++) { // in order: the sum is the same on every run
            const int slot = __ldg(slots + k);
            if (slot < 0 || (i64)slot >= p.num_rows) continue; // dropped
            float s = 1.0f;
            if constexpr (Cfg::kHasScale) {
                const int e = __ldg(p.ids + t * p.topk + k);
                if (e < 0 || e >= p.num_experts) continue; // the forward wrote a zero row
                s = __ldg(p.scale + e);
            }
            float g[C::N];
            C::template load<Wide>(static_cast<const char *>(p.grad_out) + (i64)slot * C::kRowBytes, c, g);
#pragma unroll
            for (int j = 0; j < C::N; j++) acc[j] = __fmaf_rn(g[j], s, acc[j]);
        }
        C::template store<Wide>(dst, c, acc);
    }
}

template <class Cfg>
__device__ __forceinline__ void permute_backward_rows(const PermuteBackwardParams &p)
{
    const bool wide = Chunks<Cfg>::wide_ok(p.grad_out, p.grad_x, nullptr);
    for (i64 t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
        if (wide) permute_backward_token<Cfg, true>(p, t);
        else permute_backward_token<Cfg, false>(p, t);
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

// Token t: grad_weights[t, k] for every k, and grad_y for the rows token t owns (the row r =
// slot_of[t,k] whose sorted_ids[r] is t*K+k). Every branch on k is uniform over the block.
template <class Cfg, bool Wide>
__device__ __forceinline__ void combine_backward_token(const CombineBackwardParams &p, i64 t,
                                                       float (&red)[2][Cfg::kThreads / 32], int &n_sums)
{
    typedef Chunks<Cfg> C;
    const char *g = static_cast<const char *>(p.grad_out) + t * C::kRowBytes;
    for (int k = 0; k < p.topk; k++) {
        const i64 flat = t * p.topk + k;
        const int slot = __ldg(p.slot_of + flat);
        const bool kept = slot >= 0 && (i64)slot < p.num_rows;
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
        if (p.grad_y && kept && (i64)__ldg(p.sorted_ids + slot) == flat) {
            const float w = __ldg(p.weights + flat);
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
}

// Rows r0 .. r0 + 31 of grad_y: zero those no token owns (sorted_ids[r] outside [0, T*K), or
// naming a slot that reads another row). Together with the tokens' rows: every row once.
template <class Cfg, bool Wide>
__device__ __forceinline__ void combine_backward_zero(const CombineBackwardParams &p, i64 r0, unsigned &mask)
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
        C::template zero<Wide>(static_cast<char *>(p.grad_y) + (r0 + __ffs(m) - 1) * C::kRowBytes);
    __syncthreads(); // the next ballot rewrites mask
}

// Blocks [0, T) take tokens; with grad_y, blocks [T, T + ceil(R / 32)) take 32 rows each (the
// launch covers both, grid-stride beyond).
template <class Cfg>
__device__ __forceinline__ void combine_backward_rows(const CombineBackwardParams &p)
{
    static_assert(Cfg::kThreads % 32 == 0, "whole warps");
    static_assert(Cfg::kZeroRows == 32, "a zeroing block checks a warp's ballot of rows");
    __shared__ float red[2][Cfg::kThreads / 32];
    __shared__ unsigned mask;
    const bool wide = Chunks<Cfg>::wide_ok(p.grad_out, p.y, p.grad_y);
    const i64 zero_blocks = p.grad_y ? (p.num_rows + Cfg::kZeroRows - 1) / Cfg::kZeroRows : 0;
    int n_sums = 0;
    for (i64 u = blockIdx.x; u < p.num_tokens + zero_blocks; u += gridDim.x) {
        if (u < p.num_tokens) {
            if (wide) combine_backward_token<Cfg, true>(p, u, red, n_sums);
            else combine_backward_token<Cfg, false>(p, u, red, n_sums);
        } else {
            if (wide) combine_backward_zero<Cfg, true>(p, (u - p.num_tokens) * Cfg::kZeroRows, mask);
            else combine_backward_zero<Cfg, false>(p, (u - p.num_tokens) * Cfg::kZeroRows, mask);
        }
    }
}

} // namespace mj
