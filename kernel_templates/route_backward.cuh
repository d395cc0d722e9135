// moejit kernel_templates/route_backward.cuh — the gradient of route's weights w.r.t. the logits
// (moejit.h Operation 1b, docs/DESIGN.md §2.1b).
//
// Built on route.cuh, emitted in front of it: Segment, finite_logit, sigmoid, score_elementwise,
// load_lane, load_one. The selection (the ids) is given, so a token is two short passes:
//   slots    the lanes holding the K routed slots (slot lane + L·j) recompute the forward's
//            weights of their experts from the logits and run the chain rule backwards (scaling,
//            shared slots, renormalisation, the score) to one value X per slot;
//   experts  the lanes holding the experts (as route's layout: lane L has [L·VPT, (L+1)·VPT))
//            read the X of their experts from shared memory (0 if not chosen) and write the row.
// Softmax over the row is the only score whose gradient reaches the experts that were not chosen:
// there the expert lanes also load the whole row, for the softmax's maximum and sum, and every
// expert gets s·(X − Σ_k X_k·p_k). Other scores read only the K chosen logits.
// An expert chosen by several slots (given ids may repeat) gets the sum of their X, in slot
// order, written by its first slot: no atomics. Reductions are butterflies or fixed loops, so
// the output is bit-identical run to run. Up to 1024 experts a segment of a warp takes a token
// (several tokens a warp below 32 experts), above a block does (warp 0 takes the slots).
//
// Expects a Cfg (src/ops/route_backward/codegen.c): Dtype, kExperts, kTopK, kScore, kSoftcap,
// kScoreAfterTopk (softmax only), kRenormalize, kScaleOutput, kScalingFactor, kSharedSlots, IdT,
// kLanesPerToken, kWarpsPerBlock.

