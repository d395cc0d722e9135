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
_I16, _BOOL = torch.int16, torch.bool
FLOATS = (_F32, _BF16, _F16)
IDS = (_I32, _I64, _I16)
LOADS = (_I32, _I64)
_NAME_OF = {_F32: "f32", _BF16: "bf16", _F16: "f16"}
_INDEX_OF = {_I32: "int32", _I64: "int64", _I16: "int16"}
TORCH_INDEX = {"int32": _I32, "int64": _I64, "int16": _I16}
_byref = ctypes.byref
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def dtype_of(name, t):
    """'f32' / 'bf16' / 'f16' of a float tensor; TypeError naming the argument otherwise."""
    n = _NAME_OF.get(t.dtype)
    if n is None:
        raise TypeError(f"{name} has dtype {t.dtype}, expected float32, bfloat16 or float16")
    return n


def index_dtype_of(name, t):
    """'int32' / 'int64' / 'int16' of an id tensor; TypeError naming the argument otherwise."""
    n = _INDEX_OF.get(t.dtype)
    if n is None:
        raise TypeError(f"{name} has dtype {t.dtype}, expected int32, int64 or int16")
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


def check_route_out(logits, ids, weights, T, slots, ids_dtypes=(_I32,)):
    """Checks route's output tensors (ids of one of ids_dtypes: int32 unless the serving forms)."""
    dev = logits.device
    chk.contiguous("ids", chk.tensor("ids", ids, ids_dtypes, 2, dev, "logits", (T, slots)))
    chk.contiguous("weights", chk.tensor("weights", weights, (_F32,), 2, dev, "logits", (T, slots)))


def check_route_serving(logits, T, num_experts, slots, num_valid, logical_to_physical, replica_count,
                        num_physical_experts, expert_load, logical_ids):
    """Checks route's serving inputs (each may be None: off). Returns what they make of the spec:
    (padded, max_replicas, num_physical_experts, load counter name, given logical ids' dtype name
    or None)."""
    dev = logits.device
    E = num_experts
    if num_valid is not None:
        chk.tensor("num_valid", num_valid, (_I32,), 1, dev, "logits", (1,))
    if (logical_to_physical is None) != (replica_count is None):
        raise ValueError("logical_to_physical and replica_count go together (expert placement): pass both or neither")
    R = P = 0
    if logical_to_physical is not None:
        chk.contiguous("logical_to_physical", chk.tensor("logical_to_physical", logical_to_physical, (_I32,), 2, dev,
                                                         "logits", (E, None)))
        R = int(logical_to_physical.shape[1])  # a compile-time size of the kernel (specialised under dynamic shapes)
        if R < 1:
            raise ValueError(f"logical_to_physical has shape {tuple(logical_to_physical.shape)}: it needs at least one "
                             f"column (max_replicas >= 1)")
        chk.contiguous("replica_count", chk.tensor("replica_count", replica_count, (_I32,), 1, dev, "logits", (E,)))
        if num_physical_experts is None or num_physical_experts == 0:
            raise ValueError("num_physical_experts is required with logical_to_physical (physical ids are in "
                             "[0, num_physical_experts))")
        P = chk.integer("num_physical_experts", num_physical_experts, 1, chk.INT32_MAX)
    elif num_physical_experts:
        raise ValueError(f"num_physical_experts = {num_physical_experts} is given without logical_to_physical and "
                         f"replica_count (expert placement)")
    load = "none"
    if expert_load is not None:
        n = P if R else E
        chk.contiguous("expert_load", chk.tensor("expert_load", expert_load, LOADS, 1, dev, "logits", (n,)))
        load = _INDEX_OF[expert_load.dtype]
    given = None
    if logical_ids is not None:
        chk.contiguous("logical_ids", chk.tensor("logical_ids", logical_ids, IDS, 2, dev, "logits", (T, slots)))
        given = _INDEX_OF[logical_ids.dtype]
    return num_valid is not None, R, P, load, given


