// moejit kernel_templates/route.cuh — gating and top-k selection (docs/DESIGN.md §2.1).
//
// Layout. Up to 1024 experts, a token is routed by a segment of LANES lanes of one warp (LANES =
// 32, or fewer for small E so that a warp takes several tokens); lane L of the segment holds the
// VPT = ceil(E/LANES) consecutive experts [L*VPT, L*VPT+VPT) in registers. Since E is a
// compile-time constant every loop over them is unrolled and no register array is indexed at run
// time. Above 1024 experts a block takes a token: each warp holds a contiguous tile, selects its
// tile's top-K, and warp 0 merges the candidates.
//
// Selection. A score becomes an order-preserving u32 key (common.cuh: NaN lowest, 0 = none).
// Candidates are numbered lane-major (candidate i of lane L is L*N+i), so "lowest lane, then
// lowest slot" is "lowest number" — the lowest expert index, which is the tie rule. Each lane
// caches its best two remaining candidates: a round is one max-reduction and one ballot, and a
// lane rescans only after it gave up both cached candidates (about once per token).
//
// Weights. The rounds carry only keys and expert numbers; the K chosen scores are recovered at
// the end (exactly, from the key, without a bias; else recomputed from the logit).
//
// Expects a Cfg struct (emitted by codegen, src/ops/route/codegen.c) with:
//   Dtype (mj::F32 / mj::BF16 / mj::F16), kExperts, kTopK, kScore, kGroups, kTopkGroups,
//   kGroupScore, kHasBias, kSoftcap, kScoreAfterTopk, kRenormalize, kScaleOutput, kScalingFactor,
//   kSharedSlots, kLanesPerToken (warp path), kWarpsPerBlock, and the serving options kPadded,
//   IdT, kMaxReplicas, kPhysicalExperts, kLoadCounter, kReplay, LogicalIdT.
//
// Serving (moejit.h route steps 8-12). Padded rows are written by a flat loop of the whole grid
// and never routed; GIVEN replay takes the K picks from logical_ids instead of the selection and
// recomputes their weights with the code that weighs the selection's picks (hence bit-identical);
// placement, load counting and the id type only change how RouteFinish writes a pick.