namespace mj {

// RouteBackwardParams is emitted by codegen in front of this file from MJ_ROUTE_BACKWARD_PARAMS in
// src/ops/route_backward/route_backward.h.

// ---- the forward's logit and the scores' derivatives ---------------------------------------------

// A logit as the forward's weights read it (route step 0: soft cap, NaN as -inf, ±inf as
// ±FLT_MAX) and the soft cap's derivative 1 − tanh²(x/cap) = 4t/(1+t)², t = exp(−2|x/cap|), which
// keeps its precision where tanh is near ±1 (and is 0 at ±inf).
template <class Cfg>
struct BackwardLogit {
    float f;    // what the scores read
    float dcap; // d(soft-capped logit) / d(logit)
    bool nan;   // the logit was NaN: no gradient
    __device__ __forceinline__ explicit BackwardLogit(float x)
    {
        dcap = 1.0f;
        if constexpr (Cfg::kSoftcap > 0.0f) {
            const float t = expf(-2.0f * fabsf(x / Cfg::kSoftcap));
            dcap = 4.0f * t / ((1.0f + t) * (1.0f + t));
            x = Cfg::kSoftcap * tanhf(x / Cfg::kSoftcap);
        }
        nan = x != x;
        f = finite_logit(x);
    }
};

// d score / dx. sqrt(softplus): σ(x) / (2·sqrt(softplus(x))); the forward's softplus is x above 20
// (so the derivative is that of sqrt(x)); below -20 softplus(x) = e^x to f32 precision, so it is
// e^(x/2) / 2, which does not underflow to 0/0.
template <int kScore>
__device__ __forceinline__ float score_grad(float x)
{
    if constexpr (kScore == kScoreSigmoid) {
        const float t = expf(-fabsf(x)), d = 1.0f + t;
        return t / (d * d);
    } else {
        if (x > 20.0f) return 0.5f / sqrtf(x);
        if (x < -20.0f) return 0.5f * expf(0.5f * x);
        return sigmoid(x) / (2.0f * sqrtf(log1pf(expf(x))));
    }
}

// d log(score) / dx: what renormalisation multiplies a weight by (w·(a − A)·this), free of the
// division by the routed sum that could overflow.
template <int kScore>
__device__ __forceinline__ float score_log_grad(float x)
{
    if constexpr (kScore == kScoreSigmoid) {
        return sigmoid(-x);
    } else {
        if (x > 20.0f) return 0.5f / x;
        if (x < -20.0f) return 0.5f;
        return sigmoid(x) / (2.0f * log1pf(expf(x)));
    }
}

// An infinite gradient (an overflow of f32 on the way) becomes ±FLT_MAX; NaN stays NaN.
__device__ __forceinline__ float finite_grad(float g) { return fabsf(g) > kFloatMax ? copysignf(kFloatMax, g) : g; }

// Store N floats at p (the widest vector the address allows).
template <int N>
__device__ __forceinline__ void store_span(float *p, const float (&v)[N])
{
    const unsigned long long a = reinterpret_cast<unsigned long long>(p);
    if constexpr (N % 4 == 0) {
        if ((a & 15) == 0) {
#pragma unroll
            for (int i = 0; i < N / 4; i++) {
                float4 q;
                q.x = v[4 * i], q.y = v[4 * i + 1], q.z = v[4 * i + 2], q.w = v[4 * i + 3];
                reinterpret_cast<float4 *>(p)[i] = q;
            }
            return;
        }
    }
    if constexpr (N % 2 == 0) {
        if ((a & 7) == 0) {
#pragma unroll
            for (int i = 0; i < N / 2; i++) {
                float2 q;
                q.x = v[2 * i], q.y = v[2 * i + 1];
                reinterpret_cast<float2 *>(p)[i] = q;
            }
            return;
        }
    }
#pragma unroll
    for (int i = 0; i < N; i++) p[i] = v[i];
}

// ---- the slots: the chain rule from grad_weights back to one value per routed slot ----------------

template <class Cfg, int L>
struct BackwardSlots {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    typedef typename Cfg::IdT IdT;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int S = Cfg::kSharedSlots;
    static constexpr int kOut = K + S;
    static constexpr int kSlots = (K + L - 1) / L;       // routed slots per lane
    static constexpr int kSharedSlots = (S + L - 1) / L; // shared slots per lane
    static constexpr bool kRowSoftmax = Cfg::kScore == kScoreSoftmax && !Cfg::kScoreAfterTopk;
    static constexpr bool kAfterSoftmax = Cfg::kScore == kScoreSoftmax && Cfg::kScoreAfterTopk;
    static __device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

    // The expert of each routed slot of this lane, -1 for none (an id outside [0, E), a slot past
    // K, an inactive token), and the slot's grad_weight (loaded now, with the id: one memory
    // latency for both).
    static __device__ __forceinline__ void load_ids(const Segment<L> &seg, bool active, const RouteBackwardParams &p,
                                                    i64 token, int (&id)[kSlots], float (&gw)[kSlots])
    {
        const IdT *row = static_cast<const IdT *>(p.ids) + token * kOut;
        const float *grad = p.grad_weights + token * kOut;
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            const int slot = seg.lane + L * j;
            const bool real = active && slot < K;
            const i64 v = real ? (i64)row[slot] : -1;
            gw[j] = real ? grad[slot] : 0.0f;
            id[j] = v >= 0 && v < E ? (int)v : -1;
        }
    }

    // Whether the token has a valid id at all (the same on every lane of the segment).
    static __device__ __forceinline__ bool any_valid(const Segment<L> &seg, const int (&id)[kSlots])
    {
        bool any = false;
#pragma unroll
        for (int j = 0; j < kSlots; j++) any |= id[j] >= 0;
        return seg.ballot(any) != 0u;
    }

