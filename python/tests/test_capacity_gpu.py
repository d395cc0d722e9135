"""Capacity and token dropping through moejit.capacity (issue 16 item 4) on the GPU, against a
plain-PyTorch port of Megatron-Core's topk_softmax_with_capacity masking (drop_policy "probs": the
C largest gates per expert column; "position": the first C tokens, the documented intent of its
"position" policy), then align/permute/combine honouring the dropped slots."""
import math

import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)
if not hasattr(moejit, "capacity"):
    pytest.skip("the library has no capacity op", allow_module_level=True)

DEV = "cuda"


def megatron_masks(ids, weights, E, K, C, policy):
    """[T, E] routing map after dropping, from route's ids and weights (Megatron's column masks)."""
    T = ids.shape[0]
    gates = torch.zeros(T, E, dtype=torch.float64, device=ids.device)
    gates.scatter_(1, ids[:, :K].long(), weights[:, :K].double())
    topk_map = torch.zeros(T, E, dtype=torch.bool, device=ids.device).scatter_(1, ids[:, :K].long(), True)
    if policy == "probs":
        keep = torch.zeros_like(topk_map)
        c = min(C, T)
        keep.scatter_(0, torch.topk(gates, k=c, dim=0, sorted=False).indices, True)
    else:
        keep = topk_map.int().cumsum(0) <= C
    return topk_map & keep


@pytest.mark.parametrize("policy", ["probs", "position"])
@pytest.mark.parametrize("preset,T,factor", [("qwen3-moe", 1000, 1.0), ("deepseek-v3", 513, 1.25),
                                             ("mixtral", 64, 0.5), ("kimi-k2", 4096, 1.1)])
def test_capacity_matches_megatron(policy, preset, T, factor):
    torch.manual_seed(T)
    spec = moejit.RouteSpec.preset(preset, dtype=torch.float32)
    E, K = spec.num_experts, spec.topk
    logits = torch.randn(T, E, device=DEV) * 3
    logits[:, :4] += 2.0  # hot experts: some must drop
    bias = (torch.rand(E, device=DEV) - 0.5) * 0.1 if spec.has_bias else None
    ids, w = moejit.route(logits, spec, bias)
    C = moejit.capacity_of(T, K, E, factor)
    assert C == math.ceil(T * K / E * factor)
    want = megatron_masks(ids, w, E, K, C, policy)
    before = torch.bincount(ids[:, :K].reshape(-1).long(), minlength=E).int()
    ids2, w2 = ids.clone(), w.clone()
    tpe, kept = moejit.capacity(ids2, w2, E, K, capacity_factor=factor, policy=policy)
    assert torch.equal(tpe, before)
    assert torch.equal(kept, torch.clamp(before, max=C))
    got = torch.zeros(T, E, dtype=torch.bool, device=DEV)
    valid = ids2[:, :K] >= 0
    rows = torch.arange(T, device=DEV).unsqueeze(1).expand(T, K)
    got[rows[valid], ids2[:, :K][valid].long()] = True
    assert torch.equal(got, want)
    dropped = ids2[:, :K] < 0
    assert torch.equal(w2[:, :K][dropped], torch.zeros_like(w2[:, :K][dropped]))
    assert torch.equal(w2[:, :K][valid], w[:, :K][valid])
    assert torch.equal(ids2[:, :K][valid], ids[:, :K][valid])
    assert torch.equal(ids2[:, K:], ids[:, K:]) and torch.equal(w2[:, K:], w[:, K:])
    # bit-identical on a second run
    ids3, w3 = ids.clone(), w.clone()
    moejit.capacity(ids3, w3, E, K, capacity_factor=factor, policy=policy)
    assert torch.equal(ids3, ids2) and torch.equal(w3, w2)

    # align, permute and combine skip the dropped slots
    H = 32
    x = torch.randn(T, H, device=DEV)
    maps = moejit.align(ids2[:, :K].contiguous(), E, 16)
    assert int(maps.counts.sum()) == int(valid.sum())
    assert torch.equal(maps.slot_of < 0, dropped)
    xs = moejit.permute(x, maps.sorted_ids, K)
    out = moejit.combine(xs, maps.slot_of, w2[:, :K].contiguous())
    ref = (w2[:, :K].unsqueeze(-1) * x.unsqueeze(1)).sum(1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_capacity_arguments():
    ids = torch.zeros(4, 2, dtype=torch.int32, device=DEV)
    w = torch.ones(4, 2, device=DEV)
    with pytest.raises(ValueError, match="exactly one"):
        moejit.capacity(ids, w, 8, 2)
    with pytest.raises(ValueError, match="policy"):
        moejit.capacity(ids, w, 8, 2, capacity=1, policy="random")
    with pytest.raises((TypeError, ValueError), match="weights"):
        moejit.capacity(ids, w.double(), 8, 2, capacity=1)
    tpe, kept = moejit.capacity(ids, w, 8, 2, capacity=3, policy="position")
    assert tpe.tolist() == [8, 0, 0, 0, 0, 0, 0, 0] and kept.tolist() == [3, 0, 0, 0, 0, 0, 0, 0]
    assert (ids >= 0).sum().item() == 3 and w.sum().item() == 3.0
