"""moejit's operations on torch tensors, as Python functions over the torch ops.

Each takes a RouteSpec (or plain sizes) and tensors, checks the spec against the tensors, and
calls torch.ops.moejit.<op> (or <op>_out with ``out=``). They trace under
``torch.compile(fullgraph=True)`` (the ops are opaque, their fakes give the shapes) and capture in
CUDA graphs (launches go on the current stream; pass ``out=`` to keep buffers fixed). permute,
combine, route (without serving options) and route_align are differentiable (ops.py, "autograd");
permute_backward, combine_backward and route_backward are the gradients as functions.
"""

from typing import NamedTuple, Optional

import torch

from . import _capi as C
from . import _launch as L
from . import core
from .core import RouteSpec

__all__ = ["route", "align", "route_align", "dispatch_layout", "permute", "combine", "mx_scales", "mx_scales_inverse",
           "permute_backward", "combine_backward", "route_backward", "AlignResult", "RouteAlignResult",
           "DispatchLayout"]

Tensor = torch.Tensor
_ops = torch.ops.moejit
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)
_dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", None)
_grad_enabled = torch.is_grad_enabled


def _eager(*tensors):
    """True when a call may go straight to the implementation rather than through the dispatcher:
    not traced (torch.compile, export), no dispatch mode, plain tensors, no gradient wanted. It is
    the same implementation (every check, one launch) without the dispatcher's and custom_op's
    host cost; anything else takes torch.ops.moejit.* (and e.g. fails cleanly in backward)."""
    if _is_compiling() or (_dispatch_modes is not None and _dispatch_modes()):
        return False
    grad = _grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not Tensor or (grad and t.requires_grad)):
            return False
    return True


class AlignResult(NamedTuple):
    """align's outputs (int32): counts [E], offsets [E+1], sorted_ids [capacity], block_expert
    [capacity/B] (−1 past the padded total), total_padded [1], slot_of [T, K] (−1: dropped)."""
    counts: Optional[Tensor]
    offsets: Optional[Tensor]
    sorted_ids: Optional[Tensor]
    block_expert: Optional[Tensor]
    total_padded: Optional[Tensor]
    slot_of: Optional[Tensor]


class RouteAlignResult(NamedTuple):
    """route_align's outputs: route's ids and weights [T, K+S], then align's maps over E+S experts."""
    ids: Tensor
    weights: Tensor
    counts: Tensor
    offsets: Tensor
    sorted_ids: Tensor
    block_expert: Tensor
    total_padded: Tensor
    slot_of: Tensor


class DispatchLayout(NamedTuple):
    """dispatch_layout's outputs (DeepEP's get_dispatch_layout): tokens_per_rank int32 [R],
    tokens_per_node int32 [R / ranks_per_node] or None (one node: DeepEP's None
    num_tokens_per_rdma_rank), tokens_per_expert int32 [E], is_token_in_rank bool [T, R]."""
    tokens_per_rank: Optional[Tensor]
    tokens_per_node: Optional[Tensor]
    tokens_per_expert: Optional[Tensor]
    is_token_in_rank: Optional[Tensor]


def _spec(spec):
    if type(spec) is not RouteSpec and not isinstance(spec, RouteSpec):
        raise TypeError(f"spec must be a moejit.RouteSpec, got {type(spec).__name__}")
    return spec


def _spec_matches(spec, logits, bias):
    """The tensors match the spec (pure Python on the spec's attributes: traced by torch.compile)."""
    if isinstance(logits, Tensor) and logits.dtype != L._TORCH_DTYPE[spec.dtype]:
        raise TypeError(f"logits has dtype {logits.dtype}, the spec's dtype is {L._TORCH_DTYPE[spec.dtype]}")
    if bool(spec.has_bias) != (bias is not None):
        raise ValueError("bias is required: the spec has has_bias=True" if spec.has_bias else
                         "bias was given but the spec has has_bias=False: it would be ignored")


def route_params(logits, bias, params, out=None):
    """route with plain parameters (ROUTE_PARAMS order: what the adapters have), eager fast path
    or torch op. Returns (ids, weights), or out."""
    if _eager(logits, bias):
        res = L.route_run(core.get_context(), L.route_spec_for(logits, bias, params), logits, bias, out)
        return res if out is None else out
    if out is None:
        return _ops.route(logits, bias, *params)
    _ops.route_out(logits, bias, out[0], out[1], *params)
    return out


