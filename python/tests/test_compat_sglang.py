"""moejit.compat.sglang against PyTorch references of sgl_kernel's documented semantics, on
random inputs and the edge cases: T = 0, one expert, ids out of range and −1 (masked), fused
shared experts, scaling on and off, int64 ids."""
import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)

from moejit.compat import sglang  # noqa: E402
from refs import spaced  # noqa: E402

DEV = "cuda"


def ref_fused_gate(x, bias, G, TG, topk, S, factor, apply):
    """sgl_kernel moe_fused_gate (moe_fused_gate.cu), in float32."""
    s = torch.sigmoid(x.float())
    sel = s + bias.float()
    T, E = s.shape
    if G > 1:
        g = sel.view(T, G, E // G).topk(2, dim=-1).values.sum(-1)
        keep = torch.zeros_like(g).scatter_(1, g.topk(TG, dim=-1).indices, 1.0).repeat_interleave(E // G, dim=1)
        sel = sel.masked_fill(keep == 0, float("-inf"))
    ids = sel.topk(topk - S, dim=-1).indices
    w = s.gather(1, ids)
    total = w.sum(-1, keepdim=True)
    if S:
        ids = torch.cat([ids, torch.arange(E, E + S, device=DEV).expand(T, S)], 1)
        w = torch.cat([w, (total / factor).expand(T, S)], 1)
    w = w / total
    if apply:
        w = w * factor
    return w, ids.int()


@pytest.mark.parametrize("T", [0, 1, 100])
@pytest.mark.parametrize("S, factor, apply", [(0, 0, False), (0, 2.5, True), (1, 2.5, False), (1, 2.5, True),
                                              (2, 1.5, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_moe_fused_gate(T, S, factor, apply, dtype):
    E, G, TG, K = 256, 8, 4, 8
    x = spaced(T, E, dtype)
    bias = ((torch.rand(E, device=DEV) - 0.5) * 0.05).to(dtype)
    w, ids = sglang.moe_fused_gate(x, bias, G, TG, K + S, S, factor, apply)
    rw, rids = ref_fused_gate(x, bias, G, TG, K + S, S, factor, apply)
    assert w.shape == (T, K + S) and w.dtype == torch.float32 and ids.dtype == torch.int32
    assert torch.equal(ids, rids)
    torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6)


def test_moe_fused_gate_arguments():
    x, b = spaced(4, 64), torch.zeros(64, device=DEV)
    with pytest.raises(ValueError, match="routed_scaling_factor"):
        sglang.moe_fused_gate(x, b, 4, 2, 9, 1, 0)
    with pytest.raises(ValueError, match="num_fused_shared_experts"):
        sglang.moe_fused_gate(x, b, 4, 2, 2, 2, 2.5)


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("factor, apply", [(1.0, False), (2.827, True), (2.827, False)])
@pytest.mark.parametrize("T", [0, 5, 300])
def test_kimi_k2_moe_fused_gate(renormalize, factor, apply, T):
    E, K = 384, 8
    x, bias = spaced(T, E), (torch.rand(E, device=DEV) - 0.5) * 0.05
    w, ids = sglang.kimi_k2_moe_fused_gate(x, bias, K, renormalize, factor, apply)
    s = torch.sigmoid(x)
    rids = (s + bias).topk(K, dim=-1).indices
    rw = s.gather(1, rids)
    if renormalize:
        rw = rw / rw.sum(-1, keepdim=True)
    if apply:
        rw = rw * factor
    assert torch.equal(ids, rids.int())
    torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("T, E, K", [(0, 8, 2), (1, 1, 1), (64, 128, 8)])
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_topk(score, T, E, K, ids_dtype):
    x = spaced(T, E, torch.float16)
    w = torch.full((T, K), float("nan"), device=DEV)
    ids = torch.full((T, K), -3, dtype=ids_dtype, device=DEV)
    bias = (torch.rand(E, device=DEV) - 0.5) * 0.05 if score == "sigmoid" else None
    if score == "softmax":
        sglang.topk_softmax(w, ids, x, True)
        s = torch.softmax(x.float(), -1)
        sel = s
    else:
        sglang.topk_sigmoid(w, ids, x, True, bias)
        s = torch.sigmoid(x.float())
        sel = s + bias
    top = sel.topk(min(K + 1, E), dim=-1)
    rids = top.indices[:, :K]
    rw = s.gather(1, rids)
    rw = rw / rw.sum(-1, keepdim=True)
    # A bias can bring two selection values within f32 rounding of each other (the kernel's and
    # torch's sigmoid differ by an ulp): rows whose order hinges on that are left out, few of them.
    gaps = (top.values[:, :-1] - top.values[:, 1:]) if E > 1 else torch.ones(T, 1, device=DEV)
    clear = (gaps.min(-1).values > 1e-5) if T else torch.ones(0, dtype=torch.bool, device=DEV)
    assert int(clear.sum()) >= 0.9 * T
    assert torch.equal(ids[clear], rids.to(ids_dtype)[clear])
    torch.testing.assert_close(w[clear], rw[clear], rtol=1e-5, atol=1e-6)


def ref_sgl_align(ids, buckets, B, size, pad):
    """sgl_kernel.moe_align_block_size (bucket = id + 1; sglang passes num_experts + 1)."""
    flat = ids.flatten().long()
    N = flat.numel()
    b = flat + 1
    b[(b < 0) | (b >= buckets)] = -1
    sorted_ids = torch.full((size,), N if pad else -9, dtype=torch.int32, device=DEV)
    cumsum = torch.zeros(buckets + 1, dtype=torch.int32, device=DEV)
    experts = []
    pos = 0
    for e in range(buckets):
        idx = torch.nonzero(b == e).flatten()
        n = idx.numel()
        padded = (n + B - 1) // B * B
        sorted_ids[pos:pos + n] = idx.int()
        sorted_ids[pos + n:pos + padded] = N
        experts += [e - 1] * (padded // B)
        pos += padded
        cumsum[e + 1] = pos
    return sorted_ids, torch.tensor(experts, dtype=torch.int32, device=DEV), cumsum, pos


@pytest.mark.parametrize("T, K, E, B", [(0, 8, 8, 16), (1, 1, 1, 4), (5, 8, 256, 64), (300, 8, 257, 16),
                                        (3000, 8, 64, 128)])
@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_moe_align_block_size(T, K, E, B, pad, ids_dtype):
    ids = torch.randint(0, E, (T, K), device=DEV)
    if T > 2:
        ids[0, 0], ids[1, 1], ids[2, 2] = -1, -1, E + 3          # masked (−1) and out of range (dropped)
    ids = ids.to(ids_dtype)
    N, buckets = ids.numel(), E + 1                               # as sglang calls it
    size = N * B if N < buckets else N + buckets * (B - 1)
    sorted_ids = torch.full((size,), -9, dtype=torch.int32, device=DEV)
    experts_ids = torch.full(((size + B - 1) // B,), -77, dtype=torch.int32, device=DEV)
    total = torch.full((1,), -5, dtype=torch.int32, device=DEV)
    cumsum = torch.full((buckets + 1,), -5, dtype=torch.int32, device=DEV)
    assert sglang.moe_align_block_size(ids, buckets, B, sorted_ids, experts_ids, total, cumsum, pad) is None
    r_sorted, r_experts, r_cumsum, r_total = ref_sgl_align(ids, buckets, B, size, pad)
    assert int(total) == r_total and torch.equal(cumsum, r_cumsum)
    assert torch.equal(sorted_ids[:r_total], r_sorted[:r_total])
    if pad:
        assert torch.equal(sorted_ids, r_sorted)
    else:
        assert sorted_ids[r_total:].eq(-9).all(), "written past the padded total"
    nb = r_total // B
    assert torch.equal(experts_ids[:nb], r_experts)
    assert experts_ids[nb:].eq(-77).all(), "the tail of experts_ids must be left as it was"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T, K, H", [(0, 2, 8), (1, 1, 7), (37, 8, 4096)])
def test_moe_sum(dtype, T, K, H):
    x = torch.randn(T, K, H, device=DEV).to(dtype)
    out = torch.full((T, H), float("nan"), device=DEV, dtype=dtype)
    sglang.moe_sum(x, out)
    acc = torch.zeros(T, H, device=DEV)
    for k in range(K):  # float32, slot order, one rounding (what moejit's combine defines)
        acc = acc + x[:, k].float()
    torch.testing.assert_close(out, acc.to(dtype), rtol=0, atol=0)
