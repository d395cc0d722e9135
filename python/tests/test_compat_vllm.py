"""moejit.compat.vllm against PyTorch references of vLLM's documented semantics (its Python
golden implementations), on random inputs and the edge cases: T = 0, one expert, ids out of
range, expert_map in both modes, int64 ids, padding options."""
import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)

from moejit.compat import vllm  # noqa: E402
from refs import spaced  # noqa: E402

DEV = "cuda"


def ref_topk(logits, K, score, renormalize, bias=None):
    s = torch.softmax(logits.float(), -1) if score == "softmax" else torch.sigmoid(logits.float())
    sel = s + bias if bias is not None else s
    ids = sel.topk(K, dim=-1).indices
    w = s.gather(1, ids)
    if renormalize:
        w = w / w.sum(-1, keepdim=True)
    return w, ids


@pytest.mark.parametrize("fn, score", [(vllm.topk_softmax, "softmax"), (vllm.topk_sigmoid, "sigmoid")])
@pytest.mark.parametrize("T, E, K", [(0, 8, 2), (1, 1, 1), (33, 64, 6), (500, 256, 8)])
@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_topk(fn, score, T, E, K, renormalize, ids_dtype, with_bias):
    x = spaced(T, E, torch.bfloat16)
    bias = (torch.rand(E, device=DEV) - 0.5) * 0.05 if with_bias else None
    w = torch.full((T, K), float("nan"), device=DEV)
    ids = torch.full((T, K), -3, dtype=ids_dtype, device=DEV)
    tei = torch.full((T, K), -3, dtype=torch.int32, device=DEV)
    assert fn(w, ids, tei, x, renormalize, bias) is None
    rw, rids = ref_topk(x, K, score, renormalize, bias)
    assert torch.equal(ids, rids.to(ids_dtype))
    torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6)
    assert torch.equal(tei, (torch.arange(K, device=DEV)[None] * T + torch.arange(T, device=DEV)[:, None]).int())


def test_fused_topk():
    x = spaced(40, 128)
    w, ids, tei = vllm.fused_topk(torch.empty(40, 16, device=DEV), x, 8, True, indices_type=torch.int64)
    rw, rids = ref_topk(x, 8, "softmax", True)
    assert ids.dtype == torch.int64 and torch.equal(ids, rids) and tei.shape == (40, 8)
    torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6)
    w, ids, _ = vllm.fused_topk(torch.empty(40, 16, device=DEV), x, 8, False, scoring_func="sigmoid")
    assert ids.dtype == torch.int32 and torch.equal(ids.long(), ref_topk(x, 8, "sigmoid", False)[1])
    with pytest.raises(ValueError, match="tokens"):
        vllm.fused_topk(torch.empty(3, 16, device=DEV), x, 8, True)