def route_serving_spec_for(logits, bias, params, num_valid, logical_to_physical, replica_count, num_physical_experts,
                           expert_load, logical_ids, ids_dtype, record_dtype):
    """Every check of a serving route call's inputs, then its validated C spec: the plain params,
    the serving options the tensors imply, ids of ids_dtype and, when record_dtype is not "",
    recorded logical ids of that dtype. Returns (spec, T, K+S)."""
    num_experts, topk, shared_slots = params[0], params[1], params[-1]
    T, slots = check_route(logits, bias, num_experts, topk, shared_slots)
    padded, R, P, load, given = check_route_serving(logits, T, num_experts, slots, num_valid, logical_to_physical,
                                                    replica_count, num_physical_experts, expert_load, logical_ids)
    if ids_dtype not in TORCH_INDEX:
        raise ValueError(f"ids_dtype = {ids_dtype!r} must be 'int32', 'int64' or 'int16'")
    if record_dtype and record_dtype not in TORCH_INDEX:
        raise ValueError(f"record_dtype = {record_dtype!r} must be '' (no record), 'int32', 'int64' or 'int16'")
    if record_dtype and given:
        raise ValueError("logical ids are either recorded or given: pass record or logical_ids, not both")
    replay = "given" if given else ("record" if record_dtype else "off")
    serving = core.serving_c(padded, ids_dtype, R, P, load, replay, given or record_dtype or "int32")
    spec_c = core.route_spec_c(dtype_of("logits", logits), bias is not None, *params, serving)
    return spec_c, T, slots


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


def launch_route(ctx, spec_c, logits, bias, ids, weights, stream=None, serving=None):
    """serving: (num_valid, logical_to_physical, replica_count, expert_load, logical_ids) or None."""
    T = logits.shape[0]
    if T == 0:
        return
    args = C.RouteArgs(logits.data_ptr(), _ptr(bias), ids.data_ptr(), weights.data_ptr(), T,
                       logits.stride(0) if T > 1 else spec_c.num_experts)
    if serving is not None:
        num_valid, l2p, rc, load, logical = serving
        for name, t in (("num_valid", num_valid), ("logical_to_physical", l2p), ("replica_count", rc),
                        ("expert_load", load), ("logical_ids", logical)):
            if t is not None:
                chk.aligned(name, t, t.element_size())
                setattr(args, name, t.data_ptr())
    _call(C.lib.moejit_route, ctx, spec_c, args, logits, stream, "route")


def route_serving_run(ctx, spec_c, logits, bias, num_valid=None, logical_to_physical=None, replica_count=None,
                      expert_load=None, logical_ids=None, out=None, stream=None):
    """route with serving options on real tensors, after route_serving_spec_for() (which checked
    the inputs and made spec_c). out: (ids, weights, recorded logical ids or None), checked here,
    or None to allocate them (ids of the spec's id_dtype; logical ids when it records). Returns
    (ids, weights, recorded logical ids or None)."""
    T = logits.shape[0]
    slots = spec_c.topk + spec_c.shared_slots
    ids_dtype = TORCH_INDEX[core.index_dtype_name(spec_c.id_dtype)]
    record = spec_c.replay == C.REPLAYS["record"]
    rec_dtype = TORCH_INDEX[core.index_dtype_name(spec_c.logical_id_dtype)]
    if out is None:
        ids = torch.empty((T, slots), dtype=ids_dtype, device=logits.device)
        weights = torch.empty((T, slots), dtype=_F32, device=logits.device)
        recorded = torch.empty((T, slots), dtype=rec_dtype, device=logits.device) if record else None
    else:
        ids, weights, recorded = out
        check_route_out(logits, ids, weights, T, slots, (ids_dtype,))
        if record:
            if recorded is None:
                raise ValueError("the spec records logical ids (replay = 'record'): pass a tensor for them")
            chk.contiguous("logical_ids_out", chk.tensor("logical_ids_out", recorded, (rec_dtype,), 2, logits.device,
                                                         "logits", (T, slots)))
        elif recorded is not None:
            raise ValueError("logical_ids_out was given but the call records nothing (replay is not 'record')")
    launch_route(ctx, spec_c, logits, bias, ids, weights, stream,
                 (num_valid, logical_to_physical, replica_count, expert_load, recorded if record else logical_ids))
    return ids, weights, recorded


# -------------------------------------------------------------------------------------------------
# align
# -------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def align_sizes(num_experts, block_size, num_tokens, topk):
    """(capacity, workspace bytes) of align for T tokens of K ids."""
    return (core.align_capacity(num_experts, block_size, num_tokens, topk),
            core.align_workspace_bytes(num_experts, block_size, num_tokens, topk))


def check_align_ids(ids, num_experts, block_size, name="topk_ids"):
    """Checks align's ids ([T, K] int32, int64 or int16, contiguous); returns (T, K)."""
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


