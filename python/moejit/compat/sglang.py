"""sglang's (sgl_kernel's) MoE gating and alignment entry points on moejit: change the import,
keep the calls.

    from moejit.compat import sglang as sgl_kernel
    topk_weights, topk_ids = sgl_kernel.moe_fused_gate(logits, bias, num_expert_group, topk_group, topk,
                                                       num_fused_shared_experts, routed_scaling_factor)

Same signatures, in-place outputs and conventions as sgl_kernel (moe_fused_gate,
kimi_k2_moe_fused_gate, topk_softmax, topk_sigmoid, moe_align_block_size, moe_sum). Where moejit
computes more exactly, its result is kept: scores are float32 whatever the logits dtype (sglang's
bf16 path scores and sums in bf16), ties go to the lower expert, moe_sum accumulates in float32
and rounds once, and inside an expert sorted_token_ids lists tokens in flat-index order (sglang's
atomics order them by arrival).
"""

from typing import Optional

import torch

from .. import _checks as chk
from ..functional import align, combine, route_params
from ._common import f32_bias, logits_2d, params, route_into

__all__ = ["moe_fused_gate", "kimi_k2_moe_fused_gate", "topk_softmax", "topk_sigmoid", "moe_align_block_size",
           "moe_sum"]


def moe_fused_gate(input_tensor: torch.Tensor, bias: Optional[torch.Tensor], num_expert_group: int, topk_group: int,
                   topk: int, num_fused_shared_experts: int = 0, routed_scaling_factor: float = 0,
                   apply_routed_scaling_factor_on_output: bool = False):
    """sgl_kernel.moe_fused_gate (DeepSeek-V3 routing): sigmoid scores, selection on score + bias;
    num_expert_group groups scored by the sum of their two best, the topk_group best kept; the
    topk − num_fused_shared_experts best experts, weights renormalized to sum 1; then
    num_fused_shared_experts slots with ids E, E+1, … and weight 1 / routed_scaling_factor; with
    apply_routed_scaling_factor_on_output every weight times routed_scaling_factor (shared ones
    become 1). Unlike sgl_kernel there is no limit on E or E/G, and E need not be a power of two.

    Returns:
        [topk_weights float32 [T, topk], topk_ids int32 [T, topk]].
    """
    logits_2d("input_tensor", input_tensor)
    E = input_tensor.shape[1]
    S = chk.integer("num_fused_shared_experts", num_fused_shared_experts, 0, chk.INT32_MAX)
    K = chk.integer("topk", topk, 1, chk.INT32_MAX) - S
    if K < 1:
        raise ValueError(f"topk = {topk} must exceed num_fused_shared_experts = {S}")
    factor = chk.real("routed_scaling_factor", routed_scaling_factor)
    if (S or apply_routed_scaling_factor_on_output) and not factor > 0:
        raise ValueError(f"routed_scaling_factor = {routed_scaling_factor} must be positive with fused shared "
                         f"experts or apply_routed_scaling_factor_on_output (sglang would divide or scale by it)")
    G = chk.integer("num_expert_group", num_expert_group, 1, chk.INT32_MAX)
    p = params(E, K, "sigmoid", G if G > 1 else 0, chk.integer("topk_group", topk_group, 1, chk.INT32_MAX) if G > 1 else 0,
               "top2_sum", True, bool(apply_routed_scaling_factor_on_output), factor if factor > 0 else 0.0, S)
    ids, weights = route_params(input_tensor, f32_bias("bias", bias, E), p)
    return [weights, ids]


def kimi_k2_moe_fused_gate(input_tensor: torch.Tensor, bias: Optional[torch.Tensor], topk: int,
                           renormalize: bool = True, routed_scaling_factor: float = 1.0,
                           apply_routed_scaling_factor_on_output: bool = False):
    """sgl_kernel.kimi_k2_moe_fused_gate (one group): sigmoid scores, the topk best by score + bias,
    weights the unbiased scores, renormalized if asked, times routed_scaling_factor with
    apply_routed_scaling_factor_on_output. Any E (sgl_kernel: 256 or 384) and topk up to 64.

    Returns:
        (topk_weights float32 [T, topk], topk_ids int32 [T, topk]).
    """
    logits_2d("input_tensor", input_tensor)
    E = input_tensor.shape[1]
    factor = chk.real("routed_scaling_factor", routed_scaling_factor if routed_scaling_factor is not None else 1.0)
    if apply_routed_scaling_factor_on_output and not factor > 0:
        raise ValueError(f"routed_scaling_factor = {routed_scaling_factor} must be positive to scale the output")
    scale = bool(apply_routed_scaling_factor_on_output) and factor != 1.0
    p = params(E, chk.integer("topk", topk, 1, chk.INT32_MAX), "sigmoid", renormalize=renormalize, scale_output=scale,
               routed_scaling_factor=factor if scale else 0.0)
    ids, weights = route_params(input_tensor, f32_bias("bias", bias, E), p)
    return weights, ids