_INDEX_BY_C = {v: k for k, v in C.INDEX_DTYPES.items()}


def _index_name(dtype, name):
    """'int32' / 'int64' / 'int16' of a torch dtype (or that name); plain comparisons, traced by
    torch.compile."""
    if dtype == torch.int32 or dtype == "int32":
        return "int32"
    if dtype == torch.int64 or dtype == "int64":
        return "int64"
    if dtype == torch.int16 or dtype == "int16":
        return "int16"
    raise TypeError(f"{name} = {dtype} must be torch.int32, torch.int64 or torch.int16")


def route_serving_params(logits, bias, params, *, num_valid=None, logical_to_physical=None, replica_count=None,
                         num_physical_experts=0, expert_load=None, logical_ids=None, ids_dtype="int32", record_dtype="",
                         out=None):
    """route with plain parameters (ROUTE_PARAMS order) and serving options (what the adapters
    have), eager fast path or torch op. ids_dtype / record_dtype are names ("" records nothing);
    out = (ids, weights, recorded logical ids or None). Returns (ids, weights, recorded logical ids
    or None), or out."""
    P = num_physical_experts or 0
    if _eager(logits, bias, num_valid, logical_to_physical, replica_count, expert_load, logical_ids) and (
            out is None or _eager(*out)):
        spec_c, _, _ = L.route_serving_spec_for(logits, bias, params, num_valid, logical_to_physical, replica_count, P,
                                                expert_load, logical_ids, ids_dtype, record_dtype)
        res = L.route_serving_run(core.get_context(), spec_c, logits, bias, num_valid, logical_to_physical,
                                  replica_count, expert_load, logical_ids, out)
        return res if out is None else out
    if out is None:
        ids, weights, recorded = _ops.route_serving(logits, bias, num_valid, logical_to_physical, replica_count,
                                                    expert_load, logical_ids, *params, P, ids_dtype, record_dtype)
        return ids, weights, (recorded if record_dtype else None)
    _ops.route_serving_out(logits, bias, out[0], out[1], num_valid, logical_to_physical, replica_count, expert_load,
                           logical_ids, out[2], *params, P)
    return out


def _check_spec_serving(spec, call):
    """A spec's serving options, where set, must be the call's (pure Python: traced by torch.compile)."""
    wanted = spec._serving
    for i, name in enumerate(core.SERVING_PARAMS):
        if wanted[i] != 0 and wanted[i] != call[i]:
            have, got = core.serving_names(wanted)[name], core.serving_names(call)[name]
            raise ValueError(f"the spec has {name} = {have!r} but this call's arguments make it {got!r}: "
                             f"{_SERVING_HINTS[name]}")


_SERVING_HINTS = {
    "padded": "pass num_valid (an int32 [1] device count of the rows to route)",
    "id_dtype": "pass ids_dtype= (or out= ids) of the spec's id_dtype",
    "max_replicas": "pass logical_to_physical [E, max_replicas] and replica_count [E]",
    "num_physical_experts": "pass num_physical_experts= with logical_to_physical",
    "load_counter": "pass expert_load of the spec's load_counter dtype",
    "replay": "pass record=True to record the logical ids, logical_ids= to route given ones",
    "logical_id_dtype": "pass logical ids (given, or out= for the recorded ones) of the spec's logical_id_dtype",
}