namespace mj {

// RouteParams is emitted by codegen in front of this file from MJ_ROUTE_PARAMS in
// src/ops/route/route.h, and so are kScore* and kGroup* (the values of moejit_score and
// moejit_group_score) that Cfg::kScore and Cfg::kGroupScore hold.

// ---- scores -------------------------------------------------------------------------------------

constexpr float kFloatMax = 3.40282346638528859812e+38f;
constexpr u32 kInfBits = 0x7f800000u;

// The logit a score is computed from, after the soft cap: NaN reads as -inf and ±inf as ±FLT_MAX,
// so that every score and every weight is finite (moejit.h, route step 0). A NaN logit still
// ranks below every number: row_keys gives it the NaN key.
__device__ __forceinline__ float finite_logit(float x)
{
    return x != x ? -__int_as_float(kInfBits) : fminf(fmaxf(x, -kFloatMax), kFloatMax);
}

// Stable in both tails: exp(-|x|) never overflows, and e/(1+e) keeps the tiny values of x << 0.
__device__ __forceinline__ float sigmoid(float x)
{
    const float e = expf(-fabsf(x));
    const float r = __frcp_rn(1.0f + e);
    return x >= 0.0f ? r : e * r;
}

// softplus with PyTorch's threshold: linear above 20, where log1p(exp(x)) == x in f32.
__device__ __forceinline__ float sqrt_softplus(float x) { return sqrtf(x > 20.0f ? x : log1pf(expf(x))); }

template <int kScore>
__device__ __forceinline__ float score_elementwise(float x)
{
    if constexpr (kScore == kScoreSigmoid) return sigmoid(x);
    else return sqrt_softplus(x);
}

// The score used to rank experts. For sigmoid, hardware exp and reciprocal (about 1e-6 relative):
// ranking only needs the order, and equal logits still give equal scores; the weights of the
// chosen experts are recomputed with score_elementwise. The other scores are ranked as computed.
template <int kScore>
__device__ __forceinline__ float rank_score(float x)
{
    if constexpr (kScore == kScoreSigmoid) {
        const float e = __expf(-fabsf(x));
        return __fdividef(x >= 0.0f ? 1.0f : e, 1.0f + e);
    } else {
        return score_elementwise<kScore>(x);
    }
}

// The inverse of order_key (NaN for the NaN key).
__device__ __forceinline__ float key_value(u32 k)
{
    if (k <= 1u) return __int_as_float(0x7fffffff);
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// t1/t2 := the best two of (t1, t2, k), as keys.
__device__ __forceinline__ void top2_insert(u32 &t1, u32 &t2, u32 k)
{
    t2 = max(t2, min(t1, k));
    t1 = max(t1, k);
}

// A group's score from its best two selection keys.
template <int kGroupScore>
__device__ __forceinline__ u32 group_key(u32 t1, u32 t2)
{
    if constexpr (kGroupScore == kGroupTop2Sum) return order_key(key_value(t1) + key_value(t2));
    else return t1;
}

// ---- segments: LANES consecutive lanes (a power of two) routing one token -----------------------

template <int LANES>
struct Segment {
    int base; // first lane of the segment in the warp
    int lane; // lane within the segment

    __device__ explicit Segment(int warp_lane) : base(warp_lane & ~(LANES - 1)), lane(warp_lane & (LANES - 1)) {}

    __device__ u32 max(u32 v) const
    {
        if constexpr (LANES == 32) {
            return warp_max_u32(v);
        } else {
#pragma unroll
            for (int o = LANES / 2; o > 0; o >>= 1) v = ::max(v, __shfl_xor_sync(kFullMask, v, o));
            return v;
        }
    }
    __device__ float max(float v) const
    {
#pragma unroll
        for (int o = LANES / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
        return v;
    }
    // Butterfly sum: the same order, hence the same bits, on every run.
    __device__ float sum(float v) const
    {
#pragma unroll
        for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
        return v;
    }
    __device__ u32 ballot(bool p) const
    {
        const u32 b = __ballot_sync(kFullMask, p);
        if constexpr (LANES == 32) return b;
        else return (b >> base) & ((1u << LANES) - 1u);
    }
    template <class T>
    __device__ T bcast(T v, int src) const
    {
        return __shfl_sync(kFullMask, v, base + src);
    }
};

// ---- selection ----------------------------------------------------------------------------------

// Rounds of segment-wide argmax over register-held candidates key[N] per lane. A larger key
// wins, the lower number on ties; key 0 is never a real candidate. A round's critical path is
// one max-reduction and one ballot: the winner records its pick itself (no broadcast), and only a
// lane that has given up both cached candidates rescans, alone.
template <int LANES, int N>
struct RegisterSelect {
    u32 k1, k2;   // best and second-best remaining key of this lane; k2 == 0: none, or not known
    int i1, i2;   // their slots
    u32 taken;    // bit i: key[i] has been chosen

    // Best two remaining candidates of this lane, with selects only (no divergence).
    __device__ void scan(const u32 (&key)[N])
    {
        k1 = k2 = 0u;
        i1 = i2 = 0;
#pragma unroll
        for (int i = 0; i < N; i++) {
            const u32 k = ((taken >> i) & 1u) ? 0u : key[i];
            const bool gt1 = k > k1, gt2 = k > k2;
            k2 = gt1 ? k1 : (gt2 ? k : k2);
            i2 = gt1 ? i1 : (gt2 ? i : i2);
            k1 = gt1 ? k : k1;
            i1 = gt1 ? i : i1;
        }
    }

    __device__ void begin(const u32 (&key)[N])
    {
        taken = 0u;
        scan(key);
    }

    // Take the best candidate of the segment. Returns true on the winning lane, with its number
    // (lane*N + slot) in *number and its key in *top. The update is predicated; a winner whose
    // second candidate is gone (or unknown) makes the segment rescan, which is rare.
    __device__ bool pop(const u32 (&key)[N], const Segment<LANES> &seg, int *number, u32 *top)
    {
        const u32 best = seg.max(k1);
        const bool won = seg.lane == __ffs(seg.ballot(k1 == best)) - 1;
        *number = seg.lane * N + i1;
        *top = best;
        const bool dry = won && k2 == 0u;
        taken |= won ? 1u << i1 : 0u;
        k1 = won ? k2 : k1;
        i1 = won ? i2 : i1;
        k2 = won ? 0u : k2;
        if (__any_sync(kFullMask, dry)) scan(key);
        return won;
    }
};

// K rounds of a RegisterSelect over key; on each round the winning lane calls record(k, number,
// key). Rolled on purpose: unrolling K rounds (each with its rare rescan) quadruples the code, and
// fetching it costs more at decode sizes (measured: +0.3 us at T=1) than it saves at 16k tokens.
template <int K, int LANES, int N, class Record>
__device__ __forceinline__ void select_top_k(const u32 (&key)[N], const Segment<LANES> &seg, Record record)
{
    RegisterSelect<LANES, N> pick;
    pick.begin(key);
#pragma unroll 1
    for (int k = 0; k < K; k++) {
        int number;
        u32 top;
        if (pick.pop(key, seg, &number, &top)) record(k, number, top);
    }
}

// The same over candidates in shared memory: lane L owns the contiguous slice [L*C, L*C+C) of n
// keys (C = ceil(n/LANES)), caches its best two and rescans its slice when both are gone. Used
// where counts are large or irregular (group selection, merging tiles); keys are consumed.
template <int LANES>
struct SharedSelect {
    u32 *keys;
    int n, c;
    u32 k1, k2;
    int i1, i2;
    bool have2;

    __device__ void scan(int lane)
    {
        k1 = k2 = 0u;
        i1 = i2 = 0;
        for (int i = lane * c; i < n && i < lane * c + c; i++) {
            const u32 k = keys[i];
            if (k > k1) { k2 = k1; i2 = i1; k1 = k; i1 = i; }
            else if (k > k2) { k2 = k; i2 = i; }
        }
        have2 = true;
    }

    __device__ void begin(u32 *shared_keys, int count, int lane)
    {
        keys = shared_keys;
        n = count;
        c = (count + LANES - 1) / LANES;
        scan(lane);
    }

    // Take the best candidate; returns its index in keys[], *top its key.
    __device__ int pop(const Segment<LANES> &seg, u32 &top)
    {
        top = seg.max(k1);
        const int winner = __ffs(seg.ballot(k1 == top)) - 1;
        const int index = seg.bcast(i1, winner);
        bool rescan = false;
        if (seg.lane == winner) {
            keys[index] = 0u;
            if (have2) { k1 = k2; i1 = i2; have2 = false; }
            else rescan = true;
        }
        __syncwarp();
        if (__any_sync(kFullMask, rescan)) scan(seg.lane);
        return index;
    }
};

// ---- the token's result: weights of the picks, shared slots, the write ---------------------------

template <class Cfg, int LANES>
struct RouteFinish {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int S = Cfg::kSharedSlots;
    static constexpr int kOut = K + S;
    static constexpr int kSlots = (kOut + LANES - 1) / LANES; // output slots per lane
    static constexpr bool kGiven = Cfg::kReplay == kReplayGiven;
    // Without a bias the selection key is the softmax score, or the logit with score_after_topk,
    // exactly invertible; otherwise (a bias, the fast sigmoid, sqrt_softplus of a raw +inf, given
    // ids) the score is recomputed from the finite logit — the same value, bit for bit.
    static constexpr bool kKeyIsWeight =
        !kGiven && !Cfg::kHasBias && (Cfg::kScoreAfterTopk || Cfg::kScore == kScoreSoftmax);
    typedef typename Cfg::IdT IdT;
    typedef typename Cfg::LogicalIdT LogicalIdT;
    static constexpr int R = Cfg::kMaxReplicas;
    static constexpr int P = Cfg::kPhysicalExperts;

    // Step 10: the physical id of logical expert e at routed slot `slot` of `token`: replica
    // (token·K + slot) mod c of its c = clamp(replica_count[e], 1, R); a map entry outside [0, P)
    // and a missing pick (e < 0) give -1.
    static __device__ __forceinline__ int place(const RouteParams &p, int e, i64 token, int slot)
    {
        if constexpr (R == 0) {
            return e;
        } else {
            if (e < 0) return -1;
            const int32_t *row = p.logical_to_physical + (i64)e * R;
            // Up to 8 replicas the whole map row is loaded beside the count, so that the decode
            // path waits for one memory round trip, not two dependent ones.
            constexpr int kEager = R <= 8 ? R : 1;
            int m[kEager];
#pragma unroll
            for (int q = 0; q < kEager; q++) m[q] = row[q];
            int c = p.replica_count[e];
            c = c < 1 ? 1 : (c > R ? R : c);
            const u64 pos = (u64)token * K + (u64)slot;
            const int r = pos <= 0xffffffffull ? (int)((u32)pos % (u32)c) : (int)(pos % (u64)c); /* 32-bit divide when it can */
            int ph;
            if constexpr (R <= 8) {
                ph = m[0];
#pragma unroll
                for (int q = 1; q < kEager; q++) ph = r == q ? m[q] : ph;
            } else {
                ph = row[r];
            }
            return ph >= 0 && ph < P ? ph : -1;
        }
    }

    // Step 11: integer adds, so the totals are exact whatever the order.
    static __device__ __forceinline__ void count_load(const RouteParams &p, int id)
    {
        if constexpr (Cfg::kLoadCounter == 1) atomicAdd(static_cast<int *>(p.expert_load) + id, 1);
        else if constexpr (Cfg::kLoadCounter == 2)
            atomicAdd(static_cast<unsigned long long *>(p.expert_load) + id, 1ull);
    }

    // The score of expert e from its logit, exactly as the row pass computes it.
    static __device__ float score_of(const Storage *row, int e, float softmax_max, float softmax_inv)
    {
        float x = load_one<D>(row, e);
        if constexpr (Cfg::kSoftcap > 0.0f) x = Cfg::kSoftcap * tanhf(x / Cfg::kSoftcap);
        x = finite_logit(x);
        if constexpr (Cfg::kScoreAfterTopk) return x;
        else if constexpr (Cfg::kScore == kScoreSoftmax) return expf(x - softmax_max) * softmax_inv;
        else return score_elementwise<Cfg::kScore>(x);
    }

    // The weight input of a chosen key: with score_after_topk the logit made finite (key 1, a NaN
    // logit, reads as -inf); with softmax the score (key 1 weighs 0).
    static __device__ float key_weight(u32 k)
    {
        if constexpr (Cfg::kScoreAfterTopk) return finite_logit(key_value(k));
        else return k <= 1u ? 0.0f : key_value(k);
    }

    // Every lane gets the K routed values of the token, in slot order: through shared memory for
    // small K (one store, one barrier, K loads — shorter than a shuffle butterfly), by butterflies
    // otherwise (then only sums and maxima are needed, see reduce_slots).
    static constexpr bool kGather = K <= 16;

    template <bool kMax>
    static __device__ float reduce_slots(const Segment<LANES> &seg, const float (&w)[kSlots], float *scratch)
    {
        if constexpr (kGather) {
#pragma unroll
            for (int j = 0; j < kSlots; j++)
                if (seg.lane + LANES * j < K) scratch[seg.lane + LANES * j] = w[j];
            __syncwarp();
            float all[K];
#pragma unroll
            for (int k = 0; k < K; k++) all[k] = scratch[k];
            __syncwarp(); /* scratch is reused */
            if constexpr (kMax) {
                float m = all[0];
#pragma unroll
                for (int k = 1; k < K; k++) m = fmaxf(m, all[k]);
                return m;
            } else {
                return sum_pairwise<K>(all);
            }
        } else {
            float part = kMax ? -__int_as_float(0x7f800000) : 0.0f;
#pragma unroll
            for (int j = 0; j < kSlots; j++)
                if (seg.lane + LANES * j < K) part = kMax ? fmaxf(part, w[j]) : part + w[j];
            return kMax ? seg.max(part) : seg.sum(part);
        }
    }

    // pick_id[k] / pick_key[k] (k < K): the k-th chosen expert (-1: a given id outside [0, E))
    // and its selection key; scratch holds K floats of the segment's shared memory. The results
    // go to row `token` of p's outputs, the ids to ids_smem instead when it is not NULL (int32:
    // the fused route_align aligns them from shared memory).
    static __device__ void run(const Segment<LANES> &seg, bool active, const Storage *row, float softmax_max,
                               float softmax_inv, const int *pick_id, const u32 *pick_key, float *scratch,
                               const RouteParams &p, i64 token, int *ids_smem)
    {
        int id[kSlots];
        float w[kSlots];
        // What a missing pick weighs: nothing, as a logit (score_after_topk) or as a score.
        const float none = Cfg::kScoreAfterTopk ? -__int_as_float(kInfBits) : 0.0f;
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            const int slot = seg.lane + LANES * j;
            const bool routed = slot < K;
            id[j] = routed ? pick_id[slot] : 0;
            if constexpr (kKeyIsWeight) w[j] = routed ? key_weight(pick_key[slot]) : 0.0f;
            else if constexpr (kGiven)
                w[j] = !routed ? 0.0f : (active && id[j] >= 0) ? score_of(row, id[j], softmax_max, softmax_inv) : none;
            else w[j] = (routed && active) ? score_of(row, id[j], softmax_max, softmax_inv) : 0.0f;
        }
        if constexpr (Cfg::kScoreAfterTopk) { /* w holds logits: score the K chosen */
            if constexpr (Cfg::kScore == kScoreSoftmax) {
                float m = reduce_slots<true>(seg, w, scratch);
                if (m == -__int_as_float(kInfBits)) m = 0.0f; /* every chosen logit NaN: zero weights */
#pragma unroll
                for (int j = 0; j < kSlots; j++) w[j] = seg.lane + LANES * j < K ? expf(w[j] - m) : 0.0f;
                const float sum = reduce_slots<false>(seg, w, scratch);
                const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
                for (int j = 0; j < kSlots; j++) w[j] *= inv;
            } else {
#pragma unroll
                for (int j = 0; j < kSlots; j++)
                    if (seg.lane + LANES * j < K) w[j] = score_elementwise<Cfg::kScore>(w[j]);
            }
        }
        if constexpr (Cfg::kRenormalize || S > 0) {
            float routed = reduce_slots<false>(seg, w, scratch);
            if constexpr (Cfg::kRenormalize) {
                if (routed > 0.0f) { /* never divide by zero (or by NaN) */
                    const float inv = __frcp_rn(routed);
#pragma unroll
                    for (int j = 0; j < kSlots; j++) w[j] *= inv;
                    if constexpr (S > 0) routed = reduce_slots<false>(seg, w, scratch); /* the renormalised sum */
                }
            }
            if constexpr (S > 0) {
                // sglang's fused shared experts: the routed sum / factor, which scale_output
                // multiplies back to the routed sum (set here at once: no overflow on the way).
                const float shared_w = Cfg::kScaleOutput ? routed : routed / Cfg::kScalingFactor;
#pragma unroll
                for (int j = 0; j < kSlots; j++) {
                    const int slot = seg.lane + LANES * j;
                    if (slot >= K && slot < kOut) { id[j] = E + (slot - K); w[j] = shared_w; }
                }
            }
        }
        if constexpr (Cfg::kScaleOutput) { /* the shared slots hold their scaled value already */
#pragma unroll
            for (int j = 0; j < kSlots; j++)
                if (seg.lane + LANES * j < K) w[j] *= Cfg::kScalingFactor;
        }
        if constexpr (Cfg::kScaleOutput || S > 0) { /* an extreme factor must not make a weight inf */
#pragma unroll
            for (int j = 0; j < kSlots; j++) w[j] = fminf(w[j], kFloatMax);
        }
        if (!active) return;
        const i64 at = token * kOut;
#pragma unroll
        for (int j = 0; j < kSlots; j++) {
            const int slot = seg.lane + LANES * j;
            if (slot < kOut) {
                if constexpr (Cfg::kReplay == kReplayRecord) static_cast<LogicalIdT *>(p.logical_ids)[at + slot] = (LogicalIdT)id[j];
                const int out_id = slot < K ? place(p, id[j], token, slot) : P + (slot - K);
                if constexpr (Cfg::kLoadCounter != 0)
                    if (slot < K && out_id >= 0) count_load(p, out_id);
                if (ids_smem) ids_smem[slot] = out_id;
                else static_cast<IdT *>(p.ids)[at + slot] = (IdT)out_id;
                p.weights[at + slot] = w[j];
            }
        }
    }
};

// Step 9, GIVEN: the K given ids of `token` into pick_id, -1 for one outside [0, E); every lane
// of the segment (or block) with index `lane` of `lanes` takes its share.
template <class Cfg>
__device__ __forceinline__ void load_given(const RouteParams &p, i64 token, bool active, int lane, int lanes, int *pick_id)
{
    constexpr int K = Cfg::kTopK, kOut = K + Cfg::kSharedSlots;
    const typename Cfg::LogicalIdT *given = static_cast<const typename Cfg::LogicalIdT *>(p.logical_ids) + token * kOut;
    for (int k = lane; k < K; k += lanes) {
        const i64 e = active ? (i64)given[k] : -1;
        pick_id[k] = e >= 0 && e < Cfg::kExperts ? (int)e : -1;
    }
}

// Step 8: rows at or past the device count; the rest of the batch gets no logits read.
template <class Cfg>
__device__ __forceinline__ i64 valid_rows(const RouteParams &p)
{
    if constexpr (!Cfg::kPadded) {
        return p.num_tokens;
    } else {
        const i64 n = *p.num_valid;
        return n < 0 ? 0 : (n < p.num_tokens ? n : p.num_tokens);
    }
}

// Rows [first, T): every slot id -1, weight 0 (and logical id -1 when recording), by the whole grid.
template <class Cfg>
__device__ __forceinline__ void write_padding(const RouteParams &p, i64 first)
{
    constexpr int kOut = Cfg::kTopK + Cfg::kSharedSlots;
    const i64 n = (p.num_tokens - first) * kOut, step = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const i64 at = first * kOut + i;
        static_cast<typename Cfg::IdT *>(p.ids)[at] = (typename Cfg::IdT)-1;
        p.weights[at] = 0.0f;
        if constexpr (Cfg::kReplay == kReplayRecord)
            static_cast<typename Cfg::LogicalIdT *>(p.logical_ids)[at] = (typename Cfg::LogicalIdT)-1;
    }
}

// Load the n <= N elements [first, first+n) of a row into v (the rest read as NaN, hence as -inf
// scores): vector loads for a whole span, element loads at the ragged end.
template <class D, int N>
__device__ __forceinline__ void load_lane(const typename D::Storage *row, int first, int n, float (&v)[N])
{
    if (n == N) {
        load_span<D, N>(row + first, v);
    } else {
#pragma unroll
        for (int i = 0; i < N; i++) v[i] = i < n ? load_one<D>(row, first + i) : __int_as_float(0x7fffffff);
    }
}

// ---- step 13: auxiliary-loss statistics -------------------------------------------------------------

// The aux scores of one thread's N experts from their finite logits f (-inf: NaN or absent), and
// the row's logsumexp (0 when no expert has a number), reducing over the token's threads with R:
// softmax routing → softmax of the row; elementwise scores → score / (Σ score + 1e-20). Not
// used by softmax routing without score_after_topk, whose row pass already is that softmax. rank:
// the row pass's ranking scores when they are the elementwise scores (kRankIsScore), reused
// (the fast sigmoid: about 1e-6 relative, far inside what a loss needs; recomputing the exact
// one cost more than the rest of the statistics together).
template <class Cfg, int N, class R>
__device__ __forceinline__ void aux_row(const float (&f)[N], const float (&rank)[N], const R &reduce, float (&aux)[N],
                                        float &lse)
{
    constexpr bool kSoftmaxAux = Cfg::kScore == kScoreSoftmax;
    constexpr bool kRankIsScore = !kSoftmaxAux && !Cfg::kScoreAfterTopk;
    constexpr bool kBalance = (Cfg::kAuxStats & 3) != 0, kZ = (Cfg::kAuxStats & 4) != 0;
    lse = 0.0f;
    if constexpr (kZ || (kBalance && kSoftmaxAux)) {
        float m = f[0];
#pragma unroll
        for (int i = 1; i < N; i++) m = fmaxf(m, f[i]);
        m = reduce.max(m);
        if (m == -__int_as_float(kInfBits)) m = 0.0f;
        float e[N];
#pragma unroll
        for (int i = 0; i < N; i++) e[i] = __expf(f[i] - m); /* <= 0: the fast exp is exact enough */
        const float sum = reduce.sum(sum_pairwise<N>(e));
        lse = sum > 0.0f ? m + __logf(sum) : 0.0f;
        if constexpr (kSoftmaxAux) {
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
            for (int i = 0; i < N; i++) aux[i] = e[i] * inv;
        }
    }
    if constexpr (kBalance && !kSoftmaxAux) {
        float sc[N];
#pragma unroll
        for (int i = 0; i < N; i++) {
            if constexpr (kRankIsScore) sc[i] = f[i] == -__int_as_float(kInfBits) ? 0.0f : rank[i]; /* NaN: 0 */
            else sc[i] = score_elementwise<Cfg::kScore>(f[i]); /* 0 at -inf */
        }
        const float inv = 1.0f / (reduce.sum(sum_pairwise<N>(sc)) + 1e-20f);
#pragma unroll
        for (int i = 0; i < N; i++) aux[i] = sc[i] * inv;
    }
}

// The sequence s of token t under offsets off[S+1] (off[s] <= t < off[s+1], the last such s when
// some are empty), -1 when none (mj_aux_sequence_of's rule); end_out: the next token where the
// answer may change. route's statistics and route_backward's loss gradient both ask it.
template <class OffT>
__device__ i64 sequence_of(const OffT *off, i64 S, i64 t, i64 &end_out)
{
    i64 lo = 0, hi = S + 1; /* the first i with off[i] > t */
    while (lo < hi) {
        const i64 mid = (lo + hi) >> 1;
        if ((i64)off[mid] <= t) lo = mid + 1;
        else hi = mid;
    }
    end_out = lo <= S ? (i64)off[lo] : 0x7fffffffffffffffll;
    return lo >= 1 && lo <= S ? lo - 1 : -1;
}

// No statistics: what route() gets when the kernel does not accumulate them.
struct AuxNone {
    template <int N>
    __device__ void add(const float (&)[N]) const {}
    __device__ void count(const RouteParams &, int) const {}
};

// Where a thread keeps the running Σp of its VPT experts between flushes: a segment's row of shared
// memory (AuxSharedRow: the thread's VPT entries together, in 16-byte vectors when VPT allows;
// a warp's vector accesses then meet no bank conflict), so that the sums cost route no registers
// (kept in registers they took deepseek-v3's route from 32 to 66 and halved the warps in flight);
// registers for a block per token (above 1024 experts, VPT <= 16).
template <int VPT>
struct AuxSharedRow {
    float *v; // this thread's entry 0 (16-byte aligned when VPT % 4 == 0)
    __device__ float &operator[](int i) const { return v[i]; }
    __device__ __forceinline__ void add(const float (&x)[VPT]) const
    {
        if constexpr (VPT % 4 == 0) {
#pragma unroll
            for (int i = 0; i < VPT; i += 4) {
                float4 a = *reinterpret_cast<const float4 *>(v + i);
                a.x += x[i], a.y += x[i + 1], a.z += x[i + 2], a.w += x[i + 3];
                *reinterpret_cast<float4 *>(v + i) = a;
            }
        } else {
#pragma unroll
            for (int i = 0; i < VPT; i++) v[i] += x[i];
        }
    }
};
template <int VPT>
struct AuxRegisterRow {
    float v[VPT];
    __device__ float &operator[](int i) { return v[i]; }
    __device__ __forceinline__ void add(const float (&x)[VPT])
    {
#pragma unroll
        for (int i = 0; i < VPT; i++) v[i] += x[i];
    }
};

// The load-balancing statistics (MOEJIT_AUX_LOAD_BALANCE / _SEQ_) of one segment (or block):
// Σp of this thread's VPT experts over the tokens it routes, in f32 in a fixed order, converted
// to 2^-32 fixed point when added to the device sums (integer atomics: exact, so the totals do not
// depend on the order of the adds); the pick counts go to the block's shared counts (its "home"
// sequence: that of the block's last token) or, for a token of another sequence, straight to the
// device counts. Each segment routes a contiguous run of tokens, so a row is flushed to the device
// only when its sequence changes (at most once a sequence) and at the block's end, where the home
// rows are summed across segments first (route_kernel_aux). Per token the extra work is VPT
// adds, a shared add per pick and the aux scores (free for softmax routing).
template <class Cfg, int VPT, class Row>
struct AuxState {
    static constexpr bool kSeq = (Cfg::kAuxStats & 2) != 0;
    static constexpr int E = Cfg::kExperts;
    Row acc;
    int first;        // this thread's first expert
    i64 seq;          // the current sequence, -1: none (the token counts nowhere)
    i64 end;          // the first token past it
    i64 home;         // the block's home sequence
    int *home_counts; // its counts [E] in shared memory

