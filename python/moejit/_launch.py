"""Checks and launches on torch tensors: the code between a Python call and the C library.

For each operation, check_<op>() validates what can be known from metadata (types, dtypes,
devices, shapes, strides, ranges) and returns the sizes the outputs need — it runs on real tensors
before a launch and on fake tensors while torch.compile traces, so both fail the same way — and
launch_<op>() adds what only real tensors have (alignment of data pointers), makes the tensors'
device current, and calls the library on that device's current torch stream. Nothing is launched
unless every check passed.

Also the tensor-level entry points of Context (route, align with AlignMaps, mx_scales).
"""

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
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def dtype_of(name, t):
    """'f32' / 'bf16' / 'f16' of a float tensor; TypeError naming the argument otherwise."""
    n = _NAME_OF.get(t.dtype)
    if n is None:
        raise TypeError(f"{name} has dtype {t.dtype}, expected float32, bfloat16 or float16")
    return n


def _ptr(t):
    return t.data_ptr() if t is not None else None


_get_device = getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device
Tensor = torch.Tensor


def _stream(idx, stream):
    if stream is None:
        return _raw_stream(idx) if _raw_stream is not None else torch.cuda.current_stream(idx).cuda_stream
    return stream.cuda_stream if hasattr(stream, "cuda_stream") else int(stream)


def _call(fn, ctx, spec, args, anchor, stream, what):
    """fn(ctx, spec, args, stream) with anchor's device current, on its current stream (or `stream`)."""
    idx = anchor.get_device()
    if idx < 0:
        raise ValueError(f"{what}: the tensors are on {anchor.device}; moejit runs on CUDA tensors")
    if idx == _get_device():
        status = fn(ctx._ctx, _byref(spec), _byref(args), _stream(idx, stream))
    else:
        with torch.cuda.device(idx):
            status = fn(ctx._ctx, _byref(spec), _byref(args), _stream(idx, stream))
    if status:
        C.check(status, what)


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
    if type(logits) is not Tensor:
        chk.tensor("logits", logits, FLOATS, 2)
    return core.route_spec_c(dtype_of("logits", logits), bias is not None, *params)


def route_align_spec_for(logits, bias, block_size, params):
    """The validated C route_align spec for a call."""
    route_spec_for(logits, bias, params)
    return core.route_align_spec_c((dtype_of("logits", logits), int(bias is not None)) + tuple(params), block_size)


_TORCH_DTYPE = {C.DTYPES["f32"]: _F32, C.DTYPES["bf16"]: _BF16, C.DTYPES["f16"]: _F16}


def check_route_spec(spec_c, logits, bias):
    """The tensors match a (validated) C route spec: logits' dtype, bias exactly when has_bias."""
    if dtype_of("logits", logits) != core.dtype_name(spec_c.dtype):
        raise TypeError(f"logits has dtype {logits.dtype}, the spec's dtype is {core.dtype_name(spec_c.dtype)} "
                        f"(make the spec with dtype={logits.dtype})")
    if bool(spec_c.has_bias) != (bias is not None):
        raise ValueError("bias is required: the spec has has_bias=True" if spec_c.has_bias else
                         "bias was given but the spec has has_bias=False: it would be ignored")


def _fast_out(t, dtype, dev, shape):
    """The common case of an output check, in a few attribute reads (else the full check runs)."""
    return type(t) is Tensor and t.dtype is dtype and t.get_device() == dev and t.shape == shape and t.is_contiguous()


def _fast_route_inputs(spec_c, logits, bias, E):
    try:
        dev = logits.get_device()
        T = logits.shape[0]
        ok = (type(logits) is Tensor and dev >= 0 and logits.dtype is _TORCH_DTYPE[spec_c.dtype] and logits.dim() == 2
              and logits.shape[1] == E and (E == 1 or logits.stride(1) == 1) and (T <= 1 or logits.stride(0) >= E))
        if ok:
            if spec_c.has_bias:
                ok = (type(bias) is Tensor and bias.dtype is _F32 and bias.shape == (E,) and (E == 1 or bias.stride(0) == 1)
                      and bias.get_device() == dev)
            else:
                ok = bias is None
        return ok
    except (AttributeError, TypeError, KeyError, RuntimeError):
        return False


def route_run(ctx, spec_c, logits, bias, out=None, stream=None):
    """route on real tensors: every check (a fast path for the common case, else the full checks,
    which raise naming the argument), then one launch. Returns (ids, weights)."""
    E, S = spec_c.num_experts, spec_c.topk + spec_c.shared_slots
    if not _fast_route_inputs(spec_c, logits, bias, E):
        check_route(logits, bias, E, spec_c.topk, spec_c.shared_slots)
        check_route_spec(spec_c, logits, bias)
    T = logits.shape[0]
    if out is None:
        ids = torch.empty((T, S), dtype=_I32, device=logits.device)
        weights = torch.empty((T, S), dtype=_F32, device=logits.device)
    else:
        ids, weights = out
        dev = logits.get_device()
        if not (_fast_out(ids, _I32, dev, (T, S)) and _fast_out(weights, _F32, dev, (T, S))):
            check_route_out(logits, ids, weights, T, S)
    launch_route(ctx, spec_c, logits, bias, ids, weights, stream)
    return ids, weights