def _topk(score, topk_weights, topk_ids, gating_output, renormalize, bias):
    logits_2d("gating_output", gating_output)
    E = gating_output.shape[1]
    K = topk_weights.shape[1] if isinstance(topk_weights, torch.Tensor) and topk_weights.dim() == 2 else 0
    route_into(topk_weights, topk_ids, gating_output, f32_bias("correction_bias", bias, E),
               params(E, K, score, renormalize=renormalize))


def topk_softmax(topk_weights: torch.Tensor, topk_ids: torch.Tensor, gating_output: torch.Tensor,
                 renormalize: bool = False) -> None:
    """sgl_kernel.topk_softmax: softmax over each row of gating_output [T, E], the K best into
    topk_ids (int32 or int64) and topk_weights (float32) [T, K], renormalized if asked. In place."""
    _topk("softmax", topk_weights, topk_ids, gating_output, renormalize, None)


def topk_sigmoid(topk_weights: torch.Tensor, topk_ids: torch.Tensor, gating_output: torch.Tensor,
                 renormalize: bool = False, correction_bias: Optional[torch.Tensor] = None) -> None:
    """sgl_kernel.topk_sigmoid: sigmoid scores, selection on score + correction_bias [E], weights
    the unbiased scores, renormalized if asked. In place."""
    _topk("sigmoid", topk_weights, topk_ids, gating_output, renormalize, correction_bias)


def moe_align_block_size(topk_ids: torch.Tensor, num_experts: int, block_size: int, sorted_token_ids: torch.Tensor,
                         experts_ids: torch.Tensor, num_tokens_post_pad: torch.Tensor, cumsum_buffer: torch.Tensor,
                         pad_sorted_token_ids: bool = False) -> None:
    """sgl_kernel.moe_align_block_size, in place. As sglang calls it, num_experts counts E + 1
    buckets: bucket b holds the ids b − 1, so −1 ids (tokens masked by expert parallelism) form
    the first bucket and its blocks get expert id −1. Other ids outside [−1, num_experts − 2] are
    dropped.

    Writes cumsum_buffer[0..num_experts] (padded bucket offsets), num_tokens_post_pad [1],
    sorted_token_ids up to the padded total (flat indices, padding = numel) and, with
    pad_sorted_token_ids, numel in the rest of the buffer; experts_ids for the blocks before the
    total only (the tail is left as it was, as sglang does). sorted_token_ids must hold
    numel + min(num_experts, numel)·(block_size − 1) entries (sglang's own size).
    """
    chk.tensor("topk_ids", topk_ids, (torch.int32, torch.int64), topk_ids.dim() if isinstance(topk_ids, torch.Tensor) else 2)
    buckets = chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    B = chk.integer("block_size", block_size, 1, chk.INT32_MAX)
    dev = topk_ids.device
    for name, t in (("sorted_token_ids", sorted_token_ids), ("experts_ids", experts_ids),
                    ("num_tokens_post_pad", num_tokens_post_pad), ("cumsum_buffer", cumsum_buffer)):
        chk.contiguous(name, chk.tensor(name, t, (torch.int32,), 1, dev, "topk_ids"))
    chk.at_least("cumsum_buffer", cumsum_buffer, buckets + 1, "num_experts + 1 offsets")
    ids = topk_ids.reshape(-1, topk_ids.shape[-1]) if topk_ids.dim() != 2 else topk_ids
    N = ids.numel()
    # bucket = id + 1, computed in int64 from a clamped id so that nothing wraps
    shifted = (ids.clamp(-2, buckets - 1) + 1).to(torch.int32).contiguous()
    if pad_sorted_token_ids:
        sorted_token_ids.fill_(N)
    blocks = torch.empty((sorted_token_ids.numel() // B,), dtype=torch.int32, device=dev)
    align(shifted, buckets, B, out=(None, cumsum_buffer[:buckets + 1], sorted_token_ids, blocks, num_tokens_post_pad,
                                    None))
    n = min(experts_ids.numel(), blocks.numel())
    head = experts_ids[:n]
    live = torch.arange(n, device=dev, dtype=torch.int32) < num_tokens_post_pad // B
    head.copy_(torch.where(live, blocks[:n] - 1, head))


def moe_sum(input_tensor: torch.Tensor, output_tensor: torch.Tensor) -> None:
    """sgl_kernel.moe_sum: output [T, H] = input [T, K, H] summed over K, in place — accumulated in
    float32 with one rounding (moejit's combine with unit weights; sglang sums in the tensor dtype)."""
    chk.tensor("input_tensor", input_tensor, (torch.float32, torch.bfloat16, torch.float16), 3)
    T, K, H = input_tensor.shape
    chk.tensor("output_tensor", output_tensor, (input_tensor.dtype,), 2, input_tensor.device, "input_tensor", (T, H))
    dev = input_tensor.device
    slot_of = torch.arange(T * K, device=dev, dtype=torch.int32).view(T, K)
    weights = torch.ones((T, K), device=dev, dtype=torch.float32)
    y = input_tensor.reshape(T * K, H).contiguous()
    if output_tensor.is_contiguous():
        combine(y, slot_of, weights, out=output_tensor)
    else:
        output_tensor.copy_(combine(y, slot_of, weights))
