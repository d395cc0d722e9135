// moejit kernel_templates/dispatch_layout.cuh — what an all-to-all needs to know, from routing ids
// (docs/DESIGN.md §2.6): DeepEP's get_dispatch_layout, in one launch, deterministic.
//
// R ranks hold E/R consecutive experts each, N nodes R/N consecutive ranks each. From ids [T, K]:
//   tokens_per_expert[e]    the (t, k) whose id is e;
//   tokens_per_rank[r]      the tokens with an id on rank r (a group of E/R experts);
//   tokens_per_node[n]      the tokens with an id on node n (a group of E/N experts);
//   is_token_in_rank[t, r]  1 when token t has an id on rank r, else 0.
// An id outside [0, E) (-1: padding) counts nothing. Every count is made by one block, which reads
// every id it needs: no count is split across blocks, so there is no global atomic, no output the
// caller must zero and no second launch. Inside a block counts are integer adds (shared-memory
// atomics, per-thread registers), so the result does not depend on timing or on the order of ids.
//
//   small (T <= MJ_DL_SMALL_TOKENS; one block, a thread a token): every output in one pass over the
//         ids; E + R + N counters in shared memory, each token's ranks and nodes as 64-bit masks
//         counted a warp at a time (a ballot a group up to 32 groups).
//   grid  (one role a block, by blockIdx; the host sizes the grid from T and the outputs wanted):
//     expert blocks  each owns kExpertSlice experts and reads every id, flat, with 16-byte loads
//                    where the base allows; per-warp histograms in shared memory.
//     rank, node blocks  each owns up to kGroupSlice ranks (nodes): a thread a token builds the
//                    token's mask over the slice and adds it to byte counters in registers; the
//                    block sums them.
//     row blocks     kThreads tokens × kRowSlice ranks of is_token_in_rank, a thread a row segment.
//
// Ids are read as a u32 that is an expert exactly when it is below E: int16 and int32 ids sign-extend
// (a negative id becomes >= 2^31); an int64 id outside [0, 2^32) becomes kNone, never truncated (an
// id of 2^32 + 3 is not expert 3). An id at or above E then falls in a group at or above G, whose
// counter or byte is never written, so no separate validity test is needed on the way.
//
// Expects a Cfg struct (emitted by codegen) with kExperts (E), kRanks (R), kNodes (N), kTopK (K),
// Id (mj::int16_t, int32_t or int64_t), kSmallThreads, kThreads, kExpertSlice, kGroupSlice and
// kRowSlice (64: a row block's ranks are one 64-bit mask).

namespace mj {

// DispatchLayoutParams (ids, num_tokens, the four outputs and the grid's block counts) is emitted
// by codegen in front of this file from MJ_DISPATCH_LAYOUT_PARAMS in
// src/ops/dispatch_layout/dispatch_layout.h.

extern __shared__ __align__(16) int mj_dl_smem[];

__device__ __forceinline__ u32 warp_sum_u32(u32 v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}

template <class Cfg>
struct DispatchLayout {
    static constexpr int E = Cfg::kExperts;
    static constexpr int R = Cfg::kRanks;
    static constexpr int N = Cfg::kNodes;
    static constexpr int K = Cfg::kTopK;
    typedef typename Cfg::Id Id;
    static constexpr int kIdBytes = (int)sizeof(Id);
    static constexpr int kRowBytes = K * kIdBytes; // ids of a token
    static constexpr u32 kPerRank = (u32)(E / R);  // experts of a rank
    static constexpr u32 kPerNode = (u32)(E / N);  // experts of a node
    static constexpr int kThreads = Cfg::kThreads;
    static constexpr int kWarps = kThreads / 32;
    static constexpr int kSmallThreads = Cfg::kSmallThreads;
    static constexpr int kRowSlice = Cfg::kRowSlice;
    static constexpr int kRowSlices = (R + kRowSlice - 1) / kRowSlice;
    static constexpr int kNodeSlices = (N + 63) / 64;
    static constexpr u32 kNone = 0xffffffffu; // an id that is no expert
    static_assert(kIdBytes == 2 || kIdBytes == 4 || kIdBytes == 8, "ids are int16, int32 or int64");
    static_assert(E % R == 0 && R % N == 0, "a rank holds E / R experts, a node R / N ranks");
    static_assert(kRowSlice == 64, "a row block's ranks are one 64-bit mask");
    static_assert(Cfg::kGroupSlice <= 32 && kThreads % 32 == 0, "group counters are bits of a u32");