def check_expert_map(expert_map, first_expert, anchor, name="topk_ids"):
    """Checks align's expert-parallel options; returns the map's size Eg (0 without a map)."""
    first = chk.integer("first_expert", first_expert, 0, chk.INT32_MAX)
    if expert_map is None:
        return 0
    chk.contiguous("expert_map", chk.tensor("expert_map", expert_map, (_I32, _I64), 1, anchor.device, name))
    if expert_map.shape[0] < 1:
        raise ValueError("expert_map is empty: it needs one entry per global expert")
    if expert_map.shape[0] > chk.INT32_MAX:
        raise ValueError(f"expert_map has {expert_map.shape[0]} entries, more than 2^31 - 1")
    if first:
        raise ValueError(f"first_expert = {first} applies only without expert_map (the map gives every global id "
                         f"its local one)")
    return expert_map.shape[0]


def expert_map_int32(expert_map, num_experts):
    """An int32 expert_map for the library. int64 entries are clamped to [-1, E] first (an entry
    outside [0, E) stays outside: the id is dropped either way), then converted."""
    if expert_map is None or expert_map.dtype == _I32:
        return expert_map
    return expert_map.clamp(-1, num_experts).to(_I32)


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


def align_run(ctx, spec_c, ids, out=None, workspace=None, stream=None, expert_map=None, first_expert=0):
    """align on real tensors (int32, int64 or int16 ids, read as they are): checks, then the
    launch(es). spec_c gives E and B (its id dtype and map size are the call's). Returns the six
    outputs (allocated when out is None: sorted_ids then holds N past the padded total, as vLLM)."""
    E, B = spec_c.num_experts, spec_c.block_size
    try:
        T, K = ids.shape
        ok = (type(ids) is Tensor and (ids.dtype is _I32 or ids.dtype is _I64 or ids.dtype is _I16)
              and ids.get_device() >= 0 and K >= 1 and ids.is_contiguous() and T * K <= chk.INT32_MAX)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        T, K = check_align_ids(ids, E, B)
    Eg = 0
    if expert_map is not None or first_expert:
        Eg = check_expert_map(expert_map, first_expert, ids)
    if spec_c.id_dtype != C.INDEX_DTYPES[_INDEX_OF[ids.dtype]] or spec_c.global_experts != Eg:
        spec_c = core.align_spec_c(E, B, _INDEX_OF[ids.dtype], Eg)
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
    launch_align(ctx, spec_c, ids, T, K, *out, workspace, stream, ws, expert_map_int32(expert_map, E), first_expert)
    return out


def launch_align(ctx, spec_c, ids, T, K, counts, offsets, sorted_ids, block_expert, total_padded, slot_of,
                 workspace=None, stream=None, workspace_bytes=None, expert_map=None, first_expert=0):
    """ids: of spec_c.id_dtype; expert_map: int32 [spec_c.global_experts] when the spec has one."""
    E, B = spec_c.num_experts, spec_c.block_size
    _, ws = align_sizes(E, B, T, K) if workspace_bytes is None else (None, workspace_bytes)
    if ws:
        if workspace is None or workspace.numel() < ws:
            if workspace is not None:
                raise ValueError(f"workspace has {workspace.numel()} bytes, align needs {ws} for {T}·{K} ids")
            workspace = torch.empty(ws, dtype=_U8, device=ids.device)
    if workspace is not None and ws:
        chk.aligned("workspace", workspace, 16)
    outs = C.AlignOutputs(_ptr(counts), _ptr(offsets), _ptr(sorted_ids), sorted_ids.numel() if sorted_ids is not None else 0,
                          _ptr(block_expert), _ptr(total_padded), _ptr(slot_of), _ptr(workspace) if ws else None, ws)
    if T:
        chk.aligned("topk_ids", ids, ids.element_size())
    args = C.AlignArgs(ids.data_ptr() if T else None, T, K, first_expert, outs, _ptr(expert_map))
    _call(C.lib.moejit_align, ctx, spec_c, args, ids, stream, "align")


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
# dispatch_layout
# -------------------------------------------------------------------------------------------------
def check_dispatch_layout(ids, num_experts, num_ranks, ranks_per_node):
    """Checks dispatch_layout's inputs; returns (T, K, ranks_per_node for the spec, nodes: 0 for
    one node, which has no tokens_per_node)."""
    chk.contiguous("ids", chk.tensor("ids", ids, IDS, 2))
    T, K = ids.shape
    if K < 1:
        raise ValueError(f"ids has shape {tuple(ids.shape)}: it needs at least one column")
    K = int(K)  # a compile-time size of the kernel (specialised under dynamic shapes)
    E = chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    R = chk.integer("num_ranks", num_ranks, 1, chk.INT32_MAX)
    if E % R:
        raise ValueError(f"num_ranks = {R} must divide num_experts = {E} (every rank holds E / R consecutive experts)")
    rpn, nodes = core.dispatch_layout_nodes(R, ranks_per_node)
    return T, K, rpn, nodes


