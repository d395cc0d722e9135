// moejit kernel_templates/common.cuh — helpers shared by every kernel family.
//
// Compiled by NVRTC with no #include at all: the fp16/bf16 headers alone cost more compile time
// than a whole routing kernel, and we only need conversions to f32, written here in a few lines.
// Every size the code depends on is a compile-time constant of the Cfg struct that codegen
// emits in front of this file.

namespace mj {

// offsetof for the layout checks of the emitted parameter structs: NVRTC has neither <cstddef>
// nor __builtin_offsetof, and __INTADDR__ is how its front end (EDG, nvcc's too) spells it.
#define MJ_OFFSETOF(T, member) __INTADDR__(&((T *)0)->member)

// The C types of the kernel parameter structs codegen emits (src/ops/*/: one table, two languages).
typedef int int32_t;
typedef short int16_t;
typedef long long int64_t;
typedef unsigned char uint8_t;

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
typedef long long i64;

constexpr u32 kFullMask = 0xffffffffu;

// ---- programmatic dependent launch (PDL) -----------------------------------------------------
//
// Every generated entry point calls this first, before it reads or writes global memory.
// On sm_90+ the library may launch a kernel with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_
// SERIALIZATION (moejit_config.pdl, MOEJIT_PDL): its blocks may then be scheduled while the
// kernel before it on the stream is still running.
//  - griddepcontrol.wait "causes the executing thread to wait until all prerequisite grids in
//    flight have completed and all the memory operations from the prerequisite grids are
//    performed and made visible to the current grid" (PTX ISA, griddepcontrol): after it, the
//    kernel sees memory exactly as after a plain stream-ordered launch. The "memory" clobber
//    keeps the compiler from moving any load or store above it.
//  - griddepcontrol.launch_dependents lets the kernel after this one (if launched with the
//    attribute) be scheduled once every block of this grid has issued it or exited. Issuing it
//    at the start is correct: a dependent still runs its own griddepcontrol.wait, which waits
//    for this grid to complete and its writes to be visible; what it gains is that its launch
//    and its blocks' start overlap this grid's work. It comes after the wait, not before: a
//    dependent is then scheduled only once every block of this grid is past its own wait, so
//    at most one kernel of a chain waits early and waiting blocks never pile up on the SMs.
// Without the attribute both are no-ops: a plain launch has no prerequisite grid in flight (the
// stream already ordered it after the previous kernel's completion) and no dependent designated
// to react to launch_dependents ("specific dependents the runtime system designated", PTX ISA;
// Triton documents its gdc_launch_dependents as "safe to execute when programmatic dependent
// launch is disabled"). So the source does not depend on the switch and neither does the cache
// key. Below sm_90 (no griddepcontrol; the library never sets the attribute there) it compiles
// to nothing.
__device__ __forceinline__ void pdl_begin()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// ---- element types: storage and conversion to f32 -------------------------------------------

struct F32 {
    typedef float Storage;
    static __device__ __forceinline__ float to_float(u32 bits) { return __uint_as_float(bits); }
};

struct BF16 {
    typedef u16 Storage;
    // bf16 is the upper half of an f32: widening is a shift.
    static __device__ __forceinline__ float to_float(u32 bits) { return __uint_as_float(bits << 16); }
};

struct F16 {
    typedef u16 Storage;
    static __device__ __forceinline__ float to_float(u32 bits)
    {
        float f;
        u16 h = (u16)bits;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
};

// ---- loading a contiguous span of N elements into f32 registers -------------------------------

// Unpack one loaded 32-bit word into 1 (f32) or 2 (16-bit types) floats, starting at v[at].
template <class D, int N>
__device__ __forceinline__ void unpack_word(u32 w, float (&v)[N], int at)
{
    if constexpr (sizeof(typename D::Storage) == 4) {
        v[at] = D::to_float(w);
    } else {
        v[at] = D::to_float(w & 0xffffu);
        v[at + 1] = D::to_float(w >> 16);
    }
}

// Load N consecutive elements starting at p using vectors of W bytes (W in 4, 8, 16; the caller
// checked alignment and that N * sizeof(Storage) is a multiple of W).
template <class D, int N, int W>
__device__ __forceinline__ void load_span_vec(const typename D::Storage *p, float (&v)[N])
{
    constexpr int kPerWord = 4 / (int)sizeof(typename D::Storage);
    constexpr int kVecs = N * (int)sizeof(typename D::Storage) / W;
#pragma unroll
    for (int i = 0; i < kVecs; i++) {
        const int at = i * (W / 4) * kPerWord;
        if constexpr (W == 16) {
            const uint4 q = __ldg(reinterpret_cast<const uint4 *>(p) + i);
            unpack_word<D, N>(q.x, v, at);
            unpack_word<D, N>(q.y, v, at + kPerWord);
            unpack_word<D, N>(q.z, v, at + 2 * kPerWord);
            unpack_word<D, N>(q.w, v, at + 3 * kPerWord);
        } else if constexpr (W == 8) {
            const uint2 q = __ldg(reinterpret_cast<const uint2 *>(p) + i);
            unpack_word<D, N>(q.x, v, at);
            unpack_word<D, N>(q.y, v, at + kPerWord);
        } else {
            unpack_word<D, N>(__ldg(reinterpret_cast<const unsigned int *>(p) + i), v, at);
        }
    }
}

// Load element i of a row (bounds checked by the caller).
template <class D>
__device__ __forceinline__ float load_one(const typename D::Storage *p, int i)
{
    if constexpr (sizeof(typename D::Storage) == 4) return __ldg(reinterpret_cast<const float *>(p) + i);
    else return D::to_float(__ldg(reinterpret_cast<const unsigned short *>(p) + i));
}

// Load the N elements at p (all present) with the widest vector the address allows.
// The branch is uniform whenever the row stride keeps rows equally aligned.
template <class D, int N>
__device__ __forceinline__ void load_span(const typename D::Storage *p, float (&v)[N])
{
    constexpr int kBytes = N * (int)sizeof(typename D::Storage);
    const unsigned long long a = reinterpret_cast<unsigned long long>(p);
    if constexpr (kBytes % 16 == 0) {
        if ((a & 15) == 0) { load_span_vec<D, N, 16>(p, v); return; }
    }
    if constexpr (kBytes % 8 == 0) {
        if ((a & 7) == 0) { load_span_vec<D, N, 8>(p, v); return; }
    }
    if constexpr (kBytes % 4 == 0) {
        if ((a & 3) == 0) { load_span_vec<D, N, 4>(p, v); return; }
    }
#pragma unroll
    for (int i = 0; i < N; i++) v[i] = load_one<D>(p, i);
}

// ---- order-preserving keys ------------------------------------------------------------------
//
// A float maps to a u32 whose unsigned order is the float order, so one integer max (redux.sync
// on sm_80+) finds the best score of a warp. NaN maps to 1, below every number (-inf maps to
// 0x007fffff); 0 marks "no candidate" (a lane past the last expert, an expert already chosen or
// masked by its group). -0.0 is folded into +0.0 first, since they compare equal as floats.
__device__ __forceinline__ u32 order_key(float f)
{
    const u32 u = __float_as_uint(f + 0.0f);
    const u32 k = u ^ ((u32)((int)u >> 31) | 0x80000000u); /* flip all bits of negatives, the sign of the rest */
    return (u & 0x7fffffffu) > 0x7f800000u ? 1u : k;       /* NaN: lowest (a select, not a branch) */
}

__device__ __forceinline__ u32 warp_max_u32(u32 v)
{
#if __CUDA_ARCH__ >= 800
    return __reduce_max_sync(kFullMask, v);
#else
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        u32 other = __shfl_xor_sync(kFullMask, v, o);
        v = other > v ? other : v;
    }
    return v;
#endif
}

__device__ __forceinline__ float warp_max_f32(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
    return v;
}

// Pairwise (tree) sum of N registers: log2(N) roundings deep instead of N, for the same adds.
template <int N>
__device__ __forceinline__ float sum_pairwise(const float (&v)[N])
{
    float t[N];
#pragma unroll
    for (int i = 0; i < N; i++) t[i] = v[i];
#pragma unroll
    for (int step = 1; step < N; step *= 2) {
#pragma unroll
        for (int i = 0; i + step < N; i += 2 * step) t[i] += t[i + step];
    }
    return t[0];
}

// Butterfly sum: every lane ends with the same value, in the same order on every run.
__device__ __forceinline__ float warp_sum_f32(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}

// Inclusive scan over the lanes of a warp: lane L gets op(lanes 0..L).
struct SumOp {
    __device__ __forceinline__ int operator()(int a, int b) const { return a + b; }
};
struct MaxOp {
    __device__ __forceinline__ int operator()(int a, int b) const { return max(a, b); }
};

template <class Op>
__device__ __forceinline__ int warp_inclusive_scan(int v, Op op)
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(kFullMask, v, o);
        if (lane >= o) v = op(v, u);
    }
    return v;
}

} // namespace mj