def launch_route(ctx, spec_c, logits, bias, ids, weights, stream=None):
    T = logits.shape[0]
    if T == 0:
        return
    args = C.RouteArgs(logits.data_ptr(), _ptr(bias), ids.data_ptr(), weights.data_ptr(), T,
                       logits.stride(0) if T > 1 else spec_c.num_experts)
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


def _fast_align_out(outs, E, B, T, K, cap, dev):
    try:
        return _fast_align_out_(outs, E, B, T, K, cap, dev)
    except (AttributeError, TypeError, ValueError):
        return False


def _fast_align_out_(outs, E, B, T, K, cap, dev):
    counts, offsets, sorted_ids, block_expert, total_padded, slot_of = outs
    for t, shape in ((counts, (E,)), (offsets, (E + 1,)), (total_padded, (1,)), (slot_of, (T, K))):
        if t is not None and not _fast_out(t, _I32, dev, shape):
            return False
    sorted_cap = cap
    if sorted_ids is not None:
        if not (_fast_out(sorted_ids, _I32, dev, sorted_ids.shape) and sorted_ids.dim() == 1
                and sorted_ids.shape[0] >= cap):
            return False
        sorted_cap = sorted_ids.shape[0]
    if block_expert is not None:
        if not (_fast_out(block_expert, _I32, dev, block_expert.shape) and block_expert.dim() == 1
                and block_expert.shape[0] >= sorted_cap // B):
            return False
    return True


def align_run(ctx, spec_c, ids, out=None, workspace=None, stream=None):
    """align on real tensors (int32 or int64 ids): checks, then the launch(es). Returns the six
    outputs (allocated when out is None: sorted_ids then holds N past the padded total, as vLLM)."""
    E, B = spec_c.num_experts, spec_c.block_size
    try:
        T, K = ids.shape
        ok = (type(ids) is Tensor and (ids.dtype is _I32 or ids.dtype is _I64) and ids.get_device() >= 0 and K >= 1
              and ids.is_contiguous() and T * K <= chk.INT32_MAX)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        T, K = check_align_ids(ids, E, B)
    cap, ws = align_sizes(E, B, T, K)
    dev = ids.get_device()
    if out is None:
        new = lambda *shape: torch.empty(shape, dtype=_I32, device=ids.device)  # noqa: E731
        out = (new(E), new(E + 1), torch.full((cap,), T * K, dtype=_I32, device=ids.device), new(cap // B), new(1),
               new(T, K))
    elif not _fast_align_out(out, E, B, T, K, cap, dev) or (
            workspace is not None and not (type(workspace) is Tensor and workspace.dtype is _U8
                                           and workspace.get_device() == dev and workspace.is_contiguous())):
        check_align_out(ids, E, B, T, K, *out, workspace, cap)
    launch_align(ctx, spec_c, ids_int32(ids, E), T, K, *out, workspace, stream, ws)
    return out


def launch_align(ctx, spec_c, ids32, T, K, counts, offsets, sorted_ids, block_expert, total_padded, slot_of,
                 workspace=None, stream=None, workspace_bytes=None):
    E, B = spec_c.num_experts, spec_c.block_size
    _, ws = align_sizes(E, B, T, K) if workspace_bytes is None else (None, workspace_bytes)
    if ws:
        if workspace is None or workspace.numel() < ws:
            if workspace is not None:
                raise ValueError(f"workspace has {workspace.numel()} bytes, align needs {ws} for {T}·{K} ids")
            workspace = torch.empty(ws, dtype=_U8, device=ids32.device)
    if workspace is not None and ws:
        chk.aligned("workspace", workspace, 16)
    outs = C.AlignOutputs(_ptr(counts), _ptr(offsets), _ptr(sorted_ids), sorted_ids.numel() if sorted_ids is not None else 0,
                          _ptr(block_expert), _ptr(total_padded), _ptr(slot_of), _ptr(workspace) if ws else None, ws)
    args = C.AlignArgs(ids32.data_ptr() if T else None, T, K, 0, outs)
    _call(C.lib.moejit_align, ctx, spec_c, args, ids32, stream, "align")


# -------------------------------------------------------------------------------------------------
# route_align
# -------------------------------------------------------------------------------------------------
def route_align_run(ctx, spec_c, logits, bias, out=None, workspace=None, stream=None):
    """route_align on real tensors: checks, then the launch(es). Returns the eight outputs."""
    r = spec_c.route
    E, S, B = r.num_experts, r.topk + r.shared_slots, spec_c.block_size
    if not _fast_route_inputs(r, logits, bias, E):
        check_route(logits, bias, E, r.topk, r.shared_slots)
        check_route_spec(r, logits, bias)
    T = logits.shape[0]
    ES = E + r.shared_slots
    cap, _ = align_sizes(ES, B, T, S)
    dev = logits.get_device()
    if out is None:
        new = lambda *shape: torch.empty(shape, dtype=_I32, device=logits.device)  # noqa: E731
        out = (new(T, S), torch.empty((T, S), dtype=_F32, device=logits.device), new(ES), new(ES + 1),
               torch.full((cap,), T * S, dtype=_I32, device=logits.device), new(cap // B), new(1), new(T, S))
    elif not (_fast_out(out[0], _I32, dev, (T, S)) and _fast_out(out[1], _F32, dev, (T, S))
              and all(t is not None for t in out) and _fast_align_out(out[2:], ES, B, T, S, cap, dev)):
        check_route_out(logits, out[0], out[1], T, S)
        check_align_out(logits, ES, B, T, S, *out[2:], workspace, cap)
        if any(t is None for t in out):
            raise ValueError("route_align writes every output: pass all eight tensors")
    if workspace is not None:
        check_align_out(logits, ES, B, T, S, None, None, None, None, None, None, workspace, cap)
    if T == 0:  # nothing to route: empty maps
        for t in (out[2], out[3], out[6]):
            t.zero_()
        return out
    launch_route_align(ctx, spec_c, logits, bias, *out, workspace=workspace, stream=stream)
    return out


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
    route = C.RouteArgs(logits.data_ptr(), _ptr(bias), ids.data_ptr(), weights.data_ptr(), T,
                        logits.stride(0) if T > 1 else r.num_experts)
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
        chk.contiguous("ids", chk.tensor("ids", ids, IDS, 2, dev, "x", (T, K)))
        chk.contiguous("scale", chk.tensor("scale", scale, (_F32,), 1, dev, "x"))
        if scale.shape[0] < 1:
            raise ValueError("scale must have one entry per expert, got an empty tensor")
    return T, H, sorted_ids.shape[0], scale is not None


def check_rows_out(name, out, dev, anchor, shape, dtype):
    chk.contiguous(name, chk.tensor(name, out, (dtype,), 2, dev, anchor, shape))


def permute_run(ctx, x, sorted_ids, topk, ids, scale, out=None, stream=None):
    """permute on real tensors: checks, then one launch. Returns out [R, H]."""
    try:
        dev = x.get_device()
        T, H = x.shape
        ok = (type(x) is Tensor and dev >= 0 and _NAME_OF.get(x.dtype) is not None and x.is_contiguous()
              and type(sorted_ids) is Tensor and sorted_ids.dtype is _I32 and sorted_ids.dim() == 1
              and sorted_ids.get_device() == dev and sorted_ids.is_contiguous() and ids is None and scale is None
              and type(topk) is int and 1 <= topk and T * topk <= chk.INT32_MAX)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        T, H, _, _ = check_permute(x, sorted_ids, topk, ids, scale)
    R = sorted_ids.shape[0]
    if out is None:
        out = torch.empty((R, H), dtype=x.dtype, device=x.device)
    elif not _fast_out(out, x.dtype, x.get_device(), (R, H)):
        check_rows_out("out", out, x.device, "x", (R, H), x.dtype)
    launch_permute(ctx, x, sorted_ids, topk, ids, scale, out, stream)
    return out


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
    if has_scale:  # int64 ids: clamped and converted as align's (an id outside [0, E) gives a zero row)
        ids = ids_int32(ids, scale.shape[0])
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


def combine_run(ctx, y, slot_of, weights, out=None, stream=None):
    """combine on real tensors: checks, then one launch. Returns out [T, H]."""
    try:
        dev = y.get_device()
        T, K = slot_of.shape
        ok = (type(y) is Tensor and dev >= 0 and _NAME_OF.get(y.dtype) is not None and y.dim() == 2
              and y.is_contiguous() and K >= 1 and _fast_out(slot_of, _I32, dev, (T, K))
              and _fast_out(weights, _F32, dev, (T, K)))
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        check_combine(y, slot_of, weights)
    T, H = slot_of.shape[0], y.shape[1]
    if out is None:
        out = torch.empty((T, H), dtype=y.dtype, device=y.device)
    elif not _fast_out(out, y.dtype, y.get_device(), (T, H)):
        check_rows_out("out", out, y.device, "y", (T, H), y.dtype)
    launch_combine(ctx, y, slot_of, weights, out, stream)
    return out


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
    if not 1 <= C_ <= C.LIMITS["MOEJIT_MAX_MX_COLS"]:
        raise ValueError(f"cols = {C_} ({name}.shape[-1]) is out of range [1, {C.LIMITS['MOEJIT_MAX_MX_COLS']}]")
    _plain_strides(name, t, grouped)
    if grouped:
        chk.contiguous("group_ends", chk.tensor("group_ends", group_ends, (_I32,), 1, t.device, name))
        return 1, group_ends.shape[0], t.shape[0], C_
    return 0, t.shape[0], t.shape[1], C_


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
    if out is not None and (not isinstance(out, (tuple, list)) or len(out) != 2):
        raise TypeError("out must be a pair (ids, weights)")
    ids, weights = route_run(ctx, spec._c, logits, bias, out, stream)
    return out if out is not None else (ids, weights)


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
    align_run(ctx, maps._spec, topk_ids, (maps.counts, maps.offsets, maps.sorted_ids, maps.block_expert,
                                          maps.total_padded, maps.slot_of), maps.workspace, stream)
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