def check_dispatch_layout_out(ids, num_experts, num_ranks, nodes, T, tokens_per_rank, tokens_per_node,
                              tokens_per_expert, is_token_in_rank):
    """Checks dispatch_layout's output tensors (each may be None: not wanted)."""
    dev = ids.device
    for name, t, shape in (("tokens_per_rank", tokens_per_rank, (num_ranks,)),
                           ("tokens_per_expert", tokens_per_expert, (num_experts,))):
        if t is not None:
            chk.contiguous(name, chk.tensor(name, t, (_I32,), 1, dev, "ids", shape))
    if tokens_per_node is not None:
        if not nodes:
            raise ValueError(f"tokens_per_node was given, but num_ranks = {num_ranks} ranks are one node "
                             f"(num_ranks <= ranks_per_node): there are no per-node counts; pass None")
        chk.contiguous("tokens_per_node", chk.tensor("tokens_per_node", tokens_per_node, (_I32,), 1, dev, "ids",
                                                     (nodes,)))
    if is_token_in_rank is not None:
        chk.contiguous("is_token_in_rank", chk.tensor("is_token_in_rank", is_token_in_rank, (_BOOL,), 2, dev, "ids",
                                                      (T, num_ranks)))


def dispatch_layout_run(ctx, ids, num_experts, num_ranks, ranks_per_node=core.DEFAULT_RANKS_PER_NODE, out=None,
                        stream=None):
    """dispatch_layout on real tensors: checks, then one launch. Returns (tokens_per_rank,
    tokens_per_node or None (one node), tokens_per_expert, is_token_in_rank), allocated when out is
    None, else out (whose entries may be None: not computed)."""
    T, K, rpn, nodes = check_dispatch_layout(ids, num_experts, num_ranks, ranks_per_node)
    spec_c = core.dispatch_layout_spec_c(num_experts, num_ranks, K, _INDEX_OF[ids.dtype], rpn)
    if out is None:
        new = lambda *shape: torch.empty(shape, dtype=_I32, device=ids.device)  # noqa: E731
        out = (new(num_ranks), new(nodes) if nodes else None, new(num_experts),
               torch.empty((T, num_ranks), dtype=_BOOL, device=ids.device))
    else:
        check_dispatch_layout_out(ids, num_experts, num_ranks, nodes, T, *out)
    launch_dispatch_layout(ctx, spec_c, ids, T, *out, stream=stream)
    return out


def launch_dispatch_layout(ctx, spec_c, ids, T, tokens_per_rank, tokens_per_node, tokens_per_expert, is_token_in_rank,
                           stream=None):
    if tokens_per_rank is None and tokens_per_node is None and tokens_per_expert is None and is_token_in_rank is None:
        return
    if T:
        chk.aligned("ids", ids, ids.element_size())
    args = C.DispatchLayoutArgs(ids.data_ptr() if T else None, T, _ptr(tokens_per_rank), _ptr(tokens_per_node),
                                _ptr(tokens_per_expert), _ptr(is_token_in_rank) if T else None)
    _call(C.lib.moejit_dispatch_layout, ctx, spec_c, args, ids, stream, "dispatch_layout")


# -------------------------------------------------------------------------------------------------
# permute and combine
# -------------------------------------------------------------------------------------------------
def check_permute(x, sorted_ids, topk, ids, scale, slot_of=None):
    """Checks permute's inputs (slot_of, optional: align's inverse map [T, K], for the backward);
    returns (T, H, R, has_scale)."""
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
    if slot_of is not None:
        chk.contiguous("slot_of", chk.tensor("slot_of", slot_of, (_I32,), 2, dev, "x", (T, K)))
    return T, H, sorted_ids.shape[0], scale is not None


def check_rows_out(name, out, dev, anchor, shape, dtype):
    chk.contiguous(name, chk.tensor(name, out, (dtype,), 2, dev, anchor, shape))