def ref_grouped_topk(x, topk, renormalize, G, TG, scoring_func, factor, bias):
    """vLLM's grouped_topk (fused_moe.py), as written there."""
    scores = torch.softmax(x.float(), -1) if scoring_func == "softmax" else x.float().sigmoid()
    T = scores.shape[0]
    if bias is not None:
        original = scores
        scores = scores + bias.unsqueeze(0)
        group_scores = scores.view(T, G, -1).topk(2, dim=-1)[0].sum(dim=-1)
    else:
        group_scores = scores.view(T, G, -1).max(dim=-1).values
    group_idx = torch.topk(group_scores, k=TG, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(T, G, scores.shape[-1] // G).reshape(T, -1)
    tmp = scores.masked_fill(~score_mask.bool(), float("-inf"))
    if bias is not None:
        ids = torch.topk(tmp, k=topk, dim=-1)[1]
        w = original.gather(1, ids)
    else:
        w, ids = torch.topk(tmp, k=topk, dim=-1)
    if renormalize:
        w = w / w.sum(-1, keepdim=True)
    return (w * factor).float(), ids.int()


@pytest.mark.parametrize("scoring_func", ["softmax", "sigmoid"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("factor", [1.0, 2.5])
@pytest.mark.parametrize("T", [0, 1, 77])
def test_grouped_topk(scoring_func, with_bias, factor, T):
    E, G, TG, K = 256, 8, 4, 8
    x = spaced(T, E)
    bias = (torch.rand(E, device=DEV) - 0.5) * 0.05 if with_bias else None
    w, ids = vllm.grouped_topk(torch.empty(T, 4, device=DEV), x, K, True, G, TG, scoring_func, factor, bias)
    assert ids.dtype == torch.int32 and w.dtype == torch.float32 and ids.shape == w.shape == (T, K)
    if T == 0:
        return
    rw, rids = ref_grouped_topk(x, K, True, G, TG, scoring_func, factor, bias)
    assert torch.equal(ids, rids)
    torch.testing.assert_close(w, rw, rtol=1e-5, atol=1e-6)


def ref_align(topk_ids, B, E, expert_map=None, pad_sorted_ids=False, ignore_invalid=False):
    """vLLM's golden torch_moe_align_block_size (tests/kernels/moe), with the kernels' treatment of
    ids outside [0, E) (ignored), expert_map's two modes and the −1 tail of expert_ids."""
    flat = topk_ids.flatten().long()
    N = flat.numel()
    size = N + E * (B - 1)
    if pad_sorted_ids:
        size = (size + B - 1) // B * B
    if N < E:
        size = min(N * B, size)
    local = flat.clone()
    local[(flat < 0) | (flat >= E)] = -1
    if expert_map is not None and ignore_invalid:
        local = torch.where(local >= 0, expert_map.long()[local.clamp(min=0)], -1)
    sorted_ids = torch.full((size,), N, dtype=torch.int32, device=DEV)
    expert_ids = torch.full(((size + B - 1) // B,), -1, dtype=torch.int32, device=DEV)
    pos = blk = 0
    for e in range(E):
        idx = torch.nonzero(local == e).flatten()
        n = idx.numel()
        if n:
            sorted_ids[pos:pos + n] = idx.int()
            padded = (n + B - 1) // B * B
            expert_ids[blk:blk + padded // B] = e
            pos, blk = pos + padded, blk + padded // B
    if expert_map is not None and not ignore_invalid:
        expert_ids = expert_map[expert_ids]
    return sorted_ids, expert_ids, torch.tensor([pos], dtype=torch.int32, device=DEV)


def assert_same(got, want):
    for g, w, name in zip(got, want, ("sorted_ids", "expert_ids", "num_tokens_post_pad")):
        assert g.shape == w.shape, f"{name}: shape {tuple(g.shape)} vs {tuple(w.shape)}"
        assert torch.equal(g, w.to(g.dtype)), f"{name} differs"


@pytest.mark.parametrize("T, K, E, B", [(0, 2, 8, 16), (1, 1, 1, 4), (3, 8, 256, 64), (16, 2, 8, 64),
                                        (200, 8, 160, 32), (2000, 8, 64, 128)])
@pytest.mark.parametrize("pad_sorted_ids", [False, True])
@pytest.mark.parametrize("ids_dtype", [torch.int32, torch.int64])
def test_moe_align_block_size(T, K, E, B, pad_sorted_ids, ids_dtype):
    ids = torch.randint(0, E, (T, K), device=DEV)
    if T > 1:
        ids[0, 0], ids[1, 0] = E, -1        # out of range: ignored
    ids = ids.to(ids_dtype)
    assert_same(vllm.moe_align_block_size(ids, B, E, pad_sorted_ids=pad_sorted_ids),
                ref_align(ids, B, E, pad_sorted_ids=pad_sorted_ids))


@pytest.mark.parametrize("ignore_invalid", [False, True])
def test_moe_align_block_size_expert_map(ignore_invalid):
    E, B, T, K = 16, 8, 40, 4
    ids = torch.stack([torch.randperm(E, device=DEV)[:K] for _ in range(T)]).int()
    expert_map = torch.full((E,), -1, dtype=torch.int32, device=DEV)
    expert_map[0::2] = torch.arange(E // 2, dtype=torch.int32, device=DEV)
    got = vllm.moe_align_block_size(ids, B, E, expert_map, ignore_invalid_experts=ignore_invalid)
    assert_same(got, ref_align(ids, B, E, expert_map, ignore_invalid=ignore_invalid))
    if ignore_invalid:
        total = int(got[2])
        assert got[1][:total // B].ge(0).all() and got[1][:total // B].lt(E // 2).all()


def ref_batched(M, B, nt):
    E = nt.numel()
    size = E * ((M + B - 1) // B * B)
    sorted_ids = torch.full((size,), E * M, dtype=torch.int32)
    expert_ids = torch.full((size // B,), -1, dtype=torch.int32)
    i = 0
    for e, n in enumerate(nt.tolist()):
        sorted_ids[i:i + n] = torch.arange(e * M, e * M + n, dtype=torch.int32)
        expert_ids[i // B:(i + (n + B - 1) // B * B) // B] = e
        i += (n + B - 1) // B * B
    return sorted_ids.to(DEV), expert_ids.to(DEV), torch.tensor([i], dtype=torch.int32, device=DEV)


@pytest.mark.parametrize("M, E, B", [(16, 8, 8), (32, 16, 64), (512, 64, 16), (1, 1, 4)])
@pytest.mark.parametrize("empty", [False, True])
def test_batched_moe_align_block_size(M, E, B, empty):
    nt = torch.randint(0, M + 1, (E,), dtype=torch.int32)
    if empty:
        nt[torch.randperm(E)[:max(1, E // 2)]] = 0
    assert_same(vllm.batched_moe_align_block_size(M, B, nt.to(DEV)), ref_batched(M, B, nt))


def vllm_eplb_map_to_physical_and_record(topk_ids, expert_load_view, logical_to_physical_map, logical_replica_count):
    """vLLM's eplb_map_to_physical_and_record (fused_moe/layer.py), as written there."""
    topk_ids_long = topk_ids.long()
    replica_count = logical_replica_count[topk_ids_long]
    pos_indices = torch.arange(topk_ids.numel(), device=topk_ids.device, dtype=torch.long).reshape_as(topk_ids)
    replica_indices = (pos_indices % replica_count).unsqueeze(-1)
    physical_ids = logical_to_physical_map[topk_ids_long].gather(-1, replica_indices).squeeze(-1)
    flat = physical_ids.flatten()
    expert_load_view.scatter_add_(dim=0, index=flat.long(), src=torch.ones_like(flat).to(expert_load_view))
    return physical_ids


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("indices_type", [None, torch.int64])
@pytest.mark.parametrize("load_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("T", [0, 1, 77])
def test_select_experts_with_eplb(grouped, indices_type, load_dtype, T):
    """select_experts(enable_eplb=True): vLLM's routing, then its logical → physical map and load
    recording — one launch here — against vLLM's two steps written in torch."""
    E, K, P, R = 64, 6, 80, 2
    x = spaced(T, E)
    bias = (torch.rand(E, device=DEV) - 0.5) * 0.05 if grouped else None
    l2p = torch.full((E, R), -1, dtype=torch.int64, device=DEV)     # vLLM's maps: int64, padded with -1
    l2p[:, 0] = torch.randperm(E, device=DEV)
    l2p[torch.arange(P - E, device=DEV), 1] = torch.arange(E, P, device=DEV)
    rc = torch.ones(E, dtype=torch.int64, device=DEV)
    rc[:P - E] = 2
    kw = dict(topk_group=4, num_expert_group=8, scoring_func="sigmoid", routed_scaling_factor=2.5) if grouped else {}
    load = torch.full((P,), 3, dtype=load_dtype, device=DEV)
    w, ids = vllm.select_experts(torch.empty(T, 16, device=DEV), x, K, grouped, True, e_score_correction_bias=bias,
                                 indices_type=indices_type, enable_eplb=True, expert_load_view=load,
                                 logical_to_physical_map=l2p, logical_replica_count=rc, **kw)
    if grouped:
        rw, rids = vllm.grouped_topk(torch.empty(T, 16, device=DEV), x, K, True, 8, 4, "sigmoid", 2.5, bias)
    else:
        rw, rids, _ = vllm.fused_topk(torch.empty(T, 16, device=DEV), x, K, True)
    ref_load = torch.full((P,), 3, dtype=load_dtype, device=DEV)
    ref_ids = vllm_eplb_map_to_physical_and_record(rids, ref_load, l2p, rc)
    assert ids.dtype == (indices_type or torch.int32) and ids.shape == (T, K)
    assert torch.equal(ids.long(), ref_ids)
    torch.testing.assert_close(w, rw, rtol=1e-6, atol=1e-7)
    assert torch.equal(load, ref_load)
    # without EPLB: the plain routing
    w2, ids2 = vllm.select_experts(torch.empty(T, 16, device=DEV), x, K, grouped, True, e_score_correction_bias=bias,
                                   indices_type=indices_type, **kw)
    assert torch.equal(ids2.long(), rids.long()) and ids2.dtype == (indices_type or torch.int32)
