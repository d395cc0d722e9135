"""A small MoE block built from the torch ops — router matmul → route → align → permute → one
matmul per expert over the aligned blocks → combine — run eagerly, under
torch.compile(fullgraph=True) (no graph break), and replayed from a CUDA graph captured in strict
mode after a prewarm: the three agree with each other and with a pure-PyTorch reference of the
layer. A kernel missing from the cache while capturing in strict mode is a clear error."""
import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)

DEV = "cuda"
T, H, E, K, B = 48, 64, 32, 4, 16
SPEC = moejit.RouteSpec(E, K, score="sigmoid", dtype=torch.float32, num_groups=4, topk_groups=2,
                        group_score="top2_sum", has_bias=True, renormalize=True, scale_output=True,
                        routed_scaling_factor=2.5)


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(1234)
    return dict(router=torch.randn(H, E, device=DEV) / H**0.5, bias=(torch.rand(E, device=DEV) - 0.5) * 0.1,
                experts=torch.randn(E, H, H, device=DEV) / H**0.5)


def moe_block(x, router, bias, experts):
    """moejit's layer: every shape static, so it compiles in one graph and captures."""
    logits = x @ router
    ids, w = moejit.route(logits, SPEC, bias)
    maps = moejit.align(ids, E, B)
    xs = moejit.permute(x, maps.sorted_ids, K)                        # [capacity, H], padding rows zero
    nb = maps.block_expert.shape[0]
    w_blocks = experts[maps.block_expert.clamp(min=0).long()]         # [blocks, H, H]; tail blocks read expert 0…
    ys = torch.bmm(xs[: nb * B].view(nb, B, H), w_blocks)             # …on zero rows, so they stay zero
    return moejit.combine(ys.reshape(nb * B, H), maps.slot_of, w)


def reference_block(x, router, bias, experts):
    """The same layer in plain PyTorch (DeepSeek-style routing written out)."""
    s = torch.sigmoid(x @ router)
    sel = s + bias
    g = sel.view(-1, 4, E // 4).topk(2, dim=-1).values.sum(-1)
    keep = torch.zeros_like(g).scatter_(1, g.topk(2, dim=-1).indices, 1.0).repeat_interleave(E // 4, dim=1)
    ids = sel.masked_fill(keep == 0, float("-inf")).topk(K, dim=-1).indices
    w = s.gather(1, ids)
    w = w / w.sum(-1, keepdim=True) * 2.5
    y = torch.einsum("th,tkhj->tkj", x, experts[ids])
    return (w.unsqueeze(-1) * y).sum(1)


def test_eager_compiled_graph_and_reference_agree(weights):
    x = torch.randn(T, H, device=DEV)
    args = (weights["router"], weights["bias"], weights["experts"])
    eager = moe_block(x, *args)
    ref = reference_block(x, *args)
    torch.testing.assert_close(eager, ref, rtol=1e-4, atol=1e-5)

    torch._dynamo.reset()
    explained = torch._dynamo.explain(moe_block)(x, *args)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(moe_block, fullgraph=True)
    torch.testing.assert_close(compiled(x, *args), eager, rtol=1e-5, atol=1e-6)

    # CUDA graph: prewarm every kernel of the layer, warm up, then capture in strict mode
    moejit.prewarm(moejit.Kernel.moe_layer(SPEC, B, H, torch.float32, fused=False))
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        moe_block(static_x, *args)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with moejit.strict(), torch.cuda.graph(g):
        static_out = moe_block(static_x, *args)
    for _ in range(2):
        x2 = torch.randn(T, H, device=DEV)
        static_x.copy_(x2)
        g.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(static_out, moe_block(x2, *args), rtol=0, atol=0)
        torch.testing.assert_close(static_out, reference_block(x2, *args), rtol=1e-4, atol=1e-5)


def test_compile_has_no_recompile_per_call(weights):
    """The spec is plain op arguments: calls with new data reuse the compiled graph."""
    import torch._dynamo.testing
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()
    fn = torch.compile(moe_block, backend=counter, fullgraph=True)
    args = (weights["router"], weights["bias"], weights["experts"])
    for _ in range(3):
        fn(torch.randn(T, H, device=DEV), *args)
    assert counter.frame_count == 1


def test_cache_miss_while_capturing_in_strict_mode_is_an_error(tmp_path):
    moejit.configure(cache_dir=str(tmp_path / "empty"))
    try:
        spec = moejit.RouteSpec(37, 3, dtype=torch.float32)           # never compiled into this cache
        x = torch.randn(8, 37, device=DEV)
        g = torch.cuda.CUDAGraph()
        with pytest.raises(moejit.MoejitError) as e:
            with moejit.strict(), torch.cuda.graph(g):
                moejit.route(x, spec)
        assert e.value.status == "MOEJIT_ERR_CACHE_MISS"
        assert "e37" in str(e.value)
        torch.cuda.synchronize()
        ids, _ = moejit.route(x, spec)                                # outside strict mode: compiles
        assert ids.shape == (8, 3)
    finally:
        moejit.configure()