    // X of each slot of this lane (0 for an invalid one). Row softmax: X is dL/ds of the slot's
    // expert (the expert lanes then compute s·(X − gs)), or with renormalisation (direct) its final
    // gradient before the soft cap. Otherwise X is the slot's gradient w.r.t. its logit, soft cap
    // included. gs and direct are the same on every lane. Every lane of the segment calls this
    // (the sums are shuffles), whatever its token.
    static __device__ void compute(const Segment<L> &seg, bool live, const RouteBackwardParams &p, i64 token,
                                   const Storage *row, float softmax_max, float softmax_inv, const int (&id)[kSlots],
                                   const float (&gw_slot)[kSlots], float (&X)[kSlots], float &gs, bool &direct)
    {
        const float *gw = p.grad_weights + token * kOut;
        constexpr float F = Cfg::kScalingFactor;
        // Step 6 backwards: the shared slots read the routed sum (after renormalisation) / F, then
        // step 7 multiplies them by F with scale_output.
        float g_routed = 0.0f;
        if constexpr (S > 0) {
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < kSharedSlots; j++) {
                const int s = seg.lane + L * j;
                if (live && s < S) part += gw[K + s];
            }
            g_routed = seg.sum(part);
            if constexpr (!Cfg::kScaleOutput) g_routed = g_routed / F;
        }
        float f[kSlots], dcap[kSlots], pw[kSlots], a[kSlots];
        bool ok[kSlots];
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            ok[j] = id[j] >= 0;
            const BackwardLogit<Cfg> l(ok[j] ? load_one<D>(row, id[j]) : __int_as_float(0x7fffffff));
            f[j] = l.f; // -inf for an invalid slot
            dcap[j] = l.dcap;
            ok[j] = ok[j] && !l.nan; // a NaN logit weighs 0 and gets no gradient
        }
        // Steps 1-4: the routed weights before renormalisation
        if constexpr (kAfterSoftmax) {
            float m = neg_inf();
#pragma unroll
            for (int j = 0; j < kSlots; j++) m = fmaxf(m, f[j]);
            m = seg.max(m);
            if (m == neg_inf()) m = 0.0f; /* no number among the chosen: zero weights */
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < kSlots; j++) {
                pw[j] = ok[j] ? expf(f[j] - m) : 0.0f;
                part += pw[j];
            }
            const float sum = seg.sum(part), inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
            for (int j = 0; j < kSlots; j++) pw[j] *= inv;
        } else {
#pragma unroll
            for (int j = 0; j < kSlots; j++) {
                if constexpr (kRowSoftmax) pw[j] = ok[j] ? expf(f[j] - softmax_max) * softmax_inv : 0.0f;
                else pw[j] = ok[j] ? score_elementwise<Cfg::kScore>(f[j]) : 0.0f;
            }
        }
        // Step 7 backwards: a = dL/dw of each routed weight (none where the forward clamped it)
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            const float g = ok[j] ? gw_slot[j] : 0.0f;
            a[j] = Cfg::kScaleOutput ? g * F : g;
            if constexpr (Cfg::kScaleOutput && !Cfg::kRenormalize)
                if (!(pw[j] * F <= kFloatMax)) a[j] = 0.0f;
        }
        // Step 5 backwards. Renormalised (sum R > 0): w = p/R, dL/dp = (a − Σ a·w)/R, and the routed
        // sum after it is the constant 1 (the shared slots get no say). Otherwise dL/dp = a +
        // g_routed. Both sums are taken on every lane (shuffles never diverge), then selected.
        float R = 0.0f;
        if constexpr (Cfg::kRenormalize) {
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < kSlots; j++) part += pw[j];
            R = seg.sum(part);
        }
        direct = Cfg::kRenormalize && R > 0.0f;
        float w[kSlots], A = 0.0f;
#pragma unroll
        for (int j = 0; j < kSlots; j++) w[j] = 0.0f;
        if constexpr (Cfg::kRenormalize) {
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < kSlots; j++) {
                w[j] = direct ? pw[j] / R : 0.0f;
                part += a[j] * w[j];
            }
            A = seg.sum(part);
        }
        float dp[kSlots], G = 0.0f;