def permute_run(ctx, x, sorted_ids, topk, ids, scale, out=None, stream=None, slot_of=None):
    """permute on real tensors: checks, then one launch. Returns out [R, H]. slot_of is only
    checked (the backward reads it)."""
    try:
        dev = x.get_device()
        T, H = x.shape
        ok = (type(x) is Tensor and dev >= 0 and _NAME_OF.get(x.dtype) is not None and x.is_contiguous()
              and type(sorted_ids) is Tensor and sorted_ids.dtype is _I32 and sorted_ids.dim() == 1
              and sorted_ids.get_device() == dev and sorted_ids.is_contiguous() and ids is None and scale is None
              and slot_of is None and type(topk) is int and 1 <= topk and T * topk <= chk.INT32_MAX)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        T, H, _, _ = check_permute(x, sorted_ids, topk, ids, scale, slot_of)
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


def check_sorted_ids(sorted_ids, R, dev, anchor, why):
    """align's sorted_ids as a map of R rows: int32, 1-D, contiguous, at least R entries (the first
    R are read)."""
    chk.contiguous("sorted_ids", chk.tensor("sorted_ids", sorted_ids, (_I32,), 1, dev, anchor))
    if sorted_ids.shape[0] < R:
        raise ValueError(f"sorted_ids has {sorted_ids.shape[0]} entries, needs at least {R} ({why})")


def check_combine(y, slot_of, weights, sorted_ids=None):
    """Checks combine's inputs (sorted_ids, optional: align's map, for the backward); returns
    (T, H, K)."""
    chk.tensor("y", y, FLOATS, 2)
    dev = y.device
    chk.contiguous("y", y)
    chk.contiguous("slot_of", chk.tensor("slot_of", slot_of, (_I32,), 2, dev, "y"))
    T, K = slot_of.shape
    if K < 1:
        raise ValueError(f"slot_of has shape {tuple(slot_of.shape)}: it needs at least one column")
    chk.contiguous("weights", chk.tensor("weights", weights, (_F32,), 2, dev, "y", (T, K)))
    if sorted_ids is not None:
        check_sorted_ids(sorted_ids, y.shape[0], dev, "y", "one per row of y")
    return T, y.shape[1], K


def combine_run(ctx, y, slot_of, weights, out=None, stream=None, sorted_ids=None):
    """combine on real tensors: checks, then one launch. Returns out [T, H]. sorted_ids is only
    checked (the backward reads it)."""
    try:
        dev = y.get_device()
        T, K = slot_of.shape
        ok = (type(y) is Tensor and dev >= 0 and _NAME_OF.get(y.dtype) is not None and y.dim() == 2
              and y.is_contiguous() and K >= 1 and _fast_out(slot_of, _I32, dev, (T, K))
              and _fast_out(weights, _F32, dev, (T, K)) and sorted_ids is None)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        check_combine(y, slot_of, weights, sorted_ids)
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
# the backward operations: permute's, combine's and route's gradients (moejit.h, "permute and
# combine backward" and Operation 1b)
# -------------------------------------------------------------------------------------------------
def _nonempty_ptr(t):
    """data_ptr() of a tensor with elements, None (NULL) for None or an empty one."""
    return t.data_ptr() if t is not None and t.numel() else None


def check_permute_backward(grad_out, slot_of, ids, scale):
    """Checks permute_backward's inputs; returns (T, K, H, R, has_scale)."""
    chk.tensor("grad_out", grad_out, FLOATS, 2)
    dev = grad_out.device
    chk.contiguous("grad_out", grad_out)
    chk.contiguous("slot_of", chk.tensor("slot_of", slot_of, (_I32,), 2, dev, "grad_out"))
    T, K = slot_of.shape
    if K < 1:
        raise ValueError(f"slot_of has shape {tuple(slot_of.shape)}: it needs at least one column")
    if (ids is None) != (scale is None):
        raise ValueError("ids and scale go together: pass both (the forward's per-expert scale) or neither")
    if scale is not None:
        chk.contiguous("ids", chk.tensor("ids", ids, IDS, 2, dev, "grad_out", (T, K)))
        chk.contiguous("scale", chk.tensor("scale", scale, (_F32,), 1, dev, "grad_out"))
        if scale.shape[0] < 1:
            raise ValueError("scale must have one entry per expert, got an empty tensor")
    R, H = grad_out.shape
    return T, K, H, R, scale is not None


