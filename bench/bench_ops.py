#!/usr/bin/env python3
"""align and mx_scales on the GPU beside PyTorch eager and torch.compile of the reference formulas,
with the floors (empty kernel, copy bandwidth), timed like bench_route.py (graph: per-launch GPU
time in a CUDA graph; loop: per call). Each moejit result is checked against the torch one.
route_align against route + align is in the C program bench_ops (no torch formula for it).

Usage: bench_ops.py [--tokens 1,16,128,1024,4096,16384] [--out FILE]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import moejit  # noqa: E402
from bench_route import ROTATE, finish, floors, graph_us, loop_us, start  # noqa: E402


def torch_align(topk_ids, E, B, capacity):
    """vLLM's moe_align_block_size semantics (ascending flat index inside an expert), written
    without host syncs so that it can be captured in a graph."""
    flat = topk_ids.flatten().long()
    N = flat.numel()
    counts = torch.zeros(E, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + B - 1) // B * B
    ends = padded.cumsum(0)  # offsets[1:], built without a slice (inductor cannot lower searchsorted over one)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=flat.device), ends])
    starts = torch.zeros(E, dtype=torch.long, device=flat.device)
    starts[1:] = counts.cumsum(0)[:-1]
    order = torch.argsort(flat, stable=True)
    experts = flat[order]
    pos = offsets[experts] + torch.arange(N, device=flat.device) - starts[experts]
    sorted_ids = torch.full((capacity,), N, dtype=torch.int32, device=flat.device)
    sorted_ids[pos] = order.int()
    blocks = torch.arange(capacity // B, device=flat.device) * B
    block_expert = torch.searchsorted(ends, blocks, right=True).int()
    block_expert = torch.where(blocks < offsets[E], block_expert, -1)
    slot_of = torch.empty(N, dtype=torch.int32, device=flat.device)
    slot_of[order] = pos.int()
    return counts.int(), offsets.int(), sorted_ids, block_expert, slot_of


def torch_to_blocked_3d(x):
    """torchao's to_blocked, batched over the groups of [G, R, C]."""
    G, R, C = x.shape
    rb, cb = (R + 127) // 128, (C + 3) // 4
    padded = torch.nn.functional.pad(x, (0, cb * 4 - C, 0, rb * 128 - R))
    blocks = padded.view(G, rb, 128, cb, 4).permute(0, 1, 3, 2, 4)
    return blocks.reshape(G, -1, 4, 32, 4).transpose(2, 3).reshape(G, -1).flatten()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", default="1,16,128,1024,4096,16384")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out, lines = start(a)
    ctx = moejit.Context()
    out(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    floor_us, bandwidth = floors(out)
    out()
    out(f"{'align, B=64, K=8':<22} {'T':>6} {'moejit':>9} {'eager':>9} {'compile':>9} {'vs compile':>10} "
        f"{'floor x':>8} {'moejit':>9} {'eager':>9}")
    out(f"{'':<22} {'':>6} {'--- per launch, CUDA graph (us) ---':^41} {'':>8} {'-- loop (us) --':^19}")
    for name, E in (("qwen3-moe E=128", 128), ("deepseek-v3 E=256", 256)):
        compiled = torch.compile(torch_align, dynamic=False)
        for T in [int(t) for t in a.tokens.split(",")]:
            K, B = 8, 64
            ids = [torch.rand(T, E, device="cuda").argsort(-1)[:, :K].int().contiguous() for _ in range(ROTATE)]
            maps = [moejit.AlignMaps(E, B, T, K) for _ in range(ROTATE)]
            cap = maps[0].capacity
            mj = [lambda i=i: ctx.align(maps[i], ids[i]) for i in range(ROTATE)]
            g, l = graph_us(mj), loop_us(mj)
            ref = torch_align(ids[0], E, B, cap)
            ctx.align(maps[0], ids[0])
            torch.cuda.synchronize()
            total = int(maps[0].total_padded.item())
            ok = (torch.equal(maps[0].counts, ref[0]) and torch.equal(maps[0].offsets, ref[1])
                  and torch.equal(maps[0].sorted_ids[:total], ref[2][:total])
                  and torch.equal(maps[0].block_expert, ref[3]) and torch.equal(maps[0].slot_of.flatten(), ref[4]))
            ev = [lambda i=i: torch_align(ids[i], E, B, cap) for i in range(ROTATE)]
            cv = [lambda i=i: compiled(ids[i], E, B, cap) for i in range(ROTATE)]
            eg, el = graph_us(ev), loop_us(ev)
            try:
                cg = graph_us(cv)
            except Exception as e:  # an inductor limitation must not hide the other numbers
                print(f"torch.compile failed: {type(e).__name__}", file=sys.stderr)
                cg = float("nan")
            out(f"{name:<22} {T:>6} {g:9.2f} {eg:9.2f} {cg:9.2f} {cg / g:9.1f}x {g / floor_us:7.2f}x {l:9.2f} {el:9.2f}"
                + ("" if ok else "  MISMATCH with torch"))
    out()
    out(f"{'mx_scales 3D (G, R, C)':<22} {'moejit':>9} {'eager':>9} {'compile':>9} {'moejit GB/s':>12} "
        f"{'% of copy':>9} {'compile GB/s':>13}")
    for G, R, C in ((16, 8192, 160), (16, 5120, 256), (128, 7168, 64)):
        xs = [torch.randint(0, 256, (G, R, C), dtype=torch.uint8, device="cuda") for _ in range(ROTATE)]
        outs = [ctx.mx_scales(x) for x in xs]
        mj = [lambda i=i: ctx.mx_scales(xs[i], out=outs[i]) for i in range(ROTATE)]
        compiled = torch.compile(torch_to_blocked_3d, dynamic=False)
        g = graph_us(mj)
        ok = torch.equal(ctx.mx_scales(xs[0]), torch_to_blocked_3d(xs[0]))
        eg = graph_us([lambda i=i: torch_to_blocked_3d(xs[i]) for i in range(ROTATE)])
        cg = graph_us([lambda i=i: compiled(xs[i]) for i in range(ROTATE)])
        moved = xs[0].numel() + outs[0].numel()
        out(f"({G}, {R}, {C})".ljust(22) + f" {g:9.2f} {eg:9.2f} {cg:9.2f} {moved / g / 1e3:12.0f} "
            f"{100 * moved / g / 1e3 / bandwidth:8.1f}% {moved / cg / 1e3:13.0f}" + ("" if ok else "  MISMATCH with torch"))
    finish(a, lines)


if __name__ == "__main__":
    main()
