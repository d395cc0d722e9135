// moejit kernel_templates/route_align.cuh — route then align in one launch (docs/DESIGN.md §2.3).
//
// Decode batches, on a grid that is one thread-block cluster of G blocks (G = 1 below sm_90,
// where the host sends only what one block routes in a round). Block g routes its own run of
// ceil(T / G) tokens, a warp a token (RouteWarp::route_row: every token is routed once, on G SMs
// at once), writes route's outputs for them, and pushes their int ids into the shared memory of
// every block of the cluster. After one cluster barrier every block holds the batch's ids and
// runs align on them (Align::shared_batch): each ranks all of them and computes every count and
// offset itself — the same in each, so no more communication — then writes only its 1/G share of
// the placed ids, of the padding and of block_expert (the bulk of the bytes at T = 64: with
// E + S = 257 and B = 64, about 57 KB of sorted_ids that one SM would write alone). No workspace,
// no global atomics, the same positions as align's kernels (ascending flat index in each expert).
// A single block whose batch fits AlignCfg::kSmallIds (T <= 4 on a cluster) runs align's small
// path instead: one warp ranks and scans, with fewer barriers than the block-wide passes.
//
// Measured per launch (H100, CUDA graph with PDL; bench_ops route_align, E+S = 257, B = 64,
// BENCHMARKS.md session 7): 4.28 µs at T = 1, 4.78 at 4, 5.76 at 8, 5.78 at 16, 6.51 at 64, against
// 4.31, 4.76, 5.20, 6.59 and 6.79 for route then align and 2.34–2.41 for route alone. What costs
// is align's chain after route's (ranking, the scans over E+S, the stores), not the launch.
//
// Expects route.cuh's Cfg (RouteCfg) and align.cuh's Cfg (AlignCfg) with AlignCfg::kThreads the
// block size, AlignCfg::kExperts = E + S and AlignCfg::kTile >= the token limit × (K + S); the
// dynamic shared memory is Align's block views (the ids land in Smem::code), then kTile ints of
// block → expert labels, or the small path's scratch where that is larger.

namespace mj {

// RouteAlignParams (route, align; align.n = T·(K+S), align.ids is not read) is emitted by codegen
// from MJ_ROUTE_ALIGN_PARAMS in src/ops/route_align/route_align.h.

// ---- the cluster (PTX ISA: barrier.cluster, mapa); one block and no-ops below sm_90 -------------

// The blocks of this block's cluster and its rank among them.
__device__ __forceinline__ void cluster_position(int &blocks, int &rank)
{
    u32 n = 1, r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm("mov.u32 %0, %%cluster_nctarank;\n\tmov.u32 %1, %%cluster_ctarank;" : "=r"(n), "=r"(r));
#endif
    blocks = (int)n;
    rank = (int)r;
}

// arrive(false) + wait: every block of the cluster has started (its shared memory may be written);
// arrive(true) + wait: also every write before the arrive is visible to the whole cluster.
__device__ __forceinline__ void cluster_arrive(bool release)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (release) asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
    else asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}

__device__ __forceinline__ void cluster_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}

// *at in the shared memory of block `peer` of the cluster (at: this block's address) = v.
__device__ __forceinline__ void cluster_store(const int *at, int peer, int v)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    u32 local;
    asm("{ .reg .u64 s; cvta.to.shared.u64 s, %1; cvt.u32.u64 %0, s; }" : "=r"(local) : "l"(at));
    asm volatile("{ .reg .u32 r; mapa.shared::cluster.u32 r, %0, %1; st.shared::cluster.u32 [r], %2; }"
                 :: "r"(local), "r"(peer), "r"(v) : "memory");
#endif
}

template <class RouteCfg, class AlignCfg>
__device__ __forceinline__ void route_align_fused(const RouteAlignParams &p)
{
    if constexpr (RouteCfg::kExperts > 1024) {
        return; /* never launched: the host takes the two-launch path above 1024 experts */
    } else {
    typedef Align<AlignCfg> A;
    typedef RouteWarp<RouteCfg, A::kWarps> R;
    typedef typename RouteCfg::IdT IdT;
    static_assert(AlignCfg::kExperts == RouteCfg::kPhysicalExperts + RouteCfg::kSharedSlots,
                  "align covers the (physical) experts and the shared slots");
    constexpr int kOut = R::kOut;
    const typename A::Smem s = A::carve(mj_align_smem);
    int *ids = reinterpret_cast<int *>(s.code), *owner = mj_align_smem + A::kBlockSmemInts;
    int blocks, me;
    cluster_position(blocks, me);
    const int lane = threadIdx.x & 31;
    const int tokens = (int)p.route.num_tokens, valid = (int)valid_rows<RouteCfg>(p.route);
    const int run = (tokens + blocks - 1) / blocks, first = me * run, last = min(valid, first + run);
    if (blocks > 1) cluster_arrive(false); /* this block runs: peers may push ids to it */
    A::zero_hist(s);                       /* align's histogram rows, behind the barrier below */
    for (int t = first + (threadIdx.x >> 5); t < last; t += A::kWarps) R::route_row(p.route, t, lane, ids + t * kOut);
    if constexpr (RouteCfg::kPadded) { /* rows from the count on: id -1 (align drops it), every block its own */
        for (int i = valid * kOut + threadIdx.x; i < tokens * kOut; i += A::kThreads) ids[i] = -1;
        write_padding<RouteCfg>(p.route, valid);
    }
    if (blocks > 1) cluster_wait();
    // Route's ids out, and to every other block (each lane pushes the slots it wrote itself).
    for (int t = first + (threadIdx.x >> 5); t < last; t += A::kWarps)
        for (int at = t * kOut + lane; at < (t + 1) * kOut; at += 32) {
            const int id = ids[at];
            static_cast<IdT *>(p.route.ids)[at] = (IdT)id;
            for (int peer = 0; peer < blocks; peer++)
                if (peer != me) cluster_store(ids + at, peer, id);
        }
    if (blocks > 1) {
        cluster_arrive(true);
        cluster_wait();
    } else {
        __syncthreads();
    }
    if constexpr (A::kSmallIds > 0) {
        // One block and a decode batch: align's small path (one warp ranks and scans, no
        // histogram rows and fewer barriers), its scratch where the labels would go. Measured on
        // the H100 at T = 1: shared_batch cost 0.5 µs more than route then align's own launch.
        if (blocks == 1 && p.align.n <= A::kSmallIds) {
            A::single_small(ids, owner, p.align);
            return;
        }
    }
    A::shared_batch(p.align.n, s, owner, p.align, me, blocks);
    }
}

} // namespace mj
