// moejit kernel_templates/capacity.cuh — expert capacity and token dropping (docs/DESIGN.md §2.7).
//
// Block e owns expert e: it walks the n = T·K routed slots in flat order, kItems consecutive
// slots a thread a step, and finds its expert's slots. Every slot belongs to at most one expert,
// so blocks write disjoint elements; a block reads slots of other experts that their blocks may
// be setting to -1 meanwhile, which is harmless (neither value is e), hence plain loads and never
// the read-only cache path. The rank of a slot among its expert's slots in flat order is a block
// prefix scan of per-thread counts, so the result never depends on timing.
//   position: one pass; rank >= C → dropped.
//   probs: pass 1 counts the expert's slots and histograms the top byte of their weight keys (an
//   order-preserving u32 of the float). Within capacity, nothing more. Else a radix select finds
//   the C-th largest key τ, one byte a pass (three more passes, histograms of the slots whose key
//   matches the bytes found so far; integer shared-memory atomics give exact counts), which also
//   yields G, the slots above τ; a last pass drops keys below τ, and among keys equal to τ keeps
//   the first C - G in flat order (the block scan again).
//
// Expects a Cfg struct (emitted by codegen) with: kExperts (E), kTopK (K, routed columns), kShared
// (S, columns after them, untouched), Id (the C type of ids), kByProbs (the policy), kThreads,
// kItems (consecutive slots a thread takes a step).

namespace mj {

// CapacityParams (ids, weights, tokens_per_expert, kept, n = T·K, capacity = C clamped to n) is
// emitted by codegen in front of this file from MJ_CAPACITY_PARAMS in src/ops/capacity/capacity.h.

template <class Cfg>
struct Capacity {
    static constexpr int K = Cfg::kTopK;
    static constexpr int W = Cfg::kTopK + Cfg::kShared; // row width of ids and weights
    static constexpr int kThreads = Cfg::kThreads;
    static constexpr int kWarps = kThreads / 32;
    static constexpr int kItems = Cfg::kItems;
    static constexpr int kStep = kThreads * kItems;
    typedef typename Cfg::Id Id;
    static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");

    struct Smem {
        int hist[256];
        int warp_sums[kWarps];
        int digit, above, total;
    };

    // Element of routed slot i (flat index t·K + k) in the [T, K+S] arrays.
    static __device__ __forceinline__ i64 elem(i64 i) { return i / K * W + i % K; }

    // Exclusive prefix of v over the block's threads in thread order; *total gets the sum. Ends on
    // a barrier, so warp_sums may be reused at once.
    static __device__ int block_scan(int v, Smem &sm, int &total)
    {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int incl = warp_inclusive_scan(v, SumOp());
        if (lane == 31) sm.warp_sums[warp] = incl;
        __syncthreads();
        int before = 0, all = 0;
#pragma unroll
        for (int w = 0; w < kWarps; w++) {
            const int t = sm.warp_sums[w];
            before += w < warp ? t : 0;
            all += t;
        }
        total = all;
        __syncthreads();
        return before + incl - v;
    }

    // The slots of this thread in the step at `base`: which are expert e's (bit j), their elements.
    static __device__ __forceinline__ u32 match(const Id *ids, int n, i64 base, int e, i64 (&at)[kItems])
    {
        u32 m = 0;
#pragma unroll
        for (int j = 0; j < kItems; j++) {
            const i64 i = base + (i64)threadIdx.x * kItems + j;
            at[j] = i < n ? elem(i) : 0;
            if (i < n && (i64)ids[at[j]] == (i64)e) m |= 1u << j;
        }
        return m;
    }

    static __device__ __forceinline__ void drop(const CapacityParams &p, i64 at)
    {
        static_cast<Id *>(p.ids)[at] = Id(-1);
        p.weights[at] = 0.0f;
    }

    static __device__ void counts_out(const CapacityParams &p, int e, int count)
    {
        if (threadIdx.x == 0) {
            if (p.tokens_per_expert) p.tokens_per_expert[e] = count;
            if (p.kept) p.kept[e] = min(count, p.capacity);
        }
    }

    // position: the first C slots of the expert in flat order stay.
    static __device__ void by_position(const CapacityParams &p, int e, Smem &sm)
    {
        const Id *ids = static_cast<const Id *>(p.ids);
        int seen = 0; // the expert's slots in earlier steps (uniform)
        for (i64 base = 0; base < p.n; base += kStep) {
            i64 at[kItems];
            const u32 m = match(ids, p.n, base, e, at);
            int total;
            int rank = seen + block_scan(__popc(m), sm, total);
#pragma unroll
            for (int j = 0; j < kItems; j++)
                if (m >> j & 1u) {
                    if (rank >= p.capacity) drop(p, at[j]);
                    rank++;
                }
            seen += total;
        }
        counts_out(p, e, seen);
    }

