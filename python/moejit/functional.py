"""moejit's operations on torch tensors, as Python functions over the torch ops.

Each takes a RouteSpec (or plain sizes) and tensors, checks the spec against the tensors, and
calls torch.ops.moejit.<op> (or <op>_out with ``out=``). They trace under
``torch.compile(fullgraph=True)`` (the ops are opaque, their fakes give the shapes) and capture in
CUDA graphs (launches go on the current stream; pass ``out=`` to keep buffers fixed).
"""

from typing import NamedTuple, Optional

import torch

from . import _launch as L
from .core import RouteSpec

__all__ = ["route", "align", "route_align", "permute", "combine", "mx_scales", "mx_scales_inverse", "AlignResult",
           "RouteAlignResult"]

Tensor = torch.Tensor
_ops = torch.ops.moejit


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


def _spec_matches(spec, logits, bias):
    if not isinstance(spec, RouteSpec):
        raise TypeError(f"spec must be a moejit.RouteSpec, got {type(spec).__name__}")
    if isinstance(logits, Tensor) and L.dtype_of("logits", logits) != spec.dtype_name:
        raise TypeError(f"logits has dtype {logits.dtype}, the spec's dtype is {spec.dtype_name} "
                        f"(make the spec with dtype={logits.dtype})")
    if bool(spec.has_bias) != (bias is not None):
        raise ValueError("bias is required: the spec has has_bias=True" if spec.has_bias else
                         "bias was given but the spec has has_bias=False: it would be ignored")


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
    if out is None:
        return AlignResult(*_ops.align(topk_ids, num_experts, block_size))
    out = AlignResult(*out)
    _ops.align_out(topk_ids, num_experts, block_size, *out, workspace)
    return out


def route_align(logits, spec, block_size, bias=None, *, out=None, workspace=None):
    """route, then align over its ids, in one launch for decode batches (Operation 3).

    Args as :func:`route` and :func:`align` (align runs over E+S experts and K+S ids a token).

    Returns:
        RouteAlignResult.
    """
    _spec_matches(spec, logits, bias)
    if out is None:
        return RouteAlignResult(*_ops.route_align(logits, bias, block_size, *spec.params))
    out = RouteAlignResult(*out)
    _ops.route_align_out(logits, bias, block_size, *out, workspace, *spec.params)
    return out


def permute(x, sorted_ids, topk, ids=None, scale=None, *, out=None):
    """Gather token rows into expert order: out[r] = x[sorted_ids[r] // K] (padding rows zero),
    times scale[ids[...]] when a per-expert scale is given (moejit_permute).

    Args:
        x (Tensor): [T, H] float32/bfloat16/float16, contiguous.
        sorted_ids (Tensor): [R] int32 (align's sorted_ids; values outside [0, T·K) are padding).
        topk (int): K, slots per token in sorted_ids' flat indices.
        ids, scale (Tensor, optional): routing ids [T, K] int32 and a per-expert float32 scale [E].
        out (Tensor, optional): [R, H] of x's dtype.

    Returns:
        Tensor [R, H].
    """
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
