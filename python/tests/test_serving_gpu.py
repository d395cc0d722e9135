"""Issue 15's serving options through the torch functions, each against a plain-PyTorch reference
written here: padded rows (num_valid = T, 0, > T, in between, negative), expert placement (vLLM's
rule) and load counters (torch.bincount), routing replay (record, then given: bit-identical
weights), int64/int16 ids against int32 ones, align with expert_map / first_expert (counts per
local expert and the sorted order), dispatch_layout, a CUDA graph whose padded count changes
between replays, and torch.compile(fullgraph=True) of a function using all of them.

The plain route these build on is checked against the C reference in test_ops_gpu.py."""
import os

import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)

from refs import spaced  # noqa: E402

DEV = "cuda"
I16, I32, I64 = torch.int16, torch.int32, torch.int64

SPECS = {
    "softmax": lambda d: moejit.RouteSpec(64, 6, dtype=d, renormalize=True),
    "deepseek-v3": lambda d: moejit.RouteSpec.preset("deepseek-v3", dtype=d),
    "shared+softcap": lambda d: moejit.RouteSpec(60, 6, score="sqrt_softplus", dtype=d, softcap=20.0, renormalize=True,
                                                 scale_output=True, routed_scaling_factor=2.5, shared_slots=2),
}


@pytest.fixture(autouse=True)
def seed():
    """A fresh seed per test (pytest shows it with a failure's captured output)."""
    s = int.from_bytes(os.urandom(4), "little")
    print(f"seed {s}")
    torch.manual_seed(s)
    return s


def bias_for(spec):
    return (torch.rand(spec.num_experts, device=DEV) - 0.5) * 0.1 if spec.has_bias else None


def count(n):
    return torch.tensor([n], dtype=I32, device=DEV)


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# ---- references ------------------------------------------------------------------------------------
def ref_placement(logical, K, S, l2p, rc, P):
    """vLLM's eplb_map_to_physical rule on logical ids [T, K+S] (-1: padded row): slot k of token t
    takes replica (t·K + k) mod c of its expert, c = replica_count clamped to [1, R]; a map entry
    outside [0, P) gives -1; shared slot j of a routed row is P + j."""
    T = logical.shape[0]
    R = l2p.shape[1]
    lg = logical[:, :K].long()
    routed = lg >= 0
    e = lg.clamp(min=0)
    c = rc.long().clamp(1, R)[e]
    rep = torch.arange(T * K, device=logical.device).view(T, K) % c
    phys = l2p.long()[e, rep]
    phys = torch.where(routed & (phys >= 0) & (phys < P), phys, -1)
    row = (logical[:, :1] >= 0) if T else torch.zeros(0, 1, dtype=torch.bool, device=logical.device)
    shared = torch.where(row, P + torch.arange(S, device=logical.device)[None, :], -1)
    return torch.cat([phys, shared], 1)


def ref_load(ids, K, P, dtype):
    """Routed slots per physical expert (torch.bincount of the ids in [0, P) of the first K columns)."""
    r = ids[:, :K].long().flatten()
    return torch.bincount(r[(r >= 0) & (r < P)], minlength=P).to(dtype)


def make_placement(E, R, P):
    """A random placement of E logical experts on P physical ones, each expert 1..R replicas at
    distinct physical ids; columns past an expert's count hold -7 (never read while the count
    is in range)."""
    assert E <= P <= E * R
    phys = torch.randperm(P)
    l2p = torch.full((E, R), -7, dtype=I32)
    rc = torch.ones(E, dtype=I32)
    l2p[:, 0] = phys[:E].int()
    order = torch.randperm(E)
    for i, p in enumerate(phys[E:].tolist()):
        e = int(order[i % E])
        l2p[e, rc[e]] = p
        rc[e] += 1
    return l2p.to(DEV), rc.to(DEV)