def route(logits, spec, bias=None, *, out=None, num_valid=None, logical_to_physical=None, replica_count=None,
          num_physical_experts=None, expert_load=None, record=False, logical_ids=None, ids_dtype=None):
    """Gating and top-k: moejit_route (moejit.h, Operation 1), with the serving options.

    Args:
        logits (Tensor): [T, E] float32/bfloat16/float16 on a CUDA device (rows may be strided,
            elements contiguous); its dtype must be the spec's.
        spec (RouteSpec): the routing.
        bias (Tensor, optional): [E] float32 selection bias, required exactly when spec.has_bias.
        out (tuple, optional): preallocated (ids [T, K+S], weights float32 [T, K+S]), and with
            ``record=True`` a third tensor for the logical ids (its dtype is theirs).

    Serving options (keyword only; each off unless given; moejit.h Operation 1 steps 8-12):
        num_valid (Tensor): int32 [1] on the device: only rows t < clamp(n, 0, T) are routed; the
            others get id -1 and weight 0 (and count nothing). The kernel reads n itself, so a CUDA
            graph captured once serves every n (update it with ``num_valid.fill_(n)`` or
            ``copy_``).
        logical_to_physical (Tensor), replica_count (Tensor), num_physical_experts (int): expert
            placement (EPLB, redundant experts): logical expert e has c = replica_count[e]
            replicas (int32 [E], read clamped to [1, R]) whose physical ids are
            logical_to_physical[e, :c] (int32 [E, R]); routed slot k of token t goes to replica
            (t·K + k) mod c (vLLM's rule). ids are then physical, in [0, P) for
            P = num_physical_experts (a map entry outside gives -1); shared slot j gets P + j.
        expert_load (Tensor): int32 or int64 [P] (P = E without placement), *added to* in place:
            +1 per routed slot of a routed row whose id is in [0, P) (exact, order-free). Zero it
            yourself between the windows you measure.
        record (bool): also return the logical ids [T, K+S] (what the selection chose, shared slots
            E+j, -1 for padded rows), of the ids' dtype, or out[2]'s.
        logical_ids (Tensor): [T, K+S] int32/int64/int16: route these logical ids (their first K
            columns) instead of choosing: weights, renormalisation, scaling and shared slots follow
            as if route had chosen them — bit-identical to the recording run's weights. An id
            outside [0, E) gets id -1 and weight 0 and adds nothing to the sums.
        ids_dtype (torch.dtype): of the ids: torch.int32 (default: the spec's, int32 unless set),
            torch.int64 (torch.topk's, DeepEP's) or torch.int16.

    Returns:
        (ids, weights), ids of ids_dtype and weights float32 [T, K+S], experts in descending order
        of score; (ids, weights, logical_ids) with record=True; out when given.
    """
    _spec(spec)
    if out is not None:
        if not isinstance(out, (tuple, list)) or len(out) != (3 if record else 2):
            raise TypeError(f"out must be (ids, weights{', logical_ids' if record else ''}), got "
                            f"{type(out).__name__} of {len(out) if isinstance(out, (tuple, list)) else '?'}")
    plain = (num_valid is None and logical_to_physical is None and replica_count is None and not num_physical_experts
             and expert_load is None and not record and logical_ids is None and not spec.has_serving
             and (ids_dtype is None or ids_dtype == torch.int32 or ids_dtype == "int32")
             and (out is None or getattr(out[0], "dtype", torch.int32) == torch.int32))
    if plain:
        if _eager(logits, bias):
            res = L.route_run(core.get_context(), spec._c, logits, bias, out)
            return res if out is None else out
        _spec_matches(spec, logits, bias)
        if out is None:
            return _ops.route(logits, bias, *spec.params)
        ids, weights = out
        _ops.route_out(logits, bias, ids, weights, *spec.params)
        return out
    # ---- serving options: the spec's (where set) must be what the tensors say
    _spec_matches(spec, logits, bias)
    if out is not None and isinstance(out[0], Tensor):
        ids_name = _index_name(out[0].dtype, "out[0] (ids)")
        if ids_dtype is not None and _index_name(ids_dtype, "ids_dtype") != ids_name:
            raise ValueError(f"ids_dtype = {ids_dtype} but out's ids have dtype {out[0].dtype}")
    elif ids_dtype is not None:
        ids_name = _index_name(ids_dtype, "ids_dtype")
    else:
        ids_name = _INDEX_BY_C[spec.id_dtype]
    if record and logical_ids is not None:
        raise ValueError("record=True records the logical ids route chooses, logical_ids= routes given ones: "
                         "pass one of them")
    if record and out is not None and out[2] is None:
        raise ValueError("out[2] is None: with record=True, out holds (ids, weights, logical_ids)")
    record_name = ""
    if record:
        if out is not None and isinstance(out[2], Tensor):
            record_name = _index_name(out[2].dtype, "out[2] (logical ids)")
        elif spec.replay == C.REPLAYS["record"]:
            record_name = _INDEX_BY_C[spec.logical_id_dtype]
        else:
            record_name = ids_name
    if logical_to_physical is not None and num_physical_experts is None:
        num_physical_experts = spec.num_physical_experts
    R = logical_to_physical.shape[1] if isinstance(logical_to_physical, Tensor) and logical_to_physical.dim() == 2 else 0
    load = _index_name(expert_load.dtype, "expert_load") if isinstance(expert_load, Tensor) else "none"
    given = _index_name(logical_ids.dtype, "logical_ids") if isinstance(logical_ids, Tensor) else ""
    call = (int(num_valid is not None), C.INDEX_DTYPES[ids_name], R, num_physical_experts or 0,
            C.LOAD_COUNTERS.get(load, 0), C.REPLAYS["given" if given else ("record" if record else "off")],
            C.INDEX_DTYPES[given or record_name or "int32"])
    _check_spec_serving(spec, call)
    res = route_serving_params(logits, bias, spec.params, num_valid=num_valid, logical_to_physical=logical_to_physical,
                               replica_count=replica_count, num_physical_experts=num_physical_experts or 0,
                               expert_load=expert_load, logical_ids=logical_ids, ids_dtype=ids_name,
                               record_dtype=record_name, out=None if out is None else (out[0], out[1],
                                                                                      out[2] if record else None))
    if out is not None:
        return out
    return res if record else res[:2]


