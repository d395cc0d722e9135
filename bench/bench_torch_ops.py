#!/usr/bin/env python3
"""The torch ops' cost beside the C launch they wrap, on the GPU, in one run.

For each op and batch, per call:
  host µs   eager wall time per call of a loop of calls (the GPU keeps up: small batches), under
            torch.no_grad and under torch.inference_mode ("inf": engines' serving mode), for
            - moejit.op: the Python API with out= (moejit.route(..., out=) etc.): in eager mode it
              calls the op's implementation without the dispatcher,
            - torch.ops: the torch op's out= form through the dispatcher (what a compiled graph calls),
            - ctypes: the same kernel through the ctypes binding with prebuilt spec and args,
            - topk: torch.topk on the same logits (route rows): the target is op <= torch.topk
  GPU µs    per launch in a CUDA graph (bench_route.graph_us): the torch op beside the ctypes launch
            (target: equal within noise)

Usage: bench_torch_ops.py [--tokens 1,128,4096] [--calls 2000] [--out FILE]
The registration (MOEJIT_TORCH_REGISTRATION=custom_op|direct, see moejit/ops.py) is printed.
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import moejit  # noqa: E402
from moejit import _capi as C  # noqa: E402
from moejit import core  # noqa: E402
from bench_route import ROTATE, finish, graph_us, start  # noqa: E402


def host_us(fn, calls, mode):
    """Median over 5 runs of the wall time per call of `calls` calls (after a warm-up)."""
    ctx = torch.inference_mode() if mode == "inference" else torch.no_grad()
    with ctx:
        for _ in range(50):
            fn()
        torch.cuda.synchronize()
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            runs.append((t1 - t0) * 1e6 / calls)
    return statistics.median(runs)


def raw_call(fn, spec, args, device):
    """A ctypes launch with everything prebuilt but the current stream: the floor of a Python caller."""
    ctx = moejit.get_context()._ctx
    idx = torch.device(device).index or 0
    raw_stream = torch._C._cuda_getCurrentRawStream
    sp, ap = ctypes.byref(spec), ctypes.byref(args)
    return lambda: fn(ctx, sp, ap, raw_stream(idx))


def cases(tokens):
    """(name, T, Python API call, torch.ops call, ctypes call, torch.topk on the same logits or None)."""
    ops = torch.ops.moejit
    dev = torch.device("cuda")
    for T in tokens:
        spec = moejit.RouteSpec.preset("deepseek-v3", dtype=torch.float32)
        E, K = spec.num_experts, spec.topk
        x = torch.randn(T, E, device=dev)
        bias = torch.rand(E, device=dev) * 0.1
        ids, w = torch.empty(T, K, dtype=torch.int32, device=dev), torch.empty(T, K, device=dev)
        args = C.RouteArgs(x.data_ptr(), bias.data_ptr(), ids.data_ptr(), w.data_ptr(), T, E)
        yield ("route deepseek-v3 f32", T, lambda: moejit.route(x, spec, bias, out=(ids, w)),
               lambda: ops.route_out(x, bias, ids, w, *spec.params),
               raw_call(C.lib.moejit_route, spec._c, args, dev), lambda: torch.topk(x, K))

        B = 64
        maps = moejit.align(ids, E, B)
        cap = maps.sorted_ids.numel()
        keep = (ids, maps)
        outs = C.AlignOutputs(maps.counts.data_ptr(), maps.offsets.data_ptr(), maps.sorted_ids.data_ptr(), cap,
                              maps.block_expert.data_ptr(), maps.total_padded.data_ptr(), maps.slot_of.data_ptr(),
                              None, 0)
        ws_bytes = moejit.align_workspace_bytes(E, B, T, K)
        ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device=dev)
        outs.workspace, outs.workspace_bytes = (ws.data_ptr(), ws_bytes) if ws_bytes else (None, 0)
        aargs = C.AlignArgs(ids.data_ptr(), T, K, 0, outs)
        yield ("align E=256 B=64", T, lambda k=keep: moejit.align(k[0], E, B, out=k[1], workspace=ws),
               lambda: ops.align_out(ids, E, B, *maps, ws if ws_bytes else None),
               raw_call(C.lib.moejit_align, core.align_spec_c(E, B), aargs, dev), None)

        ra = moejit.route_align(x, spec, 16, bias)
        ra_c = core.route_align_spec_c(core.spec_key(spec._c), 16)
        ra_cap = ra.sorted_ids.numel()
        ra_ws = moejit.align_workspace_bytes(E, 16, T, K)
        ra_wst = torch.empty(max(ra_ws, 1), dtype=torch.uint8, device=dev)
        rargs = C.RouteAlignArgs(C.RouteArgs(x.data_ptr(), bias.data_ptr(), ra.ids.data_ptr(), ra.weights.data_ptr(), T, E),
                                 C.AlignOutputs(ra.counts.data_ptr(), ra.offsets.data_ptr(), ra.sorted_ids.data_ptr(), ra_cap,
                                                ra.block_expert.data_ptr(), ra.total_padded.data_ptr(),
                                                ra.slot_of.data_ptr(), ra_wst.data_ptr() if ra_ws else None, ra_ws))
        yield ("route_align B=16", T, lambda: moejit.route_align(x, spec, 16, bias, out=ra, workspace=ra_wst),
               lambda: ops.route_align_out(x, bias, 16, *ra, ra_wst if ra_ws else None, *spec.params),
               raw_call(C.lib.moejit_route_align, ra_c, rargs, dev), lambda: torch.topk(x, K))

        H = 2048
        h = torch.randn(T, H, device=dev, dtype=torch.bfloat16)
        xs = torch.empty(cap, H, device=dev, dtype=torch.bfloat16)
        pargs = C.PermuteArgs(h.data_ptr(), maps.sorted_ids.data_ptr(), None, None, xs.data_ptr(), T, K, 0, cap)
        yield (f"permute H={H} bf16", T, lambda: moejit.permute(h, maps.sorted_ids, K, out=xs),
               lambda: ops.permute_out(h, maps.sorted_ids, K, None, None, xs),
               raw_call(C.lib.moejit_permute, core.permute_spec_c(H, "bf16", 0), pargs, dev), None)
        o = torch.empty(T, H, device=dev, dtype=torch.bfloat16)
        cargs = C.CombineArgs(xs.data_ptr(), maps.slot_of.data_ptr(), w.data_ptr(), o.data_ptr(), T, K, 0, cap)
        yield (f"combine H={H} bf16", T, lambda: moejit.combine(xs, maps.slot_of, w, out=o),
               lambda: ops.combine_out(xs, maps.slot_of, w, o),
               raw_call(C.lib.moejit_combine, core.combine_spec_c(H, "bf16"), cargs, dev), None)

    s = torch.randint(0, 256, (16, 512, 224), dtype=torch.uint8, device="cuda")
    b = moejit.mx_scales(s)
    margs = C.MxScalesArgs(0, s.data_ptr(), b.data_ptr(), 16, 512, None, 224, 512 * 224)
    yield ("mx_scales 3D 16x512x224", 16, lambda: moejit.mx_scales(s, out=b),
           lambda: ops.mx_scales_out(s, None, b),
           raw_call(C.lib.moejit_mx_scales, core.mx_spec_c(224), margs, torch.device("cuda")), None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", default="1,128,4096")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out, lines = start(a)
    out(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  moejit {moejit.__version__}  "
        f"registration {moejit.ops.REGISTRATION}")
    out(f"{'':<26} {'':>5} | {'------------- host us per call, eager -------------':^52} | "
        f"{'-- GPU us, graph --':^21}")
    out(f"{'op':<26} {'T':>5} | {'moejit.op':>9} {'(inf)':>7} {'torch.ops':>9} {'(inf)':>7} {'ctypes':>7} "
        f"{'topk':>7} | {'torch.ops':>10} {'ctypes':>10}")
    for name, T, api, op, raw, topk in cases([int(t) for t in a.tokens.split(",")]):
        h = [host_us(f, a.calls, m) for f, m in ((api, "no_grad"), (api, "inference"), (op, "no_grad"),
                                                  (op, "inference"), (raw, "no_grad"))]
        h_topk = host_us(topk, a.calls, "no_grad") if topk else float("nan")
        g_op, g_raw = graph_us([op] * ROTATE), graph_us([raw] * ROTATE)
        out(f"{name:<26} {T:>5} | {h[0]:9.2f} {h[1]:7.2f} {h[2]:9.2f} {h[3]:7.2f} {h[4]:7.2f} {h_topk:7.2f} | "
            f"{g_op:10.2f} {g_raw:10.2f}")
    out(f"moejit stats: {moejit.stats()}")
    finish(a, lines)


if __name__ == "__main__":
    main()
