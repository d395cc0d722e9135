// moejit kernel_templates/mx_scales.cuh — mxfp8 e8m0 scales to and from the blocked layout
// (docs/DESIGN.md §2.5; torchao's to_blocked). Scale (r, c) of a [rows, C] matrix lands in 128×4 tile
// (r/128, c/4), tiles row-major by tile, at byte (r%32)·16 + ((r%128)/32)·4 + c%4 of its tile.
//
// What is a constant and what is not: C (scales per row) is compile-time. It is fixed by the
// model (hidden or intermediate size / 32) and it decides the whole shape of the work: how many
// tiles and 16-byte segments a row has, how a block splits the columns, which segment is partial,
// the shared-memory pitch — constants and unrolled loops instead of divisions. Rows (R, M), the
// group count and the group ends are run-time: they change with the batch (the ends even live on
// the device), and one kernel must serve every batch and every captured CUDA graph.
//
// A unit of work is one block of 128 rows × kSegs·16 columns (kSegs·4 tiles). To blocked: the
// block reads the plain rows into shared memory with coalesced 16-byte loads (4- or 1-byte when
// the plain strides are not aligned, and for the partial last segment); then warp s, lane j takes
// rows j, j+32, j+64, j+96 of segment s (16 bytes each: 4 scales of 4 tiles), transposes the 4×4
// words and writes 16 bytes into each of the 4 tiles at byte j·16, so that every warp store is
// 512 contiguous bytes. From blocked runs the same steps backwards.
//
// 2D with K groups (weight gradients; torchao's triton_mx_block_rearrange_2d_K_groups): the
// columns are cut into groups by device-side ends and each group is blocked on its own as a
// [Rp, round_up(C_g, 4)] matrix, the groups one after the other. Counted in 512-byte tiles, the
// blocked tensor is the groups' tile columns (T = Σ round_up(C_g, 4) / 4 of them) then a tail of
// zeros up to col_tiles = round_down(C + 3G, 4) / 4 tile columns: tile column t of group g (its
// first tile column f_g, n_g = round_up(C_g, 4) / 4) in row block rb is tile f_g·RB + rb·n_g +
// (t - f_g), RB = ceil(M / 128); a tail tile column t >= T is tile T·RB + rb·(col_tiles - T) +
// (t - T) — every byte of the tensor exactly once. A unit is one row block × 4·kSegs consecutive
// tile columns (which may span groups): warp 0 finds each tile column's group (lane l takes tile
// column T0 + l), the block stages the plain columns the unit needs (at most 16·kSegs from a
// column that need not be 16-aligned: kSegs + 1 segments from the 16-byte boundary below it) and
// warp s writes tile columns 4s .. 4s+3, each lane 16 bytes of each tile (rows j, j+32, j+64,
// j+96), gathered from the staged rows a word at a time.
//
// Expects a Cfg struct (emitted by codegen) with kCols (C), kSegs (16-byte segments a unit row
// spans = warps per block) and kChunks (units across the columns).

namespace mj {

// MxParams is emitted by codegen in front of this file from MJ_MX_PARAMS in
// src/ops/mx_scales/mx_scales.h.

template <class Cfg>
struct MxScales {
    static constexpr int C = Cfg::kCols;
    static constexpr int kTiles = (C + 3) / 4;           // tiles across a row (Cp / 4)
    static constexpr int kSegs = Cfg::kSegs;
    static constexpr int kChunks = Cfg::kChunks;
    static constexpr int kThreads = 32 * kSegs;
    static constexpr i64 kRowBlockBytes = (i64)kTiles * 512; // blocked bytes of 128 rows
    // Shared rows are an odd number of 16-byte columns apart: the 16-byte accesses of 8 lanes to
    // 8 consecutive rows then hit 8 different bank groups.
    static constexpr int kPitch = kSegs % 2 ? kSegs : kSegs + 1; // in uint4
    static_assert(kSegs >= 1 && kSegs <= 8 && kChunks * kSegs * 4 >= kTiles, "segments cover the row");

    // Where one unit reads and writes.
    struct Unit {
        unsigned char *plain;   // row 0, first column of the unit in the plain tensor
        i64 stride;             // bytes between plain rows
        unsigned char *blocked; // its 128-row block in the blocked tensor
        int rows;               // plain rows present (0..128): the rest is padding
        int col;                // first column
    };