    __device__ AuxState(Row row, int first_expert, i64 home_seq, int *counts)
        : acc(row), first(first_expert), seq(-1), end(-1), home(home_seq), home_counts(counts)
    {
        reset();
    }

    __device__ __forceinline__ void reset()
    {
#pragma unroll
        for (int i = 0; i < VPT; i++) acc[i] = 0.0f;
    }

    // The sequence s of token t (off[s] <= t < off[s+1], the last such s when some are empty), -1
    // when none; *end: the next token where the answer may change.
    static __device__ i64 locate(const RouteParams &p, i64 t, i64 &end_out)
    {
        if constexpr (!kSeq) {
            end_out = 0x7fffffffffffffffll;
            return 0;
        } else {
            return sequence_of(static_cast<const typename Cfg::SeqOffT *>(p.seq_offsets), p.num_seqs, t, end_out);
        }
    }

    static __device__ __forceinline__ u64 fixed(float v) { return __float2ull_rn(v * 4294967296.0f); }

    // Before routing `token`: a new sequence flushes the old one's sums.
    __device__ __forceinline__ void enter(const RouteParams &p, i64 token)
    {
        if (token >= end) {
            flush(p);
            seq = locate(p, token, end);
        }
    }

    // One routed token's aux scores (this thread's VPT experts).
    __device__ __forceinline__ void add(const float (&aux)[VPT])
    {
        if (seq >= 0) acc.add(aux);
    }

