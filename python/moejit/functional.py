"""moejit's operations on torch tensors, as Python functions over the torch ops.

Each takes a RouteSpec (or plain sizes) and tensors, checks the spec against the tensors, and
calls torch.ops.moejit.<op> (or <op>_out with ``out=``). They trace under
``torch.compile(fullgraph=True)`` (the ops are opaque, their fakes give the shapes) and capture in
CUDA graphs (launches go on the current stream; pass ``out=`` to keep buffers fixed).
"""

from typing import NamedTuple, Optional

import torch

from . import _launch as L
from . import core
from .core import RouteSpec

__all__ = ["route", "align", "route_align", "permute", "combine", "mx_scales", "mx_scales_inverse", "AlignResult",
           "RouteAlignResult"]

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


def _pair(out):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out must be a pair (ids, weights), got {type(out).__name__}")
    return out


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


def route(logits, spec, bias=None, *, out=None):
    """Gating and top-k: moejit_route (moejit.h, Operation 1).

    Args:
        logits (Tensor): [T, E] float32/bfloat16/float16 on a CUDA device (rows may be strided,
            elements contiguous); its dtype must be the spec's.
        spec (RouteSpec): the routing.
        bias (Tensor, optional): [E] float32 selection bias, required exactly when spec.has_bias.
        out (tuple, optional): preallocated (ids int32 [T, K+S], weights float32 [T, K+S]).

    Returns:
        (ids, weights): int32 and float32 [T, K+S], experts in descending order of score.
    """
    _spec(spec)
    if out is not None:
        _pair(out)
    if _eager(logits, bias):
        res = L.route_run(core.get_context(), spec._c, logits, bias, out)
        return res if out is None else out
    _spec_matches(spec, logits, bias)
    if out is None:
        return _ops.route(logits, bias, *spec.params)
    ids, weights = out
    _ops.route_out(logits, bias, ids, weights, *spec.params)
    return out


def align(topk_ids, num_experts, block_size, *, out=None, workspace=None):
    """Token→expert dispatch maps: moejit_align (Operation 2), deterministic.

    Args:
        topk_ids (Tensor): [T, K] int32, or int64 (clamped to [-1, E] and converted: an id outside
            [0, E) stays outside and is dropped, never misread). Contiguous.
        num_experts (int): E, the local experts (ids outside [0, E) are other ranks' and dropped).
        block_size (int): B, a power of two in [1, 1024].
        out (AlignResult, optional): preallocated outputs; any field may be None (not wanted).
            sorted_ids needs at least N + min(E, N)·(B−1) entries, block_expert numel(sorted_ids)/B.
        workspace (Tensor, optional): uint8 scratch for large batches
            (moejit.align_workspace_bytes()); allocated per call when needed and not given.

    Returns:
        AlignResult.
    """
    if out is not None:
        out = AlignResult(*out)
    if _eager(topk_ids, workspace) and (out is None or _eager(*out)):
        res = L.align_run(core.get_context(), core.align_spec_c(num_experts, block_size), topk_ids, out, workspace)
        return AlignResult(*res) if out is None else out
    if out is None:
        return AlignResult(*_ops.align(topk_ids, num_experts, block_size))
    _ops.align_out(topk_ids, num_experts, block_size, *out, workspace)
    return out


def route_align(logits, spec, block_size, bias=None, *, out=None, workspace=None):
    """route, then align over its ids, in one launch for decode batches (Operation 3).

    Args as :func:`route` and :func:`align` (align runs over E+S experts and K+S ids a token).

    Returns:
        RouteAlignResult.
    """
    _spec(spec)
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


def permute(x, sorted_ids, topk, ids=None, scale=None, *, out=None):
    """Gather token rows into expert order: out[r] = x[sorted_ids[r] // K] (padding rows zero),
    times scale[ids[...]] when a per-expert scale is given (moejit_permute).

    Args:
        x (Tensor): [T, H] float32/bfloat16/float16, contiguous.
        sorted_ids (Tensor): [R] int32 (align's sorted_ids; values outside [0, T·K) are padding).
        topk (int): K, slots per token in sorted_ids' flat indices.
        ids, scale (Tensor, optional): routing ids [T, K] (int32, or int64 converted after a range
            clamp as in :func:`align`) and a per-expert float32 scale [E].
        out (Tensor, optional): [R, H] of x's dtype.

    Returns:
        Tensor [R, H].
    """
    if _eager(x, sorted_ids, ids, scale, out):
        return L.permute_run(core.get_context(), x, sorted_ids, topk, ids, scale, out)
    if out is None:
        return _ops.permute(x, sorted_ids, topk, ids, scale)
    _ops.permute_out(x, sorted_ids, topk, ids, scale, out)
    return out


def combine(y, slot_of, weights, *, out=None):
    """Weighted sum of each token's expert rows: out[t] = Σ_k weights[t,k]·y[slot_of[t,k]] in
    slot order, f32 accumulation, one rounding (moejit_combine). A slot outside [0, R) adds nothing.

    Args:
        y (Tensor): [R, H] float32/bfloat16/float16, rows in expert order.
        slot_of (Tensor): [T, K] int32 (align's slot_of).
        weights (Tensor): [T, K] float32.
        out (Tensor, optional): [T, H] of y's dtype.

    Returns:
        Tensor [T, H].
    """
    if _eager(y, slot_of, weights, out):
        return L.combine_run(core.get_context(), y, slot_of, weights, out)
    if out is None:
        return _ops.combine(y, slot_of, weights)
    _ops.combine_out(y, slot_of, weights, out)
    return out


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