    // ---- reading ids -------------------------------------------------------------------------

    static __device__ __forceinline__ u32 expert_of(Id v)
    {
        if constexpr (kIdBytes == 8) return (unsigned long long)v < 0x100000000ull ? (u32)v : kNone;
        else return (u32)(int)v;
    }

    // Apply f to each id held in W consecutive little-endian 32-bit words (whole ids).
    template <int W, class F>
    static __device__ __forceinline__ void each_in_words(const u32 (&w)[W], F &f)
    {
        if constexpr (kIdBytes == 8) {
            static_assert(W % 2 == 0, "whole int64 ids");
#pragma unroll
            for (int i = 0; i < W; i += 2) f(w[i + 1] == 0u ? w[i] : kNone);
        } else if constexpr (kIdBytes == 4) {
#pragma unroll
            for (int i = 0; i < W; i++) f(w[i]);
        } else {
#pragma unroll
            for (int i = 0; i < W; i++) {
                f((u32)(int)(short)(w[i] & 0xffffu));
                f((u32)((int)w[i] >> 16));
            }
        }
    }

    // Apply f to the K ids of token t, with the widest loads the row allows: a row of K ids keeps
    // the base's alignment when its size is a multiple of the load (so the branch is uniform).
    template <class F>
    static __device__ __forceinline__ void each_of_token(const Id *ids, int t, F &f)
    {
        const char *row = reinterpret_cast<const char *>(ids) + (long long)t * kRowBytes;
        const unsigned long long a = reinterpret_cast<unsigned long long>(ids);
        if constexpr (kRowBytes % 16 == 0) {
            if ((a & 15) == 0) {
                const uint4 *v = reinterpret_cast<const uint4 *>(row);
#pragma unroll 4
                for (int i = 0; i < kRowBytes / 16; i++) {
                    const uint4 q = __ldg(v + i);
                    const u32 w[4] = {q.x, q.y, q.z, q.w};
                    each_in_words(w, f);
                }
                return;
            }
        }
        if constexpr (kRowBytes % 8 == 0) {
            if ((a & 7) == 0) {
                const uint2 *v = reinterpret_cast<const uint2 *>(row);
#pragma unroll 4
                for (int i = 0; i < kRowBytes / 8; i++) {
                    const uint2 q = __ldg(v + i);
                    const u32 w[2] = {q.x, q.y};
                    each_in_words(w, f);
                }
                return;
            }
        }
        if constexpr (kRowBytes % 4 == 0 && kIdBytes <= 4) {
            if ((a & 3) == 0) {
                const unsigned int *v = reinterpret_cast<const unsigned int *>(row);
#pragma unroll 4
                for (int i = 0; i < kRowBytes / 4; i++) {
                    const u32 w[1] = {__ldg(v + i)};
                    each_in_words(w, f);
                }
                return;
            }
        }
        const Id *p = ids + (long long)t * K;
#pragma unroll 4
        for (int k = 0; k < K; k++) f(expert_of(__ldg(p + k)));
    }

    // Apply f to this thread's share of all n ids, flat: 16-byte loads, four in flight, where the
    // base is 16-byte aligned, then the rest one by one (the order is irrelevant: f counts).
    template <int kStride, class F>
    static __device__ __forceinline__ void each_flat(const void *base, long long n, F &f)
    {
        long long done = 0;
        if ((reinterpret_cast<unsigned long long>(base) & 15) == 0) {
            constexpr int kPerVec = 16 / kIdBytes;
            const long long nvec = n / kPerVec;
            const uint4 *v = static_cast<const uint4 *>(base);
            for (long long i = threadIdx.x; i < nvec; i += 4LL * kStride) {
                uint4 q[4];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const long long at = i + (long long)j * kStride;
                    q[j] = at < nvec ? __ldg(v + at) : make_uint4(kNone, kNone, kNone, kNone); // no expert
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const u32 w[4] = {q[j].x, q[j].y, q[j].z, q[j].w};
                    each_in_words(w, f);
                }
            }
            done = nvec * kPerVec;
        }
        const Id *ids = static_cast<const Id *>(base);
        for (long long i = done + threadIdx.x; i < n; i += kStride) f(expert_of(__ldg(ids + i)));
    }