    // One pick of expert e (by the thread that holds it).
    __device__ __forceinline__ void count(const RouteParams &p, int e) const
    {
        if (seq == home) atomicAdd(home_counts + e, 1);
        else if (seq >= 0) atomicAdd(p.aux_counts + seq * E + e, 1);
    }

    // The row into the current sequence's device sums (nothing outside every sequence), reset.
    __device__ void flush(const RouteParams &p)
    {
        if (seq >= 0) {
            u64 *sums = static_cast<u64 *>(p.aux_prob_sums) + seq * E + first;
#pragma unroll
            for (int i = 0; i < VPT; i++)
                if (first + i < E && acc[i] != 0.0f) atomicAdd(sums + i, fixed(acc[i]));
        }
        reset();
    }
};

// ---- steps 1-3, shared by both layouts: logits → ranking scores (+ bias) → selection keys ------

// One thread's `mine` (<= N) experts starting at `first`: logits (none past the row's end), soft
// cap, made finite (finite_logit), ranking scores (softmax needs the token's max and sum: R reduces
// over the token's threads), bias, keys (0 = no candidate, 1 = a NaN logit). softmax_max/inv are
// kept to recompute chosen scores later.
template <class Cfg, int N, class R>
__device__ __forceinline__ void row_keys(const typename Cfg::Dtype::Storage *row, const float *bias, int first,
                                         int mine, const R &reduce, u32 (&key)[N], float &softmax_max,
                                         float &softmax_inv, float (&aux)[N], float &lse)
{
    float x[N];
    load_lane<typename Cfg::Dtype, N>(row, first, mine, x);
    if constexpr (Cfg::kSoftcap > 0.0f) {
#pragma unroll
        for (int i = 0; i < N; i++) x[i] = Cfg::kSoftcap * tanhf(x[i] / Cfg::kSoftcap);
    }
    // Ranking reads the logits as they are (order_key puts NaN below every number and keeps ±inf
    // the extremes), except softmax, whose sum needs them finite: NaN as -inf (weight 0, the NaN
    // key), ±inf as ±FLT_MAX. Weights always read them finite (RouteFinish).
    constexpr bool kSoftmax = !Cfg::kScoreAfterTopk && Cfg::kScore == kScoreSoftmax;
    bool is_nan[N];
    if constexpr (kSoftmax) {
#pragma unroll
        for (int i = 0; i < N; i++) {
            is_nan[i] = x[i] != x[i];
            x[i] = finite_logit(x[i]);
        }
    }
    float val[N];
    softmax_max = 0.0f, softmax_inv = 0.0f;
    if constexpr (Cfg::kScoreAfterTopk) {
#pragma unroll
        for (int i = 0; i < N; i++) val[i] = x[i];
    } else if constexpr (kSoftmax) {
        float m = x[0];
#pragma unroll
        for (int i = 1; i < N; i++) m = fmaxf(m, x[i]);
        softmax_max = reduce.max(m);
        if (softmax_max == -__int_as_float(kInfBits)) softmax_max = 0.0f; /* every logit NaN: zero weights */
#pragma unroll
        for (int i = 0; i < N; i++) val[i] = expf(x[i] - softmax_max);
        const float sum = reduce.sum(sum_pairwise<N>(val));
        softmax_inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
        for (int i = 0; i < N; i++) val[i] *= softmax_inv;
        if constexpr (Cfg::kAuxStats != 0) { /* step 13: route's own softmax is the aux score */
#pragma unroll
            for (int i = 0; i < N; i++) aux[i] = val[i];
            lse = sum > 0.0f ? softmax_max + logf(sum) : 0.0f;
        }
    } else {
#pragma unroll
        for (int i = 0; i < N; i++) val[i] = rank_score<Cfg::kScore>(x[i]);
    }
    if constexpr (Cfg::kAuxStats != 0 && !kSoftmax) {
        float f[N];
#pragma unroll
        for (int i = 0; i < N; i++) f[i] = finite_logit(x[i]);
        aux_row<Cfg, N>(f, val, reduce, aux, lse);
    }
    if constexpr (Cfg::kHasBias) {
        float b[N];
        load_lane<F32, N>(bias, first, mine, b);
#pragma unroll
        for (int i = 0; i < N; i++) val[i] += b[i];
    }
#pragma unroll
    for (int i = 0; i < N; i++) {
        if constexpr (kSoftmax) key[i] = i < mine ? (is_nan[i] ? 1u : order_key(val[i])) : 0u;
        else key[i] = i < mine ? order_key(val[i]) : 0u;
    }
}

// ---- up to 1024 experts: a segment of a warp per token --------------------------------------------

// kSegmentsPerBlock: how many segments a block runs at once (each gets its own shared memory).
template <class Cfg, int LANES, int kSegmentsPerBlock>
struct RouteSegment {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    typedef RouteFinish<Cfg, LANES> Finish;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int kOut = K + Cfg::kSharedSlots;
    static constexpr int VPT = (E + LANES - 1) / LANES; // experts per lane
    static constexpr int kFullLanes = E / VPT;           // lanes whose whole range is real
    static constexpr int G = Cfg::kGroups;
    static constexpr int TG = Cfg::kTopkGroups;
    static constexpr int GS = E / G;                     // experts per group
    static constexpr bool kGrouped = G > 1 && TG < G;
    // Fast group path: each lane inside one group, a group on a power-of-two number of lanes.
    static constexpr int LPG = GS / VPT;                 // lanes per group (when VPT divides GS)
    static constexpr bool kGroupsOnLanes =
        kGrouped && GS % VPT == 0 && LPG > 0 && (LPG & (LPG - 1)) == 0 && G * LPG <= LANES;