def ref_given_weights(x, spec, given):
    """Weights of given logical ids (steps 0-7 of moejit.h's route with the selection replaced): the
    scores of those experts, renormalised, the shared slots, the scaling. Ids outside [0, E)
    weigh 0 and add nothing."""
    E, K, S = spec.num_experts, spec.topk, spec.shared_slots
    assert not spec.score_after_topk
    z = x.float()
    if spec.softcap:
        z = spec.softcap * torch.tanh(z / spec.softcap)
    s = {"softmax": lambda: torch.softmax(z, -1), "sigmoid": lambda: torch.sigmoid(z),
         "sqrt_softplus": lambda: torch.sqrt(torch.nn.functional.softplus(z))}[spec.score_name]()
    g = given[:, :K].long()
    ok = (g >= 0) & (g < E)
    w = torch.where(ok, s.gather(1, g.clamp(0, E - 1)), 0.0)
    if spec.renormalize:
        total = w.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / total, w)
    factor = spec.routed_scaling_factor or 1.0
    shared = (w.sum(-1, keepdim=True) / factor).expand(-1, S)
    w = torch.cat([w, shared], 1)
    if spec.scale_output:
        w = w * factor
    ids = torch.cat([torch.where(ok, g, -1), E + torch.arange(S, device=x.device).expand(g.shape[0], S)], 1)
    return ids, w


