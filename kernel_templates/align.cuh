// moejit kernel_templates/align.cuh — token→expert dispatch maps (docs/DESIGN.md §2.2).
//
// The order inside an expert is the flat index order, and it must not depend on timing, so no
// position is ever taken with a global atomic. A tile of ids (up to kTile) is ranked in shared
// memory: each counting warp owns a contiguous run of the tile and walks it 32 ids at a time;
// __match_any_sync groups the lanes holding the same expert, the rank of a lane is the warp's
// running count for that expert (its own histogram row) plus the lower lanes of its group. A
// per-expert scan over the warps' rows then turns ranks into positions. Shared-memory atomics
// appear only where the result is a count, which is the same whatever the order.
//
// Ids are read in the caller's integer type (Cfg::Id) and turned into local experts as they are
// read (local_expert: through the expert map, or id - first_expert); everything after speaks of
// local experts, -1 (kDropped in rank codes) for an id of another rank.
//
//   one launch  (N <= kSmallIds, E <= 1024, no capacity): single_small — decode batches: one warp
//                         ranks with no per-warp histogram, then the block places, pads and labels.
//   one launch  (N up to the host's onepass limit): onepass — G blocks, no workspace, no
//                         communication between blocks: each counts all N ids (they sit in L2
//                         after the first reads), so each knows every offset and the prefix of its
//                         own tile of ceil(N / G) ids; it ranks and places that tile and fills a
//                         share of the experts.
//   three launches otherwise, over P = ceil(N / kTile) tiles and a caller workspace:
//     count   (P blocks)  the histogram of each tile          → ws.tile[p][e]
//     scan    (1 block)   tiles' exclusive prefix per expert  → ws.tile[p][e]; counts, offsets
//     scatter (>= P blocks) rank each tile, place it at offsets[e] + ws.tile[p][e]; every block
//                           also fills padding and block_expert for a share of the experts.
//   shared_batch (rank, offsets, scatter, fill) is no entry of its own: route_align's fused kernel
//                         runs it on ids already in shared memory, as one of the G blocks of a
//                         cluster that all hold the whole batch (each writes a share of the maps).
//
// Expects a Cfg struct (emitted by codegen) with:
//   kExperts (E), kBlockSize (B, a power of two), kThreads (block size), kCountWarps (warps that
//   rank; kCountWarps·E ints of histogram must fit shared memory), kTile (ids per tile),
//   kExpertBits (bits holding an expert id in a rank code), kSmallIds (the largest N of
//   single_small, a multiple of 32; 0 where it is not built), Id (the C type of p.ids: int, long
//   long or short), kGlobalExperts (Eg > 0: ids go through p.expert_map [Eg]; 0: no map).

namespace mj {

// AlignParams (ids, expert_map, n = T·K, capacity, the six outputs, the workspace ws, num_tiles
// and first_expert) is emitted by codegen in front of this file from MJ_ALIGN_PARAMS in
// src/ops/align/align.h.

extern __shared__ __align__(16) int mj_align_smem[];

template <class Cfg>
struct Align {
    static constexpr int E = Cfg::kExperts;
    static constexpr int B = Cfg::kBlockSize;
    static constexpr int kThreads = Cfg::kThreads;
    static constexpr int kWarps = kThreads / 32;
    static constexpr int kCountWarps = Cfg::kCountWarps;
    static constexpr int kTile = Cfg::kTile;
    typedef typename Cfg::Id Id;
    static constexpr int kGlobalExperts = Cfg::kGlobalExperts;
    static constexpr int kWindows = (E + 31) / 32;                         // experts in groups of 32
    static constexpr int kWindowsPerWarp = (kWindows + kWarps - 1) / kWarps; // for the offsets scan
    static constexpr u32 kExpertMask = (1u << Cfg::kExpertBits) - 1;
    static constexpr u32 kDropped = 0xffffffffu;                           // rank code of a dropped id
    static_assert((B & (B - 1)) == 0, "block size must be a power of two");
    static_assert(kCountWarps >= 1 && kCountWarps <= kWarps, "counting warps are block warps");
    static_assert(((u64)kTile << Cfg::kExpertBits) < 0xffffffffull, "rank codes must fit 32 bits");