def align(topk_ids, num_experts, block_size, *, out=None, workspace=None, expert_map=None, first_expert=0):
    """Token→expert dispatch maps: moejit_align (Operation 2), deterministic.

    Args:
        topk_ids (Tensor): [T, K] int32, int64 or int16 (read in their own type: an int64 id is
            never truncated), contiguous. -1 (padding) is always dropped.
        num_experts (int): E, the local experts: an id becomes local expert ``id - first_expert``
            (or ``expert_map[id]``) and is dropped (another rank's) unless that is in [0, E).
        block_size (int): B, a power of two in [1, 1024].
        out (AlignResult, optional): preallocated outputs; any field may be None (not wanted).
            sorted_ids needs at least N + min(E, N)·(B−1) entries, block_expert numel(sorted_ids)/B.
        workspace (Tensor, optional): uint8 scratch for large batches
            (moejit.align_workspace_bytes()); allocated per call when needed and not given.
        expert_map (Tensor, optional): vLLM's expert_map, int32 (or int64, clamped and converted)
            [Eg]: global id → local expert, -1 when not on this rank. Ids outside [0, Eg) are
            dropped.
        first_expert (int): without expert_map, the global id of local expert 0 (this rank holds
            experts first_expert .. first_expert + E - 1; TensorRT-LLM's local_expert_offset).

    Returns:
        AlignResult, over the E local experts.
    """
    if out is not None:
        out = AlignResult(*out)
    if _eager(topk_ids, workspace, expert_map) and (out is None or _eager(*out)):
        res = L.align_run(core.get_context(), core.align_spec_c(num_experts, block_size), topk_ids, out, workspace,
                          None, expert_map, first_expert)
        return AlignResult(*res) if out is None else out
    if out is None:
        return AlignResult(*_ops.align(topk_ids, num_experts, block_size, expert_map, first_expert))
    _ops.align_out(topk_ids, num_experts, block_size, *out, workspace, expert_map, first_expert)
    return out


def route_align(logits, spec, block_size, bias=None, *, out=None, workspace=None):
    """route, then align over its ids, in one launch for decode batches (Operation 3).

    Args as :func:`route` and :func:`align` (align runs over E+S experts and K+S ids a token).

    Returns:
        RouteAlignResult.
    """
    _spec(spec)
    if spec.has_serving:
        raise ValueError("route_align's Python form takes no serving options (the spec has "
                         f"{ {k: v for k, v in spec.serving.items() if v not in (False, 0, 'int32', 'none', 'off')} }): "
                         "call moejit.route with them, then moejit.align")
    if out is not None:
        out = RouteAlignResult(*out)
    if _eager(logits, bias, workspace) and (out is None or _eager(*out)):
        spec_c = core.route_align_spec_c(core.spec_key(spec._c), block_size)
        res = L.route_align_run(core.get_context(), spec_c, logits, bias, out, workspace)
        return RouteAlignResult(*res) if out is None else out
    _spec_matches(spec, logits, bias)
    if out is None:
        return RouteAlignResult(*_ops.route_align(logits, bias, block_size, *spec.params))
    _ops.route_align_out(logits, bias, block_size, *out, workspace, *spec.params)
    return out