#pragma unroll
        for (int j = 0; j < kSlots; j++) dp[j] = ok[j] ? a[j] + g_routed : 0.0f;
        if constexpr (Cfg::kScore == kScoreSoftmax) { /* Σ_k dL/dp_k · p_k, the softmax Jacobian's term */
            float part = 0.0f;
#pragma unroll
            for (int j = 0; j < kSlots; j++) part += dp[j] * pw[j];
            G = seg.sum(part);
        }
        // Steps 4 and 1 backwards
        gs = kRowSoftmax && !direct ? G : 0.0f;
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            float x;
            if (direct) { /* = dL/dp · dp/dlogit, as w·(a − A)·d log p / dlogit */
                x = (a[j] - A) * w[j];
                if constexpr (Cfg::kScore != kScoreSoftmax) x *= score_log_grad<Cfg::kScore>(f[j]);
            } else if constexpr (kRowSoftmax) {
                x = dp[j];
            } else if constexpr (kAfterSoftmax) {
                x = pw[j] * (dp[j] - G);
            } else {
                x = dp[j] * score_grad<Cfg::kScore>(f[j]);
            }
            if constexpr (!kRowSoftmax && Cfg::kSoftcap > 0.0f) x *= dcap[j];
            X[j] = ok[j] ? x : 0.0f;
        }
    }

    // The X of the token's slots into contrib (the expert lanes' layout: expert e at
    // (e % VPT)·OWNERS + e / VPT), each expert once: its first slot sums the X of all its slots in
    // slot order. s_id and s_x hold K entries. The caller zeroed contrib before and syncs after.
    template <int OWNERS, int VPT>
    static __device__ void scatter(const Segment<L> &seg, const int (&id)[kSlots], const float (&X)[kSlots], int *s_id,
                                   float *s_x, float *contrib)
    {
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            const int slot = seg.lane + L * j;
            if (slot < K) {
                s_id[slot] = id[j];
                s_x[slot] = X[j];
            }
        }
        __syncwarp();
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            const int slot = seg.lane + L * j;
            if (slot < K && id[j] >= 0) {
                bool first = true;
                float sum = 0.0f;
#pragma unroll 4
                for (int k = 0; k < K; k++) {
                    if (s_id[k] == id[j]) {
                        first = first && k >= slot;
                        sum += s_x[k];
                    }
                }
                if (first) contrib[(id[j] % VPT) * OWNERS + id[j] / VPT] = sum;
            }
        }
    }
};

// ---- the auxiliary losses' gradient (spec.route.aux_stats, args.grad_losses) --------------------------

// The batch-wide part of the losses' gradient, once per block: lb[e] = dL/dp_e of gl[0]·L_aux
// (the counts summed over the sequences), and the factor of the per-sequence part (scaled by
// 1/L² per token). Per token this leaves VPT shared loads, not S·VPT global ones.
template <class Cfg>
struct AuxGradient {
    static constexpr int E = Cfg::kExperts;
    static constexpr bool kLB = (Cfg::kAuxStats & 1) != 0, kSeq = (Cfg::kAuxStats & 2) != 0;
    float *lb = nullptr;   // [E] in shared memory (kLB)
    float seq_coef = 0.0f; // gl[1]·E / (S·K) (kSeq)
    float z_coef = 0.0f;   // gl[2]·2 / T (times the row's logsumexp)

    __device__ void init(const RouteBackwardParams &p, float *lb_smem)
    {
        lb = lb_smem;
        if (!p.grad_losses) return;
        const double T = (double)p.num_tokens;
        if constexpr ((Cfg::kAuxStats & 4) != 0) z_coef = (float)((double)p.grad_losses[2] * 2.0 / T);
        if constexpr (kLB) {
            const float coef = (float)((double)p.grad_losses[0] * E / ((double)Cfg::kTopK * T * T));
            const i64 n = kSeq ? p.num_seqs : 1;
            for (int e = threadIdx.x; e < E; e += blockDim.x) {
                int c = 0;
                for (i64 q = 0; q < n; q++) c += p.aux_counts[q * E + e];
                lb[e] = coef * (float)c;
            }
        }
        if constexpr (kSeq) seq_coef = (float)((double)p.grad_losses[1] * E / ((double)p.num_seqs * Cfg::kTopK));
        __syncthreads();
    }
};