    // Histogram (sm.hist, zeroed by the caller) of key byte `shift` of the expert's slots whose
    // key agrees with `prefix` above that byte.
    static __device__ void histogram(const CapacityParams &p, int e, int shift, u32 prefix, Smem &sm)
    {
        const Id *ids = static_cast<const Id *>(p.ids);
        const u32 high = shift == 24 ? 0u : ~0u << (shift + 8);
        for (i64 base = 0; base < p.n; base += kStep) {
            i64 at[kItems];
            const u32 m = match(ids, p.n, base, e, at);
#pragma unroll
            for (int j = 0; j < kItems; j++)
                if (m >> j & 1u) {
                    const u32 key = order_key(p.weights[at[j]]);
                    if (((key ^ prefix) & high) == 0) atomicAdd(&sm.hist[(key >> shift) & 255u], 1);
                }
        }
    }

    // Warp 0: the digit d at which the `want`-th largest of the histogrammed keys falls (digits
    // above d hold fewer than want keys, d and above at least want) → sm.digit, and the keys above
    // d → sm.above; sm.total gets the histogram's sum. Lane L holds digits 255-8L down to 248-8L.
    static __device__ void find_digit(int want, Smem &sm)
    {
        if (threadIdx.x >= 32) return;
        const int lane = threadIdx.x;
        int h[8], sum = 0;
#pragma unroll
        for (int j = 0; j < 8; j++) sum += h[j] = sm.hist[255 - 8 * lane - j];
        const int incl = warp_inclusive_scan(sum, SumOp());
        if (lane == 31) sm.total = incl;
        int acc = incl - sum;
        if (acc < want && want <= incl) { // one lane: want <= the total whenever this is asked
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (acc + h[j] >= want) {
                    sm.digit = 255 - 8 * lane - j;
                    sm.above = acc;
                    break;
                }
                acc += h[j];
            }
        }
    }

    // probs: the C largest weights stay; among equal weights the lower flat index.
    static __device__ void by_probs(const CapacityParams &p, int e, Smem &sm)
    {
        const int C = p.capacity;
        u32 prefix = 0;
        int greater = 0, want = C;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int d = threadIdx.x; d < 256; d += kThreads) sm.hist[d] = 0;
            __syncthreads();
            histogram(p, e, shift, prefix, sm);
            __syncthreads();
            find_digit(want > 0 ? want : 1, sm);
            __syncthreads();
            if (shift == 24) {
                const int count = sm.total; // every slot of the expert is in the first histogram
                counts_out(p, e, count);
                if (count <= C) return; // uniform: nothing to drop
                if (C == 0) { // everything goes: a threshold above every key
                    prefix = ~0u;
                    break;
                }
            }
            prefix |= (u32)sm.digit << shift;
            greater += sm.above;
            want -= sm.above;
            __syncthreads(); // sm.digit and sm.above are rewritten by the next level
        }
        // Keys above τ stay, below go; of those equal to τ the first `want` (C - greater) stay.
        const u32 tau = prefix;
        const Id *ids = static_cast<const Id *>(p.ids);
        int seen = 0;
        for (i64 base = 0; base < p.n; base += kStep) {
            i64 at[kItems];
            const u32 m = match(ids, p.n, base, e, at);
            u32 keys[kItems];
            int ties = 0;
#pragma unroll
            for (int j = 0; j < kItems; j++) {
                keys[j] = m >> j & 1u ? order_key(p.weights[at[j]]) : 0u;
                ties += (m >> j & 1u) && keys[j] == tau;
            }
            int total;
            int rank = seen + block_scan(ties, sm, total);
#pragma unroll
            for (int j = 0; j < kItems; j++)
                if (m >> j & 1u) {
                    if (keys[j] < tau) drop(p, at[j]);
                    else if (keys[j] == tau && rank++ >= want) drop(p, at[j]);
                }
            seen += total;
        }
    }

    static __device__ void run(const CapacityParams &p)
    {
        __shared__ Smem sm;
        const int e = blockIdx.x;
        if constexpr (Cfg::kByProbs) by_probs(p, e, sm);
        else by_position(p, e, sm);
    }
};

} // namespace mj