    // Widest access the plain tensor allows everywhere: 16, 4 or 1 bytes.
    static __device__ __forceinline__ int plain_width(const unsigned char *base, const MxParams &p)
    {
        const u64 bits = reinterpret_cast<u64>(base) | (u64)p.row_stride | (u64)p.group_stride;
        return (bits & 15) == 0 ? 16 : (bits & 3) == 0 ? 4 : 1;
    }

    // 16 plain bytes at p; `avail` of them exist (the rest read as 0).
    static __device__ __forceinline__ uint4 load16(const unsigned char *p, int avail, int width)
    {
        if (avail >= 16 && width == 16) return __ldg(reinterpret_cast<const uint4 *>(p));
        if (avail >= 16 && width == 4) {
            const unsigned int *q = reinterpret_cast<const unsigned int *>(p);
            return make_uint4(__ldg(q), __ldg(q + 1), __ldg(q + 2), __ldg(q + 3));
        }
        u32 w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
        for (int b = 0; b < 16; b++)
            if (b < avail) w[b >> 2] |= (u32)__ldg(p + b) << (8 * (b & 3));
        return make_uint4(w[0], w[1], w[2], w[3]);
    }

    // The first `avail` (<= 16) of 16 bytes to p.
    static __device__ __forceinline__ void store16(unsigned char *p, uint4 v, int avail, int width)
    {
        if (avail >= 16 && width == 16) {
            *reinterpret_cast<uint4 *>(p) = v;
            return;
        }
        const u32 w[4] = {v.x, v.y, v.z, v.w};
        if (avail >= 16 && width == 4) {
#pragma unroll
            for (int i = 0; i < 4; i++) reinterpret_cast<unsigned int *>(p)[i] = w[i];
            return;
        }
#pragma unroll
        for (int b = 0; b < 16; b++)
            if (b < avail) p[b] = (unsigned char)(w[b >> 2] >> (8 * (b & 3)));
    }

    // Word q of v.
    static __device__ __forceinline__ u32 word(const uint4 &v, int q) { return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w; }

    // The 4×4 word transpose between 4 rows' segments and 4 tiles' 16-byte pieces (its own inverse).
    static __device__ __forceinline__ void transpose(uint4 (&v)[4])
    {
        uint4 t[4];
#pragma unroll
        for (int q = 0; q < 4; q++) t[q] = make_uint4(word(v[0], q), word(v[1], q), word(v[2], q), word(v[3], q));
#pragma unroll
        for (int q = 0; q < 4; q++) v[q] = t[q];
    }

    // 3D unit: group, row block and column chunk from the unit index.
    static __device__ __forceinline__ Unit unit_3d(const MxParams &p, unsigned char *plain_base,
                                                   unsigned char *blocked_base, i64 u)
    {
        const int chunk = (int)(u % kChunks);
        const i64 rb = (u / kChunks) % p.row_blocks, g = u / kChunks / p.row_blocks;
        Unit x;
        x.col = chunk * kSegs * 16;
        x.plain = plain_base + g * p.group_stride + rb * 128 * p.row_stride + x.col;
        x.stride = p.row_stride;
        x.blocked = blocked_base + (g * p.row_blocks + rb) * kRowBlockBytes;
        x.rows = (int)min((i64)128, p.rows - rb * 128);
        return x;
    }

