#!/usr/bin/env python3
"""An expert-parallel MoE layer over torch.distributed (NCCL all_to_all_single), routed by moejit.

    python3 examples/ep_moe.py                                   # one process on one GPU
    torchrun --nproc-per-node 2 examples/ep_moe.py               # two ranks, E/2 experts each
    torchrun --nproc-per-node 4 examples/ep_moe.py --redundant 4 --dtype bf16

Each of the W ranks holds P/W consecutive (physical) experts — SiLU-gated MLPs — and a batch of
--tokens rows of which only the first n are real (n differs per rank: the rest is padding, as in a
CUDA-graph-sized batch). One layer, per rank:

  1. route        moejit.route(logits, spec, num_valid=n, expert_load=load, ids_dtype=torch.int64,
                  record=True[, logical_to_physical=, replica_count=, num_physical_experts=]):
                  padded rows get id -1; with --redundant the hottest experts have two replicas and
                  ids are physical (vLLM's EPLB rule); load counts every routed slot per expert.
  2. layout       moejit.dispatch_layout(ids, P, W): tokens_per_rank = the all-to-all's send
                  counts, is_token_in_rank = which token goes to which rank (each token once per
                  rank holding one of its experts, DeepEP's layout).
  3. dispatch     all_to_all_single of the counts, then of the tokens' rows, ids and weights.
  4. experts      moejit.align(recv_ids, P/W, B, first_expert=rank·P/W) keeps this rank's ids
                  (the others are dropped), moejit.permute gathers rows in expert order, each local
                  expert runs on its rows, moejit.combine sums each token's local experts (weighted).
  5. combine      all_to_all_single sends the partial sums back; each token adds its ranks'.

The layer runs twice: the first pass collects the load counters (all-reduced over the ranks), from
which --redundant N picks the N most loaded experts to replicate for the second pass (the EPLB
loop). Each pass is checked against the same layer computed in one process in plain PyTorch (every
rank computes it for all tokens from the same seeded weights and compares its own), and the load
counters against a bincount of that reference's choice. Prints max error and PASS/FAIL per rank;
exits 1 when any rank fails, 77 (a skip for ctest) without torch >= 2.4, CUDA or NCCL.

Environment defaults (when not launched by torchrun): a one-process group on 127.0.0.1 and a free
port; NCCL_NVLS_ENABLE=0 (no NVLink multicast) in every case.
"""
import argparse
import datetime
import os
import socket
import sys

SKIP = 77


def skip(why):
    print(f"ep_moe: skipped: {why}", flush=True)
    sys.exit(SKIP)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experts", type=int, default=0, help="logical experts E (default: 32, or 8·W when W does not "
                                                             "divide 32)")
    p.add_argument("--topk", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128, help="H")
    p.add_argument("--ffn", type=int, default=256, help="each expert's intermediate size")
    p.add_argument("--tokens", type=int, default=96, help="rows of each rank's batch (the first n are real)")
    p.add_argument("--redundant", type=int, default=0, help="extra physical experts: replicas of the most loaded "
                                                            "ones (EPLB); P = E + N must divide by W")
    p.add_argument("--block", type=int, default=16, help="align's block size")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    p.add_argument("--seed", type=int, default=1234)
    return p.parse_args()


def env_defaults():
    """A one-process group unless torchrun (or another launcher) set the variables."""
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for k, v in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                     ("MASTER_PORT", str(port))):
            os.environ.setdefault(k, v)


def import_everything():
    try:
        import torch
    except ImportError as e:
        skip(f"no torch ({e})")
    try:
        import moejit
    except ImportError:  # a source checkout that is not installed: the package next door, build/ library
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
        import moejit
    if not moejit.TORCH_OPS:
        skip(moejit.TORCH_UNAVAILABLE)
    if not torch.cuda.is_available():
        skip("no CUDA device visible to torch")
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_nccl_available():
        skip("torch.distributed has no NCCL")
    return torch, dist, moejit


