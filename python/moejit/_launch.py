"""Checks and launches on torch tensors: the code between a Python call and the C library.

For each operation, check_<op>() validates what can be known from metadata (types, dtypes,
devices, shapes, strides, ranges) and returns the sizes the outputs need — it runs on real tensors
before a launch and on fake tensors while torch.compile traces, so both fail the same way — and
launch_<op>() adds what only real tensors have (alignment of data pointers), makes the tensors'
device current, and calls the library on that device's current torch stream. Nothing is launched
unless every check passed.

Also the tensor-level entry points of Context (route, align with AlignMaps, mx_scales).
"""

import contextlib
import ctypes
import functools

import torch

from . import _capi as C
from . import _checks as chk
from . import core

_F32, _BF16, _F16, _I32, _I64, _U8 = torch.float32, torch.bfloat16, torch.float16, torch.int32, torch.int64, torch.uint8
FLOATS = (_F32, _BF16, _F16)
IDS = (_I32, _I64)
_NAME_OF = {_F32: "f32", _BF16: "bf16", _F16: "f16"}
_byref = ctypes.byref
_null = contextlib.nullcontext()
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def dtype_of(name, t):
    """'f32' / 'bf16' / 'f16' of a float tensor; TypeError naming the argument otherwise."""
    n = _NAME_OF.get(t.dtype)
    if n is None:
        raise TypeError(f"{name} has dtype {t.dtype}, expected float32, bfloat16 or float16")
    return n


def _ptr(t):
    return t.data_ptr() if t is not None else None


def _device(t):
    """A context manager making t's device current (nothing when it already is)."""
    idx = t.get_device()
    return _null if idx == torch.cuda.current_device() else torch.cuda.device(idx)


def _stream(t, stream):
    if stream is None:
        idx = t.get_device()
        return _raw_stream(idx) if _raw_stream is not None else torch.cuda.current_stream(idx).cuda_stream
    return stream.cuda_stream if hasattr(stream, "cuda_stream") else int(stream)


def _call(fn, ctx, spec, args, anchor, stream, what):
    with _device(anchor):
        C.check(fn(ctx._ctx, _byref(spec), _byref(args), _stream(anchor, stream)), what)


# -------------------------------------------------------------------------------------------------
# route
# -------------------------------------------------------------------------------------------------
def check_route(logits, bias, num_experts, topk, shared_slots):
    """Checks route's inputs; returns (T, K+S)."""
    chk.tensor("logits", logits, FLOATS, 2)
    dev = logits.device
    E = chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    slots = chk.integer("topk", topk, 1, chk.INT32_MAX) + chk.integer("shared_slots", shared_slots, 0, chk.INT32_MAX)
    if logits.shape[1] != E:
        raise ValueError(f"logits has shape {tuple(logits.shape)}: {logits.shape[1]} columns, expected num_experts = {E}")
    chk.rows("logits", logits, E)
    if bias is not None:
        chk.tensor("bias", bias, (_F32,), 1, dev, "logits", (E,))
        if bias.shape[0] > 1 and bias.stride(0) != 1:
            raise ValueError(f"bias must be contiguous, got stride {bias.stride()}")
    return logits.shape[0], slots


def check_route_out(logits, ids, weights, T, slots):
    """Checks route's output tensors."""
    dev = logits.device
    chk.contiguous("ids", chk.tensor("ids", ids, (_I32,), 2, dev, "logits", (T, slots)))
    chk.contiguous("weights", chk.tensor("weights", weights, (_F32,), 2, dev, "logits", (T, slots)))


def route_spec_for(logits, bias, params):
    """The validated C spec for a call: dtype and has_bias from the tensors, the rest plain."""
    return core.route_spec_c(dtype_of("logits", logits), bias is not None, *params)


def launch_route(ctx, spec_c, logits, bias, ids, weights, stream=None):
    T = logits.shape[0]
    if T == 0:
        return
    args = C.RouteArgs(logits.data_ptr(), _ptr(bias), ids.data_ptr(), weights.data_ptr(), T,
                       chk.rows("logits", logits, spec_c.num_experts))
    _call(C.lib.moejit_route, ctx, spec_c, args, logits, stream, "route")


