"""The auxiliary losses as Megatron-Core defines them (megatron/core/transformer/moe/moe_utils.py and
router.py), written out in plain PyTorch from their formulas, without the coefficients: what
moejit's fused losses are checked against, forward and backward (autograd through these).

  aux scores p        softmax over the row (softmax routing); sigmoid / (row sum + 1e-20)
                      (sigmoid routing; moejit extends the same normalisation to sqrt-softplus)
  switch load balance E / (K·T²) · Σ_e (Σ_t p[t,e]) · c_e        c_e = routed (t, k) with id e
  sequence-level      1/S · Σ_s Σ_e [c_{s,e}·E / (K·L_s)] · [Σ_{t in s} p[t,e] / L_s]
  z-loss              1/T · Σ_t logsumexp(x_t)²
"""
import torch


def aux_scores(logits, score):
    x = logits.double()
    if score == "softmax":
        return torch.softmax(x, dim=-1)
    s = torch.sigmoid(x) if score == "sigmoid" else torch.sqrt(torch.nn.functional.softplus(x))
    return s / (s.sum(-1, keepdim=True) + 1e-20)


def tokens_per_expert(ids, num_experts, topk):
    """Routed (t, k) per expert from route's ids (the first K columns; ids outside [0, E) count nowhere)."""
    sel = ids[:, :topk].long().reshape(-1)
    sel = sel[(sel >= 0) & (sel < num_experts)]
    return torch.bincount(sel, minlength=num_experts).double()


def switch_load_balancing_loss(logits, ids, num_experts, topk, score):
    p = aux_scores(logits, score)
    T = logits.shape[0]
    c = tokens_per_expert(ids, num_experts, topk).to(p.device)
    return (p.sum(0) * c).sum() * (num_experts / (topk * T * T))


def sequence_load_balancing_loss(logits, ids, seq_lens, num_experts, topk, score):
    p = aux_scores(logits, score)
    total, start = p.new_zeros(()), 0
    for L in seq_lens:
        ps, cs = p[start:start + L], tokens_per_expert(ids[start:start + L], num_experts, topk).to(p.device)
        total = total + ((cs * num_experts / (topk * L)) * (ps.sum(0) / L)).sum()
        start += L
    return total / len(seq_lens)


def z_loss(logits):
    return torch.logsumexp(logits.double(), dim=-1).square().mean()
