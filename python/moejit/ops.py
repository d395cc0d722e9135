"""moejit's operations as PyTorch operators: ``torch.ops.moejit.*``.

Every operation has a functional form that allocates its outputs and an ``_out`` form that writes
preallocated tensors (declared as mutated: for CUDA graphs and for engines that own their buffers).
Each has a fake implementation that gives output shapes and dtypes from the input shapes and the
plain arguments alone (no data-dependent sizes), so ``torch.compile(fullgraph=True)`` traces
through them without a graph break, and the spec travels as plain ints, floats, bools and strings
that torch.compile guards on.

    torch.ops.moejit.route(logits, bias, num_experts, topk, score, num_groups, topk_groups, group_score,
                           softcap, score_after_topk, renormalize, scale_output, routed_scaling_factor,
                           shared_slots) -> (ids int32 [T, K+S], weights f32 [T, K+S])
    torch.ops.moejit.align(topk_ids, num_experts, block_size)
        -> (counts [E], offsets [E+1], sorted_ids [cap], block_expert [cap/B], total_padded [1], slot_of [T, K])
    torch.ops.moejit.route_serving(logits, bias, num_valid, logical_to_physical, replica_count, expert_load,
                                   logical_ids, <route spec>, num_physical_experts, ids_dtype, record_dtype)
        -> (ids [T, K+S] of ids_dtype, weights f32 [T, K+S], recorded logical ids [T, K+S] of record_dtype,
            or an empty int32 [0, K+S] when record_dtype is "")        (expert_load is added to in place)
    torch.ops.moejit.align(topk_ids, num_experts, block_size, expert_map=None, first_expert=0)
    torch.ops.moejit.route_align(logits, bias, block_size, <route spec>) -> route's two outputs, then align's six
    torch.ops.moejit.dispatch_layout(ids, num_experts, num_ranks, ranks_per_node)
        -> (tokens_per_rank [R], tokens_per_node [R / ranks_per_node] (empty for one node), tokens_per_expert [E],
            is_token_in_rank bool [T, R])
    torch.ops.moejit.permute(x, sorted_ids, topk, ids, scale, slot_of=None) -> out [R, H]
    torch.ops.moejit.combine(y, slot_of, weights, sorted_ids=None) -> out [T, H]
    torch.ops.moejit.mx_scales(scales, group_ends) -> blocked uint8 ([G, Rp·Cp] 3D, [Mp, Cp] 2D)
    torch.ops.moejit.mx_scales_inverse(blocked, groups, rows, cols, group_ends) -> plain uint8
  backward operations (the gradients; moejit.h "permute and combine backward", Operation 1b):
    torch.ops.moejit.permute_backward(grad_out [R, H], slot_of, ids, scale) -> grad_x [T, H]
    torch.ops.moejit.combine_backward(grad_out [T, H], slot_of, y, weights, sorted_ids, num_rows,
                                      want_grad_y=True, want_grad_weights=True)
        -> (grad_y [R, H] or empty [0, H], grad_weights f32 [T, K] or empty [0, K])
    torch.ops.moejit.route_backward(logits, ids, grad_weights, <route spec>) -> grad_logits f32 [T, E]
    torch.ops.moejit.capacity(ids!, weights!, num_experts, topk, policy, capacity_factor, capacity, min_capacity)
        -> (tokens_per_expert int32 [E] before dropping, kept int32 [E]); ids/weights changed in place
  training: route with Megatron-Core's auxiliary losses (moejit.h route step 13, route_losses):
    torch.ops.moejit.route_with_losses(logits, bias, seq_offsets, aux_stats, <route spec>)
        -> (ids int32 [T, K+S], weights f32 [T, K+S], losses f32 [3] = (load balance, per-sequence
            load balance, z; 0 where not asked), counts int32 [N, E] (tokens per expert, per
            sequence with the per-sequence loss), lse f32 [T] ([0] without the z-loss))
        aux_stats: MOEJIT_AUX_* flags (1 load balance, 2 per sequence: seq_offsets [S+1], 4 z-loss)
    torch.ops.moejit.route_backward_losses(logits, ids, grad_weights, grad_losses [3], counts, seq_offsets,
                                           aux_stats, <route spec>) -> grad_logits f32 [T, E]

and route_out, route_serving_out, align_out, route_align_out, dispatch_layout_out, permute_out,
combine_out, mx_scales_out, mx_scales_inverse_out, permute_backward_out, combine_backward_out,
route_backward_out. The Python functions in moejit (moejit.route(logits, spec, …) etc.) call
these with a RouteSpec unpacked (route_serving when a serving option is given); use them unless
you need the raw operators.

Autograd (torch.library.register_autograd, both registrations): permute (w.r.t. x), combine (y and
weights), route_with_losses (the weights and the losses w.r.t. the logits, one backward launch),
route and route_align (the weights w.r.t. the logits, where the library has
moejit_route_backward; else their backward raises NotImplementedError naming the library). The
backward calls the backward operations above. permute's optional slot_of and combine's optional
sorted_ids are align's other map, read only by the backward (without them it inverts the map it
has: a few small integer kernels). The _out forms and route_serving mutate arguments, so they have
no autograd formula; neither have the backward operations (no double backward).

The implementations check every tensor (dtype, device, shape, strides, alignment, int ranges)
before anything is launched, make the tensors' device current and launch on its current stream
through the process context (moejit.get_context()).

Registration (MOEJIT_TORCH_REGISTRATION, read at import):
  direct (default)  a torch.library.Library definition from the inferred schema, the
                    implementation registered for CUDA (and CPU, to reject CPU tensors by name) and
                    the fake with torch.library.register_fake — vLLM's direct_register_custom_op:
                    the dispatcher calls the implementation with no Python wrapper around it.
                    The autograd formulas are registered to the Autograd key; the operators
                    without one get PyTorch's autograd-fallback warning in a backward.
  custom_op         torch.library.custom_op: the same operators wrapped by custom_op's autograd
                    and aliasing layers (a backward through an operator without a formula
                    raises "no autograd formula"); costs about 35 µs more per call through the
                    dispatcher (BENCHMARKS.md).
moejit's Python functions (moejit.route etc.) skip the dispatcher in eager mode either way.
"""

