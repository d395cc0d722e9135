// moejit kernel_templates/permute_combine.cuh — moving whole rows of hidden states to and from expert order:
// permute (gather rows by sorted_ids, optionally scaled per expert) and combine (weighted sum of
// each token's expert rows through slot_of). See include/moejit.h for the exact meaning.
//
// One block per output row, grid-stride over rows. A row is H elements; H is a compile-time
// constant, so is the vector width (kVecBytes: the widest of 16, 8, 4 bytes that divides a row,
// else one element) and the trip count of every loop over a row. Vectors are used when the base
// pointers are aligned to them (a uniform branch: every row is then aligned), else elements.
//
// Expects a Cfg struct (emitted by codegen) with: Dtype, kHidden, kVecBytes, kThreads, and
// kHasScale (permute only).

namespace mj {

// PermuteParams and CombineParams are emitted by codegen in front of this file from
// MJ_PERMUTE_PARAMS and MJ_COMBINE_PARAMS in src/ops/permute_combine/permute_combine.h.


// ---- f32 → storage, round to nearest even, bit for bit as the host reference (src/common/numeric.c) -

template <class D>
struct Store;

template <>
struct Store<F32> {
    static __device__ __forceinline__ u32 bits(float f) { return __float_as_uint(f); }
};

template <>
struct Store<BF16> {
    static __device__ __forceinline__ u32 bits(float f)
    {
        u32 u = __float_as_uint(f);
        if (f != f) return (u >> 16) | 0x40u; // quiet NaN, sign and payload kept
        u += 0x7fffu + ((u >> 16) & 1u);
        return u >> 16;
    }
};

template <>
struct Store<F16> {
    static __device__ __forceinline__ u32 bits(float f)
    {
        if (f != f) return ((__float_as_uint(f) >> 16) & 0x8000u) | 0x7e00u;
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
    }
};

// ---- vectors of W bytes as 32-bit words (one 16-bit element when W == 2) ----------------------

template <int W>
struct Vec {
    static constexpr int kWords = W >= 4 ? W / 4 : 1;
};

template <int W>
__device__ __forceinline__ void load_vec(const void *row, int i, u32 (&w)[Vec<W>::kWords])
{
    if constexpr (W == 16) {
        const uint4 q = __ldg(reinterpret_cast<const uint4 *>(row) + i);
        w[0] = q.x, w[1] = q.y, w[2] = q.z, w[3] = q.w;
    } else if constexpr (W == 8) {
        const uint2 q = __ldg(reinterpret_cast<const uint2 *>(row) + i);
        w[0] = q.x, w[1] = q.y;
    } else if constexpr (W == 4) {
        w[0] = __ldg(reinterpret_cast<const unsigned int *>(row) + i);
    } else {
        w[0] = __ldg(reinterpret_cast<const unsigned short *>(row) + i);
    }
}

template <int W>
__device__ __forceinline__ void store_vec(void *row, int i, const u32 (&w)[Vec<W>::kWords])
{
    if constexpr (W == 16) {
        reinterpret_cast<uint4 *>(row)[i] = make_uint4(w[0], w[1], w[2], w[3]);
    } else if constexpr (W == 8) {
        reinterpret_cast<uint2 *>(row)[i] = make_uint2(w[0], w[1]);
    } else if constexpr (W == 4) {
        reinterpret_cast<unsigned int *>(row)[i] = w[0];
    } else {
        reinterpret_cast<unsigned short *>(row)[i] = (unsigned short)w[0];
    }
}

// Elements of a W-byte vector, as floats, and back.
template <class D, int W>
struct VecElems {
    static constexpr int kElemBytes = (int)sizeof(typename D::Storage);
    static constexpr int N = W / kElemBytes;

    static __device__ __forceinline__ void to_float(const u32 (&w)[Vec<W>::kWords], float (&v)[N])
    {
        if constexpr (kElemBytes == 4 || W == 2) {
#pragma unroll
            for (int j = 0; j < N; j++) v[j] = D::to_float(w[j]);
        } else {
#pragma unroll
            for (int j = 0; j < Vec<W>::kWords; j++) {
                v[2 * j] = D::to_float(w[j] & 0xffffu);
                v[2 * j + 1] = D::to_float(w[j] >> 16);
            }
        }
    }

    static __device__ __forceinline__ void from_float(const float (&v)[N], u32 (&w)[Vec<W>::kWords])
    {
        if constexpr (kElemBytes == 4 || W == 2) {
#pragma unroll
            for (int j = 0; j < N; j++) w[j] = Store<D>::bits(v[j]);
        } else {
#pragma unroll
            for (int j = 0; j < Vec<W>::kWords; j++) w[j] = Store<D>::bits(v[2 * j]) | (Store<D>::bits(v[2 * j + 1]) << 16);
        }
    }
};

template <class Cfg>
struct Rows {
    typedef typename Cfg::Dtype D;
    static constexpr int kElemBytes = (int)sizeof(typename D::Storage);
    static constexpr int kRowBytes = Cfg::kHidden * kElemBytes;
    static_assert(kRowBytes % Cfg::kVecBytes == 0, "the vector width must divide a row");

