// moejit kernel_templates/route_align.cuh — route then align in one block (docs/DESIGN.md §2.3).
//
// Decode batches: one block routes every token (a warp a token, RouteWarp::route_row, at most a
// few tokens per warp) with the ids landing in shared memory and the weights in global memory,
// then aligns those ids with align's small path where E+S allows it, else its one-block path.
// Nothing goes through global memory in between and there is one launch instead of two. The
// host sends larger batches to the route kernel and align's kernels instead (same templates,
// same results).
//
// Expects route.cuh's Cfg (RouteCfg) and align.cuh's Cfg (AlignCfg) with AlignCfg::kThreads the
// block size, AlignCfg::kExperts = E + S and AlignCfg::kTile >= the token limit × (K + S): the
// ids take kTile more ints of shared memory after align's.

namespace mj {

// RouteAlignParams (route, align; align.n = T·(K+S), align.ids is not read) is emitted by codegen
// from MJ_ROUTE_ALIGN_PARAMS in src/ops/route_align/route_align.h.

template <class RouteCfg, class AlignCfg>
__device__ __forceinline__ void route_align_fused(const RouteAlignParams &p)
{
    if constexpr (RouteCfg::kExperts > 1024) {
        return; /* never launched: the host takes the two-launch path above 1024 experts */
    } else {
    typedef RouteWarp<RouteCfg, AlignCfg::kThreads / 32> R;
    typedef Align<AlignCfg> A;
    static_assert(AlignCfg::kExperts == RouteCfg::kPhysicalExperts + RouteCfg::kSharedSlots,
                  "align covers the (physical) experts and the shared slots");
    int *ids = mj_align_smem + A::kSmemInts;
    const int lane = threadIdx.x & 31;
    const int tokens = (int)p.route.num_tokens;
    const int valid = (int)valid_rows<RouteCfg>(p.route);
    for (int t = threadIdx.x >> 5; t < valid; t += A::kWarps) R::route_row(p.route, t, lane, ids + t * R::kOut);
    if constexpr (RouteCfg::kPadded) { /* padded rows: id -1, which align drops */
        for (int i = valid * R::kOut + threadIdx.x; i < tokens * R::kOut; i += A::kThreads) ids[i] = -1;
        write_padding<RouteCfg>(p.route, valid);
    }
    __syncthreads();
    typedef typename RouteCfg::IdT IdT;
    for (int i = threadIdx.x; i < valid * R::kOut; i += A::kThreads) static_cast<IdT *>(p.route.ids)[i] = (IdT)ids[i];
    if constexpr (A::kSmallIds > 0) {
        A::single_small(ids, mj_align_smem, p.align); /* the batch fits by construction */
    } else {
        A::single(ids, A::carve(mj_align_smem), p.align);
    }
    }
}

} // namespace mj