    // single_small: lane L of warp 0 owns experts [L*kRunE, L*kRunE + kRunE) for the offsets
    // scan. Counts and offsets sit at skewed indices (one int skipped every 32) so that the lanes'
    // runs fall in distinct banks.
    static constexpr int kSmallIds = Cfg::kSmallIds;
    static constexpr int kRunE = (E + 31) / 32;
    static constexpr int kPaddedE = 32 * kRunE + kRunE + 1; // skewed(32·kRunE) + 1
    static_assert(kSmallIds % 32 == 0 && (kSmallIds == 0 || E <= 1024), "single_small: up to 1024 experts");
    static __device__ __forceinline__ int skewed(int e) { return e + (e >> 5); }

    // Shared memory, in ints: what the host sizes the launch with (src/ops/align/spec.c). onepass
    // keeps the counts of the ids before its tile after the Smem views.
    static constexpr int kBlockSmemInts = kCountWarps * E + (E + 1) + E + kTile + kWarps;
    static constexpr int kOnepassSmemInts = kBlockSmemInts + E;
    // Blocks holding rows (owner[]): n ids over k experts that have some fill at most
    // k + (n - k) / B, the most when k = min(n, E); at most n (B = 1: a block a row).
    static constexpr int kSmallUsedE = kSmallIds < E ? kSmallIds : E;
    static constexpr int kSmallBlocks = kSmallUsedE + (kSmallIds - kSmallUsedE) / B;
    static constexpr int kSmallSmemInts = kSmallIds ? 2 * kPaddedE + kSmallBlocks : 0;
    static constexpr int kSmemInts = kBlockSmemInts > kSmallSmemInts ? kBlockSmemInts : kSmallSmemInts;

    struct Smem {
        int *hist;     // [kCountWarps][E]: counts of each warp's run, then the run's base positions
        int *off;      // [E+1]: offsets, off[E] = total
        int *padb;     // [E]: counts while offsets are scanned, then off[e] + counts[e] (padding start)
        u32 *code;     // [kTile]: the tile's ids, then their rank codes (rank << kExpertBits | e)
        int *warp_tot; // [kWarps]
    };

    static __device__ Smem carve(int *base)
    {
        Smem s;
        s.hist = base;
        s.off = s.hist + kCountWarps * E;
        s.padb = s.off + (E + 1);
        s.code = reinterpret_cast<u32 *>(s.padb + E);
        s.warp_tot = reinterpret_cast<int *>(s.code + kTile);
        return s;
    }

    static __device__ __forceinline__ const Id *ids_of(const AlignParams &p) { return static_cast<const Id *>(p.ids); }

    // The local expert of an id of any integer type, or -1 when it is dropped: through the map
    // (entries outside [0, E) drop too), or id - first_expert, compared in 64 bits. Never
    // truncated: an int64 id beyond int32 is outside both ranges.
    template <class T>
    static __device__ __forceinline__ int local_expert(T id, const AlignParams &p)
    {
        const i64 x = (i64)id;
        if constexpr (kGlobalExperts > 0) {
            if ((u64)x >= (u64)kGlobalExperts) return -1; // negative ids too
            const int e = __ldg(p.expert_map + x);
            return (unsigned)e < (unsigned)E ? e : -1;
        } else {
            if (x < p.first_expert) return -1;
            const u64 e = (u64)x - (u64)(i64)p.first_expert; // exact once x >= first_expert
            return e < (u64)E ? (int)e : -1;
        }
    }

    static __device__ __forceinline__ int warp_id() { return threadIdx.x >> 5; }
    static __device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }

    // Rows of an expert with `rows` ids once padded to whole blocks.
    static __device__ __forceinline__ int round_to_blocks(int rows) { return (rows + B - 1) & ~(B - 1); }

    // One step of 32 ids (a warp, lane L holding id e, `valid` when e is a local expert): the
    // lane's rank among its expert's ids so far, from *count, the expert's running count in
    // shared memory, which then moves past this step's ids. -1 for an invalid lane, which counts
    // nothing (count is not read then).
    static __device__ __forceinline__ int rank_step(int *count, bool valid, int e)
    {
        const u32 lower = (1u << lane_id()) - 1u;
        const u32 peers = __match_any_sync(kFullMask, valid ? e : -1);
        const int rank = valid ? *count + __popc(peers & lower) : -1;
        __syncwarp();
        if (valid && (peers & lower) == 0) *count += __popc(peers); // the group's lowest lane
        __syncwarp();
        return rank;
    }