# -------------------------------------------------------------------------------------------------
# align
# -------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def align_sizes(num_experts, block_size, num_tokens, topk):
    """(capacity, workspace bytes) of align for T tokens of K ids."""
    return (core.align_capacity(num_experts, block_size, num_tokens, topk),
            core.align_workspace_bytes(num_experts, block_size, num_tokens, topk))


def check_align_ids(ids, num_experts, block_size, name="topk_ids"):
    """Checks align's ids ([T, K] int32 or int64, contiguous); returns (T, K)."""
    chk.tensor(name, ids, IDS, 2)
    chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    chk.integer("block_size", block_size, 1, chk.INT32_MAX)
    chk.contiguous(name, ids)
    T, K = ids.shape
    if K < 1:
        raise ValueError(f"{name} has shape {tuple(ids.shape)}: it needs at least one column")
    if T * K > chk.INT32_MAX:
        raise ValueError(f"{name} has {T * K} ids; align takes fewer than 2^31 (T·K must fit in int32)")
    return T, K


def align_capacity_sym(num_experts, block_size, n):
    """capacity = N + min(E, N)·(B−1), also for a symbolic N (fake tensors under torch.compile)."""
    return core.align_capacity_formula(num_experts, block_size, n, torch.sym_min)


def check_align_out(anchor, num_experts, block_size, T, K, counts, offsets, sorted_ids, block_expert, total_padded,
                    slot_of, workspace=None, capacity=None):
    """Checks align's output tensors (each may be None: not wanted)."""
    dev, E, B = anchor.device, num_experts, block_size
    cap = capacity if capacity is not None else align_capacity_sym(E, B, T * K)
    for name, t, shape in (("counts", counts, (E,)), ("offsets", offsets, (E + 1,)),
                           ("total_padded", total_padded, (1,)), ("slot_of", slot_of, (T, K))):
        if t is not None:
            chk.contiguous(name, chk.tensor(name, t, (_I32,), len(shape), dev, "topk_ids", shape))
    sorted_cap = cap
    if sorted_ids is not None:
        chk.contiguous("sorted_ids", chk.tensor("sorted_ids", sorted_ids, (_I32,), 1, dev, "topk_ids"))
        chk.at_least("sorted_ids", sorted_ids, cap, f"capacity N + min(E, N)·(B−1) for N = {T}·{K}, E = {E}, B = {B}")
        sorted_cap = sorted_ids.shape[0]
    if block_expert is not None:
        chk.contiguous("block_expert", chk.tensor("block_expert", block_expert, (_I32,), 1, dev, "topk_ids"))
        chk.at_least("block_expert", block_expert, sorted_cap // B, "a block of B rows per entry of sorted_ids")
    if workspace is not None:
        chk.contiguous("workspace", chk.tensor("workspace", workspace, (_U8,), 1, dev, "topk_ids"))


def ids_int32(ids, num_experts):
    """int32 ids for the library. int64 ids are clamped to [-1, E] first — every id outside [0, E)
    stays outside, so it is dropped exactly as that id would be, never misread as its low half —
    then converted (two elementwise kernels; int32 ids are used as they are)."""
    if ids.dtype == _I32:
        return ids
    return ids.clamp(-1, num_experts).to(_I32)


def launch_align(ctx, spec_c, ids32, T, K, counts, offsets, sorted_ids, block_expert, total_padded, slot_of,
                 workspace=None, stream=None, workspace_bytes=None):
    E, B = spec_c.num_experts, spec_c.block_size
    _, ws = align_sizes(E, B, T, K) if workspace_bytes is None else (None, workspace_bytes)
    if ws:
        if workspace is None or workspace.numel() < ws:
            if workspace is not None:
                raise ValueError(f"workspace has {workspace.numel()} bytes, align needs {ws} for {T}·{K} ids")
            workspace = torch.empty(ws, dtype=_U8, device=ids32.device)
    for name, t in (("counts", counts), ("offsets", offsets), ("sorted_ids", sorted_ids),
                    ("block_expert", block_expert), ("total_padded", total_padded), ("slot_of", slot_of)):
        if t is not None and t.numel():
            chk.aligned(name, t, 4)
    if workspace is not None and ws:
        chk.aligned("workspace", workspace, 16)
    outs = C.AlignOutputs(_ptr(counts), _ptr(offsets), _ptr(sorted_ids), sorted_ids.numel() if sorted_ids is not None else 0,
                          _ptr(block_expert), _ptr(total_padded), _ptr(slot_of), _ptr(workspace) if ws else None, ws)
    args = C.AlignArgs(ids32.data_ptr() if T else None, T, K, 0, outs)
    _call(C.lib.moejit_align, ctx, spec_c, args, ids32, stream, "align")


# -------------------------------------------------------------------------------------------------
# route_align
# -------------------------------------------------------------------------------------------------
def launch_route_align(ctx, spec_c, logits, bias, ids, weights, counts, offsets, sorted_ids, block_expert,
                       total_padded, slot_of, workspace=None, stream=None):
    r = spec_c.route
    T, K = logits.shape[0], r.topk + r.shared_slots
    E = r.num_experts + r.shared_slots
    _, ws = align_sizes(E, spec_c.block_size, T, K)
    if ws and (workspace is None or workspace.numel() < ws):
        if workspace is not None:
            raise ValueError(f"workspace has {workspace.numel()} bytes, route_align needs {ws} for {T}·{K} ids")
        workspace = torch.empty(ws, dtype=_U8, device=logits.device)
    route = C.RouteArgs(logits.data_ptr() if T else None, _ptr(bias), ids.data_ptr() if T else None,
                        weights.data_ptr() if T else None, T, chk.rows("logits", logits, r.num_experts))
    align = C.AlignOutputs(_ptr(counts), _ptr(offsets), _ptr(sorted_ids), sorted_ids.numel(), _ptr(block_expert),
                           _ptr(total_padded), _ptr(slot_of), _ptr(workspace) if ws else None, ws)
    args = C.RouteAlignArgs(route, align)
    _call(C.lib.moejit_route_align, ctx, spec_c, args, logits, stream, "route_align")


# -------------------------------------------------------------------------------------------------
# permute and combine
# -------------------------------------------------------------------------------------------------
def check_permute(x, sorted_ids, topk, ids, scale):
    """Checks permute's inputs; returns (T, H, R, has_scale)."""
    chk.tensor("x", x, FLOATS, 2)
    dev = x.device
    chk.contiguous("x", x)
    K = chk.integer("topk", topk, 1, chk.INT32_MAX)
    T, H = x.shape
    chk.contiguous("sorted_ids", chk.tensor("sorted_ids", sorted_ids, (_I32,), 1, dev, "x"))
    if T * K > chk.INT32_MAX:
        raise ValueError(f"x has {T} rows of topk = {K} slots: T·K = {T * K} must be below 2^31")
    if (ids is None) != (scale is None):
        raise ValueError("ids and scale go together: pass both (a per-expert scale) or neither")
    if scale is not None:
        chk.contiguous("ids", chk.tensor("ids", ids, (_I32,), 2, dev, "x", (T, K)))
        chk.contiguous("scale", chk.tensor("scale", scale, (_F32,), 1, dev, "x"))
        if scale.shape[0] < 1:
            raise ValueError("scale must have one entry per expert, got an empty tensor")
    return T, H, sorted_ids.shape[0], scale is not None


def check_rows_out(name, out, dev, anchor, shape, dtype):
    chk.contiguous(name, chk.tensor(name, out, (dtype,), 2, dev, anchor, shape))


def launch_permute(ctx, x, sorted_ids, topk, ids, scale, out, stream=None):
    T, H = x.shape
    R = sorted_ids.shape[0]
    if R == 0:
        return
    has_scale = scale is not None
    if T == 0:  # every row is padding
        out.zero_()
        return
    spec_c = core.permute_spec_c(H, dtype_of("x", x), int(has_scale))
    args = C.PermuteArgs(x.data_ptr(), sorted_ids.data_ptr(), _ptr(ids), _ptr(scale), out.data_ptr(), T, topk,
                         scale.shape[0] if has_scale else 0, R)
    _call(C.lib.moejit_permute, ctx, spec_c, args, x, stream, "permute")


def check_combine(y, slot_of, weights):
    """Checks combine's inputs; returns (T, H, K)."""
    chk.tensor("y", y, FLOATS, 2)
    dev = y.device
    chk.contiguous("y", y)
    chk.contiguous("slot_of", chk.tensor("slot_of", slot_of, (_I32,), 2, dev, "y"))
    T, K = slot_of.shape
    if K < 1:
        raise ValueError(f"slot_of has shape {tuple(slot_of.shape)}: it needs at least one column")
    chk.contiguous("weights", chk.tensor("weights", weights, (_F32,), 2, dev, "y", (T, K)))
    return T, y.shape[1], K


def launch_combine(ctx, y, slot_of, weights, out, stream=None):
    T, K = slot_of.shape
    R, H = y.shape
    if T == 0:
        return
    spec_c = core.combine_spec_c(H, dtype_of("y", y))
    args = C.CombineArgs(y.data_ptr() if R else None, slot_of.data_ptr(), weights.data_ptr(), out.data_ptr(), T, K, 0, R)
    _call(C.lib.moejit_combine, ctx, spec_c, args, y, stream, "combine")


# -------------------------------------------------------------------------------------------------
# mx_scales
# -------------------------------------------------------------------------------------------------
def _plain_strides(name, t, grouped):
    """(row_stride, group_stride) in bytes of a uint8 plain tensor [G, R, C] or [M, C]; rows must
    not overlap (the library reads 0 as "packed", so a broadcast tensor would be read past)."""
    C_ = t.shape[-1]
    if C_ > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name} must have contiguous rows (stride 1 along the last dimension), got strides {t.stride()}")
    rows_ = t.shape[-2]
    rs = C_ if rows_ <= 1 else t.stride(-2)
    if rows_ > 1 and rs < C_:
        raise ValueError(f"{name} rows are {rs} bytes apart, fewer than a row of {C_} (strides {t.stride()}); "
                         f"pass .contiguous()")
    if grouped:
        return rs, 0
    G = t.shape[0]
    gs = rows_ * rs if G <= 1 else t.stride(0)
    if G > 1 and gs < rows_ * rs:
        raise ValueError(f"{name} groups are {gs} bytes apart, fewer than a group of {rows_} rows of {rs} bytes "
                         f"(strides {t.stride()}); pass .contiguous()")
    return rs, gs