    // ---- masks and rows ------------------------------------------------------------------------

    // 1 << i, and 0 when i is at or past the width: PTX's shl clamps the shift to the width (C++'s
    // << would need a compare and a select more per id).
    static __device__ __forceinline__ u32 bit32(u32 i)
    {
        u32 r;
        asm("shl.b32 %0, %1, %2;" : "=r"(r) : "r"(1u), "r"(i));
        return r;
    }
    static __device__ __forceinline__ u64 bit64(u32 i)
    {
        u64 r;
        asm("shl.b64 %0, %1, %2;" : "=l"(r) : "l"(1ull), "r"(i));
        return r;
    }

    // The groups of kPer experts in [g0, g0 + 64) that token t has an id in, as bits of a mask.
    template <u32 kPer>
    static __device__ __forceinline__ u64 mask64(const Id *ids, int t, u32 g0)
    {
        u64 m = 0;
        auto f = [&](u32 e) { m |= bit64(e / kPer - g0); };
        each_of_token(ids, t, f);
        return m;
    }

    // Bytes 0 or 1 from the 4 low bits of m (spread by a multiply: the partial products do not overlap).
    static __device__ __forceinline__ u32 bytes4(u64 m) { return (((u32)m & 0xfu) * 0x00204081u) & 0x01010101u; }

    // The widest store is_token_in_rank takes: rows of R bytes start at multiples of R.
    static __device__ __forceinline__ int row_vec(const uint8_t *p)
    {
        const unsigned long long a = reinterpret_cast<unsigned long long>(p);
        if (R % 16 == 0 && (a & 15) == 0) return 16;
        if (R % 8 == 0 && (a & 7) == 0) return 8;
        if (R % 4 == 0 && (a & 3) == 0) return 4;
        return 1;
    }

    // Bytes [0, w) of a row segment (w <= 64, a multiple of vec): byte j is bit j of m.
    static __device__ __forceinline__ void write_row(uint8_t *dst, u64 m, int w, int vec)
    {
        if (vec == 16) {
#pragma unroll
            for (int q = 0; q < 4; q++)
                if (16 * q < w)
                    *reinterpret_cast<uint4 *>(dst + 16 * q) =
                        make_uint4(bytes4(m >> (16 * q)), bytes4(m >> (16 * q + 4)), bytes4(m >> (16 * q + 8)),
                                   bytes4(m >> (16 * q + 12)));
        } else if (vec == 8) {
#pragma unroll
            for (int q = 0; q < 8; q++)
                if (8 * q < w)
                    *reinterpret_cast<uint2 *>(dst + 8 * q) = make_uint2(bytes4(m >> (8 * q)), bytes4(m >> (8 * q + 4)));
        } else if (vec == 4) {
#pragma unroll
            for (int q = 0; q < 16; q++)
                if (4 * q < w) *reinterpret_cast<unsigned int *>(dst + 4 * q) = bytes4(m >> (4 * q));
        } else {
#pragma unroll 8
            for (int j = 0; j < w; j++) dst[j] = (uint8_t)((m >> j) & 1u);
        }
    }

    // counts[g0 + b] += the lanes of the warp whose m has bit b, for g0 + b < G. Warp-collective
    // (every lane calls it, m = 0 on a lane without a token). Up to 32 groups a ballot a group
    // (lane b adds its group's count: no two lanes of a warp hit one counter); more groups, too
    // many ballots: a shared-memory atomic for each set bit.
    template <int G>
    static __device__ __forceinline__ void add_mask(int *counts, u64 m, u32 g0)
    {
        if constexpr (G <= 32) {
            const int lane = threadIdx.x & 31;
#pragma unroll
            for (int b = 0; b < G; b++) {
                const u32 v = __ballot_sync(kFullMask, (u32)(m >> b) & 1u);
                if (lane == b && v) atomicAdd(&counts[b], __popc(v));
            }
        } else {
            while (m) {
                const u32 b = (u32)__ffsll((long long)m) - 1u;
                m &= m - 1;
                if (g0 + b < (u32)G) atomicAdd(&counts[g0 + b], 1);
            }
        }
    }

