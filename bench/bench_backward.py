#!/usr/bin/env python3
"""Training ops on the GPU: moejit's backward kernels beside PyTorch eager and torch.compile of the
same backward formulas, with the floors (empty-kernel launch, copy bandwidth), in one run.

  route backward   grad_logits [T, E] from the logits (re-read), route's ids and grad_weights;
                   the PyTorch formula is the chain rule written out (what autograd runs:
                   recompute the scores, scatter the weights' gradient through renormalisation,
                   scaling and the score function). Bytes that must move: logits read once,
                   ids and grad_weights read once, grad_logits written once.
  permute backward grad_x[t] = sum_k grad_out[slot_of[t,k]]
  combine backward grad_y rows (weights x grad_out) and grad_weights (dot products)
  losses (--losses) route with Megatron-Core's load-balancing and z losses, forward: moejit's
                   route_with_losses (statistics in route's pass, then route_losses) beside PyTorch
                   eager and torch.compile of route plus Megatron's unfused formulas (aux scores over
                   [T, E], bincount of the picks, the sums, logsumexp)

Every row is the per-launch time in a CUDA graph (bench_route.graph_us), inputs rotating through
8 buffers so that large batches come from DRAM. "agree" is the largest difference between moejit's
result and the PyTorch formula's, relative to the largest magnitude.

Usage: bench_backward.py [--models deepseek-v3,kimi-k2,qwen3-moe] [--tokens 1,1024,16384]
                         [--dtype f32|bf16] [--hidden 7168] [--rows-tokens 1,128,4096] [--losses]
                         [--out FILE]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import moejit  # noqa: E402
from bench_route import ROTATE, finish, floors, graph_us, start, torch_route  # noqa: E402


def torch_route_backward(logits, ids, grad_w, K, score, renorm, factor):
    """dL/dlogits of route's weights with the selection held constant (no soft cap, no
    score-after-top-k, no shared slots: the presets measured here)."""
    x = logits if logits.dtype == torch.float64 else logits.float()
    sel = ids[:, :K].long()
    g = grad_w[:, :K].to(x.dtype) * factor
    if score == "softmax":
        s = torch.softmax(x, dim=-1)
    elif score == "sigmoid":
        s = torch.sigmoid(x)
    else:
        s = torch.sqrt(torch.nn.functional.softplus(x))
    chosen = s.gather(1, sel)
    if renorm:  # w = s / sum(s): dL/ds_k = (g_k - sum_j g_j w_j) / sum(s)
        total = chosen.sum(-1, keepdim=True)
        w = chosen / total
        d_chosen = (g - (g * w).sum(-1, keepdim=True)) / total
    else:
        d_chosen = g
    d_s = torch.zeros_like(x).scatter_(1, sel, d_chosen)
    if score == "softmax":
        return s * (d_s - (d_s * s).sum(-1, keepdim=True))
    if score == "sigmoid":
        return d_s * s * (1 - s)
    sp = torch.nn.functional.softplus(x)
    return d_s * torch.sigmoid(x) / (2 * torch.sqrt(sp).clamp_min(1e-30))


def torch_route_with_losses(logits, bias, params, E, K):
    """route (bench_route's formula) and Megatron's switch load-balancing and z losses, unfused."""
    ids, w = torch_route(logits, bias, **params)
    x = logits.float()
    s = torch.softmax(x, -1) if params["score"] == "softmax" else torch.sigmoid(x)
    if params["score"] != "softmax":
        s = s / (s.sum(-1, keepdim=True) + 1e-20)
    flat = ids.reshape(-1).long()  # bincount syncs with the host: not capturable in a graph
    c = torch.zeros(E, device=x.device).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
    T = x.shape[0]
    lb = (s.sum(0) * c).sum() * (E / (K * T * T))
    z = torch.logsumexp(x, -1).square().mean()
    return ids, w, lb, z


def losses_rows(out, a, dtype, bandwidth):
    """route_with_losses forward (load balance and z) beside PyTorch's unfused formulas."""
    for model in a.models.split(","):
        spec = moejit.RouteSpec.preset(model, dtype=dtype)
        E, K = spec.num_experts, spec.topk
        score = {v: k for k, v in moejit.SCORES.items()}[spec.score]
        params = dict(E=E, K=K, score=score, G=spec.num_groups, TG=spec.topk_groups or spec.num_groups,
                      top2=spec.group_score == 1, after=bool(spec.score_after_topk), renorm=bool(spec.renormalize),
                      scale=bool(spec.scale_output), factor=spec.routed_scaling_factor, softcap=spec.softcap)
        compiled = torch.compile(torch_route_with_losses, dynamic=False)
        for T in [int(t) for t in a.tokens.split(",") if t]:
            logits = [torch.randn(T, E, device="cuda").mul_(2).to(dtype) for _ in range(ROTATE)]
            bias = (torch.rand(E, device="cuda") - 0.5) * 0.2 if spec.has_bias else None
            mj = [lambda i=i: moejit.route_with_losses(logits[i], spec, bias, z_loss=True) for i in range(ROTATE)]
            plain = [lambda i=i: moejit.route(logits[i], spec, bias) for i in range(ROTATE)]
            ev = [lambda i=i: torch_route_with_losses(logits[i], bias, params, E, K) for i in range(ROTATE)]
            cv = [lambda i=i: compiled(logits[i], bias, params, E, K) for i in range(ROTATE)]
            r = moejit.route_with_losses(logits[0], spec, bias, z_loss=True)
            ref = torch_route_with_losses(logits[0], bias, params, E, K)
            diff = max(agree(r.z, ref[3]), agree(r.load_balance, ref[2]) if torch.equal(
                r.tokens_per_expert.cpu(), torch.bincount(ref[0].reshape(-1).long(), minlength=E).int().cpu()) else 0.0)
            t_mj, t_plain = graph_us(mj), graph_us(plain)
            moved = T * E * logits[0].element_size() + T * K * 8
            row(out, f"route+losses {model} (route {t_plain:.2f})", T, t_mj, graph_us(ev), graph_us(cv), moved,
                bandwidth, diff)
            del logits


def torch_permute_backward(grad_out, slot_of):
    T, K = slot_of.shape
    return grad_out[slot_of.view(-1).long()].view(T, K, -1).float().sum(1).to(grad_out.dtype)


def torch_combine_backward(grad_out, slot_of, y, weights):
    T, K = slot_of.shape
    flat = slot_of.view(-1).long()
    grad_y = torch.zeros_like(y)
    grad_y[flat] = (weights.unsqueeze(-1) * grad_out.unsqueeze(1).float()).view(T * K, -1).to(y.dtype)
    grad_w = (grad_out.unsqueeze(1).float() * y[flat].view(T, K, -1).float()).sum(-1)
    return grad_y, grad_w


def agree(a, b):
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def row(out, name, T, mj, eager, comp, moved, bandwidth, diff):
    bw = moved / (mj * 1e-6) / 1e9
    out(f"{name:<28} {T:>6} {mj:9.2f} {eager:9.2f} {comp:9.2f} {comp / mj:9.1f}x {bw:8.0f} {100 * bw / bandwidth:5.1f}%"
        f"  {diff:.1e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="deepseek-v3,kimi-k2,qwen3-moe")
    p.add_argument("--tokens", default="1,1024,16384")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--hidden", type=int, default=7168)
    p.add_argument("--rows-tokens", default="1,128,4096", help="T of permute/combine backward (K = 8)")
    p.add_argument("--losses", action="store_true", help="also route with the load-balancing and z losses")
    p.add_argument("--out", default=None, help="also append the table to this file")
    a = p.parse_args()
    out, lines = start(a)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    out(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  logits {a.dtype}")
    floor_us, bandwidth = floors(out)
    out()
    out(f"{'':<28} {'':>6} {'--- per launch, CUDA graph (us) ---':^41}")
    out(f"{'op':<28} {'T':>6} {'moejit':>9} {'eager':>9} {'compile':>9} {'vs compile':>10} {'GB/s':>8} {'BW %':>6}"
        f"  agree")
    compiled_route = torch.compile(torch_route_backward, dynamic=False)
    for model in a.models.split(","):
        spec = moejit.RouteSpec.preset(model, dtype=dtype)
        E, K, S = spec.num_experts, spec.topk, spec.shared_slots
        if spec.softcap or spec.score_after_topk or S:
            out(f"{model}: soft cap / score after top-k / shared slots are not in the PyTorch formula; skipped")
            continue
        score = {v: k for k, v in moejit.SCORES.items()}[spec.score]
        factor = (spec.routed_scaling_factor or 1.0) if spec.scale_output else 1.0
        params = dict(K=K, score=score, renorm=bool(spec.renormalize), factor=factor)
        for T in [int(t) for t in a.tokens.split(",") if t]:
            logits = [torch.randn(T, E, device="cuda").mul_(2).to(dtype) for _ in range(ROTATE)]
            bias = (torch.rand(E, device="cuda") - 0.5) * 0.2 if spec.has_bias else None
            ids = [moejit.route(x, spec, bias)[0] for x in logits]
            grads = [torch.randn(T, K, device="cuda") for _ in range(ROTATE)]
            outs = [torch.empty(T, E, device="cuda") for _ in range(ROTATE)]
            mj = [lambda i=i: moejit.route_backward(logits[i], spec, ids[i], grads[i], out=outs[i])
                  for i in range(ROTATE)]
            ev = [lambda i=i: torch_route_backward(logits[i], ids[i], grads[i], **params) for i in range(ROTATE)]
            cv = [lambda i=i: compiled_route(logits[i], ids[i], grads[i], **params) for i in range(ROTATE)]
            t_mj, t_ev, t_cv = graph_us(mj), graph_us(ev), graph_us(cv)
            diff = agree(moejit.route_backward(logits[0], spec, ids[0], grads[0]),
                         torch_route_backward(logits[0].double(), ids[0], grads[0].double(), **params))
            moved = T * E * logits[0].element_size() + T * K * 8 + T * E * 4
            row(out, f"route_backward {model}", T, t_mj, t_ev, t_cv, moved, bandwidth, diff)
            del logits, ids, grads, outs

    if a.losses:
        losses_rows(out, a, dtype, bandwidth)

    H, K, E = a.hidden, 8, 256
    rdt = torch.bfloat16
    compiled_permute = torch.compile(torch_permute_backward, dynamic=False)
    compiled_combine = torch.compile(torch_combine_backward, dynamic=False)
    for T in [int(t) for t in a.rows_tokens.split(",") if t]:
        topk = torch.stack([torch.randperm(E, device="cuda")[:K] for _ in range(T)]).int()
        maps = moejit.align(topk, E, 64)
        slot_of, sorted_ids = maps.slot_of, maps.sorted_ids
        R = int(maps.total_padded.item())
        go_rows = [torch.randn(R, H, device="cuda").to(rdt) for _ in range(ROTATE)]
        go_tok = [torch.randn(T, H, device="cuda").to(rdt) for _ in range(ROTATE)]
        ys = [torch.randn(R, H, device="cuda").to(rdt) for _ in range(ROTATE)]
        ws = [torch.rand(T, K, device="cuda") for _ in range(ROTATE)]
        gx = [torch.empty(T, H, device="cuda", dtype=rdt) for _ in range(ROTATE)]
        gy = [torch.empty(R, H, device="cuda", dtype=rdt) for _ in range(ROTATE)]
        gw = [torch.empty(T, K, device="cuda") for _ in range(ROTATE)]
        mj = [lambda i=i: moejit.permute_backward(go_rows[i], slot_of, out=gx[i]) for i in range(ROTATE)]
        ev = [lambda i=i: torch_permute_backward(go_rows[i], slot_of) for i in range(ROTATE)]
        cv = [lambda i=i: compiled_permute(go_rows[i], slot_of) for i in range(ROTATE)]
        diff = agree(moejit.permute_backward(go_rows[0], slot_of), torch_permute_backward(go_rows[0], slot_of))
        moved = (T * K * H + T * H) * 2 + T * K * 4
        row(out, "permute_backward H=7168", T, graph_us(mj), graph_us(ev), graph_us(cv), moved, bandwidth, diff)
        mj = [lambda i=i: moejit.combine_backward(go_tok[i], slot_of, ys[i], ws[i], sorted_ids, out=(gy[i], gw[i]))
              for i in range(ROTATE)]
        ev = [lambda i=i: torch_combine_backward(go_tok[i], slot_of, ys[i], ws[i]) for i in range(ROTATE)]
        cv = [lambda i=i: compiled_combine(go_tok[i], slot_of, ys[i], ws[i]) for i in range(ROTATE)]
        mine = moejit.combine_backward(go_tok[0], slot_of, ys[0], ws[0], sorted_ids)
        ref = torch_combine_backward(go_tok[0], slot_of, ys[0], ws[0])
        diff = max(agree(mine[1], ref[1]), agree(mine[0][slot_of.view(-1).long()], ref[0][slot_of.view(-1).long()]))
        # grad_out read once, y's routed rows read once, grad_y's routed rows written, weights in, grad_w out
        moved = (T * H + 2 * T * K * H) * 2 + T * K * 12
        row(out, "combine_backward H=7168", T, graph_us(mj), graph_us(ev), graph_us(cv), moved, bandwidth, diff)
        del go_rows, go_tok, ys, gy, gx
    out()
    out(f"floors: empty kernel {floor_us:.2f} us, copy {bandwidth:.0f} GB/s")
    finish(a, lines)


if __name__ == "__main__":
    main()