def main():
    args = parse_args()
    env_defaults()
    torch, dist, moejit = import_everything()
    import torch.nn.functional as F

    rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if local_rank >= torch.cuda.device_count():
        sys.exit(f"ep_moe: rank {rank} wants cuda:{local_rank} but torch sees {torch.cuda.device_count()} GPUs")
    torch.cuda.set_device(local_rank)
    dev = torch.device("cuda", local_rank)
    dist.init_process_group("nccl", timeout=datetime.timedelta(seconds=300), device_id=dev)

    W = world
    E = args.experts or (32 if 32 % W == 0 else 8 * W)
    K, H, Fh, T, B, N = args.topk, args.hidden, args.ffn, args.tokens, args.block, args.redundant
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    for cond, msg in ((E % W == 0, f"--experts {E} must divide by the {W} ranks"),
                      ((E + N) % W == 0, f"E + --redundant = {E + N} physical experts must divide by the {W} ranks"),
                      (0 <= N <= E, f"--redundant {N} must be in [0, E = {E}] (one extra replica per expert at most)"),
                      (1 <= K <= E, f"--topk {K} must be in [1, E = {E}]"), (T >= 2, "--tokens must be >= 2")):
        if not cond:
            sys.exit(f"ep_moe: {msg}")

    # ---- the layer's weights and every rank's tokens: the same on every rank (seeded on the CPU)
    g = torch.Generator().manual_seed(args.seed)
    router = (torch.randn(H, E, generator=g) / H**0.5).to(dev, dtype)
    w_gate = (torch.randn(E, H, Fh, generator=g) / H**0.5).to(dev, dtype)
    w_up = (torch.randn(E, H, Fh, generator=g) / H**0.5).to(dev, dtype)
    w_down = (torch.randn(E, Fh, H, generator=g) / Fh**0.5).to(dev, dtype)
    x_all = torch.randn(W, T, H, generator=g).to(dev, dtype)        # rank r's batch is x_all[r]
    n_all = [T - (7 * r) % (T // 2) for r in range(W)]              # its real rows (the rest is padding)
    x, n = x_all[rank].contiguous(), n_all[rank]
    spec = moejit.RouteSpec(E, K, score="softmax", dtype=dtype, renormalize=True)

    def expert(e, rows):
        """Logical expert e on rows [m, H]: a SiLU-gated MLP."""
        return (F.silu(rows @ w_gate[e]) * (rows @ w_up[e])) @ w_down[e]

    # ---- the reference: the whole layer in one process, plain PyTorch, f32 routing and sums
    def reference():
        """Per rank: the layer's output [T, H] (f32, zero for padding rows) and which of its tokens
        are ambiguous (a K-th and (K+1)-th score within a few ulp: either choice is right, so
        they are left out of the comparison); all real tokens' chosen experts."""
        out, chosen, amb_rows = [], [], []
        for r in range(W):
            logits = x_all[r] @ router                                # the same matmul as rank r's
            s = torch.softmax(logits.float(), -1)
            top = s.topk(min(K + 1, E), dim=-1)
            w, ids = top.values[:, :K], top.indices[:, :K]
            amb = torch.zeros(T, dtype=torch.bool, device=dev)
            if K < E:
                amb = (top.values[:, K - 1] - top.values[:, K]) <= 1e-6 * top.values[:, K - 1]
            amb[n_all[r]:] = False
            w = w / w.sum(-1, keepdim=True)
            y = torch.zeros(T, H, device=dev)
            for e in range(E):
                t, k = (ids[:n_all[r]] == e).nonzero(as_tuple=True)
                if t.numel():
                    y.index_add_(0, t, w[t, k, None] * expert(e, x_all[r, t]).float())
            out.append(y)
            chosen.append(ids[:n_all[r]])
            amb_rows.append(amb)
        return out, torch.cat(chosen), amb_rows

    ref_out, ref_ids, amb_rows = reference()
    ambiguous = sum(int(a.sum()) for a in amb_rows)
    ref_load = torch.bincount(ref_ids.flatten(), minlength=E)

    def layer(placement):
        """One expert-parallel pass; placement = None or (logical_to_physical, replica_count,
        phys_to_logical). Returns (output [T, H] f32, physical load [P], the route's ids and
        logical ids, the split sizes)."""
        if placement is None:
            P, phys_to_logical, kw = E, torch.arange(E, device=dev), {}
        else:
            l2p, rc, phys_to_logical = placement
            P = phys_to_logical.numel()
            kw = dict(logical_to_physical=l2p, replica_count=rc, num_physical_experts=P)
        local, first = P // W, rank * (P // W)
        load = torch.zeros(P, dtype=torch.int64, device=dev)
        num_valid = torch.tensor([n], dtype=torch.int32, device=dev)

        # 1. route: padded rows -1, physical ids with placement, load counters
        ids, weights, logical = moejit.route(x @ router, spec, num_valid=num_valid, expert_load=load,
                                             ids_dtype=torch.int64, record=True, **kw)
        # 2. layout: who goes where
        lay = moejit.dispatch_layout(ids, P, W)
        dest, tok = lay.is_token_in_rank.t().nonzero(as_tuple=True)    # sorted by destination, then token
        assert torch.equal(torch.bincount(dest, minlength=W), lay.tokens_per_rank.long())
        # 3. dispatch: counts, then rows, ids and weights
        send = lay.tokens_per_rank
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send)
        send_splits, recv_splits = send.tolist(), recv.tolist()

        def exchange(t, out_splits, in_splits):
            """Rows of t, in_splits[r] of them for rank r, to the ranks; out_splits[r] come from r."""
            out = t.new_empty((sum(out_splits),) + tuple(t.shape[1:]))
            dist.all_to_all_single(out, t.contiguous(), out_splits, in_splits)
            return out

        recv_x, recv_ids, recv_w = (exchange(t[tok], recv_splits, send_splits) for t in (x, ids, weights))
        # 4. this rank's experts: align keeps ids first .. first + local - 1, permute, experts, combine
        maps = moejit.align(recv_ids, local, B, first_expert=first)
        xs = moejit.permute(recv_x, maps.sorted_ids, K)
        ys = torch.zeros_like(xs)
        offsets, counts, p2l = maps.offsets.tolist(), maps.counts.tolist(), phys_to_logical.tolist()
        for e in range(local):
            if counts[e]:
                o = offsets[e]
                ys[o:o + counts[e]] = expert(p2l[first + e], xs[o:o + counts[e]])
        partial = moejit.combine(ys, maps.slot_of, recv_w)               # [M, H]: Σ of this rank's slots
        # 5. back to the tokens' ranks, summed there
        back = exchange(partial, send_splits, recv_splits)
        out = torch.zeros(T, H, device=dev).index_add_(0, tok, back.float())
        return out, load, ids, logical, send_splits, recv_splits, P

    def check(step, placement):
        out, load, ids, logical, send_splits, recv_splits, P = layer(placement)
        ref = ref_out[rank]
        keep = ~amb_rows[rank]                                           # tokens whose top-K is unambiguous
        err = float((out - ref)[keep].abs().max()) if bool(keep.any()) else 0.0
        scale = max(1.0, float(ref.abs().max()))
        tol = (1e-4 if dtype == torch.float32 else 3e-2) * scale
        ok = err <= tol and bool(out[n:].eq(0).all())
        notes = []
        # the placement rule: slot k of token t on replica (t·K + k) mod replica_count of its expert
        if placement is not None:
            l2p, rc, _ = placement
            lg = logical[:n, :K]
            rep = torch.arange(n * K, device=dev).view(n, K) % rc.long()[lg]
            if not torch.equal(ids[:n], l2p.long()[lg, rep]):
                ok = False
                notes.append("physical ids break the placement rule")
        if not ids[n:].eq(-1).all():
            ok, notes = False, notes + ["padded rows were routed"]
        # load counters: all ranks' physical counts, folded onto logical experts
        dist.all_reduce(load)
        phys_to_logical = placement[2] if placement is not None else torch.arange(E, device=dev)
        logical_load = torch.zeros(E, dtype=torch.int64, device=dev).index_add_(0, phys_to_logical, load)
        if ambiguous == 0 and not torch.equal(logical_load, ref_load):
            ok = False
            notes.append("load counters differ from the reference's bincount")
        if int(load.sum()) != sum(n_all) * K:
            ok = False
            notes.append(f"load counters sum to {int(load.sum())}, expected {sum(n_all) * K}")
        print(f"[rank {rank}/{W}] pass {step}: P = {P} experts ({P // W} here), {n}/{T} real tokens, sent "
              f"{send_splits}, received {recv_splits}; max |err| = {err:.3g} (tol {tol:.3g}) "
              f"{'PASS' if ok else 'FAIL'}{': ' + '; '.join(notes) if notes else ''}", flush=True)
        return ok, logical_load

    if rank == 0:
        print(f"ep_moe: {W} rank(s), E = {E} experts, top-{K}, H = {H}, FFN = {Fh}, {T} rows a rank "
              f"({sum(n_all)} real tokens), {args.dtype}, --redundant {N}"
              + (f"; {ambiguous} reference tokens tie at the K-th expert" if ambiguous else ""), flush=True)
    ok1, logical_load = check(1, None)
    placement = None
    if N:
        # EPLB: the N most loaded experts (by pass 1's all-reduced counters) get a second replica,
        # physical ids E .. E+N-1 (on the last ranks)
        hot = torch.argsort(logical_load, descending=True, stable=True)[:N]
        l2p = torch.full((E, 2), -1, dtype=torch.int32, device=dev)
        l2p[:, 0] = torch.arange(E, dtype=torch.int32, device=dev)
        l2p[hot, 1] = torch.arange(E, E + N, dtype=torch.int32, device=dev)
        rc = torch.ones(E, dtype=torch.int32, device=dev)
        rc[hot] = 2
        placement = (l2p, rc, torch.cat([torch.arange(E, device=dev), hot]))
        if rank == 0:
            print(f"ep_moe: replicating experts {hot.tolist()} (loads {logical_load[hot].tolist()})", flush=True)
    ok2, _ = check(2, placement)

    failed = torch.tensor([0 if ok1 and ok2 else 1], device=dev)
    dist.all_reduce(failed)
    if rank == 0:
        print(f"ep_moe: {'PASS' if not int(failed) else f'FAIL ({int(failed)} rank(s))'}", flush=True)
    dist.barrier(device_ids=[local_rank])
    dist.destroy_process_group()
    return 1 if int(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