    // Ids of the tile each counting warp walks: whole steps of 32, contiguous, in index order.
    static __device__ __forceinline__ int run_length(int len)
    {
        return ((len + kCountWarps - 1) / kCountWarps + 31) & ~31;
    }

    // 1. Rank the tile ids[begin, begin+len): s.hist holds each warp's per-expert counts and
    //    s.code[i] the rank code of id begin+i (its rank inside its warp's run). The tile's local
    //    experts wait in s.code meanwhile.
    template <class T>
    static __device__ void rank_tile(const T *ids, int begin, int len, const Smem &s, const AlignParams &p)
    {
        for (int i = threadIdx.x; i < len; i += kThreads) s.code[i] = (u32)local_expert(ids[begin + i], p);
        rank_codes(len, s);
    }

    // 1b. rank_tile once the caller has written the tile's local experts (-1: dropped) to
    //     s.code[0, len) (onepass reads them while it counts the batch).
    static __device__ void rank_codes(int len, const Smem &s)
    {
        zero_hist(s);
        __syncthreads();
        rank_runs(len, s);
        __syncthreads();
    }

    static __device__ __forceinline__ void zero_hist(const Smem &s)
    {
        for (int i = threadIdx.x; i < kCountWarps * E; i += kThreads) s.hist[i] = 0;
    }

    // 1c. The counting warps' part of rank_codes, on zeroed histogram rows, between barriers.
    static __device__ void rank_runs(int len, const Smem &s)
    {
        const int warp = warp_id(), lane = lane_id();
        if (warp < kCountWarps) {
            int *hist = s.hist + warp * E;
            const int run = run_length(len);
            const int lo = warp * run, hi = min(len, lo + run);
            for (int at = lo; at < hi; at += 32) { // uniform over the warp
                const int i = at + lane;
                const int e = i < hi ? (int)s.code[i] : -1;
                const bool valid = (unsigned)e < (unsigned)E;
                const int rank = rank_step(hist + (valid ? e : 0), valid, e);
                if (i < hi) s.code[i] = valid ? ((u32)rank << Cfg::kExpertBits) | (u32)e : kDropped;
            }
        }
    }

