"""vLLM's MoE routing and alignment entry points on moejit: change the import, keep the calls.

    from moejit.compat import vllm as ops
    ops.topk_softmax(topk_weights, topk_ids, token_expert_indices, gating_output, renormalize)
    topk_weights, topk_ids, _ = ops.fused_topk(hidden_states, gating_output, topk, renormalize)
    sorted_ids, expert_ids, num_tokens_post_pad = ops.moe_align_block_size(topk_ids, block_size, E, expert_map)
    topk_weights, topk_ids = ops.select_experts(x, logits, top_k, False, True, enable_eplb=True, ...)

Same signatures, in-place outputs and conventions as vllm._custom_ops and
vllm.model_executor.layers.fused_moe (topk_softmax / topk_sigmoid, fused_topk, grouped_topk,
moe_align_block_size, batched_moe_align_block_size, FusedMoE.select_experts with EPLB: the logical →
physical mapping and load recording of eplb_map_to_physical_and_record fused into the routing
launch). Where moejit differs it is more exact or more
determined, never less: scores are computed in float32 whatever the logits dtype, ties go to the
lower expert, and inside an expert sorted_ids lists tokens in flat-index order (vLLM's atomics
order them by arrival; its tests compare per-block sets).
"""

from typing import Optional

import torch

from .. import _checks as chk
from .. import core
from ..functional import align, route_params, route_serving_params
from ._common import f32_bias, logits_2d, params, route_into

__all__ = ["topk_softmax", "topk_sigmoid", "fused_topk", "grouped_topk", "select_experts", "moe_align_block_size",
           "batched_moe_align_block_size"]


def _token_expert_indices(out, T, K):
    """vLLM's token_expert_indices: [t, k] = k·T + t (the source row of (t, k) in a k-major layout)."""
    chk.tensor("token_expert_indices", out, (torch.int32, torch.int64), 2, None, "", (T, K))
    k = torch.arange(K, device=out.device, dtype=out.dtype)
    t = torch.arange(T, device=out.device, dtype=out.dtype)
    out.copy_(k[None, :] * T + t[:, None])


def _topk(score, topk_weights, topk_ids, token_expert_indices, gating_output, renormalize, e_score_correction_bias):
    logits_2d("gating_output", gating_output)
    T, E = gating_output.shape
    K = topk_weights.shape[1] if isinstance(topk_weights, torch.Tensor) and topk_weights.dim() == 2 else 0
    bias = f32_bias("e_score_correction_bias", e_score_correction_bias, E)
    route_into(topk_weights, topk_ids, gating_output, bias, params(E, K, score, renormalize=renormalize))
    if token_expert_indices is not None:
        _token_expert_indices(token_expert_indices, T, K)


def topk_softmax(topk_weights: torch.Tensor, topk_ids: torch.Tensor, token_expert_indices: Optional[torch.Tensor],
                 gating_output: torch.Tensor, renormalize: bool = False,
                 e_score_correction_bias: Optional[torch.Tensor] = None) -> None:
    """vllm._custom_ops.topk_softmax: softmax over each row of gating_output [T, E], the K best
    experts into topk_ids (int32 or int64) and their probabilities into topk_weights (float32)
    [T, K], token_expert_indices [T, K] = k·T + t. renormalize divides by the K weights' sum;
    e_score_correction_bias [E] moves the choice, never the weights. In place; returns None."""
    _topk("softmax", topk_weights, topk_ids, token_expert_indices, gating_output, renormalize, e_score_correction_bias)


def topk_sigmoid(topk_weights: torch.Tensor, topk_ids: torch.Tensor, token_expert_indices: Optional[torch.Tensor],
                 gating_output: torch.Tensor, renormalize: bool = False,
                 e_score_correction_bias: Optional[torch.Tensor] = None) -> None:
    """vllm._custom_ops.topk_sigmoid: as :func:`topk_softmax` with sigmoid scores."""
    _topk("sigmoid", topk_weights, topk_ids, token_expert_indices, gating_output, renormalize, e_score_correction_bias)