    // 2D unit: the group whose blocked rows hold row block rb. Warp 0 walks the groups 32 at a
    // time, reading the ends as a running maximum clamped to [0, M] (so bad ends make empty
    // groups, never wild accesses), and leaves {first plain row, rows, first row block} in `found`.
    static __device__ Unit unit_2d(const MxParams &p, unsigned char *plain_base, unsigned char *blocked_base, i64 u,
                                   int (&found)[3])
    {
        const int chunk = (int)(u % kChunks);
        const int rb = (int)(u / kChunks);
        if (threadIdx.x < 32) {
            const int lane = threadIdx.x, m = (int)p.rows;
            int end_before = 0, rb_before = 0, hit = -1;
            for (int base = 0; base < (int)p.groups && hit < 0; base += 32) {
                const int g = base + lane;
                const int raw = g < (int)p.groups ? __ldg(p.group_ends + g) : end_before;
                const int end = min(m, max(end_before, max(0, warp_inclusive_scan(raw, MaxOp()))));
                int begin = __shfl_up_sync(kFullMask, end, 1);
                if (lane == 0) begin = end_before;
                const int blocks = (end - begin + 127) / 128;
                const int incl = warp_inclusive_scan(blocks, SumOp());
                const int first_rb = rb_before + incl - blocks;
                const u32 mask = __ballot_sync(kFullMask, rb >= first_rb && rb < first_rb + blocks);
                if (mask) {
                    hit = __ffs(mask) - 1;
                    if (lane == hit) {
                        found[0] = begin;
                        found[1] = end - begin;
                        found[2] = first_rb;
                    }
                }
                end_before = __shfl_sync(kFullMask, end, 31);
                rb_before += __shfl_sync(kFullMask, incl, 31);
            }
            if (hit < 0 && lane == 0) found[1] = 0; // past the last group: padding only
        }
        __syncthreads();
        const int local = rb - found[2];
        Unit x;
        x.col = chunk * kSegs * 16;
        x.blocked = blocked_base + (i64)rb * kRowBlockBytes;
        x.rows = found[1] > 0 ? min(128, found[1] - local * 128) : 0;
        x.plain = x.rows ? plain_base + ((i64)found[0] + (i64)local * 128) * p.row_stride + x.col : plain_base;
        x.stride = p.row_stride;
        __syncthreads(); // `found` is rewritten by the next unit
        return x;
    }

