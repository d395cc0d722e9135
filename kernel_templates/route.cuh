// moejit kernel_templates/route.cuh — gating and top-k selection (DESIGN §2.1).
//
// One warp per token. Lane L holds the VPT = ceil(E/32) consecutive experts [L*VPT, L*VPT+VPT)
// in registers; since E is a compile-time constant every loop over them is unrolled and no
// register array is ever indexed at run time. Top-K is K rounds of warp argmax: each lane offers
// its best remaining candidate as an order-preserving u32 key, one integer max finds the winner,
// and the lowest lane holding it wins — lanes own ascending expert ranges, so that is also the
// lowest expert index, which is exactly the tie rule.
//
// Expects a Cfg struct (emitted by codegen) with:
//   Dtype (mj::F32 / mj::BF16 / mj::F16), kExperts, kTopK, kScore, kHasBias, kSoftcap,
//   kScoreAfterTopk, kRenormalize, kScaleOutput, kScalingFactor, kSharedSlots, kWarpsPerBlock.

namespace mj {

enum { kScoreSoftmax = 0, kScoreSigmoid = 1, kScoreSqrtSoftplus = 2 };

// Kernel parameters; the host passes the same layout (src/launch_route.c).
struct RouteParams {
    const void *logits;
    const float *bias;
    int *ids;
    float *weights;
    i64 num_tokens;
    i64 row_stride;
};

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// softplus with PyTorch's default threshold: linear above 20, where log1p(exp(x)) == x in f32.
__device__ __forceinline__ float sqrt_softplus(float x) { return sqrtf(x > 20.0f ? x : log1pf(expf(x))); }

template <int kScore>
__device__ __forceinline__ float score_elementwise(float x)
{
    if constexpr (kScore == kScoreSigmoid) return sigmoid(x);
    else return sqrt_softplus(x);
}

template <class Cfg>
struct RouteWarp {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int S = Cfg::kSharedSlots;
    static constexpr int kOut = K + S;
    static constexpr int VPT = (E + 31) / 32;          // experts per lane
    static constexpr int kFullLanes = E / VPT;         // lanes whose whole range is in [0, E)
    static constexpr int kSlotsPerLane = (kOut + 31) / 32;

    // Is expert lane*VPT + i a real expert? (only the last lanes can hold fewer than VPT)
    static __device__ __forceinline__ bool present(int lane, int i) { return lane * VPT + i < E; }

    // Route one token: row points at its E logits; the warp writes kOut ids and weights to
    // ids_out / w_out (global or shared memory). Called by all 32 lanes together. This is the
    // device-side interface other kernels (the fused route+align) build on.
    static __device__ void route_row(const Storage *row, const float *bias, int lane, int *ids_out, float *w_out)
    {
        const int first = lane * VPT;

        // 1. Load this lane's logits (absent experts read as -inf and never become candidates).
        float x[VPT];
        if (E % VPT == 0 || lane < kFullLanes) {
            if (first < E) load_span<D, VPT>(row + first, x);
            else {
#pragma unroll
                for (int i = 0; i < VPT; i++) x[i] = -__int_as_float(0x7f800000);
            }
        } else {
#pragma unroll
            for (int i = 0; i < VPT; i++) x[i] = present(lane, i) ? load_one<D>(row, first + i) : -__int_as_float(0x7f800000);
        }
        if constexpr (Cfg::kSoftcap > 0.0f) {
#pragma unroll
            for (int i = 0; i < VPT; i++) x[i] = Cfg::kSoftcap * tanhf(x[i] / Cfg::kSoftcap);
        }

        // 2. Scores. val[] is what a chosen expert reports: its score, or its logit when the
        //    score is taken after the top-k.
        float val[VPT];
        if constexpr (Cfg::kScoreAfterTopk) {
#pragma unroll
            for (int i = 0; i < VPT; i++) val[i] = x[i];
        } else if constexpr (Cfg::kScore == kScoreSoftmax) {
            float m = x[0];
#pragma unroll
            for (int i = 1; i < VPT; i++) m = fmaxf(m, x[i]);
            m = warp_max_f32(m);
#pragma unroll
            for (int i = 0; i < VPT; i++) val[i] = expf(x[i] - m);
            const float inv = 1.0f / warp_sum_f32(sum_pairwise<VPT>(val));
#pragma unroll
            for (int i = 0; i < VPT; i++) val[i] *= inv;
        } else {
#pragma unroll
            for (int i = 0; i < VPT; i++) val[i] = score_elementwise<Cfg::kScore>(x[i]);
        }

        // 3. Selection keys: score (+ bias); 0 = not a candidate.
        u32 key[VPT];
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            float sel = val[i];
            if constexpr (Cfg::kHasBias) sel += present(lane, i) ? __ldg(bias + first + i) : 0.0f;
            key[i] = present(lane, i) ? order_key(sel) : 0u;
        }

