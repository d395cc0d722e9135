#!/usr/bin/env python3
"""Route benchmark on the GPU: moejit beside PyTorch eager and torch.compile of the reference
formula, and the floors (an empty kernel launched the same ways, the device copy bandwidth).

  graph: per-launch GPU time — a CUDA graph of N launches, replayed R times, median replay / N
  loop:  per-call time of a plain Python loop (events around it) — includes Python and ctypes

Inputs rotate through 8 buffers, so that large batches are read from DRAM, not from L2.
Usage: bench_route.py [--models deepseek-v3,kimi-k2,...] [--tokens 1,16,128,1024,4096,16384]
                      [--dtype f32|bf16] [--compile-tokens …] [--out FILE]
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import moejit  # noqa: E402

ROTATE = 8
GRAPH_INNER = 20
GRAPH_REPLAYS = 100
LOOP_CALLS = 200


def graph_us(fns):
    """Median per-launch GPU time of fns[i % len] captured GRAPH_INNER times in one graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(GRAPH_INNER):
            fns[i % len(fns)]()
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(GRAPH_REPLAYS):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / GRAPH_INNER)
    return statistics.median(times)


def loop_us(fns):
    """Per-call time of a plain loop over fns."""
    for f in fns:
        f()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(LOOP_CALLS):
        fns[i % len(fns)]()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / LOOP_CALLS


def torch_route(logits, bias, E, K, score, G, TG, top2, after, renorm, scale, factor, softcap):
    """The reference formula in PyTorch (as sglang's/vLLM's Python paths write it)."""
    x = logits.float()
    if softcap > 0:
        x = softcap * torch.tanh(x / softcap)
    T = x.shape[0]

    def score_fn(v):
        if score == "softmax":
            return torch.softmax(v, dim=-1)
        if score == "sigmoid":
            return torch.sigmoid(v)
        return torch.sqrt(torch.nn.functional.softplus(v))

    if after:
        sel = x + bias if bias is not None else x
        ids = torch.topk(sel, K, dim=-1).indices
        w = score_fn(x.gather(1, ids))
    else:
        s = score_fn(x)
        sel = s + bias if bias is not None else s
        if G > 1 and TG < G:
            grouped = sel.view(T, G, E // G)
            gscore = grouped.topk(2, dim=-1).values.sum(-1) if top2 else grouped.max(dim=-1).values
            gidx = gscore.topk(TG, dim=-1).indices
            gmask = torch.zeros_like(gscore).scatter_(1, gidx, 1.0)
            mask = gmask.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
            sel = sel.masked_fill(mask == 0, float("-inf"))
        ids = torch.topk(sel, K, dim=-1).indices
        w = s.gather(1, ids)
    if renorm:
        total = w.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / total, w)
    if scale:
        w = w * factor
    return ids.to(torch.int32), w