def permute_backward_run(ctx, grad_out, slot_of, ids, scale, out=None, stream=None):
    """permute's backward on real tensors: checks, then one launch. Returns grad_x [T, H] of
    grad_out's dtype (out when given)."""
    T, K, H, R, has_scale = check_permute_backward(grad_out, slot_of, ids, scale)
    spec_c = core.permute_backward_spec_c(H, dtype_of("grad_out", grad_out), int(has_scale))
    if out is None:
        out = torch.empty((T, H), dtype=grad_out.dtype, device=grad_out.device)
    else:
        check_rows_out("grad_x", out, grad_out.device, "grad_out", (T, H), grad_out.dtype)
    if T == 0:
        return out
    if has_scale:  # int64 ids: clamped and converted as permute's (an id outside [0, E) adds nothing)
        ids = ids_int32(ids, scale.shape[0])
    args = C.PermuteBackwardArgs(_nonempty_ptr(grad_out), slot_of.data_ptr(), _ptr(ids), _ptr(scale), out.data_ptr(),
                                 T, K, scale.shape[0] if has_scale else 0, R)
    _call(C.lib.moejit_permute_backward, ctx, spec_c, args, grad_out, stream, "permute_backward")
    return out


def check_combine_backward(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y, want_grad_weights):
    """Checks combine_backward's inputs: y is needed for grad_weights, weights and sorted_ids for
    grad_y (each may be None otherwise). Returns (T, K, H, R)."""
    chk.tensor("grad_out", grad_out, FLOATS, 2)
    dev = grad_out.device
    chk.contiguous("grad_out", grad_out)
    T, H = grad_out.shape
    chk.contiguous("slot_of", chk.tensor("slot_of", slot_of, (_I32,), 2, dev, "grad_out", (T, None)))
    K = slot_of.shape[1]
    if K < 1:
        raise ValueError(f"slot_of has shape {tuple(slot_of.shape)}: it needs at least one column")
    R = num_rows
    if type(R) is int:
        R = chk.integer("num_rows", R, 0, 2**62)
    if y is not None:
        chk.contiguous("y", chk.tensor("y", y, (grad_out.dtype,), 2, dev, "grad_out", (R, H)))
    elif want_grad_weights:
        raise ValueError("y (combine's rows) is required for grad_weights")
    if weights is not None:
        chk.contiguous("weights", chk.tensor("weights", weights, (_F32,), 2, dev, "grad_out", (T, K)))
    elif want_grad_y:
        raise ValueError("weights (combine's weights) are required for grad_y")
    if sorted_ids is not None:
        check_sorted_ids(sorted_ids, R, dev, "grad_out", "one per row of grad_y")
    elif want_grad_y:
        raise ValueError("sorted_ids (align's map) is required for grad_y")
    return T, K, H, R


def combine_backward_run(ctx, grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y=True,
                         want_grad_weights=True, out=None, stream=None):
    """combine's backward on real tensors: checks, then one launch. Returns (grad_y [R, H] of
    grad_out's dtype, grad_weights f32 [T, K]); one not wanted is an empty tensor ([0, H], [0, K]).
    out = (grad_y or None, grad_weights or None) writes those instead (None: not wanted)."""
    if out is not None:
        want_grad_y, want_grad_weights = out[0] is not None, out[1] is not None
    T, K, H, R = check_combine_backward(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y,
                                        want_grad_weights)
    spec_c = core.combine_backward_spec_c(H, dtype_of("grad_out", grad_out))
    dev = grad_out.device
    if out is None:
        grad_y = torch.empty((R if want_grad_y else 0, H), dtype=grad_out.dtype, device=dev)
        grad_w = torch.empty((T if want_grad_weights else 0, K), dtype=_F32, device=dev)
    else:
        grad_y, grad_w = out
        if grad_y is not None:
            check_rows_out("grad_y", grad_y, dev, "grad_out", (R, H), grad_out.dtype)
        if grad_w is not None:
            check_rows_out("grad_weights", grad_w, dev, "grad_out", (T, K), _F32)
    want_y, want_w = want_grad_y and R > 0, want_grad_weights and T > 0
    if want_y or want_w:
        args = C.CombineBackwardArgs(_nonempty_ptr(grad_out), _nonempty_ptr(y) if want_w else None,
                                     _nonempty_ptr(slot_of), _nonempty_ptr(weights) if want_y else None,
                                     _nonempty_ptr(sorted_ids) if want_y else None,
                                     grad_y.data_ptr() if want_y else None, grad_w.data_ptr() if want_w else None,
                                     T, K, 0, R)
        _call(C.lib.moejit_combine_backward, ctx, spec_c, args, grad_out, stream, "combine_backward")
    return grad_y, grad_w


def check_route_backward(logits, ids, grad_weights, num_experts, topk, shared_slots):
    """Checks route_backward's inputs; returns (T, K+S)."""
    T, slots = check_route(logits, None, num_experts, topk, shared_slots)
    dev = logits.device
    chk.contiguous("ids", chk.tensor("ids", ids, IDS, 2, dev, "logits", (T, slots)))
    chk.contiguous("grad_weights", chk.tensor("grad_weights", grad_weights, (_F32,), 2, dev, "logits", (T, slots)))
    return T, slots


