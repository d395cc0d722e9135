// moejit kernel_templates/route_losses.cuh — the auxiliary losses from route's statistics
// (moejit.h Operation 1c, docs/DESIGN.md §2.1c).
//
// One block of kThreads threads. Each loss is a sum in double: thread i takes the terms i,
// i + kThreads, … in order, then a fixed tree over the threads — the same bits on every run.
// Expects a Cfg (src/ops/route_losses/codegen.c): kExperts, kTopK, kAuxStats, SeqOffT, kThreads.

namespace mj {

// RouteLossesParams is emitted by codegen in front of this file.

template <int NT>
__device__ double block_sum_fixed(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
#pragma unroll
    for (int o = NT / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    const double r = sh[0];
    __syncthreads(); /* sh is reused */
    return r;
}

template <class Cfg>
__device__ __forceinline__ void route_losses_kernel(const RouteLossesParams &p)
{
    constexpr int E = Cfg::kExperts, NT = Cfg::kThreads;
    constexpr double K = Cfg::kTopK;
    static_assert((NT & (NT - 1)) == 0, "a power of two of threads");
    __shared__ double sh[NT];
    const int t = threadIdx.x;
    const i64 T = p.num_tokens, N = p.num_seqs;
    const u64 *prob = static_cast<const u64 *>(p.prob_sums);
    double aux = 0.0, seq = 0.0, z = 0.0;
    if constexpr ((Cfg::kAuxStats & 1) != 0) {
        double part = 0.0;
        for (int e = t; e < E; e += NT) {
            u64 P = 0ull;
            long long c = 0;
            for (i64 q = 0; q < N; q++) P += prob[q * E + e], c += p.counts[q * E + e];
            part += ldexp((double)P, -32) * (double)c;
        }
        aux = block_sum_fixed<NT>(part, sh);
        aux = T > 0 ? aux * E / (K * (double)T * (double)T) : 0.0;
    }
    if constexpr ((Cfg::kAuxStats & 2) != 0) {
        const typename Cfg::SeqOffT *off = static_cast<const typename Cfg::SeqOffT *>(p.seq_offsets);
        double part = 0.0;
        for (i64 i = t; i < N * E; i += NT) {
            const i64 q = i / E;
            const double L = (double)((i64)off[q + 1] - (i64)off[q]);
            if (L > 0.0) part += p.counts[i] * E / (K * L) * (ldexp((double)prob[i], -32) / L);
        }
        seq = block_sum_fixed<NT>(part, sh) / (double)N;
    }
    if constexpr ((Cfg::kAuxStats & 4) != 0) {
        double part = 0.0;
        for (i64 i = t; i < T; i += NT) {
            const double l = p.lse[i];
            part += l * l;
        }
        z = block_sum_fixed<NT>(part, sh);
        z = T > 0 ? z / (double)T : 0.0;
    }
    if (t == 0) {
        p.losses[0] = (float)aux;
        p.losses[1] = (float)seq;
        p.losses[2] = (float)z;
    }
}

} // namespace mj