    static __device__ __forceinline__ bool present(int lane, int i) { return lane * VPT + i < E; }

    // Groups whose lanes line up: reduce each group's best two over its LPG lanes with xor
    // shuffles, rank the G group scores by broadcast, clear the experts of dropped groups.
    static __device__ void mask_groups_on_lanes(const Segment<LANES> &seg, u32 (&key)[VPT])
    {
        u32 t1 = 0u, t2 = 0u;
#pragma unroll
        for (int i = 0; i < VPT; i++) top2_insert(t1, t2, key[i]);
#pragma unroll
        for (int o = 1; o < LPG; o <<= 1) {
            const u32 o1 = __shfl_xor_sync(kFullMask, t1, o), o2 = __shfl_xor_sync(kFullMask, t2, o);
            t2 = ::max(::max(t2, o2), ::min(t1, o1));
            t1 = ::max(t1, o1);
        }
        // Rank my group among the G group scores by broadcast (all independent shuffles: short
        // latency); a tie goes to the lower group.
        const u32 mine = group_key<Cfg::kGroupScore>(t1, t2);
        const int g = seg.lane / LPG;
        int rank = 0;
#pragma unroll
        for (int h = 0; h < G; h++) {
            const u32 other = seg.bcast(mine, h * LPG);
            rank += (other > mine) || (other == mine && h < g);
        }
        if (rank >= TG) {
#pragma unroll
            for (int i = 0; i < VPT; i++) key[i] = 0u;
        }
    }