import os
from typing import Optional, Tuple

import torch

from . import _checks as chk
from . import _launch as L
from . import core

Tensor = torch.Tensor
_I32, _F32, _U8 = torch.int32, torch.float32, torch.uint8
REGISTRATION = os.environ.get("MOEJIT_TORCH_REGISTRATION", "direct")
if REGISTRATION not in ("custom_op", "direct"):
    raise ImportError(f"MOEJIT_TORCH_REGISTRATION = {REGISTRATION!r} must be 'custom_op' or 'direct'")
_lib = torch.library.Library("moejit", "FRAGMENT")
OPS = {}


def _op(mutates=()):
    """Register fn as torch.ops.moejit.<fn name>; the returned object takes .register_fake(fake)."""

    def wrap(fn):
        name = fn.__name__
        if REGISTRATION == "custom_op":
            op = torch.library.custom_op(f"moejit::{name}", fn, mutates_args=tuple(mutates))
            OPS[name] = op
            return op
        schema = torch.library.infer_schema(fn, mutates_args=tuple(mutates))
        _lib.define(name + schema)
        _lib.impl(name, fn, "CUDA")
        _lib.impl(name, fn, "CPU")  # only to reject CPU tensors with a message naming them

        class _Direct:
            @staticmethod
            def register_fake(fake):
                torch.library.register_fake(f"moejit::{name}", fake, lib=_lib)
                return fake

        OPS[name] = _Direct
        return _Direct

    return wrap


def _ctx():
    return core.get_context()


# ---- route ---------------------------------------------------------------------------------------
def _route_common(logits, bias, num_experts, topk, shared_slots):
    T, slots = L.check_route(logits, bias, num_experts, topk, shared_slots)
    L.dtype_of("logits", logits)
    return T, slots


@_op()
def route(logits: Tensor, bias: Optional[Tensor], num_experts: int, topk: int, score: str, num_groups: int,
          topk_groups: int, group_score: str, softcap: float, score_after_topk: bool, renormalize: bool,
          scale_output: bool, routed_scaling_factor: float, shared_slots: int) -> Tuple[Tensor, Tensor]:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    return L.route_run(_ctx(), L.route_spec_for(logits, bias, params), logits, bias)


@route.register_fake
def _(logits, bias, num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk,
      renormalize, scale_output, routed_scaling_factor, shared_slots):
    T, slots = _route_common(logits, bias, num_experts, topk, shared_slots)
    L.route_spec_for(logits, bias, (num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
                                    score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots))
    return logits.new_empty((T, slots), dtype=_I32), logits.new_empty((T, slots), dtype=_F32)


@_op(mutates=("ids", "weights"))
def route_out(logits: Tensor, bias: Optional[Tensor], ids: Tensor, weights: Tensor, num_experts: int, topk: int,
              score: str, num_groups: int, topk_groups: int, group_score: str, softcap: float, score_after_topk: bool,
              renormalize: bool, scale_output: bool, routed_scaling_factor: float, shared_slots: int) -> None:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    L.route_run(_ctx(), L.route_spec_for(logits, bias, params), logits, bias, (ids, weights))


@route_out.register_fake
def _(logits, bias, ids, weights, num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
      score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots):
    T, slots = _route_common(logits, bias, num_experts, topk, shared_slots)
    L.check_route_out(logits, ids, weights, T, slots)
    L.route_spec_for(logits, bias, (num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
                                    score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots))


# ---- route with serving options (moejit.h Operation 1, steps 8-12) --------------------------------
# The options come from the tensors: num_valid (padded rows), logical_to_physical + replica_count
# (placement, with num_physical_experts), expert_load (counters, added to: a mutated argument),
# logical_ids (replay GIVEN); ids_dtype names the ids' dtype and record_dtype, when not "", asks for
# the logical ids (replay RECORD) in that dtype.
@_op(mutates=("expert_load",))
def route_serving(logits: Tensor, bias: Optional[Tensor], num_valid: Optional[Tensor],
                  logical_to_physical: Optional[Tensor], replica_count: Optional[Tensor],
                  expert_load: Optional[Tensor], logical_ids: Optional[Tensor], num_experts: int, topk: int, score: str,
                  num_groups: int, topk_groups: int, group_score: str, softcap: float, score_after_topk: bool,
                  renormalize: bool, scale_output: bool, routed_scaling_factor: float, shared_slots: int,
                  num_physical_experts: int, ids_dtype: str, record_dtype: str) -> Tuple[Tensor, Tensor, Tensor]:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    spec_c, T, slots = L.route_serving_spec_for(logits, bias, params, num_valid, logical_to_physical, replica_count,
                                                num_physical_experts, expert_load, logical_ids, ids_dtype, record_dtype)
    ids, weights, recorded = L.route_serving_run(_ctx(), spec_c, logits, bias, num_valid, logical_to_physical,
                                                 replica_count, expert_load, logical_ids)
    if recorded is None:
        recorded = logits.new_empty((0, slots), dtype=_I32)
    return ids, weights, recorded


@route_serving.register_fake
def _(logits, bias, num_valid, logical_to_physical, replica_count, expert_load, logical_ids, num_experts, topk, score,
      num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize, scale_output,
      routed_scaling_factor, shared_slots, num_physical_experts, ids_dtype, record_dtype):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    _, T, slots = L.route_serving_spec_for(logits, bias, params, num_valid, logical_to_physical, replica_count,
                                           num_physical_experts, expert_load, logical_ids, ids_dtype, record_dtype)
    recorded = logits.new_empty((T, slots), dtype=L.TORCH_INDEX[record_dtype]) if record_dtype else \
        logits.new_empty((0, slots), dtype=_I32)
    return (logits.new_empty((T, slots), dtype=L.TORCH_INDEX[ids_dtype]), logits.new_empty((T, slots), dtype=_F32),
            recorded)