def floors(out):
    """Empty-kernel launch floor and copy bandwidth, measured like everything else."""
    import triton
    import triton.language as tl

    @triton.jit
    def empty_kernel(x_ptr):
        pass

    x = torch.zeros(1, device="cuda")
    empty = [lambda: empty_kernel[(1,)](x)]
    add = [lambda: x.add_(1.0)]
    rows = {"empty kernel (Triton)": (graph_us(empty), loop_us(empty)),
            "add_(1) on one element": (graph_us(add), loop_us(add))}
    n = 256 << 20  # 1 GiB of f32 each way
    src, dst = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
    src.uniform_()
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    bandwidth = 2 * n * 4 / statistics.median(times) / 1e9
    del src, dst
    for name, (g, l) in rows.items():
        out(f"floor  {name:<28} graph {g:8.2f} us   loop {l:8.2f} us")
    out(f"floor  copy bandwidth (read+write, 1 GiB)  {bandwidth:8.0f} GB/s")
    return rows["empty kernel (Triton)"][0], bandwidth


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="deepseek-v3,kimi-k2,qwen3-moe,qwen3-next,gpt-oss",
                   help="presets, and/or shapes written E:K:score[:renorm], e.g. 512:8:sigmoid:renorm")
    p.add_argument("--tokens", default="1,16,128,1024,4096,16384")
    p.add_argument("--compile-tokens", default=None, help="T values for torch.compile (default: all)")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--no-torch", action="store_true", help="moejit and floors only")
    p.add_argument("--out", default=None, help="also append the table to this file")
    a = p.parse_args()
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    torch.manual_seed(0)
    # every model and T compiles the same function: without this, later ones silently run eager
    torch._dynamo.config.recompile_limit = 1024
    torch._dynamo.config.cache_size_limit = 1024
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    tokens = [int(t) for t in a.tokens.split(",")]
    compile_tokens = tokens if a.compile_tokens is None else [int(t) for t in a.compile_tokens.split(",")]
    ctx = moejit.Context()
    out(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  logits {a.dtype}")
    floor_us, bandwidth = floors(out)
    out()
    header = (f"{'model':<12} {'T':>6} {'moejit':>9} {'eager':>9} {'compile':>9} {'vs compile':>10} "
              f"{'floor x':>8} {'moejit':>9} {'eager':>9} {'BW GB/s':>8} {'BW %':>6}")
    out(f"{'':<12} {'':>6} {'--- per launch, CUDA graph (us) ---':^41} {'':>8} {'-- loop (us) --':^19}")
    out(header)
    for model in a.models.split(","):
        if ":" in model:  # a plain shape, E:K:score[:renorm]
            parts = model.split(":")
            spec = moejit.RouteSpec(int(parts[0]), int(parts[1]), score=parts[2], dtype=dtype,
                                    renormalize="renorm" in parts[3:])
            model = f"e{parts[0]}k{parts[1]}-{parts[2]}"
        else:
            spec = moejit.RouteSpec.preset(model, dtype=dtype)
        E, K, S = spec.num_experts, spec.topk, spec.shared_slots
        score = {v: k for k, v in moejit.SCORES.items()}[spec.score]
        params = dict(E=E, K=K, score=score, G=spec.num_groups, TG=spec.topk_groups or spec.num_groups,
                      top2=spec.group_score == 1, after=bool(spec.score_after_topk), renorm=bool(spec.renormalize),
                      scale=bool(spec.scale_output), factor=spec.routed_scaling_factor, softcap=spec.softcap)
        compiled = torch.compile(torch_route, dynamic=False)
        for T in tokens:
            inputs = [(torch.randn(T, E, device="cuda").mul_(2).to(dtype)) for _ in range(ROTATE)]
            bias = (torch.rand(E, device="cuda") - 0.5) * 0.2 if spec.has_bias else None
            outs = [(torch.empty(T, K + S, dtype=torch.int32, device="cuda"),
                     torch.empty(T, K + S, dtype=torch.float32, device="cuda")) for _ in range(ROTATE)]
            mj = [lambda i=i: ctx.route(spec, inputs[i], bias=bias, out=outs[i]) for i in range(ROTATE)]
            mj_graph, mj_loop = graph_us(mj), loop_us(mj)
            # agreement with the torch formula (sets of ids per row; near-ties may differ)
            ids, _ = ctx.route(spec, inputs[0], bias=bias)
            ref_ids, _ = torch_route(inputs[0], bias, **params)
            agree = (ids[:, :K].sort(-1).values == ref_ids.sort(-1).values).all(-1).float().mean().item()
            eager_graph = eager_loop = comp_graph = float("nan")
            if not a.no_torch:
                ev = [lambda i=i: torch_route(inputs[i], bias, **params) for i in range(ROTATE)]
                eager_graph, eager_loop = graph_us(ev), loop_us(ev)
                if T in compile_tokens:
                    cv = [lambda i=i: compiled(inputs[i], bias, **params) for i in range(ROTATE)]
                    comp_graph = graph_us(cv)
            moved = T * E * inputs[0].element_size() + T * (K + S) * 8 + (E * 4 if bias is not None else 0)
            bw = moved / (mj_graph * 1e-6) / 1e9
            out(f"{model:<12} {T:>6} {mj_graph:9.2f} {eager_graph:9.2f} {comp_graph:9.2f} "
                f"{comp_graph / mj_graph:9.1f}x {mj_graph / floor_us:7.2f}x {mj_loop:9.2f} {eager_loop:9.2f} "
                f"{bw:8.0f} {100 * bw / bandwidth:5.1f}%" + ("" if agree > 0.999 else f"  (ids agree {agree:.4f})"))
            del inputs, outs
    out()
    out(f"moejit stats: {ctx.stats()}")
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