    // Any other grouping: the segment's keys go to shared memory, lane L scores the groups
    // [L*NG, L*NG+NG), SharedSelect picks the TG best, the experts of the others are cleared.
    static __device__ void mask_groups_shared(const Segment<LANES> &seg, u32 (&key)[VPT])
    {
        constexpr int NG = (G + LANES - 1) / LANES;
        __shared__ u32 s_keys[kSegmentsPerBlock][E];
        __shared__ u32 s_group[kSegmentsPerBlock][G];
        const int slot = (threadIdx.x >> 5) * (32 / LANES) + ((threadIdx.x & 31) / LANES);
        u32 *keys = s_keys[slot], *groups = s_group[slot];
        const int first = seg.lane * VPT;
#pragma unroll
        for (int i = 0; i < VPT; i++)
            if (present(seg.lane, i)) keys[first + i] = key[i];
        __syncwarp();
#pragma unroll
        for (int j = 0; j < NG; j++) {
            const int g = seg.lane * NG + j;
            if (g < G) {
                u32 t1 = 0u, t2 = 0u;
#pragma unroll 4
                for (int q = 0; q < GS; q++) top2_insert(t1, t2, keys[g * GS + q]);
                groups[g] = group_key<Cfg::kGroupScore>(t1, t2);
            }
        }
        __syncwarp();
        // Picking zeroes a group's key; every real group key is >= 1 (order_key), so after TG
        // picks "kept" is exactly "key now 0".
        SharedSelect<LANES> pick;
        pick.begin(groups, G, seg.lane);
#pragma unroll 1
        for (int r = 0; r < TG; r++) {
            u32 top;
            pick.pop(seg, top);
        }
#pragma unroll
        for (int i = 0; i < VPT; i++)
            if (present(seg.lane, i) && groups[(first + i) / GS] != 0u) key[i] = 0u;
        __syncwarp(); /* the next token reuses the buffers */
    }