// Adds to g the gradient of gl[0]·L_aux + gl[1]·L_seq + gl[2]·L_z w.r.t. this thread's N experts of
// the row (from `first`, `mine` real ones), the counts held constant; R reduces over the token's
// threads (every one calls this). dL/dp_e = g_e (per expert, from the counts), through the aux
// scores: softmax p_e·(g_e − Σ g·p); normalised scores score'(x_e)/n·(g_e − Σ g·p), n = Σ score +
// 1e-20 (the constant adds nothing to the derivative); z: gl[2]·2·lse/T·softmax_e.
template <class Cfg, int N, class R>
__device__ void add_aux_gradient(const RouteBackwardParams &p, const AuxGradient<Cfg> &ag, i64 token,
                                 const typename Cfg::Dtype::Storage *row, int first, int mine, const R &reduce,
                                 float (&g)[N])
{
    constexpr int E = Cfg::kExperts;
    constexpr bool kLB = (Cfg::kAuxStats & 1) != 0, kSeq = (Cfg::kAuxStats & 2) != 0, kZ = (Cfg::kAuxStats & 4) != 0;
    constexpr bool kSoftmaxAux = Cfg::kScore == kScoreSoftmax;
    // The order below keeps few rows of N live at once (registers are this path's cost): the
    // softmax terms first, then the per-expert factors, the scores in place of the exponentials.
    float f[N], dcap[N], q[N], dx[N];
    u32 nan = 0u;
    {
        float x[N];
        load_lane<typename Cfg::Dtype, N>(row, first, mine, x);
#pragma unroll
        for (int i = 0; i < N; i++) {
            const BackwardLogit<Cfg> l(x[i]);
            f[i] = l.f, dcap[i] = l.dcap, dx[i] = 0.0f;
            nan |= (u32)l.nan << i;
        }
    }
    float sum = 0.0f;
    if constexpr (kZ || ((kLB || kSeq) && kSoftmaxAux)) {
        float m = f[0];
#pragma unroll
        for (int i = 1; i < N; i++) m = fmaxf(m, f[i]);
        m = reduce.max(m);
        if (m == -__int_as_float(0x7f800000)) m = 0.0f;
#pragma unroll
        for (int i = 0; i < N; i++) q[i] = __expf(f[i] - m); /* <= 0: the fast exp is exact enough */
        sum = reduce.sum(sum_pairwise<N>(q));
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
        for (int i = 0; i < N; i++) q[i] *= inv; /* the row's softmax */
        if constexpr (kZ) {
            const float coef = ag.z_coef * (sum > 0.0f ? m + __logf(sum) : 0.0f);
#pragma unroll
            for (int i = 0; i < N; i++) dx[i] = coef * q[i];
        }
    }
    if constexpr (kLB || kSeq) {
        float ge[N];
#pragma unroll
        for (int i = 0; i < N; i++) ge[i] = kLB && i < mine ? ag.lb[first + i] : 0.0f;
        if constexpr (kSeq) {
            const typename Cfg::SeqOffT *off = static_cast<const typename Cfg::SeqOffT *>(p.seq_offsets);
            i64 end;
            const i64 s = sequence_of(off, p.num_seqs, token, end);
            if (s >= 0) {
                const float L = (float)((i64)off[s + 1] - (i64)off[s]);
                const float coef = ag.seq_coef / (L * L);
#pragma unroll
                for (int i = 0; i < N; i++)
                    if (i < mine) ge[i] += coef * (float)p.aux_counts[s * E + first + i];
            }
        }
        // Normalised scores q = score / n. For sigmoid, score'/n = score·(1 − score)/n = q·(1 − q·n):
        // no second exp (and the fast sigmoid of route's ranking, ~1e-6 relative).
        float n = 1.0f;
        if constexpr (!kSoftmaxAux) {
#pragma unroll
            for (int i = 0; i < N; i++) {
                if constexpr (Cfg::kScore == kScoreSigmoid) q[i] = rank_score<kScoreSigmoid>(f[i]); /* 0 at -inf */
                else q[i] = score_elementwise<Cfg::kScore>(f[i]);
            }
            n = reduce.sum(sum_pairwise<N>(q)) + 1e-20f;
            const float inv = 1.0f / n;
#pragma unroll
            for (int i = 0; i < N; i++) q[i] *= inv;
        }
        float gp[N];
#pragma unroll
        for (int i = 0; i < N; i++) gp[i] = ge[i] * q[i];
        const float G = reduce.sum(sum_pairwise<N>(gp));
#pragma unroll
        for (int i = 0; i < N; i++) {
            if constexpr (kSoftmaxAux) dx[i] += q[i] * (ge[i] - G);
            else if constexpr (Cfg::kScore == kScoreSigmoid) dx[i] += q[i] * (1.0f - q[i] * n) * (ge[i] - G);
            else dx[i] += score_grad<Cfg::kScore>(f[i]) / n * (ge[i] - G);
        }
    }
#pragma unroll
    for (int i = 0; i < N; i++)
        if (!((nan >> i) & 1u)) g[i] = finite_grad(g[i] + dx[i] * dcap[i]);
}

