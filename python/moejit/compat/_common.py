"""What the adapters share: routing into caller-owned outputs of the engines' dtypes, and plain
route parameters (ROUTE_PARAMS order) from the engines' arguments."""

import torch

from .. import _checks as chk
from ..functional import route_params


def params(num_experts, topk, score, num_groups=0, topk_groups=0, group_score="max", renormalize=False,
           scale_output=False, routed_scaling_factor=0.0, shared_slots=0):
    """Plain route parameters in the order the torch ops take them."""
    return (num_experts, topk, score, num_groups, topk_groups, group_score, 0.0, False, bool(renormalize),
            bool(scale_output), float(routed_scaling_factor), shared_slots)


def f32_bias(name, bias, num_experts):
    """A float32 contiguous bias (the engines also pass bf16/f16 ones: converted, one small copy)."""
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(bias).__name__}")
    if bias.dim() != 1 or bias.shape[0] != num_experts:
        raise ValueError(f"{name} has shape {tuple(bias.shape)}, expected ({num_experts},)")
    return bias if bias.dtype == torch.float32 and bias.is_contiguous() else bias.float().contiguous()


def logits_2d(name, logits):
    chk.tensor(name, logits, (torch.float32, torch.bfloat16, torch.float16), 2)
    return logits


def route_into(weights_out, ids_out, logits, bias, p, weights_name="topk_weights", ids_name="topk_ids"):
    """Route into the caller's (weights, ids): written in place when they are float32 / int32 and
    contiguous, else through moejit's outputs and one copy each (int64 ids, strided views)."""
    chk.tensor(weights_name, weights_out, (torch.float32, torch.bfloat16, torch.float16), 2, logits.device, "gating_output")
    chk.tensor(ids_name, ids_out, (torch.int32, torch.int64), 2, logits.device, "gating_output")
    T = logits.shape[0]
    if tuple(weights_out.shape) != (T, p[1] + p[-1]) or tuple(ids_out.shape) != tuple(weights_out.shape):
        raise ValueError(f"{weights_name} {tuple(weights_out.shape)} and {ids_name} {tuple(ids_out.shape)} must both be "
                         f"[{T}, {p[1] + p[-1]}] for {T} tokens")
    if (ids_out.dtype == torch.int32 and weights_out.dtype == torch.float32 and ids_out.is_contiguous()
            and weights_out.is_contiguous()):
        route_params(logits, bias, p, (ids_out, weights_out))
    else:
        ids, weights = route_params(logits, bias, p)
        ids_out.copy_(ids)
        weights_out.copy_(weights)