    // Route row `token` of p (the segment's lanes together); its ids go to ids_smem when not NULL
    // (see RouteFinish::run). active = false: participate, write nothing.
    template <class Aux = AuxNone>
    static __device__ void route(const Segment<LANES> &seg, bool active, const RouteParams &p, i64 token,
                                 int *ids_smem, Aux *aux = nullptr)
    {
        __shared__ int s_pick_id[kSegmentsPerBlock][K];
        __shared__ u32 s_pick_key[kSegmentsPerBlock][K];
        __shared__ float s_scratch[kSegmentsPerBlock][K];
        const Storage *row = static_cast<const Storage *>(p.logits) + token * p.row_stride;
        const int slot = (threadIdx.x >> 5) * (32 / LANES) + ((threadIdx.x & 31) / LANES);
        const int first = seg.lane * VPT;
        const int mine = first >= E ? 0 : (E - first < VPT ? E - first : VPT); /* real experts of this lane */
        // 1-3. Logits (absent experts and inactive tokens read as -inf), scores, keys. Given ids
        // need the row only for softmax's maximum and sum.
        u32 key[VPT];
        float softmax_max = 0.0f, softmax_inv = 0.0f, aux_p[VPT], lse = 0.0f;
        if constexpr (!Finish::kGiven || (!Cfg::kScoreAfterTopk && Cfg::kScore == kScoreSoftmax))
            row_keys<Cfg, VPT>(row, p.bias, first, active ? mine : 0, seg, key, softmax_max, softmax_inv, aux_p, lse);
        // 13. The statistics, as soon as the row gives them (their registers die here).
        if constexpr ((Cfg::kAuxStats & 3) != 0)
            if (active && aux) aux->add(aux_p);
        if constexpr ((Cfg::kAuxStats & 4) != 0)
            if (active && seg.lane == 0) p.aux_lse[token] = lse;
        if constexpr (Finish::kGiven) {
            load_given<Cfg>(p, token, active, seg.lane, LANES, s_pick_id[slot]);
        } else {
            // 4. Groups: keep the TG best, clear the others' experts.
            if constexpr (kGroupsOnLanes) mask_groups_on_lanes(seg, key);
            else if constexpr (kGrouped) mask_groups_shared(seg, key);
            // 5. K rounds; each winner records its pick.
            select_top_k<K>(key, seg, [&](int k, int e, u32 top) {
                s_pick_id[slot][k] = e;
                if constexpr (Finish::kKeyIsWeight) s_pick_key[slot][k] = top;
                if constexpr ((Cfg::kAuxStats & 3) != 0)
                    if (active && aux) aux->count(p, e); /* the winner holds e */
            });
        }
        __syncwarp();
        // 6. Weights, shared slots, write.
        Finish::run(seg, active, row, softmax_max, softmax_inv, s_pick_id[slot], s_pick_key[slot], s_scratch[slot], p,
                    token, ids_smem);
        __syncwarp(); /* the picks are reused by the next token */
    }
};

// Route one token with the whole warp (any E up to 1024): the device interface other kernels
// (the fused route+align) build on. Row `token` of p is routed with every option of the shape;
// its kOut int32 ids go to ids_smem (shared memory), everything else to p's outputs. All 32
// lanes call it together; any warp of a block of up to kWarps warps may.
template <class Cfg, int kWarps = 32>
struct RouteWarp {
    static_assert(Cfg::kExperts <= 1024, "a warp routes up to 1024 experts");
    typedef RouteSegment<Cfg, 32, kWarps> Segment32;
    static constexpr int kOut = Segment32::kOut;
    static __device__ void route_row(const RouteParams &p, i64 token, int lane, int *ids_smem)
    {
        Segment32::route(Segment<32>(lane), true, p, token, ids_smem);
    }
};

// ---- above 1024 experts: a block per token --------------------------------------------------------

template <class Cfg>
struct RouteBlock {
    typedef typename Cfg::Dtype D;
    typedef typename D::Storage Storage;
    typedef RouteFinish<Cfg, 32> Finish;
    static constexpr int E = Cfg::kExperts;
    static constexpr int K = Cfg::kTopK;
    static constexpr int NW = Cfg::kWarpsPerBlock;
    static constexpr int VPT = (E + 32 * NW - 1) / (32 * NW); // experts per thread
    static constexpr int G = Cfg::kGroups;
    static constexpr int TG = Cfg::kTopkGroups;
    static constexpr int GS = E / G;
    static constexpr bool kGrouped = G > 1 && TG < G;

    struct Shared {
        float reduce[NW];
        u32 keys[kGrouped ? E : 1];      // selection keys of the row (grouped only)
        u32 groups[kGrouped ? G : 1];    // group keys; a kept group's becomes 0
        u32 cand_key[NW * K];            // each warp's top-K ...
        int cand_id[NW * K];             // ... and their experts
        int pick_id[K];                  // the merged top-K
        u32 pick_key[K];
        float scratch[K];
    };

    static __device__ __forceinline__ bool present(int t, int i) { return t * VPT + i < E; }

    // Max and sum over the block's threads (through shared memory), for row_keys.
    struct BlockReduce {
        Shared &s;
        int warp, lane;
        template <bool kMax>
        __device__ float reduce(float v) const
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
        __device__ float max(float v) const { return reduce<true>(v); }
        __device__ float sum(float v) const { return reduce<false>(v); }
    };

    static __device__ void mask_groups(Shared &s, u32 (&key)[VPT], int t, int warp, int lane)
    {
        const int first = t * VPT;
#pragma unroll
        for (int i = 0; i < VPT; i++)
            if (present(t, i)) s.keys[first + i] = key[i];
        __syncthreads();
        for (int g = t; g < G; g += 32 * NW) {
            u32 t1 = 0u, t2 = 0u;
#pragma unroll 4
            for (int q = 0; q < GS; q++) top2_insert(t1, t2, s.keys[g * GS + q]);
            s.groups[g] = group_key<Cfg::kGroupScore>(t1, t2);
        }
        __syncthreads();
        if (warp == 0) {
            const Segment<32> seg(lane);
            SharedSelect<32> pick; /* as in RouteSegment: a kept group's key becomes 0 */
            pick.begin(s.groups, G, lane);
#pragma unroll 1
            for (int r = 0; r < TG; r++) {
                u32 top;
                pick.pop(seg, top);
            }
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < VPT; i++)
            if (present(t, i) && s.groups[(first + i) / GS] != 0u) key[i] = 0u;
    }