def _route_serving_out_spec(logits, bias, ids, weights, num_valid, logical_to_physical, replica_count, expert_load,
                            logical_ids, logical_ids_out, params, num_physical_experts):
    """The checks of route_serving_out (ids' and the recorded ids' dtypes from the tensors);
    returns the C spec."""
    ids_dtype = L.index_dtype_of("ids", chk.tensor("ids", ids, L.IDS, 2))
    record = L.index_dtype_of("logical_ids_out", chk.tensor("logical_ids_out", logical_ids_out, L.IDS, 2)) \
        if logical_ids_out is not None else ""
    spec_c, T, slots = L.route_serving_spec_for(logits, bias, params, num_valid, logical_to_physical, replica_count,
                                                num_physical_experts, expert_load, logical_ids, ids_dtype, record)
    L.check_route_out(logits, ids, weights, T, slots, L.IDS)
    if logical_ids_out is not None:
        chk.contiguous("logical_ids_out", chk.tensor("logical_ids_out", logical_ids_out, L.IDS, 2, logits.device,
                                                     "logits", (T, slots)))
    return spec_c


@_op(mutates=("ids", "weights", "expert_load", "logical_ids_out"))
def route_serving_out(logits: Tensor, bias: Optional[Tensor], ids: Tensor, weights: Tensor, num_valid: Optional[Tensor],
                      logical_to_physical: Optional[Tensor], replica_count: Optional[Tensor],
                      expert_load: Optional[Tensor], logical_ids: Optional[Tensor], logical_ids_out: Optional[Tensor],
                      num_experts: int, topk: int, score: str, num_groups: int, topk_groups: int, group_score: str,
                      softcap: float, score_after_topk: bool, renormalize: bool, scale_output: bool,
                      routed_scaling_factor: float, shared_slots: int, num_physical_experts: int) -> None:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    spec_c = _route_serving_out_spec(logits, bias, ids, weights, num_valid, logical_to_physical, replica_count,
                                     expert_load, logical_ids, logical_ids_out, params, num_physical_experts)
    L.route_serving_run(_ctx(), spec_c, logits, bias, num_valid, logical_to_physical, replica_count, expert_load,
                        logical_ids, (ids, weights, logical_ids_out))


@route_serving_out.register_fake
def _(logits, bias, ids, weights, num_valid, logical_to_physical, replica_count, expert_load, logical_ids,
      logical_ids_out, num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk,
      renormalize, scale_output, routed_scaling_factor, shared_slots, num_physical_experts):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    _route_serving_out_spec(logits, bias, ids, weights, num_valid, logical_to_physical, replica_count, expert_load,
                            logical_ids, logical_ids_out, params, num_physical_experts)


# ---- align ---------------------------------------------------------------------------------------
def _align_shapes(topk_ids, num_experts, block_size, expert_map=None, first_expert=0):
    """(T, K, capacity) — capacity symbolic under torch.compile, from the C library otherwise."""
    T, K = L.check_align_ids(topk_ids, num_experts, block_size)
    Eg = L.check_expert_map(expert_map, first_expert, topk_ids)
    core.align_spec_c(num_experts, block_size, L.index_dtype_of("topk_ids", topk_ids), int(Eg))
    return T, K, L.align_capacity_sym(num_experts, block_size, T * K)


# expert_map (global → local ids, vLLM's) and first_expert (the global id of local expert 0) come
# last with defaults: callers of the earlier schema keep working.
@_op()
def align(topk_ids: Tensor, num_experts: int, block_size: int, expert_map: Optional[Tensor] = None,
          first_expert: int = 0) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return tuple(L.align_run(_ctx(), core.align_spec_c(num_experts, block_size), topk_ids, None, None, None,
                             expert_map, first_expert))