    // Plain → blocked for one unit. 128 rows × kSegs segments are exactly 4 per thread.
    static __device__ void to_blocked(const Unit &x, int width, uint4 *tile)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int k = threadIdx.x + i * kThreads, r = k / kSegs, s = k % kSegs, col = x.col + s * 16;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r < x.rows && col < C) v = load16(x.plain + r * x.stride + s * 16, C - col, width);
            tile[r * kPitch + s] = v;
        }
        __syncthreads();
        const int s = threadIdx.x >> 5, j = threadIdx.x & 31, t0 = x.col / 4 + 4 * s;
        if (t0 < kTiles) {
            uint4 v[4];
#pragma unroll
            for (int i = 0; i < 4; i++) v[i] = tile[(j + 32 * i) * kPitch + s];
            transpose(v);
#pragma unroll
            for (int q = 0; q < 4; q++)
                if (t0 + q < kTiles) *reinterpret_cast<uint4 *>(x.blocked + (i64)(t0 + q) * 512 + j * 16) = v[q];
        }
        __syncthreads();
    }

    // Blocked → plain for one unit (only rows and columns of the plain tensor are written).
    static __device__ void from_blocked(const Unit &x, int width, uint4 *tile)
    {
        const int s = threadIdx.x >> 5, j = threadIdx.x & 31, t0 = x.col / 4 + 4 * s;
        if (t0 < kTiles) {
            uint4 v[4];
#pragma unroll
            for (int q = 0; q < 4; q++)
                v[q] = t0 + q < kTiles ? __ldg(reinterpret_cast<const uint4 *>(x.blocked + (i64)(t0 + q) * 512 + j * 16))
                                       : make_uint4(0u, 0u, 0u, 0u);
            transpose(v);
#pragma unroll
            for (int i = 0; i < 4; i++) tile[(j + 32 * i) * kPitch + s] = v[i];
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int k = threadIdx.x + i * kThreads, r = k / kSegs, seg = k % kSegs, col = x.col + seg * 16;
            if (r < x.rows && col < C) store16(x.plain + r * x.stride + seg * 16, tile[r * kPitch + seg], C - col, width);
        }
        __syncthreads();
    }

    // ---- 2D with K groups -----------------------------------------------------------------------
    static constexpr int kUnitTiles = 4 * kSegs;   // tile columns a K unit covers (<= 32: a lane each)
    static constexpr int kSegsK = kSegs + 1;       // staged 16-byte segments a row
    static constexpr int kPitchK = 4 * kSegsK + 1; // words between staged rows: odd, so that one word
                                                   // of 32 consecutive rows sits in 32 banks

    // Where a K unit's tile columns come from and go to (shared, filled by warp 0).
    struct KUnit {
        i64 at[kUnitTiles]; // the tile's index in the blocked tensor (512-byte units)
        int col[kUnitTiles]; // its first plain column
        int n[kUnitTiles];   // plain columns it holds: 1..4; 0 padding only (the tail); -1 none (past col_tiles)
        int first, end;      // plain columns [first, end) the unit holds (first = -1: none)
    };

    // Warp 0: each lane finds the group of its tile column T0 + lane, walking the groups 32 at a
    // time with their ends read as a running maximum clamped to [0, C] (bad ends make empty groups,
    // never wild accesses); a tile column no group holds is in the zero tail.
    static __device__ void find_k_unit(const MxParams &p, int rb, int t0, KUnit &k)
    {
        const int lane = threadIdx.x, t = t0 + lane;
        const int col_tiles = (int)p.col_tiles, groups = (int)p.groups;
        const bool mine = lane < kUnitTiles && t < col_tiles;
        int n = -1, col = 0;
        i64 at = 0;
        int end_before = 0, tiles_before = 0; // plain columns and tile columns of the groups walked
        for (int base = 0; base < groups && tiles_before < t0 + kUnitTiles; base += 32) {
            const int g = base + lane;
            const int raw = g < groups ? __ldg(p.group_ends + g) : end_before;
            const int end = min(C, max(end_before, max(0, warp_inclusive_scan(raw, MaxOp()))));
            int begin = __shfl_up_sync(kFullMask, end, 1);
            if (lane == 0) begin = end_before;
            const int tiles = (end - begin + 3) / 4;
            const int tiles_end = tiles_before + warp_inclusive_scan(tiles, SumOp()); // non-decreasing
            const int batch_end = __shfl_sync(kFullMask, tiles_end, 31);
            // h = the first lane whose group ends after t (lanes whose groups end at or before t
            // counted by a binary search); meaningful when tiles_before <= t < batch_end.
            int h = 0;
#pragma unroll
            for (int step = 16; step > 0; step >>= 1)
                if (__shfl_sync(kFullMask, tiles_end, h + step - 1) <= t) h += step;
            const int h_begin = __shfl_sync(kFullMask, begin, h), h_end = __shfl_sync(kFullMask, end, h);
            const int h_tiles = __shfl_sync(kFullMask, tiles, h), h_first = __shfl_sync(kFullMask, tiles_end, h) - h_tiles;
            if (mine && n < 0 && t < batch_end) {
                const int local = t - h_first;
                col = h_begin + 4 * local;
                n = min(4, h_end - col);
                at = (i64)h_first * p.row_blocks + (i64)rb * h_tiles + local;
            }
            end_before = __shfl_sync(kFullMask, end, 31);
            tiles_before = batch_end;
        }
        if (mine && n < 0) { // the tail: every group walked, tiles_before = T <= col_tiles
            n = 0;
            at = (i64)tiles_before * p.row_blocks + (i64)rb * (col_tiles - tiles_before) + (t - tiles_before);
        }
        if (lane < kUnitTiles) {
            k.at[lane] = at;
            k.col[lane] = col;
            k.n[lane] = n;
        }
        // Tile columns with scales come first and hold consecutive plain columns.
        int last = n > 0 ? col + n : 0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) last = max(last, __shfl_xor_sync(kFullMask, last, o));
        if (lane == 0) {
            k.first = n > 0 ? col : -1;
            k.end = last;
        }
    }

    // 4 plain scales from a staged row at byte o, the first n (1..4) of them (the rest 0).
    static __device__ __forceinline__ u32 gather4(const u32 *row, int o, int n)
    {
        const int sh = (o & 3) * 8;
        const u32 lo = row[o >> 2], hi = (o & 3) + n > 4 ? row[(o >> 2) + 1] : 0u;
        const u32 w = __funnelshift_r(lo, hi, sh);
        return n >= 4 ? w : w & ((1u << (8 * n)) - 1u);
    }

    // The first n (1..4) bytes of w to a staged row at byte o.
    static __device__ __forceinline__ void scatter4(u32 *row, int o, int n, u32 w)
    {
        if ((o & 3) == 0 && n == 4) {
            row[o >> 2] = w;
            return;
        }
        unsigned char *b = reinterpret_cast<unsigned char *>(row) + o;
        for (int i = 0; i < n; i++) b[i] = (unsigned char)(w >> (8 * i));
    }

    template <bool kToBlocked>
    static __device__ void run_k(const MxParams &p)
    {
        __shared__ u32 stage[128 * kPitchK];
        __shared__ KUnit k;
        unsigned char *plain_base = kToBlocked ? const_cast<unsigned char *>(p.in) : p.out;
        unsigned char *blocked_base = kToBlocked ? p.out : const_cast<unsigned char *>(p.in);
        const int width = plain_width(plain_base, p);
        const i64 chunks = (p.col_tiles + kUnitTiles - 1) / kUnitTiles;
        const int s = threadIdx.x >> 5, j = threadIdx.x & 31;
        for (i64 u = blockIdx.x; u < p.units; u += gridDim.x) {
            const i64 rb = u / chunks;
            const int t0 = (int)(u % chunks) * kUnitTiles;
            if (threadIdx.x < 32) find_k_unit(p, (int)rb, t0, k);
            __syncthreads();
            const int rows = (int)min((i64)128, p.rows - rb * 128);
            const int first = k.first, end = k.end, base = first & ~15; // staged row byte 0 = plain column base
            unsigned char *plain = plain_base + rb * 128 * p.row_stride;
            if (kToBlocked) {
                if (first >= 0) {
                    for (int e = threadIdx.x; e < 128 * kSegsK; e += kThreads) {
                        const int r = e / kSegsK, seg = e % kSegsK, col = base + 16 * seg;
                        uint4 v = make_uint4(0u, 0u, 0u, 0u);
                        if (r < rows && col < end) v = load16(plain + r * p.row_stride + col, end - col, width);
                        u32 *w = stage + r * kPitchK + 4 * seg;
                        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
                    }
                }
                __syncthreads();
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int i = 4 * s + q, n = k.n[i];
                    if (n < 0) continue;
                    u32 w[4] = {0u, 0u, 0u, 0u};
                    if (n > 0) {
#pragma unroll
                        for (int a = 0; a < 4; a++)
                            if (j + 32 * a < rows) w[a] = gather4(stage + (j + 32 * a) * kPitchK, k.col[i] - base, n);
                    }
                    *reinterpret_cast<uint4 *>(blocked_base + k.at[i] * 512 + j * 16) = make_uint4(w[0], w[1], w[2], w[3]);
                }
            } else if (first >= 0) {
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int i = 4 * s + q, n = k.n[i];
                    if (n <= 0) continue;
                    const uint4 v = __ldg(reinterpret_cast<const uint4 *>(blocked_base + k.at[i] * 512 + j * 16));
#pragma unroll
                    for (int a = 0; a < 4; a++)
                        if (j + 32 * a < rows) scatter4(stage + (j + 32 * a) * kPitchK, k.col[i] - base, n, word(v, a));
                }
                __syncthreads();
                // Only plain columns [first, end) are this unit's: neighbours write the rest.
                for (int e = threadIdx.x; e < 128 * kSegsK; e += kThreads) {
                    const int r = e / kSegsK, seg = e % kSegsK, col = base + 16 * seg;
                    const int lo = max(col, first), hi = min(col + 16, end);
                    if (r >= rows || lo >= hi) continue;
                    const u32 *w = stage + r * kPitchK + 4 * seg;
                    unsigned char *dst = plain + r * p.row_stride + col;
                    if (lo == col && hi == col + 16 && width >= 4) {
                        if (width == 16) *reinterpret_cast<uint4 *>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
                        else
#pragma unroll
                            for (int q = 0; q < 4; q++) reinterpret_cast<unsigned int *>(dst)[q] = w[q];
                    } else {
                        const unsigned char *b = reinterpret_cast<const unsigned char *>(w);
                        for (int c = lo - col; c < hi - col; c++) dst[c] = b[c];
                    }
                }
            }
            __syncthreads(); // the stage and `k` are rewritten by the next unit
        }
    }

    template <bool kToBlocked, bool kGrouped>
    static __device__ void run(const MxParams &p)
    {
        __shared__ uint4 tile[128 * kPitch];
        __shared__ int found[3];
        // One pointer type for both directions: only the output is ever written.
        unsigned char *plain_base = kToBlocked ? const_cast<unsigned char *>(p.in) : p.out;
        unsigned char *blocked_base = kToBlocked ? p.out : const_cast<unsigned char *>(p.in);
        const int width = plain_width(plain_base, p);
        for (i64 u = blockIdx.x; u < p.units; u += gridDim.x) {
            Unit x = kGrouped ? unit_2d(p, plain_base, blocked_base, u, found) : unit_3d(p, plain_base, blocked_base, u);
            if (kToBlocked) to_blocked(x, width, tile);
            else if (x.rows > 0) from_blocked(x, width, tile);
        }
    }
};

} // namespace mj