def route_backward_spec_for(logits, ids, params):
    """The validated C route_backward spec for a call: the forward's spec with dtype from the logits
    and id_dtype from the ids (no bias: it moves only the selection, which the ids hold)."""
    return core.route_backward_spec_c(core.route_backward_key(dtype_of("logits", logits), params,
                                                              index_dtype_of("ids", ids)))


def route_backward_run(ctx, logits, ids, grad_weights, params, out=None, stream=None):
    """route's backward on real tensors: checks, then one launch. params: ROUTE_PARAMS of the
    forward. Returns grad_logits f32 [T, E] (out when given)."""
    num_experts, topk, shared_slots = params[0], params[1], params[-1]
    T, _ = check_route_backward(logits, ids, grad_weights, num_experts, topk, shared_slots)
    if out is not None:
        check_rows_out("grad_logits", out, logits.device, "logits", (T, num_experts), _F32)
    spec_c = route_backward_spec_for(logits, ids, params)
    if out is None:
        out = torch.empty((T, num_experts), dtype=_F32, device=logits.device)
    if T == 0:
        return out
    args = C.RouteBackwardArgs(logits.data_ptr(), ids.data_ptr(), grad_weights.data_ptr(), out.data_ptr(), T,
                               logits.stride(0) if T > 1 else num_experts)
    _call(C.lib.moejit_route_backward, ctx, spec_c, args, logits, stream, "route_backward")
    return out


# -------------------------------------------------------------------------------------------------
# capacity
# -------------------------------------------------------------------------------------------------
def capacity_run(ctx, ids, weights, num_experts, topk, policy, capacity_factor, capacity, min_capacity, stream=None):
    """moejit_capacity in place on route's ids [T, K+S] and weights f32 [T, K+S]; returns
    (tokens_per_expert, kept), int32 [E] each."""
    chk.tensor("ids", ids, IDS, 2)
    chk.contiguous("ids", ids)
    T, slots = ids.shape
    chk.integer("topk", topk, 1, slots)
    chk.contiguous("weights", chk.tensor("weights", weights, (_F32,), 2, ids.device, "ids", (T, slots)))
    E = chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    spec = C.CapacitySpec(E, topk, slots - topk, C.INDEX_DTYPES[_INDEX_OF[ids.dtype]],
                          C.DROP_POLICIES[chk.choice("policy", policy, C.DROP_POLICIES)])
    tokens_per_expert = torch.zeros((E,), dtype=_I32, device=ids.device)
    kept = torch.zeros((E,), dtype=_I32, device=ids.device)
    args = C.CapacityArgs(ids.data_ptr(), weights.data_ptr(), T, float(capacity_factor), int(capacity),
                          int(min_capacity), tokens_per_expert.data_ptr(), kept.data_ptr())
    _call(C.lib.moejit_capacity, ctx, spec, args, ids, stream, "capacity")
    return tokens_per_expert, kept


# -------------------------------------------------------------------------------------------------
# route with the auxiliary losses (moejit.h route step 13, route_losses, route_backward's losses)
# -------------------------------------------------------------------------------------------------
def check_aux(logits, aux_stats, seq_offsets, T):
    """Checks the losses' plain arguments and seq_offsets; returns N, the rows of the statistics
    (the sequences with the per-sequence loss, else 1)."""
    flags = chk.integer("aux_stats", aux_stats, 1, 7)
    seq = bool(flags & C.AUX_STATS["seq_load_balance"])
    if seq:
        if seq_offsets is None:
            raise ValueError("seq_offsets is required with the per-sequence load-balancing loss "
                             "(int32 or int64 [S+1] on the device: cu_seqlens)")
        chk.contiguous("seq_offsets", chk.tensor("seq_offsets", seq_offsets, (_I32, _I64), 1, logits.device, "logits"))
        if seq_offsets.shape[0] < 2:
            raise ValueError(f"seq_offsets has {seq_offsets.shape[0]} entries: S+1 >= 2 are needed (cu_seqlens)")
        return seq_offsets.shape[0] - 1
    if seq_offsets is not None:
        raise ValueError("seq_offsets was given without the per-sequence load-balancing loss: it would be ignored")
    return 1