    // Is every row of these base pointers aligned to the wide vectors?
    static __device__ __forceinline__ bool wide_ok(const void *a, const void *b)
    {
        return ((reinterpret_cast<u64>(a) | reinterpret_cast<u64>(b)) % Cfg::kVecBytes) == 0;
    }
};

// ---- permute ----------------------------------------------------------------------------------

template <class Cfg, int W>
__device__ __forceinline__ void permute_row(const char *src, char *dst, bool pad, float s)
{
    typedef typename Cfg::Dtype D;
    typedef VecElems<D, W> VE;
    constexpr int kVecs = Rows<Cfg>::kRowBytes / W;
    for (int i = threadIdx.x; i < kVecs; i += Cfg::kThreads) {
        u32 w[Vec<W>::kWords];
        if (pad) {
#pragma unroll
            for (int j = 0; j < Vec<W>::kWords; j++) w[j] = 0u;
        } else {
            load_vec<W>(src, i, w);
            if constexpr (Cfg::kHasScale) {
                float v[VE::N];
                VE::to_float(w, v);
#pragma unroll
                for (int j = 0; j < VE::N; j++) v[j] = __fmul_rn(v[j], s);
                VE::from_float(v, w);
            }
        }
        store_vec<W>(dst, i, w);
    }
}

template <class Cfg>
__device__ __forceinline__ void permute_rows(const PermuteParams &p)
{
    typedef Rows<Cfg> R;
    const i64 flat_end = p.num_tokens * (i64)p.topk;
    const bool wide = R::wide_ok(p.x, p.out);
    for (i64 r = blockIdx.x; r < p.num_rows; r += gridDim.x) {
        const int flat = __ldg(p.sorted_ids + r);
        bool pad = flat < 0 || (i64)flat >= flat_end;
        float s = 1.0f;
        if constexpr (Cfg::kHasScale) {
            if (!pad) {
                const int e = __ldg(p.ids + flat);
                if (e < 0 || e >= p.num_experts) pad = true;
                else s = __ldg(p.scale + e);
            }
        }
        const char *src = static_cast<const char *>(p.x) + (pad ? 0 : (i64)(flat / p.topk) * R::kRowBytes);
        char *dst = static_cast<char *>(p.out) + r * R::kRowBytes;
        if (wide) permute_row<Cfg, Cfg::kVecBytes>(src, dst, pad, s);
        else permute_row<Cfg, R::kElemBytes>(src, dst, pad, s);
    }
}

// ---- combine ----------------------------------------------------------------------------------

template <class Cfg, int W>
__device__ __forceinline__ void combine_row(const CombineParams &p, i64 t, char *dst)
{
    typedef typename Cfg::Dtype D;
    typedef VecElems<D, W> VE;
    constexpr int kVecs = Rows<Cfg>::kRowBytes / W;
    const int *slots = p.slot_of + t * p.topk;
    const float *weights = p.weights + t * p.topk;
    for (int i = threadIdx.x; i < kVecs; i += Cfg::kThreads) {
        float acc[VE::N];
#pragma unroll
        for (int j = 0; j < VE::N; j++) acc[j] = 0.0f;
        for (int k = 0; k < p.topk; k++) { // in order: the sum is the same on every run
            const int slot = __ldg(slots + k);
            if (slot < 0 || (i64)slot >= p.num_rows) continue;
            const float wk = __ldg(weights + k);
            u32 w[Vec<W>::kWords];
            load_vec<W>(static_cast<const char *>(p.y) + (i64)slot * Rows<Cfg>::kRowBytes, i, w);
            float v[VE::N];
            VE::to_float(w, v);
#pragma unroll
            for (int j = 0; j < VE::N; j++) acc[j] = __fmaf_rn(wk, v[j], acc[j]);
        }
        u32 w[Vec<W>::kWords];
        VE::from_float(acc, w);
        store_vec<W>(dst, i, w);
    }
}

template <class Cfg>
__device__ __forceinline__ void combine_rows(const CombineParams &p)
{
    typedef Rows<Cfg> R;
    const bool wide = R::wide_ok(p.y, p.out);
    for (i64 t = blockIdx.x; t < p.num_tokens; t += gridDim.x) {
        char *dst = static_cast<char *>(p.out) + t * R::kRowBytes;
        if (wide) combine_row<Cfg, Cfg::kVecBytes>(p, t, dst);
        else combine_row<Cfg, R::kElemBytes>(p, t, dst);
    }
}

} // namespace mj