// ---- up to 1024 experts: a segment of a warp per token ----------------------------------------------

template <class Cfg, int LANES, int kSegmentsPerBlock>
struct BackwardSegment {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    typedef BackwardSlots<Cfg, LANES> Slots;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int VPT = (E + LANES - 1) / LANES; // experts per lane

    static __device__ void run(const Segment<LANES> &seg, bool active, const RouteBackwardParams &p,
                               const AuxGradient<Cfg> &ag, i64 token)
    {
        __shared__ float s_contrib[kSegmentsPerBlock][VPT * LANES];
        __shared__ int s_id[kSegmentsPerBlock][K];
        __shared__ float s_x[kSegmentsPerBlock][K];
        const int slot = (threadIdx.x >> 5) * (32 / LANES) + ((threadIdx.x & 31) / LANES);
        float *contrib = s_contrib[slot];
        const int first = seg.lane * VPT;
        const int mine = first >= E ? 0 : (E - first < VPT ? E - first : VPT); /* real experts of this lane */
        const Storage *row = static_cast<const Storage *>(p.logits) + token * p.row_stride;
        // Row softmax reads the whole row: its load goes out with the ids' (one memory latency a
        // token, not two; this path is latency-bound), and a row without a valid id is then read
        // as absent (NaN: no gradient), as if never loaded.
        float x[Slots::kRowSoftmax ? VPT : 1];
        if constexpr (Slots::kRowSoftmax) load_lane<D, VPT>(row, first, active ? mine : 0, x);
        int id[Slots::kSlots];
        float gw[Slots::kSlots];
        Slots::load_ids(seg, active, p, token, id, gw);
        const bool live = Slots::any_valid(seg, id); /* else the row's gradient is 0 */
#pragma unroll
        for (int i = 0; i < VPT; i++) contrib[i * LANES + seg.lane] = 0.0f;
        // Row softmax: the row's maximum and sum, as route's row pass computes them
        float v[VPT], dcap[VPT];
        bool nan[VPT];
        float softmax_max = 0.0f, softmax_inv = 0.0f;
        if constexpr (Slots::kRowSoftmax) {
            if (!live)
#pragma unroll
                for (int i = 0; i < VPT; i++) x[i] = __int_as_float(0x7fffffff);
#pragma unroll
            for (int i = 0; i < VPT; i++) {
                const BackwardLogit<Cfg> l(x[i]);
                v[i] = l.f;
                dcap[i] = l.dcap;
                nan[i] = l.nan;
            }
            float m = v[0];
#pragma unroll
            for (int i = 1; i < VPT; i++) m = fmaxf(m, v[i]);
            softmax_max = seg.max(m);
            if (softmax_max == Slots::neg_inf()) softmax_max = 0.0f;
#pragma unroll
            for (int i = 0; i < VPT; i++) v[i] = expf(v[i] - softmax_max);
            const float sum = seg.sum(sum_pairwise<VPT>(v));
            softmax_inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        }
        float X[Slots::kSlots], gs;
        bool direct;
        Slots::compute(seg, live, p, token, row, softmax_max, softmax_inv, id, gw, X, gs, direct);
        Slots::template scatter<LANES, VPT>(seg, id, X, s_id[slot], s_x[slot], contrib);
        __syncwarp();
        float g[VPT];
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            const float c = contrib[i * LANES + seg.lane];
            if constexpr (Slots::kRowSoftmax) {
                float x = direct ? c : v[i] * softmax_inv * (c - gs);
                if constexpr (Cfg::kSoftcap > 0.0f) x *= dcap[i];
                g[i] = nan[i] ? 0.0f : finite_grad(x);
            } else {
                g[i] = finite_grad(c);
            }
        }
        if constexpr (Cfg::kAuxStats != 0)
            if (p.grad_losses) add_aux_gradient<Cfg, VPT>(p, ag, token, row, first, active ? mine : 0, seg, g);
        if (active) {
            float *out = p.grad_logits + token * E + first;
            if (mine == VPT) {
                store_span<VPT>(out, g);
            } else {
#pragma unroll
                for (int i = 0; i < VPT; i++)
                    if (i < mine) out[i] = g[i];
            }
        }
        __syncwarp(); /* the buffers are reused by the next token */
    }
};

