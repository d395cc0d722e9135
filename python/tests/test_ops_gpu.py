"""Every torch op on the GPU against the C references (refs.py) on fresh random inputs with
poisoned outputs, functional and out= forms, int32 and int64 ids, empty batches, strided inputs,
and torch.library.opcheck for every op (schema, fake tensors, autograd registration, AOT dispatch
with dynamic shapes)."""
import os

import pytest

import moejit
from moejit import core

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

import refs  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)
DEV = "cuda"
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
POISON = refs.POISON_I32


@pytest.fixture(autouse=True)
def seed():
    """A fresh seed per test (pytest shows it with a failure's captured output)."""
    s = int.from_bytes(os.urandom(4), "little")
    print(f"seed {s}")
    torch.manual_seed(s)
    return s


def spaced_logits(T, E, dtype, device=DEV):
    """Rows of distinct, evenly spaced values in [-4, 4] in random order: scores never saturate, and
    no selection hinges on a few ulp (equal values after rounding tie identically everywhere)."""
    if T == 0:
        return torch.empty((0, E), dtype=dtype, device=device)
    step = min(0.04, 8.0 / E)
    x = torch.rand(T, E, device=device).argsort(-1).float() * step - E * step / 2
    return x.to(dtype)


SPECS = {
    "deepseek-v3": lambda d: moejit.RouteSpec.preset("deepseek-v3", dtype=d),
    "kimi-k2": lambda d: moejit.RouteSpec.preset("kimi-k2", dtype=d),
    "qwen3-moe": lambda d: moejit.RouteSpec.preset("qwen3-moe", dtype=d),
    "gpt-oss": lambda d: moejit.RouteSpec.preset("gpt-oss", dtype=d),
    "mixtral": lambda d: moejit.RouteSpec.preset("mixtral", dtype=d),
    "shared+softcap": lambda d: moejit.RouteSpec(60, 6, score="sqrt_softplus", dtype=d, softcap=20.0, renormalize=True,
                                                 scale_output=True, routed_scaling_factor=2.5, shared_slots=2),
    "e1": lambda d: moejit.RouteSpec(1, 1, dtype=d),
    "e2000": lambda d: moejit.RouteSpec(2000, 16, score="sigmoid", dtype=d, renormalize=True),
}


def bias_for(spec):
    return (torch.rand(spec.num_experts, device=DEV) - 0.5) * 0.1 if spec.has_bias else None


def assert_route(ids, weights, ref_ids, ref_w):
    assert ids.dtype == torch.int32 and weights.dtype == torch.float32
    assert torch.equal(ids.cpu(), ref_ids), "ids differ from moejit_route_reference"
    torch.testing.assert_close(weights.cpu(), ref_w, rtol=1e-5, atol=1e-6)


# ---- route -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("T", [0, 1, 7, 300])
def test_route(name, dtype, T):
    spec = SPECS[name](DTYPES[dtype])
    logits, bias = spaced_logits(T, spec.num_experts, DTYPES[dtype]), bias_for(spec)
    ids, w = moejit.route(logits, spec, bias)
    assert ids.shape == (T, spec.outputs)
    assert_route(ids, w, *refs.route(logits, bias, spec._c))
    # out= form, poisoned, and a logits view with a row stride
    wide = torch.zeros((T, spec.num_experts + 5), dtype=logits.dtype, device=DEV)
    wide[:, :spec.num_experts] = logits
    out = (torch.full_like(ids, POISON), torch.full_like(w, float("nan")))
    res = moejit.route(wide[:, :spec.num_experts], spec, bias, out=out)
    assert res is out
    assert_route(*out, *refs.route(logits, bias, spec._c))


def test_route_runs_on_the_current_stream():
    spec = moejit.RouteSpec(128, 8, dtype=torch.float32)
    x = spaced_logits(4096, 128, torch.float32)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ids, w = moejit.route(x, spec)
    side.synchronize()
    assert_route(ids, w, *refs.route(x, None, spec._c))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_route_follows_the_tensors_device():
    spec = moejit.RouteSpec(64, 4, dtype=torch.float32)
    x = spaced_logits(33, 64, torch.float32, device="cuda:1")
    assert torch.cuda.current_device() == 0
    ids, w = moejit.route(x, spec)
    assert ids.device == x.device and torch.cuda.current_device() == 0
    assert_route(ids, w, *refs.route(x, None, spec._c))