@align.register_fake
def _(topk_ids, num_experts, block_size, expert_map=None, first_expert=0):
    T, K, cap = _align_shapes(topk_ids, num_experts, block_size, expert_map, first_expert)
    new = lambda *shape: topk_ids.new_empty(shape, dtype=_I32)  # noqa: E731
    return new(num_experts), new(num_experts + 1), new(cap), new(cap // block_size), new(1), new(T, K)


@_op(mutates=("counts", "offsets", "sorted_ids", "block_expert", "total_padded", "slot_of", "workspace"))
def align_out(topk_ids: Tensor, num_experts: int, block_size: int, counts: Optional[Tensor], offsets: Optional[Tensor],
              sorted_ids: Optional[Tensor], block_expert: Optional[Tensor], total_padded: Optional[Tensor],
              slot_of: Optional[Tensor], workspace: Optional[Tensor], expert_map: Optional[Tensor] = None,
              first_expert: int = 0) -> None:
    L.align_run(_ctx(), core.align_spec_c(num_experts, block_size), topk_ids,
                (counts, offsets, sorted_ids, block_expert, total_padded, slot_of), workspace, None, expert_map,
                first_expert)


@align_out.register_fake
def _(topk_ids, num_experts, block_size, counts, offsets, sorted_ids, block_expert, total_padded, slot_of, workspace,
      expert_map=None, first_expert=0):
    T, K, cap = _align_shapes(topk_ids, num_experts, block_size, expert_map, first_expert)
    L.check_align_out(topk_ids, num_experts, block_size, T, K, counts, offsets, sorted_ids, block_expert, total_padded,
                      slot_of, workspace, cap)


# ---- route_align ---------------------------------------------------------------------------------
def _route_align_shapes(logits, bias, block_size, params):
    """The fakes' checks; returns (T, K+S, E+S, capacity), the capacity symbolic under torch.compile."""
    num_experts, topk, shared_slots = params[0], params[1], params[-1]
    T, slots = _route_common(logits, bias, num_experts, topk, shared_slots)
    L.route_align_spec_for(logits, bias, block_size, params)
    E = num_experts + shared_slots
    return T, slots, E, L.align_capacity_sym(E, block_size, T * slots)


@_op()
def route_align(logits: Tensor, bias: Optional[Tensor], block_size: int, num_experts: int, topk: int, score: str,
                num_groups: int, topk_groups: int, group_score: str, softcap: float, score_after_topk: bool,
                renormalize: bool, scale_output: bool, routed_scaling_factor: float, shared_slots: int
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    return tuple(L.route_align_run(_ctx(), L.route_align_spec_for(logits, bias, block_size, params), logits, bias))


@route_align.register_fake
def _(logits, bias, block_size, num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
      score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    T, slots, E, cap = _route_align_shapes(logits, bias, block_size, params)
    new = lambda *shape, dtype=_I32: logits.new_empty(shape, dtype=dtype)  # noqa: E731
    return (new(T, slots), new(T, slots, dtype=_F32), new(E), new(E + 1), new(cap), new(cap // block_size), new(1),
            new(T, slots))


def _check_route_align_out(logits, T, slots, E, block_size, cap, outs, workspace):
    ids, weights, counts, offsets, sorted_ids, block_expert, total_padded, slot_of = outs
    L.check_route_out(logits, ids, weights, T, slots)
    L.check_align_out(logits, E, block_size, T, slots, counts, offsets, sorted_ids, block_expert, total_padded,
                      slot_of, workspace, cap)


@_op(mutates=("ids", "weights", "counts", "offsets", "sorted_ids", "block_expert", "total_padded", "slot_of",
              "workspace"))
def route_align_out(logits: Tensor, bias: Optional[Tensor], block_size: int, ids: Tensor, weights: Tensor,
                    counts: Tensor, offsets: Tensor, sorted_ids: Tensor, block_expert: Tensor, total_padded: Tensor,
                    slot_of: Tensor, workspace: Optional[Tensor], num_experts: int, topk: int, score: str,
                    num_groups: int, topk_groups: int, group_score: str, softcap: float, score_after_topk: bool,
                    renormalize: bool, scale_output: bool, routed_scaling_factor: float, shared_slots: int) -> None:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    L.route_align_run(_ctx(), L.route_align_spec_for(logits, bias, block_size, params), logits, bias,
                      (ids, weights, counts, offsets, sorted_ids, block_expert, total_padded, slot_of), workspace)


@route_align_out.register_fake
def _(logits, bias, block_size, ids, weights, counts, offsets, sorted_ids, block_expert, total_padded, slot_of,
      workspace, num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk,
      renormalize, scale_output, routed_scaling_factor, shared_slots):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    T, slots, E, cap = _route_align_shapes(logits, bias, block_size, params)
    _check_route_align_out(logits, T, slots, E, block_size, cap,
                           (ids, weights, counts, offsets, sorted_ids, block_expert, total_padded, slot_of), workspace)


# ---- dispatch_layout -----------------------------------------------------------------------------
@_op()
def dispatch_layout(ids: Tensor, num_experts: int, num_ranks: int, ranks_per_node: int
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    tpr, tpn, tpe, itr = L.dispatch_layout_run(_ctx(), ids, num_experts, num_ranks, ranks_per_node)
    return tpr, tpn if tpn is not None else ids.new_empty((0,), dtype=_I32), tpe, itr


@dispatch_layout.register_fake
def _(ids, num_experts, num_ranks, ranks_per_node):
    T, K, rpn, nodes = L.check_dispatch_layout(ids, num_experts, num_ranks, ranks_per_node)
    core.dispatch_layout_spec_c(num_experts, num_ranks, K, L.index_dtype_of("ids", ids), rpn)
    new = lambda *shape: ids.new_empty(shape, dtype=_I32)  # noqa: E731
    return new(num_ranks), new(nodes), new(num_experts), ids.new_empty((T, num_ranks), dtype=torch.bool)


@_op(mutates=("tokens_per_rank", "tokens_per_node", "tokens_per_expert", "is_token_in_rank"))
def dispatch_layout_out(ids: Tensor, num_experts: int, num_ranks: int, ranks_per_node: int,
                        tokens_per_rank: Optional[Tensor], tokens_per_node: Optional[Tensor],
                        tokens_per_expert: Optional[Tensor], is_token_in_rank: Optional[Tensor]) -> None:
    L.dispatch_layout_run(_ctx(), ids, num_experts, num_ranks, ranks_per_node,
                          (tokens_per_rank, tokens_per_node, tokens_per_expert, is_token_in_rank))


@dispatch_layout_out.register_fake
def _(ids, num_experts, num_ranks, ranks_per_node, tokens_per_rank, tokens_per_node, tokens_per_expert,
      is_token_in_rank):
    T, K, rpn, nodes = L.check_dispatch_layout(ids, num_experts, num_ranks, ranks_per_node)
    core.dispatch_layout_spec_c(num_experts, num_ranks, K, L.index_dtype_of("ids", ids), rpn)
    L.check_dispatch_layout_out(ids, num_experts, num_ranks, nodes, T, tokens_per_rank, tokens_per_node,
                                tokens_per_expert, is_token_in_rank)


# ---- permute and combine -------------------------------------------------------------------------
def _hidden(H):
    """Validate H like the library when it is a plain int; a symbolic H (dynamic shapes) gets the
    range check as guards."""
    if type(H) is not int and not 1 <= H <= core.C.LIMITS["MOEJIT_MAX_HIDDEN"]:
        raise ValueError(f"hidden = {H} is out of range [1, {core.C.LIMITS['MOEJIT_MAX_HIDDEN']}]")
    return type(H) is int


def _permute_check(x, sorted_ids, topk, ids, scale, slot_of=None):
    T, H, R, has_scale = L.check_permute(x, sorted_ids, topk, ids, scale, slot_of)
    if _hidden(H):
        core.permute_spec_c(H, L.dtype_of("x", x), int(has_scale))
    return R, H


# slot_of (align's inverse map [T, K]) comes last with a default: callers of the earlier schema
# keep working; given, the backward reads it instead of inverting sorted_ids.
@_op()
def permute(x: Tensor, sorted_ids: Tensor, topk: int, ids: Optional[Tensor], scale: Optional[Tensor],
            slot_of: Optional[Tensor] = None) -> Tensor:
    return L.permute_run(_ctx(), x, sorted_ids, topk, ids, scale, slot_of=slot_of)


@permute.register_fake
def _(x, sorted_ids, topk, ids, scale, slot_of=None):
    R, H = _permute_check(x, sorted_ids, topk, ids, scale, slot_of)
    return x.new_empty((R, H))


@_op(mutates=("out",))
def permute_out(x: Tensor, sorted_ids: Tensor, topk: int, ids: Optional[Tensor], scale: Optional[Tensor],
                out: Tensor) -> None:
    L.permute_run(_ctx(), x, sorted_ids, topk, ids, scale, out)


@permute_out.register_fake
def _(x, sorted_ids, topk, ids, scale, out):
    R, H = _permute_check(x, sorted_ids, topk, ids, scale)
    L.check_rows_out("out", out, x.device, "x", (R, H), x.dtype)


def _combine_check(y, slot_of, weights, sorted_ids=None):
    T, H, K = L.check_combine(y, slot_of, weights, sorted_ids)
    if _hidden(H):
        core.combine_spec_c(H, L.dtype_of("y", y))
    return T, H


# sorted_ids (align's map [>= R]) comes last with a default, as permute's slot_of: given, the
# backward reads it instead of inverting slot_of.
@_op()
def combine(y: Tensor, slot_of: Tensor, weights: Tensor, sorted_ids: Optional[Tensor] = None) -> Tensor:
    return L.combine_run(_ctx(), y, slot_of, weights, sorted_ids=sorted_ids)


@combine.register_fake
def _(y, slot_of, weights, sorted_ids=None):
    T, H = _combine_check(y, slot_of, weights, sorted_ids)
    return y.new_empty((T, H))


@_op(mutates=("out",))
def combine_out(y: Tensor, slot_of: Tensor, weights: Tensor, out: Tensor) -> None:
    L.combine_run(_ctx(), y, slot_of, weights, out)


@combine_out.register_fake
def _(y, slot_of, weights, out):
    T, H = _combine_check(y, slot_of, weights)
    L.check_rows_out("out", out, y.device, "y", (T, H), y.dtype)


# ---- the backward operations (moejit.h "permute and combine backward", Operation 1b) ------------
def _permute_backward_check(grad_out, slot_of, ids, scale):
    T, K, H, R, has_scale = L.check_permute_backward(grad_out, slot_of, ids, scale)
    if _hidden(H):
        core.permute_backward_spec_c(H, L.dtype_of("grad_out", grad_out), int(has_scale))
    return T, H


@_op()
def permute_backward(grad_out: Tensor, slot_of: Tensor, ids: Optional[Tensor], scale: Optional[Tensor]) -> Tensor:
    return L.permute_backward_run(_ctx(), grad_out, slot_of, ids, scale)


@permute_backward.register_fake
def _(grad_out, slot_of, ids, scale):
    T, H = _permute_backward_check(grad_out, slot_of, ids, scale)
    return grad_out.new_empty((T, H))


@_op(mutates=("grad_x",))
def permute_backward_out(grad_out: Tensor, slot_of: Tensor, ids: Optional[Tensor], scale: Optional[Tensor],
                         grad_x: Tensor) -> None:
    L.permute_backward_run(_ctx(), grad_out, slot_of, ids, scale, grad_x)


@permute_backward_out.register_fake
def _(grad_out, slot_of, ids, scale, grad_x):
    T, H = _permute_backward_check(grad_out, slot_of, ids, scale)
    L.check_rows_out("grad_x", grad_x, grad_out.device, "grad_out", (T, H), grad_out.dtype)


def _combine_backward_check(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y, want_grad_weights):
    T, K, H, R = L.check_combine_backward(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y,
                                          want_grad_weights)
    if _hidden(H):
        core.combine_backward_spec_c(H, L.dtype_of("grad_out", grad_out))
    return T, K, H, R


# y is read for grad_weights, weights and sorted_ids for grad_y (each may be None when its output is
# not wanted); an output not wanted comes back empty ([0, H], [0, K]).
@_op()
def combine_backward(grad_out: Tensor, slot_of: Tensor, y: Optional[Tensor], weights: Optional[Tensor],
                     sorted_ids: Optional[Tensor], num_rows: int, want_grad_y: bool = True,
                     want_grad_weights: bool = True) -> Tuple[Tensor, Tensor]:
    return L.combine_backward_run(_ctx(), grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y,
                                  want_grad_weights)


@combine_backward.register_fake
def _(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y=True, want_grad_weights=True):
    T, K, H, R = _combine_backward_check(grad_out, slot_of, y, weights, sorted_ids, num_rows, want_grad_y,
                                         want_grad_weights)
    return (grad_out.new_empty((R if want_grad_y else 0, H)),
            grad_out.new_empty((T if want_grad_weights else 0, K), dtype=_F32))


def _combine_backward_out_rows(y, grad_y):
    return grad_y.shape[0] if grad_y is not None else (y.shape[0] if y is not None else 0)


@_op(mutates=("grad_y", "grad_weights"))
def combine_backward_out(grad_out: Tensor, slot_of: Tensor, y: Optional[Tensor], weights: Optional[Tensor],
                         sorted_ids: Optional[Tensor], grad_y: Optional[Tensor], grad_weights: Optional[Tensor]) -> None:
    L.combine_backward_run(_ctx(), grad_out, slot_of, y, weights, sorted_ids, _combine_backward_out_rows(y, grad_y),
                           out=(grad_y, grad_weights))


@combine_backward_out.register_fake
def _(grad_out, slot_of, y, weights, sorted_ids, grad_y, grad_weights):
    T, K, H, R = _combine_backward_check(grad_out, slot_of, y, weights, sorted_ids,
                                         _combine_backward_out_rows(y, grad_y), grad_y is not None,
                                         grad_weights is not None)
    if grad_y is not None:
        L.check_rows_out("grad_y", grad_y, grad_out.device, "grad_out", (R, H), grad_out.dtype)
    if grad_weights is not None:
        L.check_rows_out("grad_weights", grad_weights, grad_out.device, "grad_out", (T, K), _F32)


def _route_backward_check(logits, ids, grad_weights, params):
    """The fakes' checks: the backward spec where the library has route_backward, else the forward's
    (the launch then says the library lacks it: a compiled graph still builds, its backward fails)."""
    T, slots = L.check_route_backward(logits, ids, grad_weights, params[0], params[1], params[-1])
    if core.has_route_backward():
        L.route_backward_spec_for(logits, ids, params)
    else:
        L.route_spec_for(logits, None, params)
    return T


@_op()
def route_backward(logits: Tensor, ids: Tensor, grad_weights: Tensor, num_experts: int, topk: int, score: str,
                   num_groups: int, topk_groups: int, group_score: str, softcap: float, score_after_topk: bool,
                   renormalize: bool, scale_output: bool, routed_scaling_factor: float, shared_slots: int) -> Tensor:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    return L.route_backward_run(_ctx(), logits, ids, grad_weights, params)


@route_backward.register_fake
def _(logits, ids, grad_weights, num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
      score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    T = _route_backward_check(logits, ids, grad_weights, params)
    return logits.new_empty((T, num_experts), dtype=_F32)


@_op(mutates=("grad_logits",))
def route_backward_out(logits: Tensor, ids: Tensor, grad_weights: Tensor, grad_logits: Tensor, num_experts: int,
                       topk: int, score: str, num_groups: int, topk_groups: int, group_score: str, softcap: float,
                       score_after_topk: bool, renormalize: bool, scale_output: bool, routed_scaling_factor: float,
                       shared_slots: int) -> None:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    L.route_backward_run(_ctx(), logits, ids, grad_weights, params, grad_logits)


@route_backward_out.register_fake
def _(logits, ids, grad_weights, grad_logits, num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
      score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    T = _route_backward_check(logits, ids, grad_weights, params)
    L.check_rows_out("grad_logits", grad_logits, logits.device, "logits", (T, num_experts), _F32)


# ---- mx_scales -----------------------------------------------------------------------------------
def _mx_blocked_shape(scales, group_ends):
    layout, G, rows, cols = L.check_mx_plain("scales", scales, group_ends)
    if type(cols) is int:
        core.mx_spec_c(cols)
    cp = (cols + 3) // 4 * 4
    if layout == 1:
        return (L.mx_blocked_numel(cols, G, rows, True) // cp, cp)
    return (G, L.mx_blocked_numel(cols, 1, rows, False))


def _check_blocked(name, t, dev, anchor, numel):
    chk.tensor(name, t, (_U8,), t.dim() if isinstance(t, Tensor) else 1, dev, anchor)
    chk.contiguous(name, t)
    if t.numel() != numel:
        raise ValueError(f"{name} has {t.numel()} bytes, the blocked layout needs {numel}")


@_op()
def mx_scales(scales: Tensor, group_ends: Optional[Tensor]) -> Tensor:
    out = torch.empty(_mx_blocked_shape(scales, group_ends), dtype=_U8, device=scales.device)
    L.launch_mx(_ctx(), False, scales, out, group_ends)
    return out


@mx_scales.register_fake
def _(scales, group_ends):
    return scales.new_empty(_mx_blocked_shape(scales, group_ends))


@_op(mutates=("out",))
def mx_scales_out(scales: Tensor, group_ends: Optional[Tensor], out: Tensor) -> None:
    a, b = _mx_blocked_shape(scales, group_ends)
    _check_blocked("out", out, scales.device, "scales", a * b)
    L.launch_mx(_ctx(), False, scales, out, group_ends)


@mx_scales_out.register_fake
def _(scales, group_ends, out):
    a, b = _mx_blocked_shape(scales, group_ends)
    _check_blocked("out", out, scales.device, "scales", a * b)


def _mx_plain_shape(blocked, groups, rows, cols, group_ends):
    if type(cols) is int:  # sizes from an out= tensor are symbolic under dynamic shapes
        chk.integer("cols", cols, 1, core.C.LIMITS["MOEJIT_MAX_MX_COLS"])
        core.mx_spec_c(cols)
    elif not 1 <= cols <= core.C.LIMITS["MOEJIT_MAX_MX_COLS"]:
        raise ValueError(f"cols = {cols} is out of range [1, {core.C.LIMITS['MOEJIT_MAX_MX_COLS']}]")
    if type(rows) is int:
        chk.integer("rows", rows, 0, 2**62)
    if group_ends is not None:
        chk.contiguous("group_ends", chk.tensor("group_ends", group_ends, (_I32,), 1, blocked.device, "blocked"))
        if groups != group_ends.shape[0]:
            raise ValueError(f"groups = {groups} but group_ends has {group_ends.shape[0]} entries")
        shape, numel = (rows, cols), L.mx_blocked_numel(cols, groups, rows, True)
    else:
        if type(groups) is int:
            chk.integer("groups", groups, 0, 2**62)
        shape, numel = (groups, rows, cols), L.mx_blocked_numel(cols, groups, rows, False)
    _check_blocked("blocked", blocked, blocked.device if isinstance(blocked, Tensor) else None, "blocked", numel)
    return shape


@_op()
def mx_scales_inverse(blocked: Tensor, groups: int, rows: int, cols: int, group_ends: Optional[Tensor]) -> Tensor:
    shape = _mx_plain_shape(blocked, groups, rows, cols, group_ends)
    # 2D: rows after the last group belong to no group and are not written: zeros, not garbage
    out = (torch.zeros if group_ends is not None else torch.empty)(shape, dtype=_U8, device=blocked.device)
    L.launch_mx(_ctx(), True, out, blocked, group_ends)
    return out


@mx_scales_inverse.register_fake
def _(blocked, groups, rows, cols, group_ends):
    return blocked.new_empty(_mx_plain_shape(blocked, groups, rows, cols, group_ends))


@_op(mutates=("out",))
def mx_scales_inverse_out(blocked: Tensor, group_ends: Optional[Tensor], out: Tensor) -> None:
    layout, G, rows, cols = L.check_mx_plain("out", out, group_ends)
    _mx_plain_shape(blocked, G, rows, cols, group_ends)
    L.launch_mx(_ctx(), True, out, blocked, group_ends)


@mx_scales_inverse_out.register_fake
def _(blocked, group_ends, out):
    layout, G, rows, cols = L.check_mx_plain("out", out, group_ends)
    _mx_plain_shape(blocked, G, rows, cols, group_ends)


# ---- autograd ------------------------------------------------------------------------------------
# permute, combine, route and route_align are differentiable (moejit.h's backward operations):
#   permute: x (ids are integers; the per-expert scale is a constant: it gets no gradient);
#   combine: y and weights;
#   route, route_align: the weights w.r.t. the logits (ids and align's maps are integers; the bias
#     moves only the selection: no gradient), where the library has moejit_route_backward — else
#     the backward raises NotImplementedError naming the library.
# The _out forms, route_serving and the backward operations themselves are not differentiable (the
# first two mutate their arguments, which torch.library's autograd does not take). setup_context
# and backward run under torch.compile too: they only call torch ops.
def _slot_of_from_sorted_ids(sorted_ids, T, K):
    """The inverse of align's sorted_ids: slot_of [T, K] int32, the row holding each flat index
    t·K+k, -1 where no row does. Exact when every flat index appears at most once (align's maps: its
    own sorted_ids are filled with the padding value T·K past the padded total). Padding rows are
    sent to spare entries of their own, so no two writes meet (deterministic)."""
    N, R = T * K, sorted_ids.shape[0]
    rows = torch.arange(R, device=sorted_ids.device)
    flat = sorted_ids.long()
    idx = torch.where((flat >= 0) & (flat < N), flat, rows + N)
    inv = torch.full((N + R,), -1, dtype=_I32, device=sorted_ids.device).scatter(0, idx, rows.to(_I32))
    return inv[:N].view(T, K)


def _sorted_ids_from_slot_of(slot_of, R):
    """The inverse of align's slot_of: sorted_ids [R] int32, the flat index t·K+k each row carries,
    the padding value T·K for rows no (t, k) lands in. Exact whenever no two kept slots share a row
    (align's maps), which combine's own gradient assumes: it is defined by slot_of alone."""
    T, K = slot_of.shape
    N = T * K
    flat = torch.arange(N, device=slot_of.device)
    rows = slot_of.reshape(N).long()
    idx = torch.where((rows >= 0) & (rows < R), rows, flat + R)
    inv = torch.full((R + N,), N, dtype=_I32, device=slot_of.device).scatter(0, idx, flat.to(_I32))
    return inv[:R]


# ---- capacity --------------------------------------------------------------------------------------
@_op(mutates=("ids", "weights"))
def capacity(ids: Tensor, weights: Tensor, num_experts: int, topk: int, policy: str, capacity_factor: float,
             capacity: int, min_capacity: int) -> Tuple[Tensor, Tensor]:
    return L.capacity_run(_ctx(), ids, weights, num_experts, topk, policy, capacity_factor, capacity, min_capacity)


@capacity.register_fake
def _(ids, weights, num_experts, topk, policy, capacity_factor, capacity, min_capacity):
    return ids.new_empty((num_experts,), dtype=_I32), ids.new_empty((num_experts,), dtype=_I32)


# ---- route with the auxiliary losses -------------------------------------------------------------
def _losses_fake_shapes(logits, bias, seq_offsets, aux_stats, params):
    T, slots = _route_common(logits, bias, params[0], params[1], params[-1])
    N = L.check_aux(logits, aux_stats, seq_offsets, T)
    L.route_spec_for(logits, bias, params)
    return T, slots, N


@_op()
def route_with_losses(logits: Tensor, bias: Optional[Tensor], seq_offsets: Optional[Tensor], aux_stats: int,
                      num_experts: int, topk: int, score: str, num_groups: int, topk_groups: int, group_score: str,
                      softcap: float, score_after_topk: bool, renormalize: bool, scale_output: bool,
                      routed_scaling_factor: float, shared_slots: int
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    return L.route_with_losses_run(_ctx(), logits, bias, seq_offsets, aux_stats, params)


@route_with_losses.register_fake
def _(logits, bias, seq_offsets, aux_stats, num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
      score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots):
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    T, slots, N = _losses_fake_shapes(logits, bias, seq_offsets, aux_stats, params)
    return (logits.new_empty((T, slots), dtype=_I32), logits.new_empty((T, slots), dtype=_F32),
            logits.new_empty((3,), dtype=_F32), logits.new_empty((N, num_experts), dtype=_I32),
            logits.new_empty((T if aux_stats & core.C.AUX_STATS["z_loss"] else 0,), dtype=_F32))


@_op()
def route_backward_losses(logits: Tensor, ids: Tensor, grad_weights: Tensor, grad_losses: Tensor, counts: Tensor,
                          seq_offsets: Optional[Tensor], aux_stats: int, num_experts: int, topk: int, score: str,
                          num_groups: int, topk_groups: int, group_score: str, softcap: float, score_after_topk: bool,
                          renormalize: bool, scale_output: bool, routed_scaling_factor: float,
                          shared_slots: int) -> Tensor:
    params = (num_experts, topk, score, num_groups, topk_groups, group_score, softcap, score_after_topk, renormalize,
              scale_output, routed_scaling_factor, shared_slots)
    return L.route_backward_losses_run(_ctx(), logits, ids, grad_weights, grad_losses, counts, seq_offsets, aux_stats,
                                       params)


@route_backward_losses.register_fake
def _(logits, ids, grad_weights, grad_losses, counts, seq_offsets, aux_stats, num_experts, topk, score, num_groups,
      topk_groups, group_score, softcap, score_after_topk, renormalize, scale_output, routed_scaling_factor,
      shared_slots):
    T, _ = L.check_route_backward(logits, ids, grad_weights, num_experts, topk, shared_slots)
    L.check_aux(logits, aux_stats, seq_offsets, T)
    return logits.new_empty((T, num_experts), dtype=_F32)


def _grads(ctx, given=None):
    """One gradient per input of the op, as many as ctx.needs_input_grad: given[i] for input i,
    None for the others."""
    out = [None] * len(ctx.needs_input_grad)
    for i, g in (given or {}).items():
        out[i] = g
    return tuple(out)


def _permute_setup(ctx, inputs, output):
    x, sorted_ids, topk, ids, scale = inputs[:5]
    slot_of = inputs[5] if len(inputs) > 5 else None
    ctx.num_tokens, ctx.topk = x.shape[0], topk
    ctx.save_for_backward(sorted_ids if slot_of is None else None, ids, scale, slot_of)


def _permute_backward(ctx, grad_out):
    sorted_ids, ids, scale, slot_of = ctx.saved_tensors
    if grad_out is None or not ctx.needs_input_grad[0]:
        return _grads(ctx)
    if slot_of is None:
        slot_of = _slot_of_from_sorted_ids(sorted_ids, ctx.num_tokens, ctx.topk)
    return _grads(ctx, {0: torch.ops.moejit.permute_backward(grad_out.contiguous(), slot_of, ids, scale)})


def _combine_setup(ctx, inputs, output):
    y, slot_of, weights = inputs[:3]
    sorted_ids = inputs[3] if len(inputs) > 3 else None
    ctx.num_rows = y.shape[0]
    ctx.save_for_backward(y, slot_of, weights, sorted_ids)


def _combine_backward(ctx, grad_out):
    y, slot_of, weights, sorted_ids = ctx.saved_tensors
    want_y, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
    if grad_out is None or not (want_y or want_w):
        return _grads(ctx)
    if want_y and sorted_ids is None:
        sorted_ids = _sorted_ids_from_slot_of(slot_of, ctx.num_rows)
    grad_y, grad_w = torch.ops.moejit.combine_backward(
        grad_out.contiguous(), slot_of, y if want_w else None, weights if want_y else None,
        sorted_ids if want_y else None, ctx.num_rows, want_y, want_w)
    return _grads(ctx, {0: grad_y if want_y else None, 2: grad_w if want_w else None})


def _route_setup(first_param):
    """setup_context of an op whose inputs are (logits, bias, …, <ROUTE_PARAMS from first_param>)
    and whose outputs start with (ids, weights)."""

    def setup(ctx, inputs, output):
        ctx.params = tuple(inputs[first_param:first_param + len(core.ROUTE_PARAMS)])
        ctx.save_for_backward(inputs[0], output[0])
        # ids and align's maps are integers: no gradient flows into them (nor is one asked for)
        ctx.mark_non_differentiable(*[o for o in output if o is not None and not o.is_floating_point()])

    return setup


def _route_backward(ctx, grad_ids, grad_weights, *grad_maps):
    if grad_weights is None or not ctx.needs_input_grad[0]:
        return _grads(ctx)
    logits, ids = ctx.saved_tensors
    grad = torch.ops.moejit.route_backward(logits, ids, grad_weights.float().contiguous(), *ctx.params)
    return _grads(ctx, {0: grad.to(logits.dtype)})


def _route_losses_setup(ctx, inputs, output):
    logits, _, seq_offsets, aux_stats = inputs[:4]
    ctx.params, ctx.aux_stats = tuple(inputs[4:4 + len(core.ROUTE_PARAMS)]), aux_stats
    ids, _, _, counts, lse = output
    ctx.save_for_backward(logits, ids, counts, seq_offsets)
    # ids and counts are integers; lse is the z-loss's statistic (its gradient flows through the losses)
    ctx.mark_non_differentiable(ids, counts, lse)


def _route_losses_backward(ctx, grad_ids, grad_weights, grad_losses, grad_counts, grad_lse):
    if not ctx.needs_input_grad[0] or (grad_weights is None and grad_losses is None):
        return _grads(ctx)
    logits, ids, counts, seq_offsets = ctx.saved_tensors
    gw = torch.zeros(ids.shape, dtype=_F32, device=ids.device) if grad_weights is None else \
        grad_weights.float().contiguous()
    gl = torch.zeros(3, dtype=_F32, device=ids.device) if grad_losses is None else grad_losses.float().contiguous()
    grad = torch.ops.moejit.route_backward_losses(logits, ids, gw, gl, counts, seq_offsets, ctx.aux_stats, *ctx.params)
    return _grads(ctx, {0: grad.to(logits.dtype)})


def _register_autograd(name, backward, setup_context):
    qualname = f"moejit::{name}"
    try:
        torch.library.register_autograd(qualname, backward, setup_context=setup_context, lib=_lib)
    except TypeError:  # a torch.library without lib= keeps its own Library alive
        torch.library.register_autograd(qualname, backward, setup_context=setup_context)


_register_autograd("permute", _permute_backward, _permute_setup)
_register_autograd("combine", _combine_backward, _combine_setup)
_register_autograd("route", _route_backward, _route_setup(2))
_register_autograd("route_align", _route_backward, _route_setup(3))
_register_autograd("route_with_losses", _route_losses_backward, _route_losses_setup)