// ---- above 1024 experts: a block per token ----------------------------------------------------------

template <class Cfg>
struct BackwardBlock {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    typedef BackwardSlots<Cfg, 32> Slots;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int NW = Cfg::kWarpsPerBlock;
    static constexpr int THREADS = 32 * NW;
    static constexpr int VPT = (E + THREADS - 1) / THREADS; // experts per thread

    struct Shared {
        float reduce[NW];
        float contrib[VPT * THREADS];
        int id[K];
        float x[K];
        float gs;
        int direct, live;
    };

    // Max or sum over the block's threads: a butterfly per warp, then the warps in order.
    template <bool kMax>
    static __device__ float reduce(Shared &s, float v, int warp, int lane)
    {
        const Segment<32> seg(lane);
        v = kMax ? seg.max(v) : seg.sum(v);
        if (lane == 0) s.reduce[warp] = v;
        __syncthreads();
        float r = s.reduce[0];
#pragma unroll
        for (int w = 1; w < NW; w++) r = kMax ? fmaxf(r, s.reduce[w]) : r + s.reduce[w];
        __syncthreads(); /* s.reduce is reused */
        return r;
    }

    struct Reducer { /* max and sum over the block, for add_aux_gradient */
        Shared &s;
        int warp, lane;
        __device__ float max(float v) const { return reduce<true>(s, v, warp, lane); }
        __device__ float sum(float v) const { return reduce<false>(s, v, warp, lane); }
    };

