"""Megatron-Core's auxiliary losses through moejit.route_with_losses (issue 16 items 2 and 6), on
the GPU, against the plain-PyTorch formulas in megatron_refs.py (computed in double):
- the three losses and the tokens per expert, for softmax, sigmoid (with bias and groups: they
  move only the selection) and sqrt-softplus routing, packed sequences of unequal lengths;
- the gradient w.r.t. the logits of weights·g + a·L_aux + b·L_seq + c·L_z: route_backward's part
  plus autograd of the reference losses;
- bit-identical run to run (fixed-point statistics, fixed reduction orders);
- torch.compile(fullgraph=True) gives the same values and gradients;
- a small MoE layer's training step with the load-balancing and z losses equals the same layer in
  plain PyTorch (Megatron's formulas), eagerly and compiled;
- bad arguments raise, naming them."""
import pytest

import moejit
from moejit import _capi as C

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

import megatron_refs as M  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)
if not hasattr(moejit, "route_with_losses") or not moejit.has_route_backward():
    pytest.skip("the library has no fused losses", allow_module_level=True)

DEV = "cuda"
TORCH_DTYPE = {C.DTYPES["f32"]: torch.float32, C.DTYPES["bf16"]: torch.bfloat16}

SPECS = {
    "qwen3-moe": lambda: moejit.RouteSpec.preset("qwen3-moe", dtype=torch.float32),
    "deepseek-v3": lambda: moejit.RouteSpec.preset("deepseek-v3", dtype=torch.float32),
    "kimi-k2-bf16": lambda: moejit.RouteSpec.preset("kimi-k2", dtype=torch.bfloat16),
    "sqrt-softplus-e20": lambda: moejit.RouteSpec(20, 3, score="sqrt_softplus", dtype=torch.float32,
                                                  renormalize=True),
    "softmax-e8-k2": lambda: moejit.RouteSpec(8, 2, dtype=torch.float32),
}


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(20261206)


def bias_for(spec):
    return (torch.rand(spec.num_experts, device=DEV) - 0.5) * 0.1 if spec.has_bias else None


def offsets_for(lens):
    return torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32, device=DEV)


def split(T):
    """Unequal sequence lengths summing to T (one sequence when T is small)."""
    if T < 6:
        return [T]
    a, b = T // 5, T // 2
    return [a, b, T - a - b]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("T", [1, 37, 1000])