    // 2. Offsets from the counts in s.padb: s.off = exclusive scan of the padded counts,
    //    s.padb = off + counts; counts, offsets and total_padded go out when wanted and `publish`
    //    (one block of onepass's grid writes them). With a capacity C (p.expert_capacity > 0)
    //    every range is round_up(C, B) rows and counts are min(count, C). Each warp scans a
    //    contiguous run of 32-expert windows, then adds the totals of the warps before it.
    static __device__ void expert_offsets(const Smem &s, const AlignParams &p, bool publish)
    {
        const int warp = warp_id(), lane = lane_id();
        int carry = 0;
        const int cap = p.expert_capacity; // > 0: every expert's range round_up(C, B) rows
        for (int j = 0; j < kWindowsPerWarp; j++) {
            const int e = (warp * kWindowsPerWarp + j) * 32 + lane;
            const int c = e < E ? s.padb[e] : 0;
            const int padded = cap > 0 ? (e < E ? round_to_blocks(cap) : 0) : round_to_blocks(c);
            const int incl = warp_inclusive_scan(padded, SumOp());
            if (e < E) s.off[e] = carry + incl - padded;
            carry += __shfl_sync(kFullMask, incl, 31);
        }
        if (lane == 0) s.warp_tot[warp] = carry;
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < kWarps; w++) {
            const int t = s.warp_tot[w];
            before += w < warp ? t : 0;
            total += t;
        }
        for (int j = 0; j < kWindowsPerWarp; j++) {
            const int e = (warp * kWindowsPerWarp + j) * 32 + lane;
            if (e < E) {
                const int o = s.off[e] + before, c = cap > 0 ? min(s.padb[e], cap) : s.padb[e];
                s.off[e] = o;
                s.padb[e] = o + c;
                if (publish && p.counts) p.counts[e] = c;
                if (publish && p.offsets) p.offsets[e] = o;
            }
        }
        if (threadIdx.x == 0) {
            s.off[E] = total;
            if (publish && p.offsets) p.offsets[E] = total;
            if (publish && p.total_padded) *p.total_padded = total;
        }
        __syncthreads();
    }

    // 3. Counts of the warps' runs → the position where each run's ids of expert e start:
    //    hist[w][e] = base(e) + Σ_{w' < w} hist[w'][e], base(e) = off[e] (+ the tile's prefix).
    static __device__ void run_bases(const Smem &s, const int *tile_prefix)
    {
        for (int e = threadIdx.x; e < E; e += kThreads) {
            int at = s.off[e] + (tile_prefix ? tile_prefix[e] : 0);
#pragma unroll
            for (int w = 0; w < kCountWarps; w++) {
                const int c = s.hist[w * E + e];
                s.hist[w * E + e] = at;
                at += c;
            }
        }
        __syncthreads();
    }

    // 4. Every id of the tile to its place (or dropped beyond the capacity); with `parts` blocks
    //    holding the same tile, block `part` takes every parts-th run of kThreads ids.
    static __device__ void scatter(int begin, int len, const Smem &s, const AlignParams &p, int part = 0,
                                   int parts = 1)
    {
        const int run = run_length(len);
        for (int i = part * kThreads + threadIdx.x; i < len; i += parts * kThreads) {
            const u32 c = s.code[i];
            int slot = -1;
            if (c != kDropped) {
                const int e = (int)(c & kExpertMask);
                slot = s.hist[(i / run) * E + e] + (int)(c >> Cfg::kExpertBits);
                // past the expert's first C by flat index (its rank in the batch): dropped
                if (p.expert_capacity > 0 && slot - s.off[e] >= p.expert_capacity) slot = -1;
                else if (p.sorted_ids) p.sorted_ids[slot] = begin + i;
            }
            if (p.slot_of) p.slot_of[begin + i] = slot;
        }
    }

    // 5. Padding (value N) and block_expert for this block's share of the experts: experts are
    //    dealt to the warps of `nblocks` blocks one at a time (a warp per expert, its lanes writing
    //    the expert's padding and blocks together), then -1 for the blocks beyond the total. An
    //    expert without rows costs three shared loads, so decode batches with thousands of experts
    //    stay cheap, and all warps share the experts that have rows. Rows and blocks (B = 1) reach
    //    INT32_MAX: the strided indices are u32, where the step past the last one cannot wrap.
    static __device__ void fill(const Smem &s, const AlignParams &p, int block, int nblocks)
    {
        const int warp = warp_id(), lane = lane_id();
        for (int e = block * kWarps + warp; e < E; e += nblocks * kWarps) {
            const int first = s.off[e], pad = s.padb[e], end = s.off[e + 1]; // rows [first, end), padding from pad
            if (end == first) continue; /* uniform over the warp */
            if (p.sorted_ids)
                for (u32 q = (u32)pad + lane; q < (u32)end; q += 32) p.sorted_ids[q] = p.n;
            if (p.block_expert)
                for (u32 b = (u32)(first / B) + lane; b < (u32)(end / B); b += 32) p.block_expert[b] = e;
        }
        if (p.block_expert) {
            const u32 stride = nblocks * kThreads;
            for (u32 b = (u32)(s.off[E] / B) + block * kThreads + threadIdx.x; b < (u32)(p.capacity / B); b += stride)
                p.block_expert[b] = -1;
        }
    }

    // 5b. Padding and block_expert in index order, through owner[] (the expert of each block of
    //     rows, below total / B), block `part` of `parts` taking a contiguous share of each: every
    //     store coalesced, a thread's loads independent of its previous ones (no per-expert chain
    //     as in fill()). u32 indices: as in fill().
    static __device__ void fill_rows(const Smem &s, const int *owner, const AlignParams &p, int part, int parts)
    {
        const u32 total = (u32)s.off[E];
        if (p.sorted_ids) {
            const u32 share = (total + parts - 1) / parts, hi = min(total, (part + 1) * share);
            for (u32 q = part * share + threadIdx.x; q < hi; q += kThreads)
                if ((int)q >= s.padb[owner[q / B]]) p.sorted_ids[q] = p.n;
        }
        if (p.block_expert) {
            const u32 blocks = (u32)(p.capacity / B), used = total / B, share = (blocks + parts - 1) / parts;
            const u32 hi = min(blocks, (part + 1) * share);
            for (u32 b = part * share + threadIdx.x; b < hi; b += kThreads) p.block_expert[b] = b < used ? owner[b] : -1;
        }
    }

    // The whole of align for n <= kTile ids whose local experts (-1: dropped) are in s.code, with
    // zeroed histogram rows (zero_hist) and a barrier since: route_align's fused kernel, as block
    // `part` of `parts` that all hold the same ids. Each block ranks all n and computes every
    // count and offset (the same in each: no communication), block 0 publishes them, and each
    // places its share of the ids (scatter) and writes its share of padding and block_expert
    // (fill_rows). owner: kTile ints. Never with a capacity (route_align has none).
    static __device__ void shared_batch(int n, const Smem &s, int *owner, const AlignParams &p, int part, int parts)
    {
        rank_runs(n, s);
        __syncthreads();
        for (int e = threadIdx.x; e < E; e += kThreads) {
            int c = 0;
#pragma unroll
            for (int w = 0; w < kCountWarps; w++) c += s.hist[w * E + e];
            s.padb[e] = c;
        }
        __syncthreads();
        expert_offsets(s, p, part == 0);
        for (int e = threadIdx.x; e < E; e += kThreads) // n ids fill at most n blocks: owner fits
            for (int b = s.off[e] / B; b < s.off[e + 1] / B; b++) owner[b] = e;
        run_bases(s, nullptr); // its barrier also completes owner[]
        scatter(0, n, s, p, part, parts);
        fill_rows(s, owner, p, part, parts);
    }

    // The whole of align for a decode batch, n <= kSmallIds, by the whole block: warp 0 ranks
    // and scans with no block barrier and no per-warp histogram (32 ids a step, as rank_tile
    // does), then places the ids; the block pads and labels. Never with a capacity (the host
    // takes onepass: the padded rows need not fit its block table). ids[0, n): global memory, or
    // route_align's int ids in shared memory; smem: kSmallSmemInts ints.
    template <class T>
    static __device__ void single_small(const T *ids, int *smem, const AlignParams &p)
    {
        if constexpr (kSmallIds > 0) {
            constexpr int kSteps = kSmallIds / 32;
            const int lane = lane_id(), n = p.n;
            int *cnt = smem, *off = smem + kPaddedE, *owner = off + kPaddedE; // owner: the expert of each block
            int expert[kSteps], rank[kSteps];
            if (warp_id() == 0) {
                T raw[kSteps];
#pragma unroll
                for (int s = 0; s < kSteps; s++) { // every load in flight before the first is used
                    const int i = s * 32 + lane;
                    raw[s] = i < n ? ids[i] : T(0);
                }
#pragma unroll
                for (int s = 0; s < kSteps; s++) // …and every map entry (lanes past n: -1)
                    expert[s] = s * 32 + lane < n ? local_expert(raw[s], p) : -1;
                for (int e = lane; e < 32 * kRunE; e += 32) cnt[skewed(e)] = 0;
                __syncwarp();
#pragma unroll
                for (int s = 0; s < kSteps; s++) {
                    if (s * 32 >= n) break; /* uniform */
                    const int e = expert[s];
                    const bool valid = (unsigned)e < (unsigned)E;
                    rank[s] = rank_step(cnt + skewed(valid ? e : 0), valid, e);
                }
                // Offsets: a lane's run of padded counts, one scan across the lanes, the run again.
                int run = 0;
#pragma unroll
                for (int j = 0; j < kRunE; j++) run += round_to_blocks(cnt[skewed(lane * kRunE + j)]);
                const int incl = warp_inclusive_scan(run, SumOp());
                int at = incl - run;
#pragma unroll
                for (int j = 0; j < kRunE; j++) {
                    off[skewed(lane * kRunE + j)] = at;
                    at += round_to_blocks(cnt[skewed(lane * kRunE + j)]);
                }
                if (lane == 31) off[skewed(E)] = incl; /* the total, also when E fills the runs */
            }
            __syncthreads();
            // Each thread labels the blocks of its experts (ceil(rows / B) each) while warp 0
            // places the ids; then the block writes padding and block_expert in index order, so
            // that every store is coalesced.
            if (warp_id() == 0) {
#pragma unroll
                for (int s = 0; s < kSteps; s++) {
                    if (s * 32 >= n) break;
                    const int i = s * 32 + lane;
                    if (i < n) {
                        int slot = -1;
                        if (rank[s] >= 0) {
                            slot = off[skewed(expert[s])] + rank[s];
                            if (p.sorted_ids) p.sorted_ids[slot] = i;
                        }
                        if (p.slot_of) p.slot_of[i] = slot;
                    }
                }
            }
            for (int e = threadIdx.x; e < E; e += kThreads) {
                const int first = off[skewed(e)], rows = cnt[skewed(e)];
                if (p.counts) p.counts[e] = rows;
                if (p.offsets) p.offsets[e] = first;
                const int end = first + round_to_blocks(rows);
                for (int b = first / B; b < end / B; b++) owner[b] = e;
            }
            const int total = off[skewed(E)];
            if (threadIdx.x == 0) {
                if (p.offsets) p.offsets[E] = total;
                if (p.total_padded) *p.total_padded = total;
            }
            __syncthreads();
            if (p.sorted_ids)
                for (int q = threadIdx.x; q < total; q += kThreads) {
                    const int e = owner[q / B];
                    if (q >= off[skewed(e)] + cnt[skewed(e)]) p.sorted_ids[q] = n;
                }
            if (p.block_expert)
                for (u32 b = threadIdx.x; b < (u32)(p.capacity / B); b += kThreads) // u32: as in fill()
                    p.block_expert[b] = b < (u32)(total / B) ? owner[b] : -1;
        }
    }

    static __device__ void small_launch(const AlignParams &p) { single_small(ids_of(p), mj_align_smem, p); }

    // Ids each thread of onepass has in flight while it counts the batch (coalesced over the
    // warp, kOnepassLoads·kThreads ids a round, one map lookup each after them): 64 bytes of
    // int32 or int64 ids, which keeps L2 busy without spilling registers.
    static constexpr int kOnepassLoads = sizeof(Id) > 4 ? 8 : 16;

    // The whole of align in one launch of G blocks, no workspace (kOnepassSmemInts ints each).
    // Block g owns tile g, ids [g·t, min(n, (g+1)·t)) with t = ceil(n / G) <= kTile (the host
    // sizes G so), and every block:
    //   1. counts all n ids with shared atomics (exact: a count does not depend on the order):
    //      `before` those ahead of its tile, s.padb the others, its tile's local experts to s.code;
    //   2. ranks its tile (rank_codes) and adds `before` to s.padb: every expert's count;
    //   3. computes every offset (block 0 alone writes counts, offsets and total_padded);
    //   4. places its tile after the `before` ids of each expert (run_bases, scatter);
    //   5. fills padding and block_expert for its share of the experts.
    // Every block reads the n ids, so the host keeps n small enough for that to stay cheaper than
    // the three launches; the i are u32 so that nothing wraps whatever n the host sends.
    static __device__ void onepass(const AlignParams &p)
    {
        const Smem s = carve(mj_align_smem);
        int *before = mj_align_smem + kBlockSmemInts; // [E]
        const u32 n = (u32)p.n, tile = (n + gridDim.x - 1) / gridDim.x;
        const u32 begin = min(n, blockIdx.x * tile);
        const int len = (int)min(n - begin, tile);
        for (int e = threadIdx.x; e < E; e += kThreads) before[e] = 0, s.padb[e] = 0;
        __syncthreads();
        const Id *ids = ids_of(p);
        for (u32 at = 0; at < n; at += kOnepassLoads * kThreads) {
            Id raw[kOnepassLoads];
            int expert[kOnepassLoads];
#pragma unroll
            for (int j = 0; j < kOnepassLoads; j++) { // every load in flight before the first is used
                const u32 i = at + j * kThreads + threadIdx.x;
                raw[j] = i < n ? __ldg(ids + i) : Id(0);
            }
#pragma unroll
            for (int j = 0; j < kOnepassLoads; j++) // …and every map entry
                expert[j] = at + j * kThreads + threadIdx.x < n ? local_expert(raw[j], p) : -1;
#pragma unroll
            for (int j = 0; j < kOnepassLoads; j++) {
                const u32 i = at + j * kThreads + threadIdx.x;
                if (i - begin < (u32)len) s.code[i - begin] = (u32)expert[j]; // i < begin wraps past len
                if (expert[j] >= 0) atomicAdd((i < begin ? before : s.padb) + expert[j], 1);
            }
        }
        if (len > 0) rank_codes(len, s); // its first barrier completes the counts
        else __syncthreads();
        for (int e = threadIdx.x; e < E; e += kThreads) s.padb[e] += before[e];
        __syncthreads();
        expert_offsets(s, p, blockIdx.x == 0);
        if (len > 0) {
            run_bases(s, before);
            scatter((int)begin, len, s, p);
        }
        fill(s, p, blockIdx.x, gridDim.x);
    }

    // Workspace views (int offsets, 64-bit: P·E may pass 2^31 for huge batches).
    static __device__ __forceinline__ int *ws_tile(const AlignParams &p, int tile) { return p.ws + (i64)tile * E; }
    static __device__ __forceinline__ int *ws_counts(const AlignParams &p) { return p.ws + (i64)p.num_tiles * E; }
    static __device__ __forceinline__ int *ws_off(const AlignParams &p) { return ws_counts(p) + E; }
    static __device__ __forceinline__ int *ws_padb(const AlignParams &p) { return ws_off(p) + E + 1; }

    // Multi-launch 1/3: the histogram of tile blockIdx.x (only counts: atomics are exact here).
    static __device__ void count(const AlignParams &p)
    {
        int *hist = mj_align_smem;
        for (int e = threadIdx.x; e < E; e += kThreads) hist[e] = 0;
        __syncthreads();
        // the last tile may end at INT32_MAX: neither its end nor the step past it may wrap
        const int begin = blockIdx.x * kTile, end = begin + min(p.n - begin, kTile);
        const Id *ids = ids_of(p);
        for (u32 i = begin + threadIdx.x; i < (u32)end; i += kThreads) {
            const int e = local_expert(__ldg(ids + i), p);
            if (e >= 0) atomicAdd(hist + e, 1);
        }
        __syncthreads();
        int *out = ws_tile(p, blockIdx.x);
        for (int e = threadIdx.x; e < E; e += kThreads) out[e] = hist[e];
    }

    // Multi-launch 2/3 (one block): each tile's count → the ids of earlier tiles per expert;
    // then the offsets, published to the outputs and the workspace.
    static __device__ void scan(const AlignParams &p)
    {
        const Smem s = carve(mj_align_smem);
        for (int e = threadIdx.x; e < E; e += kThreads) {
            int run = 0;
            for (int t = 0; t < p.num_tiles; t++) {
                int *cell = ws_tile(p, t) + e;
                const int c = *cell;
                *cell = run;
                run += c;
            }
            s.padb[e] = run;
        }
        __syncthreads();
        expert_offsets(s, p, true);
        int *off = ws_off(p), *padb = ws_padb(p), *counts = ws_counts(p);
        for (int e = threadIdx.x; e <= E; e += kThreads) {
            off[e] = s.off[e];
            if (e < E) {
                padb[e] = s.padb[e];
                counts[e] = s.padb[e] - s.off[e];
            }
        }
    }

    // Multi-launch 3/3: blocks below P place their tile; every block fills a share of the experts.
    static __device__ void scatter_tiles(const AlignParams &p)
    {
        const Smem s = carve(mj_align_smem);
        const int *off = ws_off(p), *padb = ws_padb(p);
        for (int e = threadIdx.x; e <= E; e += kThreads) {
            s.off[e] = off[e];
            if (e < E) s.padb[e] = padb[e];
        }
        // rank_tile() begins and ends with a barrier, so s.off / s.padb are complete below.
        if ((int)blockIdx.x < p.num_tiles) {
            const int begin = blockIdx.x * kTile, len = min(p.n - begin, kTile);
            rank_tile(ids_of(p), begin, len, s, p);
            run_bases(s, ws_tile(p, blockIdx.x));
            scatter(begin, len, s, p);
        } else {
            __syncthreads();
        }
        fill(s, p, blockIdx.x, gridDim.x);
    }
};

} // namespace mj