    static __device__ void run(Shared &s, const RouteBackwardParams &p, const AuxGradient<Cfg> &ag, i64 token)
    {
        const int t = threadIdx.x, warp = t >> 5, lane = t & 31, first = t * VPT;
        const int mine = first >= E ? 0 : (E - first < VPT ? E - first : VPT);
        const Segment<32> seg(lane);
        float *out = p.grad_logits + token * E + first;
        int id[Slots::kSlots];
        float gw[Slots::kSlots];
        if (warp == 0) {
            Slots::load_ids(seg, true, p, token, id, gw);
            const bool live = Slots::any_valid(seg, id);
            if (lane == 0) s.live = live;
        }
#pragma unroll
        for (int i = 0; i < VPT; i++) s.contrib[i * THREADS + t] = 0.0f;
        __syncthreads();
        float g[VPT];
        if (!s.live) { /* no valid id: a row of zeros, no logit read */
#pragma unroll
            for (int i = 0; i < VPT; i++) g[i] = 0.0f;
        } else {
            const Storage *row = static_cast<const Storage *>(p.logits) + token * p.row_stride;
            float v[VPT], dcap[VPT];
            bool nan[VPT];
            float softmax_max = 0.0f, softmax_inv = 0.0f;
            if constexpr (Slots::kRowSoftmax) {
                float x[VPT];
                load_lane<D, VPT>(row, first, mine, x);
#pragma unroll
                for (int i = 0; i < VPT; i++) {
                    const BackwardLogit<Cfg> l(x[i]);
                    v[i] = l.f;
                    dcap[i] = l.dcap;
                    nan[i] = l.nan;
                }
                float m = v[0];
#pragma unroll
                for (int i = 1; i < VPT; i++) m = fmaxf(m, v[i]);
                softmax_max = reduce<true>(s, m, warp, lane);
                if (softmax_max == Slots::neg_inf()) softmax_max = 0.0f;
#pragma unroll
                for (int i = 0; i < VPT; i++) v[i] = expf(v[i] - softmax_max);
                const float sum = reduce<false>(s, sum_pairwise<VPT>(v), warp, lane);
                softmax_inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            }
            if (warp == 0) {
                float X[Slots::kSlots], gs;
                bool direct;
                Slots::compute(seg, true, p, token, row, softmax_max, softmax_inv, id, gw, X, gs, direct);
                Slots::template scatter<THREADS, VPT>(seg, id, X, s.id, s.x, s.contrib);
                if (lane == 0) {
                    s.gs = gs;
                    s.direct = direct;
                }
            }
            __syncthreads();
            const float gs = s.gs;
            const bool direct = s.direct != 0;
#pragma unroll
            for (int i = 0; i < VPT; i++) {
                const float c = s.contrib[i * THREADS + t];
                if constexpr (Slots::kRowSoftmax) {
                    float x = direct ? c : v[i] * softmax_inv * (c - gs);
                    if constexpr (Cfg::kSoftcap > 0.0f) x *= dcap[i];
                    g[i] = nan[i] ? 0.0f : finite_grad(x);
                } else {
                    g[i] = finite_grad(c);
                }
            }
        }
        if constexpr (Cfg::kAuxStats != 0)
            if (p.grad_losses)
                add_aux_gradient<Cfg, VPT>(p, ag, token, static_cast<const Storage *>(p.logits) + token * p.row_stride,
                                           first, mine, Reducer{s, warp, lane}, g);
        if (mine == VPT) {
            store_span<VPT>(out, g);
        } else {
#pragma unroll
            for (int i = 0; i < VPT; i++)
                if (i < mine) out[i] = g[i];
        }
        __syncthreads(); /* shared memory is reused by the next token */
    }
};

// ---- the kernel body ----------------------------------------------------------------------------------

template <class Cfg>
__device__ __forceinline__ void route_backward_kernel(const RouteBackwardParams &p)
{
    AuxGradient<Cfg> ag;
    if constexpr (Cfg::kAuxStats != 0) {
        __shared__ float s_lb[(Cfg::kAuxStats & 1) ? Cfg::kExperts : 1];
        ag.init(p, s_lb);
    }
    if constexpr (Cfg::kExperts <= 1024) {
        constexpr int LANES = Cfg::kLanesPerToken, kPerWarp = 32 / LANES;
        const Segment<LANES> seg(threadIdx.x & 31);
        const i64 per_step = (i64)gridDim.x * Cfg::kWarpsPerBlock * kPerWarp;
        const i64 mine = ((i64)blockIdx.x * Cfg::kWarpsPerBlock + (threadIdx.x >> 5)) * kPerWarp + seg.base / LANES;
        // The loop bound is uniform per warp: a segment past the end still joins the shuffles.
        for (i64 base = mine - seg.base / LANES; base < p.num_tokens; base += per_step) {
            const i64 token = base + seg.base / LANES;
            const bool active = token < p.num_tokens;
            BackwardSegment<Cfg, LANES, Cfg::kWarpsPerBlock * kPerWarp>::run(seg, active, p, ag, active ? token : 0);
        }
    } else {
        __shared__ typename BackwardBlock<Cfg>::Shared s;
        for (i64 token = blockIdx.x; token < p.num_tokens; token += gridDim.x) BackwardBlock<Cfg>::run(s, p, ag, token);
    }
}

} // namespace mj