mx_blocked_numel = core.mx_blocked_numel


def check_mx_plain(name, t, group_ends):
    """Checks a plain scales tensor (and group_ends for 2D); returns (layout, G, rows, C)."""
    grouped = group_ends is not None
    chk.tensor(name, t, (_U8,), 2 if grouped else 3)
    C_ = t.shape[-1]
    chk.integer(f"{name}.shape[-1] (cols)", C_, 1, C.LIMITS["MOEJIT_MAX_MX_COLS"])
    _plain_strides(name, t, grouped)
    if grouped:
        chk.contiguous("group_ends", chk.tensor("group_ends", group_ends, (_I32,), 1, t.device, name))
        return 1, group_ends.shape[0], t.shape[0], C_
    return 0, t.shape[0], t.shape[1], C_


def check_mx_blocked(name, t, dev, anchor, numel):
    chk.tensor(name, t, (_U8,), t.dim() if t is not None and hasattr(t, "dim") else 1, dev, anchor)
    chk.contiguous(name, t)
    if t.numel() != numel:
        raise ValueError(f"{name} has {t.numel()} bytes, the blocked layout needs {numel}")


def launch_mx(ctx, inverse, plain, blocked, group_ends, stream=None):
    grouped = group_ends is not None
    layout, G, rows_, cols = (1, group_ends.shape[0], plain.shape[0], plain.shape[1]) if grouped else \
        (0, plain.shape[0], plain.shape[1], plain.shape[2])
    if blocked.numel() == 0:
        return
    chk.aligned("the blocked tensor" if not inverse else "blocked", blocked, 16)
    if grouped and group_ends.numel():
        chk.aligned("group_ends", group_ends, 4)
    rs, gs = _plain_strides("plain" if inverse else "scales", plain, grouped)
    src, dst = (blocked, plain) if inverse else (plain, blocked)
    args = C.MxScalesArgs(layout, src.data_ptr(), dst.data_ptr(), G, rows_, _ptr(group_ends), rs, gs)
    fn = C.lib.moejit_mx_scales_inverse if inverse else C.lib.moejit_mx_scales
    _call(fn, ctx, core.mx_spec_c(cols), args, blocked, stream, "mx_scales_inverse" if inverse else "mx_scales")