def test_losses_and_gradient_match_megatron(name, T):
    spec = SPECS[name]()
    E, K = spec.num_experts, spec.topk
    lens = split(T)
    logits = (torch.randn(T, E, device=DEV) * 2).to(TORCH_DTYPE[spec.dtype]).requires_grad_()
    bias = bias_for(spec)
    r = moejit.route_with_losses(logits, spec, bias, load_balance=True, seq_offsets=offsets_for(lens), z_loss=True)
    ids = r.ids
    score = spec.score_name
    ref_lb = M.switch_load_balancing_loss(logits.detach(), ids, E, K, score)
    ref_seq = M.sequence_load_balancing_loss(logits.detach(), ids, lens, E, K, score)
    ref_z = M.z_loss(logits.detach())
    torch.testing.assert_close(r.load_balance.double(), ref_lb, rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(r.seq_load_balance.double(), ref_seq, rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(r.z.double(), ref_z, rtol=2e-5, atol=1e-6)
    assert torch.equal(r.tokens_per_expert.cpu().double(), M.tokens_per_expert(ids.cpu(), E, K))

    # gradient of weights·g + a·L_aux + b·L_seq + c·L_z
    g = torch.randn_like(r.weights)
    a, b, c = 0.7, -1.3, 0.01
    (r.weights * g).sum().add(a * r.load_balance + b * r.seq_load_balance + c * r.z).backward()
    x = logits.detach().double().requires_grad_()
    ref = a * M.switch_load_balancing_loss(x, ids, E, K, score) + \
        b * M.sequence_load_balancing_loss(x, ids, lens, E, K, score) + c * M.z_loss(x)
    (ref_grad,) = torch.autograd.grad(ref, x)
    ref_grad = ref_grad + moejit.route_backward(logits.detach(), spec, ids, g).double()
    scale = ref_grad.abs().max().item()
    torch.testing.assert_close(logits.grad.double(), ref_grad.to(logits.grad.dtype).double(),
                               rtol=1e-4 if spec.dtype == C.DTYPES["f32"] else 2e-2, atol=1e-5 * max(scale, 1e-3))


def test_bit_identical_run_to_run():
    spec = SPECS["deepseek-v3"]()
    T = 4096
    logits = torch.randn(T, spec.num_experts, device=DEV).requires_grad_()
    bias = bias_for(spec)
    offs = offsets_for([1000, 3000, 96])
    results = []
    for _ in range(2):
        logits.grad = None
        r = moejit.route_with_losses(logits, spec, bias, seq_offsets=offs, z_loss=True)
        (r.weights.sum() + r.load_balance + r.seq_load_balance + r.z).backward()
        results.append((r.load_balance.detach().clone(), r.seq_load_balance.detach().clone(), r.z.detach().clone(),
                        logits.grad.clone()))
    for u, v in zip(*results):
        assert torch.equal(u, v)


def test_compiled_equals_eager():
    spec = SPECS["qwen3-moe"]()
    logits = torch.randn(64, spec.num_experts, device=DEV)

    def step(x):
        r = moejit.route_with_losses(x, spec, z_loss=True)
        return (r.weights * torch.arange(r.weights.shape[1], device=DEV)).sum() + 0.01 * r.load_balance + 1e-3 * r.z

    grads = []
    for fn in (step, torch.compile(step, fullgraph=True)):
        x = logits.clone().requires_grad_()
        loss = fn(x)
        loss.backward()
        grads.append((loss.detach(), x.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-6, atol=1e-7)


# ---- a small MoE layer with the aux and z losses --------------------------------------------------
T, H, E, K, B = 48, 64, 32, 4, 16
SPEC = moejit.RouteSpec(E, K, dtype=torch.float32, renormalize=True)
AUX_COEFF, Z_COEFF = 1e-2, 1e-3


def moe_layer(x, router, experts):
    logits = x @ router
    r = moejit.route_with_losses(logits, SPEC, z_loss=True)
    maps = moejit.align(r.ids, E, B)
    xs = moejit.permute(x, maps.sorted_ids, K)
    nb = maps.block_expert.shape[0]
    w_blocks = experts[maps.block_expert.clamp(min=0).long()]
    ys = torch.bmm(xs[: nb * B].view(nb, B, H), w_blocks)
    return moejit.combine(ys.reshape(nb * B, H), maps.slot_of, r.weights), AUX_COEFF * r.load_balance + Z_COEFF * r.z


def reference_layer(x, router, experts):
    logits = x @ router
    s = torch.softmax(logits, -1)
    ids = s.topk(K, dim=-1).indices
    w = s.gather(1, ids)
    w = w / w.sum(-1, keepdim=True)
    y = torch.einsum("th,tkhj->tkj", x, experts[ids])
    c = torch.bincount(ids.reshape(-1), minlength=E).float()
    lb = (s.sum(0) * c).sum() * (E / (K * T * T))
    z = torch.logsumexp(logits, -1).square().mean()
    return (w.unsqueeze(-1) * y).sum(1), AUX_COEFF * lb + Z_COEFF * z


def _step(fn, x, params, g):
    x = x.clone().requires_grad_()
    leaves = [p.clone().requires_grad_() for p in params]
    out, aux = fn(x, *leaves)
    ((out * g).sum() + aux).backward()
    return out.detach(), aux.detach(), x.grad, leaves[0].grad, leaves[1].grad


def test_layer_training_step_with_losses_equals_plain_pytorch():
    gen = torch.Generator(device=DEV).manual_seed(99)
    params = (torch.randn(H, E, device=DEV, generator=gen) / H**0.5,
              torch.randn(E, H, H, device=DEV, generator=gen) / H**0.5)
    x = torch.randn(T, H, device=DEV, generator=gen)
    g = torch.randn(T, H, device=DEV, generator=gen)
    mine = _step(moe_layer, x, params, g)
    ref = _step(reference_layer, x, params, g)
    for u, v in zip(mine, ref):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
    compiled = _step(torch.compile(moe_layer, fullgraph=True), x, params, g)
    for u, v in zip(compiled, mine):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


def test_bad_arguments_name_themselves():
    spec = SPECS["qwen3-moe"]()
    logits = torch.randn(10, spec.num_experts, device=DEV)
    with pytest.raises(ValueError, match="no loss"):
        moejit.route_with_losses(logits, spec, load_balance=False)
    with pytest.raises((TypeError, ValueError), match="seq_offsets"):
        moejit.route_with_losses(logits, spec, seq_offsets=torch.tensor([0, 10], dtype=torch.float32, device=DEV))
    with pytest.raises(ValueError, match="seq_offsets"):
        moejit.route_with_losses(logits, spec, seq_offsets=torch.tensor([0], dtype=torch.int32, device=DEV))