def fused_topk(hidden_states: torch.Tensor, gating_output: torch.Tensor, topk: int, renormalize: bool,
               indices_type: Optional[torch.dtype] = None, scoring_func: str = "softmax",
               e_score_correction_bias: Optional[torch.Tensor] = None):
    """vLLM's fused_topk: returns (topk_weights float32 [T, K], topk_ids [T, K] int32 or
    indices_type, token_expert_indices int32 [T, K]). scoring_func: "softmax" or "sigmoid"."""
    logits_2d("gating_output", gating_output)
    if not isinstance(hidden_states, torch.Tensor) or hidden_states.shape[0] != gating_output.shape[0]:
        raise ValueError(f"hidden_states has {getattr(hidden_states, 'shape', '?')} rows, gating_output "
                         f"{gating_output.shape[0]}: the number of tokens differs")
    if scoring_func not in ("softmax", "sigmoid"):
        raise ValueError(f"scoring_func = {scoring_func!r} must be 'softmax' or 'sigmoid'")
    T, E = gating_output.shape
    K = chk.integer("topk", topk, 1, chk.INT32_MAX)
    bias = f32_bias("e_score_correction_bias", e_score_correction_bias, E)
    ids, weights = route_params(gating_output, bias, params(E, K, scoring_func, renormalize=renormalize))
    if indices_type is not None and indices_type != torch.int32:
        ids = ids.to(indices_type)
    tei = torch.empty((T, K), dtype=torch.int32, device=gating_output.device)
    _token_expert_indices(tei, T, K)
    return weights, ids, tei


def grouped_topk(hidden_states: torch.Tensor, gating_output: torch.Tensor, topk: int, renormalize: bool,
                 num_expert_group: int = 0, topk_group: int = 0, scoring_func: str = "softmax",
                 routed_scaling_factor: float = 1.0, e_score_correction_bias: Optional[torch.Tensor] = None):
    """vLLM's grouped_topk (DeepSeek-style): scores by scoring_func, the E experts in
    num_expert_group groups, a group scored by its best expert (by the sum of its two best with
    e_score_correction_bias), the topk_group best groups kept, the topk best experts of those
    (selection on score + bias, weights the unbiased scores), renormalized if asked, times
    routed_scaling_factor. Returns (topk_weights float32 [T, K], topk_ids int32 [T, K]).
    num_expert_group 0 or 1 routes ungrouped."""
    logits_2d("gating_output", gating_output)
    if not isinstance(hidden_states, torch.Tensor) or hidden_states.shape[0] != gating_output.shape[0]:
        raise ValueError("hidden_states and gating_output have different numbers of tokens")
    if scoring_func not in ("softmax", "sigmoid"):
        raise ValueError(f"scoring_func = {scoring_func!r} must be 'softmax' or 'sigmoid'")
    factor = chk.real("routed_scaling_factor", routed_scaling_factor)
    if not factor > 0:
        raise ValueError(f"routed_scaling_factor = {routed_scaling_factor} must be positive")
    E = gating_output.shape[1]
    bias = f32_bias("e_score_correction_bias", e_score_correction_bias, E)
    G = chk.integer("num_expert_group", num_expert_group, 0, chk.INT32_MAX)
    p = params(E, chk.integer("topk", topk, 1, chk.INT32_MAX), scoring_func, G if G > 1 else 0,
               chk.integer("topk_group", topk_group, 0, chk.INT32_MAX) if G > 1 else 0,
               "top2_sum" if bias is not None else "max", renormalize, factor != 1.0, factor if factor != 1.0 else 0.0)
    ids, weights = route_params(gating_output, bias, p)
    return weights, ids