        // 4. K rounds of warp argmax. Lane k keeps the k-th winner (k+32 in its second slot).
        int my_id[kSlotsPerLane];
        float my_val[kSlotsPerLane];
#pragma unroll
        for (int j = 0; j < kSlotsPerLane; j++) { my_id[j] = 0; my_val[j] = 0.0f; }
#pragma unroll 1
        for (int k = 0; k < K; k++) {
            u32 best = key[0];
            int bi = 0;
#pragma unroll
            for (int i = 1; i < VPT; i++)
                if (key[i] > best) { best = key[i]; bi = i; }
            float bv = val[0];
#pragma unroll
            for (int i = 1; i < VPT; i++)
                if (bi == i) bv = val[i];
            const u32 top = warp_max_u32(best);
            const int winner = __ffs(__ballot_sync(kFullMask, best == top)) - 1;
            if (lane == winner) {
#pragma unroll
                for (int i = 0; i < VPT; i++)
                    if (bi == i) key[i] = 0u;
            }
            const int id = __shfl_sync(kFullMask, first + bi, winner);
            const float v = __shfl_sync(kFullMask, bv, winner);
#pragma unroll
            for (int j = 0; j < kSlotsPerLane; j++)
                if (lane + 32 * j == k) { my_id[j] = id; my_val[j] = v; }
        }

        // 5. Weights of the K routed slots (lanes holding slot k < K), then shared slots.
        float w[kSlotsPerLane];
        if constexpr (Cfg::kScoreAfterTopk) {
            if constexpr (Cfg::kScore == kScoreSoftmax) {
                float m = -__int_as_float(0x7f800000);
#pragma unroll
                for (int j = 0; j < kSlotsPerLane; j++)
                    if (lane + 32 * j < K) m = fmaxf(m, my_val[j]);
                m = warp_max_f32(m);
                float sum = 0.0f;
#pragma unroll
                for (int j = 0; j < kSlotsPerLane; j++) {
                    w[j] = lane + 32 * j < K ? expf(my_val[j] - m) : 0.0f;
                    sum += w[j];
                }
                const float inv = 1.0f / warp_sum_f32(sum);
#pragma unroll
                for (int j = 0; j < kSlotsPerLane; j++) w[j] *= inv;
            } else {
#pragma unroll
                for (int j = 0; j < kSlotsPerLane; j++) w[j] = score_elementwise<Cfg::kScore>(my_val[j]);
            }
        } else {
#pragma unroll
            for (int j = 0; j < kSlotsPerLane; j++) w[j] = my_val[j];
        }
        if constexpr (Cfg::kRenormalize || S > 0) {
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < kSlotsPerLane; j++)
                if (lane + 32 * j < K) part += w[j];
            const float sum = warp_sum_f32(part);
            float routed = sum;
            if constexpr (Cfg::kRenormalize) {
                if (sum > 0.0f) {
#pragma unroll
                    for (int j = 0; j < kSlotsPerLane; j++) w[j] = w[j] / sum;
                    part = 0.0f;
#pragma unroll
                    for (int j = 0; j < kSlotsPerLane; j++)
                        if (lane + 32 * j < K) part += w[j];
                    routed = warp_sum_f32(part);
                }
            }
            if constexpr (S > 0) {
                const float shared_w = routed / Cfg::kScalingFactor;
#pragma unroll
                for (int j = 0; j < kSlotsPerLane; j++) {
                    const int slot = lane + 32 * j;
                    if (slot >= K && slot < kOut) { my_id[j] = E + (slot - K); w[j] = shared_w; }
                }
            }
        }
        if constexpr (Cfg::kScaleOutput) {
#pragma unroll
            for (int j = 0; j < kSlotsPerLane; j++)
                if (lane + 32 * j < K) w[j] *= Cfg::kScalingFactor;
        }

        // 6. One coalesced write per slot.
#pragma unroll
        for (int j = 0; j < kSlotsPerLane; j++) {
            const int slot = lane + 32 * j;
            if (slot < kOut) {
                ids_out[slot] = my_id[j];
                w_out[slot] = w[j];
            }
        }
    }
};

template <class Cfg>
__device__ __forceinline__ void route_kernel(const RouteParams &p)
{
    const int lane = threadIdx.x & 31;
    const i64 warps_total = (i64)gridDim.x * Cfg::kWarpsPerBlock;
    for (i64 token = (i64)blockIdx.x * Cfg::kWarpsPerBlock + (threadIdx.x >> 5); token < p.num_tokens;
         token += warps_total)
        RouteWarp<Cfg>::route_row(static_cast<const typename Cfg::Dtype::Storage *>(p.logits) + token * p.row_stride,
                                  p.bias, lane, p.ids + token * RouteWarp<Cfg>::kOut,
                                  p.weights + token * RouteWarp<Cfg>::kOut);
}

} // namespace mj