    // ---- small: one block, a thread a token, everything at once --------------------------------

    static __device__ void small(const DispatchLayoutParams &p)
    {
        int *const hx = mj_dl_smem, *const hr = hx + E, *const hn = hr + R; // E + R + N counters
        for (int i = threadIdx.x; i < E + R + N; i += kSmallThreads) mj_dl_smem[i] = 0;
        __syncthreads();
        const Id *ids = static_cast<const Id *>(p.ids);
        const int T = (int)p.num_tokens, lane = threadIdx.x & 31;
        const bool experts = p.tokens_per_expert != nullptr, ranks = p.tokens_per_rank != nullptr,
                   nodes = p.tokens_per_node != nullptr, rows = p.is_token_in_rank != nullptr;
        const int vec = rows ? row_vec(p.is_token_in_rank) : 1;
        for (int t0 = threadIdx.x - lane; t0 < T; t0 += kSmallThreads) { // uniform over the warp
            const int t = t0 + lane;
            const bool live = t < T;
            // One pass over the token's ids: its experts, its first 64 ranks and nodes.
            u64 rm = 0, nm = 0;
            auto f = [&](u32 e) {
                if (experts && e < (u32)E) atomicAdd(&hx[e], 1);
                if (ranks || rows) rm |= bit64(e / kPerRank);
                if (nodes) nm |= bit64(e / kPerNode);
            };
            if (live) each_of_token(ids, t, f);
            if (ranks || rows) {
#pragma unroll 1
                for (int s = 0; s < kRowSlices; s++) { // beyond 64 ranks, a pass a slice
                    const u32 r0 = (u32)s * kRowSlice;
                    if (s > 0) rm = live ? mask64<kPerRank>(ids, t, r0) : 0;
                    if (rows && live)
                        write_row(p.is_token_in_rank + (long long)t * R + r0, rm, min(kRowSlice, R - (int)r0), vec);
                    if (ranks) add_mask<R>(hr, rm, r0);
                }
            }
            if (nodes) {
#pragma unroll 1
                for (int s = 0; s < kNodeSlices; s++) {
                    if (s > 0) nm = live ? mask64<kPerNode>(ids, t, 64u * s) : 0;
                    add_mask<N>(hn, nm, 64u * s);
                }
            }
        }
        __syncthreads();
        if (experts)
            for (int i = threadIdx.x; i < E; i += kSmallThreads) p.tokens_per_expert[i] = hx[i];
        if (ranks)
            for (int i = threadIdx.x; i < R; i += kSmallThreads) p.tokens_per_rank[i] = hr[i];
        if (nodes)
            for (int i = threadIdx.x; i < N; i += kSmallThreads) p.tokens_per_node[i] = hn[i];
    }

    // ---- grid: a role a block ------------------------------------------------------------------

    // tokens_per_expert[x0 .. x0 + kExpertSlice): every id, per-warp histograms.
    static __device__ void count_experts(const DispatchLayoutParams &p, int slice)
    {
        constexpr int S = Cfg::kExpertSlice;
        __shared__ int hist[kWarps * S];
        for (int i = threadIdx.x; i < kWarps * S; i += kThreads) hist[i] = 0;
        __syncthreads();
        const u32 x0 = (u32)slice * S;
        int *const h = hist + (threadIdx.x >> 5) * S;
        auto f = [&](u32 e) {
            const u32 u = e - x0; // past the slice (or no expert): wraps far above S
            if (u < (u32)S) atomicAdd(&h[u], 1);
        };
        each_flat<kThreads>(p.ids, (long long)p.num_tokens * K, f);
        __syncthreads();
        if (threadIdx.x < S && x0 + threadIdx.x < (u32)E) {
            int c = 0;
#pragma unroll 8
            for (int w = 0; w < kWarps; w++) c += hist[w * S + threadIdx.x];
            p.tokens_per_expert[x0 + threadIdx.x] = c;
        }
    }