def select_experts(hidden_states: torch.Tensor, router_logits: torch.Tensor, top_k: int, use_grouped_topk: bool,
                   renormalize: bool, topk_group: Optional[int] = None, num_expert_group: Optional[int] = None,
                   custom_routing_function=None, scoring_func: str = "softmax",
                   e_score_correction_bias: Optional[torch.Tensor] = None, indices_type: Optional[torch.dtype] = None,
                   enable_eplb: bool = False, expert_map: Optional[torch.Tensor] = None,
                   expert_load_view: Optional[torch.Tensor] = None,
                   logical_to_physical_map: Optional[torch.Tensor] = None,
                   logical_replica_count: Optional[torch.Tensor] = None, routed_scaling_factor: float = 1.0):
    """vLLM's FusedMoE.select_experts: :func:`grouped_topk` (use_grouped_topk) or
    :func:`fused_topk` routing, then with enable_eplb vLLM's eplb_map_to_physical_and_record —
    here all in one launch: slot k of token t goes to replica (t·K + k) mod
    logical_replica_count[e] of logical expert e, i.e. logical_to_physical_map[e, that] (vLLM's
    rule, exactly), and expert_load_view [num_physical_experts] (int32 or int64) gets +1 per slot
    whose physical id is in range. logical_to_physical_map / logical_replica_count may be int64
    (vLLM's; range-clamped and converted). expert_map is not used here (vLLM applies it in the
    experts). custom_routing_function is not supported (NotImplementedError).

    Returns:
        (topk_weights float32 [T, K], topk_ids [T, K]: global physical ids with EPLB, of
        indices_type (default int32)).
    """
    if custom_routing_function is not None:
        raise NotImplementedError("select_experts: custom_routing_function is not supported by moejit's adapter")
    logits_2d("router_logits", router_logits)
    if not isinstance(hidden_states, torch.Tensor) or hidden_states.shape[0] != router_logits.shape[0]:
        raise ValueError("hidden_states and router_logits have different numbers of tokens")
    if scoring_func not in ("softmax", "sigmoid"):
        raise ValueError(f"scoring_func = {scoring_func!r} must be 'softmax' or 'sigmoid'")
    E = router_logits.shape[1]
    K = chk.integer("top_k", top_k, 1, chk.INT32_MAX)
    bias = f32_bias("e_score_correction_bias", e_score_correction_bias, E)
    if use_grouped_topk:
        if topk_group is None or num_expert_group is None:
            raise ValueError("use_grouped_topk needs topk_group and num_expert_group")
        factor = chk.real("routed_scaling_factor", routed_scaling_factor if routed_scaling_factor is not None else 1.0)
        if not factor > 0:
            raise ValueError(f"routed_scaling_factor = {routed_scaling_factor} must be positive")
        G = chk.integer("num_expert_group", num_expert_group, 0, chk.INT32_MAX)
        p = params(E, K, scoring_func, G if G > 1 else 0,
                   chk.integer("topk_group", topk_group, 0, chk.INT32_MAX) if G > 1 else 0,
                   "top2_sum" if bias is not None else "max", renormalize, factor != 1.0,
                   factor if factor != 1.0 else 0.0)
    else:
        p = params(E, K, scoring_func, renormalize=renormalize)
    native = indices_type in (None, torch.int32, torch.int64, torch.int16)
    ids_dtype = {None: "int32", torch.int32: "int32", torch.int64: "int64", torch.int16: "int16"}[
        indices_type if native else None]
    kw = {}
    if enable_eplb:
        for name, t in (("expert_load_view", expert_load_view), ("logical_to_physical_map", logical_to_physical_map),
                        ("logical_replica_count", logical_replica_count)):
            if t is None:
                raise ValueError(f"enable_eplb needs {name}")
        chk.tensor("expert_load_view", expert_load_view, (torch.int32, torch.int64), 1, router_logits.device,
                   "router_logits")
        chk.tensor("logical_to_physical_map", logical_to_physical_map, (torch.int32, torch.int64), 2,
                   router_logits.device, "router_logits", (E, None))
        chk.tensor("logical_replica_count", logical_replica_count, (torch.int32, torch.int64), 1,
                   router_logits.device, "router_logits", (E,))
        P = expert_load_view.shape[0]
        R = logical_to_physical_map.shape[1]
        l2p = logical_to_physical_map
        if l2p.dtype != torch.int32 or not l2p.is_contiguous():   # an entry outside [0, P) stays outside
            l2p = l2p.clamp(-1, P).to(torch.int32).contiguous()
        rc = logical_replica_count
        if rc.dtype != torch.int32 or not rc.is_contiguous():       # moejit reads it clamped to [1, R] anyway
            rc = rc.clamp(1, max(R, 1)).to(torch.int32).contiguous()
        load = expert_load_view if expert_load_view.is_contiguous() else torch.zeros_like(expert_load_view)
        kw = dict(logical_to_physical=l2p, replica_count=rc, num_physical_experts=P, expert_load=load)
    if kw or ids_dtype != "int32":
        ids, weights, _ = route_serving_params(router_logits, bias, p, ids_dtype=ids_dtype, **kw)
    else:
        ids, weights = route_params(router_logits, bias, p)
    if enable_eplb and kw["expert_load"] is not expert_load_view:
        expert_load_view.add_(kw["expert_load"])
    if not native:
        ids = ids.to(indices_type)
    return weights, ids


def _round_up(x, b):
    return (x + b - 1) // b * b