# -------------------------------------------------------------------------------------------------
# Context's tensor calls (the harness-facing forms)
# -------------------------------------------------------------------------------------------------
def route_call(ctx, spec, logits, bias, out, stream):
    if not isinstance(spec, core.RouteSpec):
        raise TypeError(f"spec must be a moejit.RouteSpec, got {type(spec).__name__}")
    T, slots = check_route(logits, bias, spec.num_experts, spec.topk, spec.shared_slots)
    if dtype_of("logits", logits) != spec.dtype_name:
        raise TypeError(f"logits has dtype {logits.dtype}, the spec's dtype is {spec.dtype_name}")
    if bool(spec.has_bias) != (bias is not None):
        raise ValueError("bias is required: the spec has has_bias" if spec.has_bias else
                         "bias was given but the spec has no bias (has_bias=False): it would be ignored")
    if out is None:
        ids = torch.empty((T, slots), dtype=_I32, device=logits.device)
        weights = torch.empty((T, slots), dtype=_F32, device=logits.device)
    else:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("out must be a pair (ids, weights)")
        ids, weights = out
        check_route_out(logits, ids, weights, T, slots)
    launch_route(ctx, spec._c, logits, bias, ids, weights, stream)
    return ids, weights


class AlignMaps:
    """Preallocated outputs of :meth:`Context.align` for T tokens of K ids (reuse them across
    calls and in CUDA graphs): counts [E], offsets [E+1], sorted_ids [capacity], block_expert
    [capacity/B], total_padded [1], slot_of [T, K] (int32), and the workspace large batches need."""

    def __init__(self, num_experts, block_size, num_tokens, topk, device="cuda"):
        self._spec = core.align_spec_c(num_experts, block_size)
        T = chk.integer("num_tokens", num_tokens, 0, chk.INT32_MAX)
        K = chk.integer("topk", topk, 1, chk.INT32_MAX)
        cap, ws = align_sizes(num_experts, block_size, T, K)
        self.num_experts, self.block_size, self.num_tokens, self.topk, self.capacity = num_experts, block_size, T, K, cap
        i32 = dict(dtype=_I32, device=device)
        self.counts = torch.empty(num_experts, **i32)
        self.offsets = torch.empty(num_experts + 1, **i32)
        self.sorted_ids = torch.empty(cap, **i32)
        self.block_expert = torch.empty(cap // block_size, **i32)
        self.total_padded = torch.empty(1, **i32)
        self.slot_of = torch.empty((T, K), **i32)
        self.workspace = torch.empty(max(ws, 1), dtype=_U8, device=device)
        self._ws_bytes = ws


def align_maps_call(ctx, maps, topk_ids, stream):
    if not isinstance(maps, AlignMaps):
        raise TypeError(f"maps must be a moejit.AlignMaps, got {type(maps).__name__}")
    T, K = check_align_ids(topk_ids, maps.num_experts, maps.block_size)
    if (T, K) != (maps.num_tokens, maps.topk):
        raise ValueError(f"topk_ids has shape {tuple(topk_ids.shape)}, the maps are for "
                         f"[{maps.num_tokens}, {maps.topk}]")
    check_align_out(topk_ids, maps.num_experts, maps.block_size, T, K, maps.counts, maps.offsets, maps.sorted_ids,
                    maps.block_expert, maps.total_padded, maps.slot_of, maps.workspace, maps.capacity)
    launch_align(ctx, maps._spec, ids_int32(topk_ids, maps.num_experts), T, K, maps.counts, maps.offsets,
                 maps.sorted_ids, maps.block_expert, maps.total_padded, maps.slot_of, maps.workspace, stream)
    return maps


def mx_call(ctx, scales, out, group_ends, stream):
    layout, G, rows_, cols = check_mx_plain("scales", scales, group_ends)
    n = mx_blocked_numel(cols, G, rows_, layout == 1)
    if out is None:
        out = torch.empty(n, dtype=_U8, device=scales.device)
    else:
        chk.tensor("out", out, (_U8,), out.dim() if isinstance(out, torch.Tensor) else 1, scales.device, "scales")
        chk.contiguous("out", out)
        if out.numel() != n:
            raise ValueError(f"out has {out.numel()} bytes, the blocked layout needs {n}")
    launch_mx(ctx, False, scales, out, group_ends, stream)
    return out