# ---- align -----------------------------------------------------------------------------------------
def random_ids(T, K, E, dtype=torch.int32, dropped=0.1):
    ids = torch.randint(0, E, (T, K), device=DEV, dtype=torch.int64)
    if dropped and T:
        drop = torch.rand(T, K, device=DEV) < dropped
        others = torch.tensor([-1, E, E + 5, -(2**31)], device=DEV)[torch.randint(0, 4, (T, K), device=DEV)]
        ids = torch.where(drop, others, ids)
    return ids.to(dtype)


def assert_align(maps, ref):
    total = int(maps.total_padded.item())
    assert total == int(ref["total_padded"][0])
    for name in ("counts", "offsets", "slot_of", "total_padded"):
        got = getattr(maps, name)
        if got is not None:
            assert torch.equal(got.cpu().view(ref[name].shape), ref[name]), f"{name} differs from the reference"
    if maps.block_expert is not None:  # a longer buffer than the reference's: −1 past the total too
        n = ref["block_expert"].numel()
        got = maps.block_expert.cpu()
        assert torch.equal(got[:n], ref["block_expert"]) and got[n:].eq(-1).all(), "block_expert differs"
    if maps.sorted_ids is not None:
        assert torch.equal(maps.sorted_ids[:total].cpu(), ref["sorted_ids"][:total]), "sorted_ids differ"