def moe_align_block_size(topk_ids: torch.Tensor, block_size: int, num_experts: int,
                         expert_map: Optional[torch.Tensor] = None, pad_sorted_ids: bool = False,
                         ignore_invalid_experts: bool = False):
    """vLLM's moe_align_block_size: returns (sorted_ids, expert_ids, num_tokens_post_pad), int32.

    - sorted_ids [max_num_tokens_padded] (N + E·(B−1), rounded up to B with pad_sorted_ids,
      at most N·B when N < E): each expert's flat indices padded to a multiple of B with N, and
      N everywhere past the padded total.
    - expert_ids [ceil(max_num_tokens_padded / B)]: the expert of each block, −1 past the total.
    - num_tokens_post_pad [1].
    Ids outside [0, E) are ignored. expert_map [E] (global → local, −1 elsewhere): with
    ignore_invalid_experts the ids go through it inside align (moejit's expert_map option) and
    those mapped to −1 are ignored, so the maps are over local experts; without it, the maps are
    over global experts and expert_ids is mapped afterwards with expert_map[expert_ids] (as vLLM
    does: its −1 tail then reads expert_map[−1]). topk_ids may be int32, int64 or int16 (read in
    their own type, never truncated).
    """
    chk.tensor("topk_ids", topk_ids, (torch.int32, torch.int64, torch.int16),
               topk_ids.dim() if isinstance(topk_ids, torch.Tensor) else 2)
    E = chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    B = chk.integer("block_size", block_size, 1, chk.INT32_MAX)
    ids = topk_ids.reshape(-1, topk_ids.shape[-1]) if topk_ids.dim() != 2 else topk_ids
    ids = ids.contiguous()
    N = ids.numel()
    size = N + E * (B - 1)
    if pad_sorted_ids:
        size = _round_up(size, B)
    if N < E:
        size = min(N * B, size)
    dev = ids.device
    sorted_ids = torch.full((size,), N, dtype=torch.int32, device=dev)
    expert_ids = torch.empty(((size + B - 1) // B,), dtype=torch.int32, device=dev)
    if expert_ids.numel() > size // B:
        expert_ids[size // B:].fill_(-1)  # a partial last block is always past the total
    total = torch.empty(1, dtype=torch.int32, device=dev)
    mapped = None
    if expert_map is not None:
        chk.tensor("expert_map", expert_map, (torch.int32, torch.int64), 1, dev, "topk_ids", (E,))
        if ignore_invalid_experts:
            mapped = expert_map.contiguous()
    align(ids, E, B, out=(None, None, sorted_ids, expert_ids, total, None), expert_map=mapped)
    if expert_map is not None and not ignore_invalid_experts:
        expert_ids = expert_map[expert_ids]
    return sorted_ids, expert_ids, total


def batched_moe_align_block_size(max_tokens_per_batch: int, block_size: int, expert_num_tokens: torch.Tensor):
    """vLLM's batched_moe_align_block_size, for the batched [E, max_tokens_per_batch, H] layout:
    expert e's rows are e·max_tokens_per_batch + j for j < expert_num_tokens[e]. Returns
    (sorted_ids [E·round_up(M, B)] with sentinel E·M past each expert's rows and past the total,
    expert_ids [E·round_up(M, B)/B] with −1 past the total, num_tokens_post_pad [1]), int32."""
    M = chk.integer("max_tokens_per_batch", max_tokens_per_batch, 0, chk.INT32_MAX)
    B = chk.integer("block_size", block_size, 1, chk.INT32_MAX)
    chk.tensor("expert_num_tokens", expert_num_tokens, (torch.int32, torch.int64), 1)
    E = expert_num_tokens.shape[0]
    dev = expert_num_tokens.device
    size = E * _round_up(M, B)
    if E == 0 or M == 0:
        return (torch.full((size,), E * M, dtype=torch.int32, device=dev),
                torch.full((size // B,), -1, dtype=torch.int32, device=dev), torch.zeros(1, dtype=torch.int32, device=dev))
    j = torch.arange(M, device=dev, dtype=torch.int32)
    ids = torch.where(j[None, :] < expert_num_tokens[:, None], torch.arange(E, device=dev, dtype=torch.int32)[:, None],
                      -1).to(torch.int32).reshape(E * M, 1)
    # moejit's capacity for these N = E·M ids covers vLLM's buffer: align into one a little
    # longer (filled with the sentinel) and return vLLM's sizes as views of it
    cap = core.align_capacity_formula(E, B, E * M)
    sorted_all = torch.full((cap,), E * M, dtype=torch.int32, device=dev)
    blocks_all = torch.empty((cap // B,), dtype=torch.int32, device=dev)
    total = torch.empty(1, dtype=torch.int32, device=dev)
    align(ids, E, B, out=(None, None, sorted_all, blocks_all, total, None))
    return sorted_all[:size], blocks_all[:size // B], total