def ref_align(local, E, B):
    """align over local ids [T, K] (-1: dropped), in plain PyTorch: counts, offsets, the sorted
    flat indices (ascending within an expert, padded with N to a multiple of B), each block's
    expert and slot_of."""
    T, K = local.shape
    N = T * K
    flat = local.flatten().long()
    counts = torch.bincount(flat[flat >= 0], minlength=E)[:E]
    padded = (counts + B - 1) // B * B
    offsets = torch.zeros(E + 1, dtype=torch.long, device=local.device)
    offsets[1:] = padded.cumsum(0)
    total = int(offsets[E])
    sorted_ids = torch.full((total,), N, dtype=torch.long, device=local.device)
    slot_of = torch.full((N,), -1, dtype=torch.long, device=local.device)
    for e in range(E):
        idx = (flat == e).nonzero().flatten()                        # ascending flat indices
        o = int(offsets[e])
        sorted_ids[o:o + idx.numel()] = idx
        slot_of[idx] = o + torch.arange(idx.numel(), device=local.device)
    blocks = torch.repeat_interleave(torch.arange(E, device=local.device), padded // B)
    return dict(counts=counts, offsets=offsets, total=total, sorted_ids=sorted_ids, block_expert=blocks,
                slot_of=slot_of.view(T, K))


def assert_align(maps, ref, B):
    total = ref["total"]
    assert int(maps.total_padded) == total
    assert torch.equal(maps.counts.long(), ref["counts"]), "counts per local expert differ"
    assert torch.equal(maps.offsets.long(), ref["offsets"]), "offsets differ"
    assert torch.equal(maps.sorted_ids[:total].long(), ref["sorted_ids"]), "the sorted order differs"
    nb = total // B
    assert torch.equal(maps.block_expert[:nb].long(), ref["block_expert"]), "block_expert differs"
    assert maps.block_expert[nb:].eq(-1).all(), "block_expert past the total is not -1"
    assert torch.equal(maps.slot_of.long(), ref["slot_of"]), "slot_of differs"


def ref_dispatch_layout(ids, E, R, rpn):
    T = ids.shape[0]
    g = ids.long()
    ok = (g >= 0) & (g < E)
    rank = torch.where(ok, g // (E // R), R)                       # R: "nowhere", dropped below
    hot = torch.zeros(T, R + 1, dtype=torch.bool, device=ids.device)
    hot.scatter_(1, rank, True)
    in_rank = hot[:, :R]
    per_node = in_rank.reshape(T, R // rpn, rpn).any(-1).sum(0) if R > rpn else None
    return (in_rank.sum(0), per_node, torch.bincount(g[ok], minlength=E), in_rank)


# ---- padded rows ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T", [1, 37, 300])
@pytest.mark.parametrize("n", ["T", "0", "T+5", "half", "-3"])
def test_padded_rows(name, dtype, T, n):
    spec = SPECS[name](dtype)
    x, b = spaced(T, spec.num_experts, dtype), bias_for(spec)
    n = {"T": T, "0": 0, "T+5": T + 5, "half": T // 2, "-3": -3}[n]
    m = max(0, min(n, T))
    plain_ids, plain_w = moejit.route(x, spec, b)
    ids, w = moejit.route(x, spec, b, num_valid=count(n))
    assert ids.dtype == I32 and ids.shape == plain_ids.shape
    assert torch.equal(ids[:m], plain_ids[:m]), "rows below num_valid differ from the unpadded route"
    close(w[:m], plain_w[:m])
    assert ids[m:].eq(-1).all() and w[m:].eq(0).all(), "rows at or past num_valid must be id -1, weight 0"
    # out= form, poisoned, int64 ids
    out = (torch.full(ids.shape, 77, dtype=I64, device=DEV), torch.full(w.shape, float("nan"), device=DEV))
    assert moejit.route(x, spec, b, num_valid=count(n), out=out) is out
    assert torch.equal(out[0], ids.long()) and torch.equal(out[1], w)


def test_padded_count_is_read_on_the_device_each_call():
    spec = SPECS["softmax"](torch.float32)
    x = spaced(50, 64)
    nv = count(50)
    plain_ids, _ = moejit.route(x, spec)
    for n in (50, 3, 0, 49):
        nv.fill_(n)
        ids, w = moejit.route(x, spec, num_valid=nv)
        assert torch.equal(ids[:n], plain_ids[:n]) and ids[n:].eq(-1).all() and w[n:].eq(0).all()


# ---- placement and load counters ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("load_dtype", [I32, I64])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("ids_dtype", [I32, I64])
def test_placement_and_load(name, load_dtype, padded, ids_dtype):
    spec = SPECS[name](torch.float32)
    E, K, S = spec.num_experts, spec.topk, spec.shared_slots
    R, P = 3, E + E // 2 + 1
    T = 203
    x, b = spaced(T, E), bias_for(spec)
    nv = count(T - 17) if padded else None
    plain_ids, plain_w = moejit.route(x, spec, b, num_valid=nv) if padded else moejit.route(x, spec, b)
    l2p, rc = make_placement(E, R, P)
    # the two experts chosen most: one with a count above R (read as R; its columns past the first
    # hold P + 5, outside [0, P): those slots get id -1, weight kept), one with 0 (read as 1)
    chosen = plain_ids[:, :K].long().flatten()
    hot = torch.bincount(chosen[chosen >= 0], minlength=E).argsort(descending=True)
    rc[hot[0]], l2p[hot[0], 1:] = R + 3, P + 5
    rc[hot[1]] = 0
    load0 = torch.randint(0, 1000, (P,), device=DEV, dtype=load_dtype)
    load = load0.clone()
    ids, w, logical = moejit.route(x, spec, b, num_valid=nv, logical_to_physical=l2p, replica_count=rc,
                                   num_physical_experts=P, expert_load=load, record=True, ids_dtype=ids_dtype)
    assert ids.dtype == ids_dtype and logical.dtype == ids_dtype
    assert torch.equal(logical.int(), plain_ids), "the recorded logical ids are the unplaced selection"
    want = ref_placement(plain_ids, K, S, l2p, rc, P)
    assert torch.equal(ids.long(), want), "physical ids differ from vLLM's (t·K + k) mod replica_count rule"
    close(w, plain_w)                                                # placement moves no weight
    assert torch.equal(load, load0 + ref_load(want, K, P, load_dtype)), "expert_load != before + bincount(ids)"
    m = T - 17 if padded else T
    assert want[:m, :K].eq(-1).any(), "the test meant to hit a map entry outside [0, P)"


def test_load_counter_without_placement_counts_logical_ids():
    spec = SPECS["deepseek-v3"](torch.bfloat16)
    x, b = spaced(500, 256, torch.bfloat16), bias_for(spec)
    load = torch.zeros(256, dtype=I64, device=DEV)
    ids, _ = moejit.route(x, spec, b, expert_load=load)
    ids2, _ = moejit.route(x, spec, b, expert_load=load, num_valid=count(100))    # added to, not overwritten
    assert torch.equal(load, ref_load(ids, 8, 256, I64) + ref_load(ids2, 8, 256, I64))
    assert int(load.sum()) == (500 + 100) * 8


def test_placement_with_the_identity_map_is_the_plain_route():
    spec = SPECS["softmax"](torch.float32)
    x = spaced(64, 64)
    l2p = torch.arange(64, dtype=I32, device=DEV).view(64, 1)
    ids, w = moejit.route(x, spec, logical_to_physical=l2p, replica_count=torch.ones(64, dtype=I32, device=DEV),
                          num_physical_experts=64)
    plain_ids, plain_w = moejit.route(x, spec)
    assert torch.equal(ids, plain_ids)
    close(w, plain_w)


# ---- routing replay ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lid_dtype", [I32, I64, I16])
def test_replay_record_then_given(name, dtype, lid_dtype):
    spec = SPECS[name](dtype)
    E, K, S = spec.num_experts, spec.topk, spec.shared_slots
    T = 150
    x, b = spaced(T, E, dtype), bias_for(spec)
    out = (torch.empty(T, K + S, dtype=I32, device=DEV), torch.empty(T, K + S, device=DEV),
           torch.full((T, K + S), 99, dtype=lid_dtype, device=DEV))
    ids, w, logical = moejit.route(x, spec, b, record=True, out=out)
    plain_ids, plain_w = moejit.route(x, spec, b)
    assert torch.equal(logical.int(), plain_ids) and torch.equal(ids, plain_ids)
    if S:
        assert torch.equal(logical[:, K:].long(), E + torch.arange(S, device=DEV).expand(T, S)), "shared slots E+j"
    # given the recorded ids, the same logits give bit-identical weights
    ids2, w2 = moejit.route(x, spec, b, logical_ids=logical)
    assert torch.equal(ids2, ids) and torch.equal(w2, w), "replayed weights are not bit-identical"
    # given on other logits: the recorded experts keep their place, their weights follow the new scores
    x2 = spaced(T, E, dtype)
    given = logical.clone()
    given[0, 0], given[1, K - 1] = -1, E + 3            # outside [0, E): id -1, weight 0, not in the sums
    ids3, w3 = moejit.route(x2, spec, b, logical_ids=given)
    ref_ids, ref_w = ref_given_weights(x2, spec, given)
    assert torch.equal(ids3.long(), ref_ids)
    torch.testing.assert_close(w3, ref_w, rtol=1e-5, atol=1e-6)


def test_replay_with_padding_and_placement():
    """Record with padded rows (logical -1 there), then replay them through a placement: the given
    -1 rows stay padding and count nothing."""
    spec = SPECS["deepseek-v3"](torch.float32)
    E, K, T, R, P = 256, 8, 90, 2, 288
    x, b = spaced(T, E), bias_for(spec)
    nv = count(60)
    _, w, logical = moejit.route(x, spec, b, num_valid=nv, record=True, ids_dtype=I64)
    assert logical[60:].eq(-1).all() and logical[:60].ge(0).all()
    l2p, rc = make_placement(E, R, P)
    load = torch.zeros(P, dtype=I32, device=DEV)
    ids, w2 = moejit.route(x, spec, b, logical_ids=logical, logical_to_physical=l2p, replica_count=rc,
                           num_physical_experts=P, expert_load=load)
    want = ref_placement(logical, K, 0, l2p, rc, P)
    assert torch.equal(ids.long(), want) and torch.equal(w2, w)
    assert torch.equal(load, ref_load(want, K, P, I32)) and int(load.sum()) == 60 * K


# ---- id dtypes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("ids_dtype", [I64, I16])
@pytest.mark.parametrize("T", [0, 1, 333])
def test_ids_dtypes_equal_int32(name, ids_dtype, T):
    spec = SPECS[name](torch.bfloat16)
    x, b = spaced(T, spec.num_experts, torch.bfloat16), bias_for(spec)
    ids32, w32 = moejit.route(x, spec, b)
    ids, w = moejit.route(x, spec, b, ids_dtype=ids_dtype)
    assert ids.dtype == ids_dtype and ids.shape == ids32.shape
    assert torch.equal(ids.int(), ids32)
    close(w, w32)
    # through the operator too (what torch.compile calls)
    ids_op, w_op, rec = torch.ops.moejit.route_serving(x, b, None, None, None, None, None, *spec.params, 0,
                                                       str(ids_dtype).split(".")[-1], "")
    assert ids_op.dtype == ids_dtype and torch.equal(ids_op, ids) and torch.equal(w_op, w) and rec.numel() == 0
    # a spec that says int64 routes int64 by default
    if ids_dtype == I64:
        ids_s, _ = moejit.route(x, spec.replace(id_dtype=torch.int64), b)
        assert ids_s.dtype == I64 and torch.equal(ids_s, ids)


# ---- align with expert maps ----------------------------------------------------------------------
EG, EL, FIRST = 96, 24, 48   # 96 global experts, 24 on this rank: global 48..71 without a map


def global_ids(T, K, dtype):
    ids = torch.randint(0, EG, (T, K), device=DEV)
    if T:
        drop = torch.rand(T, K, device=DEV) < 0.1
        ids = torch.where(drop, torch.tensor([-1, EG, EG + 5], device=DEV)[torch.randint(0, 3, (T, K), device=DEV)], ids)
    ids = ids.to(dtype)
    if dtype == I64 and T > 2:
        ids[0, 0], ids[1, 0], ids[2, 0] = 2**40 + FIRST, -(2**33) + FIRST, 2**32 + 50   # low halves look valid
    return ids


def random_expert_map():
    """vLLM's expert_map [EG]: 24 random globals → local 0..23, -1 elsewhere; two entries point
    outside [0, EL) (dropped)."""
    m = torch.full((EG,), -1, dtype=I32)
    chosen = torch.randperm(EG)[:EL + 2]
    m[chosen[:EL]] = torch.randperm(EL).int()
    m[chosen[EL]], m[chosen[EL + 1]] = EL, EL + 7
    return m.to(DEV)


@pytest.mark.parametrize("ids_dtype", [I32, I64, I16])
@pytest.mark.parametrize("mode", ["first_expert", "expert_map", "expert_map_int64"])
@pytest.mark.parametrize("T, K", [(0, 4), (5, 4), (300, 8), (3000, 8), (9000, 8)])
@pytest.mark.parametrize("B", [1, 16])
def test_align_expert_parallel(ids_dtype, mode, T, K, B):
    ids = global_ids(T, K, ids_dtype)
    g = ids.long()
    if mode == "first_expert":
        local = torch.where((g >= FIRST) & (g < FIRST + EL), g - FIRST, -1)
        maps = moejit.align(ids, EL, B, first_expert=FIRST)
    else:
        emap = random_expert_map()
        inside = (g >= 0) & (g < EG)
        local = torch.where(inside, emap.long()[g.clamp(0, EG - 1)], -1)
        local = torch.where((local >= 0) & (local < EL), local, -1)
        maps = moejit.align(ids, EL, B, expert_map=emap.long() if mode == "expert_map_int64" else emap)
    assert maps.counts.shape == (EL,) and maps.slot_of.shape == (T, K)
    assert_align(maps, ref_align(local, EL, B), B)
    # out= form (72000 ids take the workspace path)
    cap = moejit.align_capacity(EL, B, T, K)
    out = moejit.AlignResult(*(torch.full(s, -9, dtype=I32, device=DEV) for s in
                               ((EL,), (EL + 1,), (cap,), (cap // B,), (1,), (T, K))))
    kw = dict(first_expert=FIRST) if mode == "first_expert" else dict(expert_map=emap)
    moejit.align(ids, EL, B, out=out, **kw)
    assert_align(out, ref_align(local, EL, B), B)


def test_align_without_options_is_unchanged_for_int64():
    """first_expert = 0 and no map: global ids are the local ones, out-of-range int64 ids dropped."""
    ids = global_ids(40, 4, I64)
    g = ids.long()
    maps = moejit.align(ids, EG, 8)
    assert_align(maps, ref_align(torch.where((g >= 0) & (g < EG), g, -1), EG, 8), 8)


# ---- dispatch_layout --------------------------------------------------------------------------------
@pytest.mark.parametrize("E, R, rpn", [(64, 1, 8), (64, 4, 8), (64, 8, 8), (256, 16, 8), (96, 12, 4), (288, 32, 8)])
@pytest.mark.parametrize("ids_dtype", [I32, I64, I16])
@pytest.mark.parametrize("T, K", [(0, 8), (1, 1), (77, 8), (5000, 6)])
def test_dispatch_layout(E, R, rpn, ids_dtype, T, K):
    ids = torch.randint(0, E, (T, K), device=DEV)
    if T:
        drop = torch.rand(T, K, device=DEV) < 0.1                  # padding and ids outside [0, E): skipped
        ids = torch.where(drop, torch.tensor([-1, E, E + 9], device=DEV)[torch.randint(0, 3, (T, K), device=DEV)], ids)
    ids = ids.to(ids_dtype)
    got = moejit.dispatch_layout(ids, E, R, rpn)
    tpr, tpn, tpe, itr = ref_dispatch_layout(ids, E, R, rpn)
    assert got.tokens_per_rank.dtype == I32 and got.tokens_per_expert.dtype == I32
    assert got.is_token_in_rank.dtype == torch.bool and got.is_token_in_rank.shape == (T, R)
    assert torch.equal(got.tokens_per_rank.long(), tpr)
    assert torch.equal(got.tokens_per_expert.long(), tpe)
    assert torch.equal(got.is_token_in_rank, itr)
    if R > rpn:
        assert torch.equal(got.tokens_per_node.long(), tpn)
    else:
        assert got.tokens_per_node is None                          # one node (DeepEP: None)
    # out= form: poisoned, one output not wanted
    out = moejit.DispatchLayout(torch.full((R,), -5, dtype=I32, device=DEV), None, None,
                                torch.ones(T, R, dtype=torch.bool, device=DEV))
    assert moejit.dispatch_layout(ids, E, R, rpn, out=out) is out
    assert torch.equal(out.tokens_per_rank.long(), tpr) and torch.equal(out.is_token_in_rank, itr)


def test_dispatch_layout_of_placed_ids_gives_all_to_all_splits():
    """route with placement → dispatch_layout over the physical experts: the send counts of an
    all-to-all (every token counted once per rank it visits)."""
    spec = SPECS["deepseek-v3"](torch.float32)
    E, K, R, P, ranks = 256, 8, 2, 288, 8
    l2p, rc = make_placement(E, R, P)
    x, b = spaced(400, E), bias_for(spec)
    ids, _ = moejit.route(x, spec, b, logical_to_physical=l2p, replica_count=rc, num_physical_experts=P,
                          ids_dtype=I64, num_valid=count(350))
    lay = moejit.dispatch_layout(ids, P, ranks)
    tpr, _, tpe, itr = ref_dispatch_layout(ids, P, ranks, 8)
    assert torch.equal(lay.tokens_per_rank.long(), tpr) and torch.equal(lay.is_token_in_rank, itr)
    assert int(lay.tokens_per_expert.sum()) == int(ids.ge(0).sum()) and torch.equal(lay.tokens_per_expert.long(), tpe)
    assert not itr[350:].any(), "padded rows go nowhere"


# ---- CUDA graphs ---------------------------------------------------------------------------------------
def test_cuda_graph_padded_count_changes_between_replays():
    """Captured once with a device count; each replay routes the count set before it."""
    spec = SPECS["deepseek-v3"](torch.bfloat16)
    E, K, T, R, P = 256, 8, 64, 2, 320
    x, b = spaced(T, E, torch.bfloat16), bias_for(spec)
    l2p, rc = make_placement(E, R, P)
    nv = count(T)
    load = torch.zeros(P, dtype=I64, device=DEV)
    ids = torch.empty(T, K, dtype=I64, device=DEV)
    w = torch.empty(T, K, device=DEV)
    kw = dict(num_valid=nv, logical_to_physical=l2p, replica_count=rc, num_physical_experts=P, expert_load=load,
              out=(ids, w))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):                                   # warm up: compile and load the kernel
        moejit.route(x, spec, b, **kw)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        moejit.route(x, spec, b, **kw)
    plain_ids, plain_w = moejit.route(x, spec, b)
    placed = ref_placement(plain_ids, K, 0, l2p, rc, P)
    for n in (T, 0, 17, T + 9, 1, -4, 63):
        m = max(0, min(n, T))
        nv.fill_(n)
        load.zero_()
        ids.fill_(12345)
        g.replay()
        torch.cuda.synchronize()
        want = placed.clone()
        want[m:] = -1
        assert torch.equal(ids, want), f"num_valid = {n}: ids differ"
        close(w[:m], plain_w[:m])
        assert w[m:].eq(0).all()
        assert torch.equal(load, ref_load(want, K, P, I64)), f"num_valid = {n}: expert_load differs"


# ---- torch.compile -------------------------------------------------------------------------------------
def test_compile_fullgraph_with_serving_options():
    """route (padding, placement, load counter, record, int64 ids) → align (first_expert and
    expert_map) → dispatch_layout, in one graph: the same results as eager, and no graph break."""
    spec = SPECS["softmax"](torch.float32)
    E, K, R, P, ranks, B = 64, 6, 2, 80, 4, 16
    l2p, rc = make_placement(E, R, P)
    local = P // ranks
    emap = torch.full((P,), -1, dtype=I32, device=DEV)
    emap[local:2 * local] = torch.arange(local, dtype=I32, device=DEV)   # rank 1's experts, by map

    def fn(x, nv, load, given):
        ids, w, logical = moejit.route(x, spec, num_valid=nv, logical_to_physical=l2p, replica_count=rc,
                                       num_physical_experts=P, expert_load=load, record=True, ids_dtype=torch.int64)
        ids2, w2 = moejit.route(x, spec, logical_ids=given)
        a = moejit.align(ids, local, B, first_expert=local)
        m = moejit.align(ids, local, B, expert_map=emap)
        lay = moejit.dispatch_layout(ids, P, ranks)
        return (ids, w, logical, ids2, w2, a.counts, a.sorted_ids, a.slot_of, m.counts, m.slot_of,
                lay.tokens_per_rank, lay.tokens_per_expert, lay.is_token_in_rank)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    for T in (40, 57):                                               # the second size recompiles dynamic
        x = spaced(T, E)
        nv = count(T - 5)
        given = moejit.route(x, spec)[0]
        load_e = torch.zeros(P, dtype=I32, device=DEV)
        load_c = torch.zeros(P, dtype=I32, device=DEV)
        eager = fn(x, nv, load_e, given)
        got = compiled(x, nv, load_c, given)
        for i, (a, c) in enumerate(zip(eager, got)):
            assert a.dtype == c.dtype and a.shape == c.shape, f"output {i}: {c.dtype} {tuple(c.shape)}"
            assert torch.equal(a, c), f"output {i} differs between eager and compiled"
        assert torch.equal(load_e, load_c) and int(load_c.sum()) == int(eager[0][:, :K].ge(0).sum())
        assert torch.equal(load_e, ref_load(eager[0], K, P, I32))