def dispatch_layout(ids, num_experts, num_ranks, ranks_per_node=core.DEFAULT_RANKS_PER_NODE, *, out=None):
    """What an all-to-all needs to know, from routing ids: moejit_dispatch_layout (Operation 5),
    DeepEP's get_dispatch_layout. num_ranks ranks hold num_experts / num_ranks consecutive experts
    each (expert e lives on rank e // (E / R)); ids outside [0, E) (-1: padding) are skipped.

    Args:
        ids (Tensor): [T, K] int32, int64 or int16, contiguous (route's ids: physical ones with
            placement, so E is then the physical count P, plus S with shared slots).
        num_experts (int): E, divisible by num_ranks.
        num_ranks (int): R.
        ranks_per_node (int): ranks of a node for tokens_per_node (DeepEP's NUM_MAX_NVL_PEERS, 8);
            with R <= ranks_per_node there is one node and tokens_per_node is None.
        out (DispatchLayout, optional): preallocated outputs, any of them None (not wanted):
            int32 [R], int32 [R / ranks_per_node] (None for one node), int32 [E], bool [T, R].

    Returns:
        DispatchLayout(tokens_per_rank, tokens_per_node, tokens_per_expert, is_token_in_rank):
        tokens with at least one id on rank r (the all-to-all's send counts), the same per node,
        (t, k) per expert, and whether token t goes to rank r. Deterministic integer counts.
    """
    if out is not None and not isinstance(out, DispatchLayout):
        out = DispatchLayout(*out)  # a plain tuple: named, and returned as such
    if _eager(ids) and (out is None or _eager(*out)):
        res = L.dispatch_layout_run(core.get_context(), ids, num_experts, num_ranks, ranks_per_node, out)
        return DispatchLayout(*res) if out is None else out
    if out is None:
        tpr, tpn, tpe, itr = _ops.dispatch_layout(ids, num_experts, num_ranks, ranks_per_node)
        return DispatchLayout(tpr, tpn if num_ranks > ranks_per_node else None, tpe, itr)
    _ops.dispatch_layout_out(ids, num_experts, num_ranks, ranks_per_node, *out)
    return out


def permute(x, sorted_ids, topk, ids=None, scale=None, *, out=None, slot_of=None):
    """Gather token rows into expert order: out[r] = x[sorted_ids[r] // K] (padding rows zero),
    times scale[ids[...]] when a per-expert scale is given (moejit_permute).

    Differentiable w.r.t. x (the backward is moejit_permute_backward; the scale is a constant and
    gets no gradient), except with out=.

    Args:
        x (Tensor): [T, H] float32/bfloat16/float16, contiguous.
        sorted_ids (Tensor): [R] int32 (align's sorted_ids; values outside [0, T·K) are padding).
        topk (int): K, slots per token in sorted_ids' flat indices.
        ids, scale (Tensor, optional): routing ids [T, K] (int32, or int64 converted after a range
            clamp as in :func:`align`) and a per-expert float32 scale [E].
        out (Tensor, optional): [R, H] of x's dtype.
        slot_of (Tensor, optional): align's slot_of [T, K] int32 (the inverse of sorted_ids), read
            only by the backward; without it the backward inverts sorted_ids (exact for align's
            maps, whose flat indices appear once each).

    Returns:
        Tensor [R, H].
    """
    if _eager(x, sorted_ids, ids, scale, out, slot_of):
        return L.permute_run(core.get_context(), x, sorted_ids, topk, ids, scale, out, slot_of=slot_of)
    if out is None:
        return _ops.permute(x, sorted_ids, topk, ids, scale, slot_of)
    _ops.permute_out(x, sorted_ids, topk, ids, scale, out)
    return out