    template <class Aux = AuxNone>
    static __device__ void route(Shared &s, const RouteParams &p, i64 token, Aux *aux = nullptr)
    {
        const Storage *row = static_cast<const Storage *>(p.logits) + token * p.row_stride;
        const int t = threadIdx.x, warp = t >> 5, lane = t & 31, first = t * VPT;
        const int mine = first >= E ? 0 : (E - first < VPT ? E - first : VPT);
        u32 key[VPT];
        float softmax_max = 0.0f, softmax_inv = 0.0f, aux_p[VPT], lse = 0.0f;
        if constexpr (!Finish::kGiven || (!Cfg::kScoreAfterTopk && Cfg::kScore == kScoreSoftmax))
            row_keys<Cfg, VPT>(row, p.bias, first, mine, BlockReduce{s, warp, lane}, key, softmax_max, softmax_inv,
                               aux_p, lse);
        if constexpr ((Cfg::kAuxStats & 3) != 0) /* step 13 */
            if (aux) aux->add(aux_p);
        if constexpr ((Cfg::kAuxStats & 4) != 0)
            if (t == 0) p.aux_lse[token] = lse;
        if constexpr (Finish::kGiven) { /* step 9: the given ids replace the selection */
            if (warp == 0) {
                load_given<Cfg>(p, token, true, lane, 32, s.pick_id);
                __syncwarp();
                Finish::run(Segment<32>(lane), true, row, softmax_max, softmax_inv, s.pick_id, s.pick_key, s.scratch,
                            p, token, nullptr);
            }
            __syncthreads(); /* shared memory is reused by the next token */
            return;
        }
        if constexpr (kGrouped) mask_groups(s, key, t, warp, lane);

        // Each warp's top-K of its tile (tiles are contiguous: candidate order = expert order).
        // A tile short of K candidates records key-0 picks, which the merge never takes.
        const Segment<32> seg(lane);
        select_top_k<K>(key, seg, [&](int k, int e, u32 top) {
            s.cand_key[warp * K + k] = top;
            s.cand_id[warp * K + k] = warp * 32 * VPT + e;
        });
        __syncthreads();
        // Warp 0 merges NW*K candidates: lower position = lower expert among equal keys.
        if (warp == 0) {
            SharedSelect<32> merge;
            merge.begin(s.cand_key, NW * K, lane);
#pragma unroll 1
            for (int k = 0; k < K; k++) {
                u32 top;
                const int c = merge.pop(seg, top);
                if (lane == 0) {
                    s.pick_id[k] = s.cand_id[c];
                    s.pick_key[k] = top;
                }
            }
            __syncwarp();
            Finish::run(seg, true, row, softmax_max, softmax_inv, s.pick_id, s.pick_key, s.scratch, p, token, nullptr);
        }
        __syncthreads(); /* shared memory is reused by the next token */
        if constexpr ((Cfg::kAuxStats & 3) != 0) /* step 13; the next token writes pick_id only past barriers */
            if (aux && t < K) aux->count(p, s.pick_id[t]);
    }
};

// ---- the kernel body --------------------------------------------------------------------------------

// Step 13 with load-balancing statistics (never padded). The grid is capped (MJ_ROUTE_AUX_MAX_BLOCKS,
// a function of T only, so the f32 partial sums do not depend on the device) and each segment (or
// block, above 1024 experts) routes a contiguous run of tokens, accumulating in an AuxState. At the
// block's end the rows of its home sequence are summed across segments in a fixed order and added
// to the device once per expert: about one 64-bit and one 32-bit atomic per block and expert.
template <class Cfg>
__device__ __forceinline__ void route_kernel_aux(const RouteParams &p, i64 valid)
{
    constexpr int E = Cfg::kExperts;
    __shared__ int s_counts[E]; /* the home sequence's pick counts */
    for (int i = threadIdx.x; i < E; i += blockDim.x) s_counts[i] = 0;
    if constexpr (E <= 1024) {
        constexpr int LANES = Cfg::kLanesPerToken, kPerWarp = 32 / LANES, NSEG = Cfg::kWarpsPerBlock * kPerWarp;
        typedef RouteSegment<Cfg, LANES, NSEG> Seg;
        constexpr int VPT = Seg::VPT, ROW = VPT * LANES;
        static_assert(NSEG * ROW * 4 <= 32768, "a block's rows of sums fit 32 KiB (mj_route_warps_per_block)");
        typedef AuxSharedRow<VPT> Row;
        __shared__ __align__(16) float s_rows[NSEG][ROW];
        const Segment<LANES> seg(threadIdx.x & 31);
        const int slot = (threadIdx.x >> 5) * kPerWarp + seg.base / LANES;
        const i64 nseg = (i64)gridDim.x * NSEG, chunk = (valid + nseg - 1) / nseg;
        const i64 block_first = (i64)blockIdx.x * NSEG * chunk, begin = block_first + slot * chunk;
        // The sequence of the block's last token: its pick counts and final sums meet in shared memory.
        const i64 block_last = (block_first + NSEG * chunk < valid ? block_first + NSEG * chunk : valid) - 1;
        i64 home_end;
        typedef AuxState<Cfg, VPT, Row> Aux;
        const i64 home = block_last >= block_first ? Aux::locate(p, block_last, home_end) : -2;
        Aux aux(Row{&s_rows[slot][seg.lane * VPT]}, seg.lane * VPT, home, s_counts);
        __syncthreads(); /* the counts are zero */
        // chunk is the same for every segment: the loop stays uniform for the shuffles.
        for (i64 i = 0; i < chunk; i++) {
            const i64 token = begin + i;
            const bool active = token < valid;
            if (active) aux.enter(p, token);
            Seg::route(seg, active, p, active ? token : 0, nullptr, &aux);
        }
        if (aux.seq != home) aux.flush(p); /* a row of an earlier sequence goes now; home rows stay */
        __syncthreads();
        if (home >= 0) {
            u64 *sums = static_cast<u64 *>(p.aux_prob_sums) + home * E;
            int *counts = p.aux_counts + home * E;
            for (int e = threadIdx.x; e < E; e += blockDim.x) {
                float f = 0.0f; /* the segments in order: the same bits every run */
#pragma unroll
                for (int q = 0; q < NSEG; q++) f += s_rows[q][e];
                if (f != 0.0f) atomicAdd(sums + e, Aux::fixed(f));
                if (s_counts[e]) atomicAdd(counts + e, s_counts[e]);
            }
        }
    } else {
        typedef RouteBlock<Cfg> Block;
        typedef AuxState<Cfg, Block::VPT, AuxRegisterRow<Block::VPT>> Aux;
        __shared__ typename Block::Shared s;
        const i64 chunk = (valid + gridDim.x - 1) / gridDim.x, begin = (i64)blockIdx.x * chunk;
        const i64 last = (begin + chunk < valid ? begin + chunk : valid) - 1;
        i64 home_end;
        const i64 home = last >= begin ? Aux::locate(p, last, home_end) : -2;
        Aux aux(AuxRegisterRow<Block::VPT>(), (int)threadIdx.x * Block::VPT, home, s_counts);
        __syncthreads(); /* the counts are zero */
        for (i64 token = begin; token < begin + chunk && token < valid; token++) {
            aux.enter(p, token);
            Block::route(s, p, token, &aux);
        }
        aux.flush(p); /* each thread holds its own experts: no need to meet first */
        __syncthreads();
        if (home >= 0)
            for (int e = threadIdx.x; e < E; e += blockDim.x)
                if (s_counts[e]) atomicAdd(p.aux_counts + home * E + e, s_counts[e]);
    }
}

template <class Cfg>
__device__ __forceinline__ void route_kernel(const RouteParams &p)
{
    const i64 valid = valid_rows<Cfg>(p);
    if constexpr ((Cfg::kAuxStats & 3) != 0) {
        route_kernel_aux<Cfg>(p, valid);
        return;
    }
    if constexpr (Cfg::kExperts <= 1024) {
        constexpr int LANES = Cfg::kLanesPerToken, kPerWarp = 32 / LANES;
        const Segment<LANES> seg(threadIdx.x & 31);
        const i64 per_step = (i64)gridDim.x * Cfg::kWarpsPerBlock * kPerWarp;
        const i64 mine = ((i64)blockIdx.x * Cfg::kWarpsPerBlock + (threadIdx.x >> 5)) * kPerWarp + seg.base / LANES;
        // The loop bound is uniform per warp: a segment past the end still joins the shuffles.
        for (i64 base = mine - seg.base / LANES; base < valid; base += per_step) {
            const i64 token = base + seg.base / LANES;
            const bool active = token < valid;
            RouteSegment<Cfg, LANES, Cfg::kWarpsPerBlock * kPerWarp>::route(seg, active, p, active ? token : 0,
                                                                             nullptr);
        }
    } else {
        __shared__ typename RouteBlock<Cfg>::Shared s;
        for (i64 token = blockIdx.x; token < valid; token += gridDim.x) RouteBlock<Cfg>::route(s, p, token);
    }
    if constexpr (Cfg::kPadded) write_padding<Cfg>(p, valid);
}

} // namespace mj