@pytest.mark.parametrize("E, B", [(1, 1), (7, 16), (64, 64), (256, 16), (384, 128), (4096, 4)])
@pytest.mark.parametrize("T, K", [(0, 8), (1, 8), (3, 6), (100, 8), (3000, 8)])
def test_align(E, B, T, K):
    ids = random_ids(T, K, E)
    maps = moejit.align(ids, E, B)
    cap = moejit.align_capacity(E, B, T, K)
    assert maps.sorted_ids.shape == (cap,) and maps.block_expert.shape == (cap // B,) and maps.slot_of.shape == (T, K)
    assert_align(maps, refs.align(ids, E, B))
    total = int(maps.total_padded)
    assert maps.sorted_ids[total:].eq(T * K).all(), "the functional form fills sorted_ids past the total with N"


def test_align_int64_ids_are_never_truncated():
    E, B = 16, 4
    ids = random_ids(50, 4, E, torch.int64)
    ids[0, 0], ids[1, 1], ids[2, 2] = 2**32 + 3, -(2**40), 2**62  # their low halves are valid ids
    maps = moejit.align(ids, E, B)
    ref = refs.align(torch.where((ids >= 0) & (ids < E), ids, -1).to(torch.int32), E, B)
    assert_align(maps, ref)
    assert int(maps.slot_of[0, 0]) == -1 and int(maps.slot_of[1, 1]) == -1 and int(maps.slot_of[2, 2]) == -1


def test_align_out_partial_and_poisoned():
    E, B, T, K = 256, 64, 9000, 8          # 72000 ids: three launches through the workspace
    ids = random_ids(T, K, E)
    cap = moejit.align_capacity(E, B, T, K)
    full = lambda *s: torch.full(s, POISON, dtype=torch.int32, device=DEV)  # noqa: E731
    ws = torch.empty(moejit.align_workspace_bytes(E, B, T, K), dtype=torch.uint8, device=DEV)
    out = moejit.AlignResult(full(E), None, full(cap + 100), full((cap + 100) // B), full(1), None)
    res = moejit.align(ids, E, B, out=out, workspace=ws)
    assert res.offsets is None and res.slot_of is None
    assert_align(res, refs.align(ids, E, B))


# ---- route_align ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["deepseek-v3", "kimi-k2", "shared+softcap"])
@pytest.mark.parametrize("T", [0, 1, 3, 4, 40])
def test_route_align(name, T):
    spec = SPECS[name](torch.bfloat16)
    B = 16
    logits, bias = spaced_logits(T, spec.num_experts, torch.bfloat16), bias_for(spec)
    res = moejit.route_align(logits, spec, B, bias)
    ref_ids, ref_w, ref = refs.route_align(logits, bias, spec._c, B)
    assert_route(res.ids, res.weights, ref_ids, ref_w)
    assert_align(res, ref)
    out = moejit.RouteAlignResult(*(torch.full_like(t, POISON) if t.dtype == torch.int32 else torch.full_like(t, 7.0)
                                    for t in res))
    moejit.route_align(logits, spec, B, bias, out=out)
    assert_route(out.ids, out.weights, ref_ids, ref_w)
    assert_align(out, ref)


# ---- permute and combine --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("H", [1, 96, 7168])
@pytest.mark.parametrize("scaled", [False, True])
def test_permute_combine(dtype, H, scaled):
    E, B, T, K = 32, 16, 50, 4
    x = torch.randn(T, H, device=DEV).to(DTYPES[dtype])
    ids = random_ids(T, K, E)
    maps = moejit.align(ids, E, B)
    scale = torch.rand(E, device=DEV) + 0.5 if scaled else None
    xs = moejit.permute(x, maps.sorted_ids, K, ids if scaled else None, scale)
    assert torch.equal(xs.cpu(), refs.permute(x, maps.sorted_ids, K, ids if scaled else None, scale))
    out = torch.full_like(xs, float("nan"))
    moejit.permute(x, maps.sorted_ids, K, ids if scaled else None, scale, out=out)
    assert torch.equal(out, xs)
    w = torch.rand(T, K, device=DEV)
    y = torch.randn(xs.shape, device=DEV).to(xs.dtype)
    o = moejit.combine(y, maps.slot_of, w)
    assert torch.equal(o.cpu(), refs.combine(y, maps.slot_of, w))
    out = torch.full_like(o, float("nan"))
    moejit.combine(y, maps.slot_of, w, out=out)
    assert torch.equal(out, o)


def test_permute_int64_ids():
    """Routing ids for the scale may be int64: converted after a range clamp, never misread."""
    E, B, T, K, H = 16, 8, 30, 2, 64
    x = torch.randn(T, H, device=DEV)
    ids = random_ids(T, K, E)
    maps = moejit.align(ids, E, B)
    scale = torch.rand(E, device=DEV) + 0.5
    wide = ids.long()
    wide[0, 0] = 2**32 + 1                     # its low half is a valid expert: must give a zero row
    narrow = ids.clone()
    narrow[0, 0] = -1
    got = moejit.permute(x, maps.sorted_ids, K, wide, scale)
    assert torch.equal(got.cpu(), refs.permute(x, maps.sorted_ids, K, narrow, scale))


def test_permute_combine_empty():
    x = torch.randn(0, 64, device=DEV)
    sorted_ids = torch.zeros(32, dtype=torch.int32, device=DEV)  # every row padding
    assert torch.equal(moejit.permute(x, sorted_ids, 2), torch.zeros(32, 64, device=DEV))
    assert moejit.combine(torch.randn(32, 64, device=DEV), torch.zeros(0, 2, dtype=torch.int32, device=DEV),
                          torch.zeros(0, 2, device=DEV)).shape == (0, 64)
    o = moejit.combine(torch.empty(0, 8, device=DEV), torch.full((3, 2), -1, dtype=torch.int32, device=DEV),
                       torch.rand(3, 2, device=DEV))
    assert torch.equal(o, torch.zeros(3, 8, device=DEV))


# ---- mx_scales ------------------------------------------------------------------------------------
@pytest.mark.parametrize("G, R, C", [(1, 1, 1), (2, 256, 8), (3, 200, 7), (16, 1000, 224)])
def test_mx_scales_3d(G, R, C):
    x = torch.randint(0, 256, (G, R, C), dtype=torch.uint8, device=DEV)
    b = moejit.mx_scales(x)
    assert b.shape == (G, (R + 127) // 128 * 128 * ((C + 3) // 4 * 4))
    assert torch.equal(b.view(-1).cpu(), refs.mx_scales(x))
    wide = torch.zeros(G, R, C + 9, dtype=torch.uint8, device=DEV)
    wide[..., :C] = x
    out = torch.full_like(b, 0xA5)
    moejit.mx_scales(wide[..., :C], out=out)
    assert torch.equal(out, b)
    assert torch.equal(moejit.mx_scales_inverse(b, R, C), x)
    back = torch.full_like(x, 0xA5)
    moejit.mx_scales_inverse(b, R, C, out=back)
    assert torch.equal(back, x)


@pytest.mark.parametrize("M, C, ends", [(300, 8, [100, 300]), (257, 5, [0, 0, 129, 200]), (64, 3, [64]), (10, 4, [])])
def test_mx_scales_2d(M, C, ends):
    x = torch.randint(0, 256, (M, C), dtype=torch.uint8, device=DEV)
    g = torch.tensor(ends, dtype=torch.int32, device=DEV)
    b = moejit.mx_scales(x, g)
    assert torch.equal(b.view(-1).cpu(), refs.mx_scales(x, g))
    back = moejit.mx_scales_inverse(b, M, C, g)
    last = ends[-1] if ends else 0
    assert torch.equal(back[:last], x[:last]) and not back[last:].any()


def test_context_forms_the_harness_uses():
    """Context.route / align / mx_scales as the peers' harness calls them (check_api.py)."""
    ctx = moejit.Context()
    spec = moejit.RouteSpec(256, 8, score="sigmoid", dtype=torch.float32, num_groups=8, topk_groups=4,
                            group_score="top2_sum", has_bias=True, renormalize=True)
    x, b = spaced_logits(4, 256, torch.float32), torch.rand(256, device=DEV)
    o = (torch.empty(4, 8, dtype=torch.int32, device=DEV), torch.empty(4, 8, device=DEV))
    assert ctx.route(spec, x, bias=b, out=o) == o
    assert_route(*o, *refs.route(x, b, spec._c))
    mp = moejit.AlignMaps(128, 64, 16, 8)
    ids = torch.rand(16, 128, device=DEV).argsort(-1)[:, :8].int().contiguous()
    ctx.align(mp, ids)
    assert_align(mp, refs.align(ids, 128, 64))
    import ctypes
    o = moejit._AlignOutputs(None, None, mp.sorted_ids.data_ptr(), mp.capacity, mp.block_expert.data_ptr(),
                             mp.total_padded.data_ptr(), None, mp.workspace.data_ptr(), mp._ws_bytes)
    args = moejit._AlignArgs(ids.data_ptr(), 16, 8, o)
    moejit._check(moejit.library.moejit_align(ctx._ctx, ctypes.byref(mp._spec), ctypes.byref(args),
                                              torch.cuda.current_stream().cuda_stream), ctx._ctx)
    torch.cuda.synchronize()
    x3 = torch.randint(0, 256, (2, 256, 8), dtype=torch.uint8, device=DEV)
    o3 = ctx.mx_scales(x3)
    assert o3.dim() == 1 and torch.equal(o3.cpu(), refs.mx_scales(x3))
    assert ctx.mx_scales(x3, out=o3) is o3
    x2 = torch.randint(0, 256, (300, 8), dtype=torch.uint8, device=DEV)
    ends = torch.tensor([100, 300], dtype=torch.int32, device=DEV)
    assert torch.equal(ctx.mx_scales(x2, group_ends=ends).cpu(), refs.mx_scales(x2, ends))
    assert ctx.stats()["launches"] >= 6


# ---- opcheck ---------------------------------------------------------------------------------------
def _opcheck_cases():
    spec = moejit.RouteSpec.preset("deepseek-v3", dtype=torch.float32)
    p = spec.params
    x, b = spaced_logits(9, 256, torch.float32), torch.rand(256, device=DEV) * 0.1
    ids = random_ids(9, 8, 256)
    E2, B = 256, 16
    cap = moejit.align_capacity(E2, B, 9, 8)
    i32 = lambda *s: torch.empty(s, dtype=torch.int32, device=DEV)  # noqa: E731
    maps = moejit.align(ids, E2, B)
    xs = torch.randn(9, 64, device=DEV)
    y = torch.randn(cap, 64, device=DEV)
    w = torch.rand(9, 8, device=DEV)
    scale = torch.rand(E2, device=DEV)
    s3 = torch.randint(0, 256, (2, 130, 5), dtype=torch.uint8, device=DEV)
    s2 = torch.randint(0, 256, (300, 5), dtype=torch.uint8, device=DEV)
    ends = torch.tensor([100, 300], dtype=torch.int32, device=DEV)
    b3, b2 = moejit.mx_scales(s3), moejit.mx_scales(s2, ends)
    ra = moejit.route_align(x, spec, B, b)
    # serving options: placement on P = 288 physical experts, padding, counters, replay, id dtypes
    P, R, EL = 288, 2, 32
    l2p = (torch.arange(256 * R, device=DEV) % P).int().view(256, R)
    rc = torch.full((256,), R, dtype=torch.int32, device=DEV)
    nv = torch.tensor([7], dtype=torch.int32, device=DEV)
    load = torch.zeros(P, dtype=torch.int64, device=DEV)
    logical = moejit.route(x, spec, b, record=True)[2]
    emap = torch.full((256,), -1, dtype=torch.int32, device=DEV)
    emap[100:100 + EL] = torch.arange(EL, dtype=torch.int32, device=DEV)
    cap_l = moejit.align_capacity(EL, B, 9, 8)
    offs = torch.tensor([0, 4, 9], dtype=torch.int32, device=DEV)
    o = torch.ops.moejit
    return {
        "route_serving": (o.route_serving.default, (x, b, nv, l2p, rc, load, None, *p, P, "int64", "int32")),
        "route_serving_int64_given": (o.route_serving.default, (x, b, None, None, None, None, logical.long(), *p, 0,
                                                                "int32", "")),
        "route_serving_out": (o.route_serving_out.default, (x, b, torch.empty(9, 8, dtype=torch.int64, device=DEV),
                                                            torch.empty(9, 8, device=DEV), nv, l2p, rc, load, None,
                                                            torch.empty(9, 8, dtype=torch.int16, device=DEV), *p, P)),
        "align_int64_expert_map": (o.align.default, (ids.long(), EL, B, emap, 0)),
        "align_out_int64_first_expert": (o.align_out.default, (ids.long(), EL, B, i32(EL), i32(EL + 1), i32(cap_l),
                                                               i32(cap_l // B), i32(1), i32(9, 8), None, None, 64)),
        "dispatch_layout": (o.dispatch_layout.default, (ids, 256, 16, 8)),
        "dispatch_layout_int64": (o.dispatch_layout.default, (ids.long(), 256, 4, 8)),
        "dispatch_layout_out": (o.dispatch_layout_out.default, (ids, 256, 16, 8, i32(16), i32(2), i32(256),
                                                                torch.empty(9, 16, dtype=torch.bool, device=DEV))),
        "route": (o.route.default, (x, b, *p)),
        "route_out": (o.route_out.default, (x, b, i32(9, 8), torch.empty(9, 8, device=DEV), *p)),
        "align": (o.align.default, (ids, E2, B)),
        "align_int64": (o.align.default, (ids.long(), E2, B)),
        "align_out": (o.align_out.default, (ids, E2, B, i32(E2), i32(E2 + 1), i32(cap), i32(cap // B), i32(1),
                                            i32(9, 8), None)),
        "route_align": (o.route_align.default, (x, b, B, *p)),
        "route_align_out": (o.route_align_out.default, (x, b, B, *(torch.empty_like(t) for t in ra), None, *p)),
        "permute": (o.permute.default, (xs, maps.sorted_ids, 8, ids, scale)),
        "permute_out": (o.permute_out.default, (xs, maps.sorted_ids, 8, None, None, torch.empty(cap, 64, device=DEV))),
        "combine": (o.combine.default, (y, maps.slot_of, w)),
        "combine_out": (o.combine_out.default, (y, maps.slot_of, w, torch.empty(9, 64, device=DEV))),
        "mx_scales_3d": (o.mx_scales.default, (s3, None)),
        "mx_scales_2d": (o.mx_scales.default, (s2, ends)),
        "mx_scales_out": (o.mx_scales_out.default, (s3, None, torch.empty_like(b3))),
        "mx_scales_inverse_3d": (o.mx_scales_inverse.default, (b3, 2, 130, 5, None)),
        "mx_scales_inverse_2d": (o.mx_scales_inverse.default, (b2, 2, 300, 5, ends)),
        "mx_scales_inverse_out": (o.mx_scales_inverse_out.default, (b2, ends, torch.empty_like(s2))),
        # the backward operations (issue 16)
        "permute_backward": (o.permute_backward.default, (y, maps.slot_of, ids, scale)),
        "permute_backward_out": (o.permute_backward_out.default, (y, maps.slot_of, None, None,
                                                                  torch.empty(9, 64, device=DEV))),
        "combine_backward": (o.combine_backward.default, (xs, maps.slot_of, y, w, maps.sorted_ids, cap, True, True)),
        "combine_backward_weights_only": (o.combine_backward.default, (xs, maps.slot_of, y, None, None, cap,
                                                                             False, True)),
        "combine_backward_out": (o.combine_backward_out.default, (xs, maps.slot_of, y, w, maps.sorted_ids,
                                                                  torch.empty(cap, 64, device=DEV),
                                                                  torch.empty(9, 8, device=DEV))),
        "route_backward": (o.route_backward.default, (x, ids.clamp(0, 255), w, *p)),
        "route_backward_int64": (o.route_backward.default, (x, ids.clamp(0, 255).long(), w, *p)),
        "route_backward_out": (o.route_backward_out.default, (x, ids.clamp(0, 255), w, torch.empty(9, 256, device=DEV),
                                                              *p)),
        # training: capacity (in place) and the auxiliary losses (issue 16 items 2 and 4)
        "capacity": (o.capacity.default, (ids.clone(), w.clone(), 256, 8, "probs", 0.5, 0, 0)),
        "capacity_int64": (o.capacity.default, (ids.long(), w.clone(), 256, 8, "position", 0.0, 1, 0)),
        "route_with_losses": (o.route_with_losses.default, (x, b, offs, 7, *p)),
        "route_backward_losses": (o.route_backward_losses.default, (x, ids.clamp(0, 255), w, torch.rand(3, device=DEV),
                                                                    torch.randint(0, 9, (2, 256), dtype=torch.int32,
                                                                                  device=DEV), offs, 7, *p)),
    }


OPCHECK = ["route", "route_out", "route_serving", "route_serving_int64_given", "route_serving_out", "align", "align_int64",
           "align_int64_expert_map", "align_out", "align_out_int64_first_expert", "dispatch_layout",
           "dispatch_layout_int64", "dispatch_layout_out", "route_align", "route_align_out", "permute",
           "permute_out", "combine", "combine_out", "mx_scales_3d", "mx_scales_2d", "mx_scales_out",
           "mx_scales_inverse_3d", "mx_scales_inverse_2d", "mx_scales_inverse_out", "permute_backward",
           "permute_backward_out", "combine_backward", "combine_backward_weights_only", "combine_backward_out",
           "route_backward", "route_backward_int64", "route_backward_out", "capacity", "capacity_int64",
           "route_with_losses", "route_backward_losses"]


@pytest.mark.parametrize("case", OPCHECK)
def test_opcheck(case):
    if case.startswith("route_backward") and not moejit.has_route_backward():
        pytest.skip(f"{moejit.library_path} has no moejit_route_backward")
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


def test_every_op_is_opchecked():
    names = {n.split("_int64")[0].split("_3d")[0].split("_2d")[0].split("_weights_only")[0] for n in OPCHECK}
    assert names == set(moejit.ops.OPS)


def test_fakes_on_meta_tensors():
    """The fakes give the shapes from metadata alone (what torch.compile sees)."""
    spec = moejit.RouteSpec.preset("kimi-k2", dtype=torch.bfloat16)
    x = torch.empty(5, 384, dtype=torch.bfloat16, device="meta")
    ids, w = torch.ops.moejit.route(x, torch.empty(384, device="meta"), *spec.params)
    assert (ids.shape, ids.dtype, w.dtype) == ((5, 8), torch.int32, torch.float32)
    m = torch.ops.moejit.align(torch.empty(5, 8, dtype=torch.int64, device="meta"), 384, 64)
    cap = core.align_capacity(384, 64, 5, 8)
    assert [t.shape for t in m] == [(384,), (385,), (cap,), (cap // 64,), (1,), (5, 8)]
    assert torch.ops.moejit.mx_scales(torch.empty(300, 7, dtype=torch.uint8, device="meta"),
                                      torch.empty(3, dtype=torch.int32, device="meta")).shape == \
        ((300 + 381) // 128 * 128, 8)