def combine(y, slot_of, weights, *, out=None, sorted_ids=None):
    """Weighted sum of each token's expert rows: out[t] = Σ_k weights[t,k]·y[slot_of[t,k]] in
    slot order, f32 accumulation, one rounding (moejit_combine). A slot outside [0, R) adds nothing.

    Differentiable w.r.t. y and weights (the backward is moejit_combine_backward), except with out=.

    Args:
        y (Tensor): [R, H] float32/bfloat16/float16, rows in expert order.
        slot_of (Tensor): [T, K] int32 (align's slot_of).
        weights (Tensor): [T, K] float32.
        out (Tensor, optional): [T, H] of y's dtype.
        sorted_ids (Tensor, optional): align's sorted_ids (int32, at least R entries: the first R
            are read), read only by the backward; without it the backward inverts slot_of.

    Returns:
        Tensor [T, H].
    """
    if _eager(y, slot_of, weights, out, sorted_ids):
        return L.combine_run(core.get_context(), y, slot_of, weights, out, sorted_ids=sorted_ids)
    if out is None:
        return _ops.combine(y, slot_of, weights, sorted_ids)
    _ops.combine_out(y, slot_of, weights, out)
    return out


def permute_backward(grad_out, slot_of, ids=None, scale=None, *, out=None):
    """The gradient of :func:`permute` w.r.t. x (moejit_permute_backward): grad_x[t] = Σ_k
    grad_out[slot_of[t,k]] (times scale[ids[t,k]] when the forward was scaled), in slot order, f32
    accumulation, one rounding; a dropped slot adds nothing. Deterministic (no atomics).

    Args:
        grad_out (Tensor): [R, H] of the forward's dtype, contiguous.
        slot_of (Tensor): align's slot_of [T, K] int32.
        ids, scale (Tensor, optional): the forward's routing ids [T, K] and float32 scale [E].
        out (Tensor, optional): grad_x [T, H] of grad_out's dtype.

    Returns:
        grad_x [T, H].
    """
    if _eager(grad_out, slot_of, ids, scale, out):
        return L.permute_backward_run(core.get_context(), grad_out, slot_of, ids, scale, out)
    if out is None:
        return _ops.permute_backward(grad_out, slot_of, ids, scale)
    _ops.permute_backward_out(grad_out, slot_of, ids, scale, out)
    return out


def combine_backward(grad_out, slot_of, y=None, weights=None, sorted_ids=None, *, num_rows=None, out=None):
    """The gradients of :func:`combine` (moejit_combine_backward), deterministic (no atomics):
    grad_y[r] = weights[i]·grad_out[i // K] for the flat index i = sorted_ids[r] whose slot_of is r
    (else 0: padding, dropped slots), and grad_weights[t,k] = Σ_h grad_out[t,h]·y[slot_of[t,k],h]
    in f32 (0 for a dropped slot).

    Args:
        grad_out (Tensor): [T, H] of the forward's dtype, contiguous.
        slot_of (Tensor): align's slot_of [T, K] int32.
        y (Tensor, optional): the forward's rows [R, H]: needed for grad_weights.
        weights (Tensor, optional): the forward's weights [T, K] float32: needed for grad_y.
        sorted_ids (Tensor, optional): align's sorted_ids (at least R entries): needed for grad_y.
        num_rows (int, optional): R (default: y's rows, else sorted_ids' entries).
        out (tuple, optional): (grad_y [R, H] or None, grad_weights float32 [T, K] or None):
            writes those, None = not wanted.

    Returns:
        (grad_y, grad_weights): grad_y when weights (and sorted_ids) are given, grad_weights when y
        is, else None in its place; out when given.
    """
    if out is not None:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("out must be a pair (grad_y or None, grad_weights or None)")
        if _eager(grad_out, slot_of, y, weights, sorted_ids, *out):
            R = out[0].shape[0] if out[0] is not None else (y.shape[0] if y is not None else 0)
            L.combine_backward_run(core.get_context(), grad_out, slot_of, y, weights, sorted_ids, R, out=tuple(out))
        else:
            _ops.combine_backward_out(grad_out, slot_of, y, weights, sorted_ids, out[0], out[1])
        return out
    want_y, want_w = weights is not None or sorted_ids is not None, y is not None
    if num_rows is None:
        if y is not None:
            num_rows = y.shape[0]
        elif sorted_ids is not None:
            num_rows = sorted_ids.shape[0]
        else:
            raise ValueError("combine_backward needs y (for grad_weights) or weights and sorted_ids (for grad_y)")
    if _eager(grad_out, slot_of, y, weights, sorted_ids):
        gy, gw = L.combine_backward_run(core.get_context(), grad_out, slot_of, y, weights, sorted_ids, num_rows,
                                        want_y, want_w)
    else:
        gy, gw = _ops.combine_backward(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_y, want_w)
    return gy if want_y else None, gw if want_w else None