def _aux_spec(spec_c, aux_stats, seq_offsets):
    """A copy of a (cached, validated) C route spec with the losses' fields set; the library checks
    the combination at launch (check_aux has checked the flags and the offsets' dtype)."""
    c = type(spec_c).from_buffer_copy(spec_c)
    c.aux_stats = aux_stats
    c.seq_offset_dtype = C.INDEX_DTYPES[_INDEX_OF[seq_offsets.dtype]] if seq_offsets is not None else 0
    return c


def _aux_struct(prob_sums, counts, lse, seq_offsets, num_seqs):
    return C.AuxStats(_ptr(prob_sums), _ptr(counts), _ptr(lse), _ptr(seq_offsets),
                      num_seqs if seq_offsets is not None else 0)


def route_with_losses_run(ctx, logits, bias, seq_offsets, aux_stats, params, stream=None):
    """route with the losses' statistics, then route_losses: two launches. Returns (ids, weights,
    losses f32 [3], counts int32 [N, E], lse f32 [T] (or [0] without the z-loss))."""
    num_experts, topk, shared_slots = params[0], params[1], params[-1]
    T, slots = check_route(logits, bias, num_experts, topk, shared_slots)
    N = check_aux(logits, aux_stats, seq_offsets, T)
    spec_c = _aux_spec(route_spec_for(logits, bias, params), aux_stats, seq_offsets)
    dev = logits.device
    ids = torch.empty((T, slots), dtype=_I32, device=dev)
    weights = torch.empty((T, slots), dtype=_F32, device=dev)
    prob_sums = torch.zeros((N, num_experts), dtype=_I64, device=dev)  # uint64 fixed point (2^-32)
    counts = torch.zeros((N, num_experts), dtype=_I32, device=dev)
    lse = torch.empty((T if aux_stats & C.AUX_STATS["z_loss"] else 0,), dtype=_F32, device=dev)
    losses = torch.zeros((3,), dtype=_F32, device=dev)
    aux = _aux_struct(prob_sums, counts, lse if lse.numel() else None, seq_offsets, N)
    if T > 0:
        args = C.RouteArgs(logits.data_ptr(), _ptr(bias), ids.data_ptr(), weights.data_ptr(), T,
                           logits.stride(0) if T > 1 else num_experts)
        args.aux = ctypes.pointer(aux)
        _call(C.lib.moejit_route, ctx, spec_c, args, logits, stream, "route")
    lspec = C.RouteLossesSpec(num_experts, topk, aux_stats, spec_c.seq_offset_dtype)
    largs = C.RouteLossesArgs(ctypes.pointer(aux), losses.data_ptr(), T)
    _call(C.lib.moejit_route_losses, ctx, lspec, largs, logits, stream, "route_losses")
    return ids, weights, losses, counts, lse


def route_backward_losses_run(ctx, logits, ids, grad_weights, grad_losses, counts, seq_offsets, aux_stats, params,
                              stream=None):
    """route_backward with the losses' gradient added in the same pass. Returns grad_logits f32 [T, E]."""
    num_experts, topk, shared_slots = params[0], params[1], params[-1]
    T, _ = check_route_backward(logits, ids, grad_weights, num_experts, topk, shared_slots)
    N = check_aux(logits, aux_stats, seq_offsets, T)
    chk.contiguous("grad_losses", chk.tensor("grad_losses", grad_losses, (_F32,), 1, logits.device, "logits", (3,)))
    chk.contiguous("counts", chk.tensor("counts", counts, (_I32,), 2, logits.device, "logits", (N, num_experts)))
    spec_c = route_backward_spec_for(logits, ids, params)
    spec_c = type(spec_c).from_buffer_copy(spec_c)
    spec_c.route = _aux_spec(spec_c.route, aux_stats, seq_offsets)
    out = torch.empty((T, num_experts), dtype=_F32, device=logits.device)
    if T == 0:
        return out
    aux = _aux_struct(None, counts, None, seq_offsets, N)
    args = C.RouteBackwardArgs(logits.data_ptr(), ids.data_ptr(), grad_weights.data_ptr(), out.data_ptr(), T,
                               logits.stride(0) if T > 1 else num_experts)
    args.grad_losses = grad_losses.data_ptr()
    args.aux = ctypes.pointer(aux)
    _call(C.lib.moejit_route_backward, ctx, spec_c, args, logits, stream, "route_backward")
    return out


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
    if spec.has_serving:
        raise ValueError(f"Context.route takes no serving options (the spec has {spec.serving}): use moejit.route "
                         f"with num_valid=, logical_to_physical=, expert_load=, … instead")
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