    // out[g0 .. g0 + W) for groups of kPer experts (ranks or nodes): a thread a token, its mask
    // over the slice added to byte counters (four groups a register, a multiply spreading four mask
    // bits to four bytes), which go to 32-bit counters every 255 tokens; the block then sums.
    template <int G, u32 kPer>
    static __device__ void count_groups(const DispatchLayoutParams &p, int slice, int *out)
    {
        constexpr int W = G < Cfg::kGroupSlice ? G : Cfg::kGroupSlice;
        constexpr int kWords = (W + 3) / 4;
        constexpr int kBatch = 255; // tokens a thread adds to byte counters before they could overflow
        __shared__ int part[kWarps * W];
        const u32 g0 = (u32)slice * W;
        const Id *ids = static_cast<const Id *>(p.ids);
        const long long T = p.num_tokens;
        u32 c[W];
#pragma unroll
        for (int j = 0; j < W; j++) c[j] = 0;
        for (long long t0 = threadIdx.x; t0 < T; t0 += (long long)kBatch * kThreads) {
            const long long end = min(T, t0 + (long long)kBatch * kThreads);
            u32 acc[kWords];
#pragma unroll
            for (int q = 0; q < kWords; q++) acc[q] = 0;
            // Two tokens a step, both loaded unconditionally (the second is the first again past
            // the end, then dropped) so that their loads are in flight together.
            for (long long t = t0; t < end; t += 2LL * kThreads) {
                const bool second = t + kThreads < end;
                u32 m0 = 0, m1 = 0;
                auto f0 = [&](u32 e) { m0 |= bit32(e / kPer - g0); }; // groups past the slice: bits >= W or 0
                auto f1 = [&](u32 e) { m1 |= bit32(e / kPer - g0); };
                each_of_token(ids, (int)t, f0);
                each_of_token(ids, (int)(second ? t + kThreads : t), f1);
                if (!second) m1 = 0;
#pragma unroll
                for (int q = 0; q < kWords; q++) acc[q] += bytes4(m0 >> (4 * q)) + bytes4(m1 >> (4 * q));
            }
#pragma unroll
            for (int j = 0; j < W; j++) c[j] += (acc[j / 4] >> (8 * (j % 4))) & 0xffu;
        }
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
        for (int j = 0; j < W; j++) {
            const u32 s = warp_sum_u32(c[j]);
            if (lane == 0) part[warp * W + j] = (int)s;
        }
        __syncthreads();
        if (threadIdx.x < W && g0 + threadIdx.x < (u32)G) {
            int s = 0;
#pragma unroll 8
            for (int w = 0; w < kWarps; w++) s += part[w * W + threadIdx.x];
            out[g0 + threadIdx.x] = s;
        }
    }

    // is_token_in_rank rows of the tile's tokens, ranks [r0, r0 + 64).
    static __device__ void write_rows(const DispatchLayoutParams &p, int tile, int slice)
    {
        const long long t = (long long)tile * kThreads + threadIdx.x;
        if (tile >= p.row_tiles || t >= p.num_tokens) return;
        const u32 r0 = (u32)slice * kRowSlice;
        const u64 m = mask64<kPerRank>(static_cast<const Id *>(p.ids), (int)t, r0);
        write_row(p.is_token_in_rank + t * R + r0, m, min(kRowSlice, R - (int)r0), row_vec(p.is_token_in_rank));
    }

    static __device__ void grid(const DispatchLayoutParams &p)
    {
        int b = (int)blockIdx.x; // block-uniform: every role's __syncthreads is reached by all
        if (b < p.expert_blocks) return count_experts(p, b);
        b -= p.expert_blocks;
        if (b < p.rank_blocks) return count_groups<R, kPerRank>(p, b, p.tokens_per_rank);
        b -= p.rank_blocks;
        if (b < p.node_blocks) return count_groups<N, kPerNode>(p, b, p.tokens_per_node);
        b -= p.node_blocks;
        write_rows(p, b / kRowSlices, b % kRowSlices);
    }
};

} // namespace mj