def route_backward(logits, spec, ids, grad_weights, *, out=None):
    """The gradient of :func:`route`'s weights w.r.t. the logits (moejit_route_backward, moejit.h
    Operation 1b), the selection (ids) held constant; deterministic. Needs a library with
    route_backward (moejit.has_route_backward()); NotImplementedError otherwise.

    Args:
        logits (Tensor): the forward's logits [T, E] (of the spec's dtype).
        spec (RouteSpec): the forward's spec (its bias and groups change nothing here; with expert
            placement pass the logical ids route recorded).
        ids (Tensor): the forward's ids [T, K+S] (int32, int64 or int16).
        grad_weights (Tensor): float32 [T, K+S], the loss's gradient w.r.t. the weights.
        out (Tensor, optional): grad_logits float32 [T, E].

    Returns:
        grad_logits float32 [T, E].
    """
    _spec(spec)
    if isinstance(logits, Tensor) and logits.dtype != L._TORCH_DTYPE[spec.dtype]:
        raise TypeError(f"logits has dtype {logits.dtype}, the spec's dtype is {L._TORCH_DTYPE[spec.dtype]}")
    if _eager(logits, ids, grad_weights, out):
        return L.route_backward_run(core.get_context(), logits, ids, grad_weights, spec.params, out)
    if out is None:
        return _ops.route_backward(logits, ids, grad_weights, *spec.params)
    _ops.route_backward_out(logits, ids, grad_weights, out, *spec.params)
    return out


def capacity(ids, weights, num_experts, topk=None, *, capacity_factor=None, capacity=None, min_capacity=0,
             policy="probs"):
    """Megatron-Core's expert capacity and token dropping, in place on route's outputs
    (moejit_capacity): each expert keeps at most C of its routed (t, k) — the largest weights
    (policy="probs", ties to the lower flat index) or the first by position ("position") — and a
    dropped (t, k) gets id -1 and weight 0, which align, permute and combine skip. Shared slots
    (columns past topk) are never dropped. Deterministic. Not differentiable (it mutates its
    inputs): in training, run it on copies (``ids.clone()``, ``weights.detach().clone()``) and
    mask the differentiable weights with ``ids >= 0``.

    Args:
        ids (Tensor): route's ids [T, K+S] (int32/int64/int16), changed in place.
        weights (Tensor): route's weights float32 [T, K+S], changed in place.
        num_experts (int): E.
        topk (int, optional): K, the routed columns (default: all columns).
        capacity_factor (float): C = ceil((T·K / E) · capacity_factor) (Megatron's get_capacity),
            at least min_capacity; or
        capacity (int): C itself.
        policy (str): "probs" (Megatron's default) or "position".

    Returns:
        (tokens_per_expert, kept): int32 [E], routed slots per expert before and after dropping.
    """
    if (capacity_factor is None) == (capacity is None):
        raise ValueError("capacity: give exactly one of capacity_factor and capacity")
    topk = ids.shape[1] if topk is None else topk
    return _ops.capacity(ids, weights, num_experts, topk, policy, float(capacity_factor or 0.0), int(capacity or 0),
                         int(min_capacity))


class RouteWithLosses(NamedTuple):
    """route_with_losses' outputs. The losses are Megatron-Core's without their coefficients
    (multiply by aux_loss_coeff / z_loss_coeff); each is a 0-dim float32 tensor with a gradient
    w.r.t. the logits, or None when not asked for."""
    ids: Tensor
    weights: Tensor
    load_balance: Optional[Tensor]
    seq_load_balance: Optional[Tensor]
    z: Optional[Tensor]
    tokens_per_expert: Tensor  # int32 [E]: routed (t, k) per expert over the batch (no gradient)


def route_with_losses(logits, spec, bias=None, *, load_balance=True, seq_offsets=None, z_loss=False):
    """route and Megatron-Core's auxiliary losses in one pass over the logits (moejit.h route step
    13, route_losses), differentiable w.r.t. the logits through the weights and the losses (one
    backward launch: route_backward with the losses' gradient). Deterministic.

    The aux scores p are softmax over the row (softmax routing) or the score over its row sum
    (sigmoid, sqrt-softplus), from the logits as route reads them; c_e counts route's own K picks.
      load_balance      E/(K·T²) · Σ_e (Σ_t p[t,e])·c_e   (switch_load_balancing_loss_func)
      seq_load_balance  1/S · Σ_s Σ_e c_{s,e}·E/(K·L_s) · Σ_{t∈s} p[t,e]/L_s   (per sequence of a
                        packed batch: sequence_load_balancing_loss_func; asked for by seq_offsets)
      z                 1/T · Σ_t logsumexp(x_t)²   (z_loss_func)

    Args:
        logits (Tensor): [T, E] of the spec's dtype (no serving option in the spec).
        spec (RouteSpec): the routing; bias as for :func:`route`.
        load_balance (bool): the batch's switch load-balancing loss.
        seq_offsets (Tensor, optional): int32/int64 [S+1] on the device (cu_seqlens: sequence s
            holds tokens seq_offsets[s] .. seq_offsets[s+1]-1): the per-sequence loss.
        z_loss (bool): the router z-loss.

    Returns:
        RouteWithLosses(ids, weights, load_balance, seq_load_balance, z, tokens_per_expert).
    """
    _spec(spec)
    if spec.has_serving:
        raise ValueError("route_with_losses takes a spec without serving options (padded batches, placement, "
                         "load counters, replay, int64/int16 ids)")
    _spec_matches(spec, logits, bias)
    flags = ((C.AUX_STATS["load_balance"] if load_balance else 0)
             | (C.AUX_STATS["seq_load_balance"] if seq_offsets is not None else 0)
             | (C.AUX_STATS["z_loss"] if z_loss else 0))
    if not flags:
        raise ValueError("route_with_losses: no loss asked for (load_balance=False, no seq_offsets, z_loss=False); "
                         "use moejit.route")
    ids, weights, losses, counts, _ = _ops.route_with_losses(logits, bias, seq_offsets, flags, *spec.params)
    return RouteWithLosses(ids, weights, losses[0] if load_balance else None,
                           losses[1] if seq_offsets is not None else None, losses[2] if z_loss else None,
                           counts.sum(0, dtype=torch.int32) if counts.shape[0] > 1 else counts[0])


def mx_scales(scales, group_ends=None, *, out=None):
    """mxfp8 e8m0 scales to the blocked 128×4 layout (torchao's to_blocked; moejit_mx_scales).

    Args:
        scales (Tensor): uint8 [G, R, C] (3D: one matrix per expert) or [M, C] with group_ends.
        group_ends (Tensor, optional): int32 [G] row ends of the groups of a 2D tensor.
        out (Tensor, optional): contiguous uint8 of the blocked size, 16-byte aligned.

    Returns:
        uint8 [G, Rp·Cp] (3D) or [Mp, Cp] (2D, Mp = round_down(M + 127·G, 128)), or out.
    """
    if out is None:
        return _ops.mx_scales(scales, group_ends)
    _ops.mx_scales_out(scales, group_ends, out)
    return out


def mx_scales_inverse(blocked, rows, cols, group_ends=None, *, groups=None, out=None):
    """The blocked layout back to plain scales (moejit_mx_scales_inverse).

    Args:
        blocked (Tensor): contiguous uint8 blocked scales.
        rows (int): R rows per group (3D) or M rows in all (2D).
        cols (int): C scales per row.
        group_ends (Tensor, optional): int32 [G] for the 2D layout.
        groups (int, optional): G of the 3D layout (default: blocked.shape[0] of a 2-D blocked tensor).
        out (Tensor, optional): preallocated plain tensor ([G, R, C] or [M, C]).

    Returns:
        uint8 [G, R, C] or [M, C] (2D: rows outside every group are zero), or out.
    """
    if out is not None:
        _ops.mx_scales_inverse_out(blocked, group_ends, out)
        return out
    if group_ends is not None:
        groups = group_ends.shape[0]
    elif groups is None:
        if blocked.dim() != 2:
            raise ValueError("groups is required for a 3D layout unless blocked is 2-D [G, Rp·Cp]")
        groups = blocked.shape[0]
    return _ops.mx_scales_inverse(blocked, groups, rows, cols, group_ends)
