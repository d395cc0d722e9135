"""The C references (moejit_reference.h) on host copies of torch tensors, through the one ctypes
binding: what the GPU tests compare the torch ops with. Outputs come back poisoned where the
reference does not write them (sorted_ids past the padded total)."""
import ctypes

import torch

from moejit import _capi as C
from moejit import core

POISON_I32 = -0x5A5A5A5B


def spaced(T, E, dtype=torch.float32, device="cuda"):
    """Distinct, evenly spaced logits in [-4, 4], shuffled per row: no score saturates and no
    selection hinges on a few ulp."""
    if T == 0:
        return torch.empty(0, E, device=device, dtype=dtype)
    step = min(0.05, 8.0 / E)
    return (torch.rand(T, E, device=device).argsort(-1).float() * step - E * step / 2).to(dtype)


def _p(t):
    return t.data_ptr() if t is not None and t.numel() else None


def host(t):
    return None if t is None else t.detach().to("cpu").contiguous()


def route(logits, bias, spec_c):
    x, b = host(logits), host(bias)
    T, S = x.shape[0], spec_c.topk + spec_c.shared_slots
    ids = torch.full((T, S), POISON_I32, dtype=torch.int32)
    w = torch.full((T, S), float("nan"), dtype=torch.float32)
    C.check(C.lib.moejit_route_reference(ctypes.byref(spec_c), ctypes.byref(
        C.RouteArgs(_p(x), _p(b), _p(ids), _p(w), T, x.shape[1]))))
    return ids, w


def _align_outs(E, B, T, K, cap):
    new = lambda n: torch.full((n,), POISON_I32, dtype=torch.int32)  # noqa: E731
    outs = dict(counts=new(E), offsets=new(E + 1), sorted_ids=new(cap), block_expert=new(cap // B), total_padded=new(1),
                slot_of=torch.full((T, K), POISON_I32, dtype=torch.int32))
    c = C.AlignOutputs(_p(outs["counts"]), _p(outs["offsets"]), _p(outs["sorted_ids"]), cap, _p(outs["block_expert"]),
                       _p(outs["total_padded"]), _p(outs["slot_of"]), None, 0)
    return outs, c


def align(ids, E, B):
    x = host(ids).to(torch.int32)
    T, K = x.shape
    cap = core.align_capacity(E, B, T, K)
    outs, c = _align_outs(E, B, T, K, cap)
    C.check(C.lib.moejit_align_reference(ctypes.byref(core.align_spec_c(E, B)),
                                         ctypes.byref(C.AlignArgs(_p(x), T, K, 0, c))))
    return outs


def route_align(logits, bias, spec_c, block_size):
    x, b = host(logits), host(bias)
    T, S = x.shape[0], spec_c.topk + spec_c.shared_slots
    E = spec_c.num_experts + spec_c.shared_slots
    cap = core.align_capacity(E, block_size, T, S)
    ids = torch.full((T, S), POISON_I32, dtype=torch.int32)
    w = torch.full((T, S), float("nan"), dtype=torch.float32)
    outs, c = _align_outs(E, block_size, T, S, cap)
    ra = core.route_align_spec_c(core.spec_key(spec_c), block_size)
    args = C.RouteAlignArgs(C.RouteArgs(_p(x), _p(b), _p(ids), _p(w), T, x.shape[1]), c)
    C.check(C.lib.moejit_route_align_reference(ctypes.byref(ra), ctypes.byref(args)))
    return ids, w, outs


def permute(x, sorted_ids, topk, ids=None, scale=None):
    xh, sh, ih, ch = host(x), host(sorted_ids), host(ids), host(scale)
    T, H = xh.shape
    R = sh.shape[0]
    out = torch.full((R, H), float("nan"), dtype=xh.dtype)
    spec = core.permute_spec_c(H, core.dtype_name(x.dtype), int(scale is not None))
    C.check(C.lib.moejit_permute_reference(ctypes.byref(spec), ctypes.byref(C.PermuteArgs(
        _p(xh), _p(sh), _p(ih), _p(ch), _p(out), T, topk, ch.shape[0] if ch is not None else 0, R))))
    return out


def combine(y, slot_of, weights):
    yh, sh, wh = host(y), host(slot_of), host(weights)
    R, H = yh.shape
    T, K = sh.shape
    out = torch.full((T, H), float("nan"), dtype=yh.dtype)
    spec = core.combine_spec_c(H, core.dtype_name(y.dtype))
    C.check(C.lib.moejit_combine_reference(ctypes.byref(spec), ctypes.byref(C.CombineArgs(
        _p(yh), _p(sh), _p(wh), _p(out), T, K, 0, R))))
    return out


def mx_scales(scales, group_ends=None):
    sh, gh = host(scales), host(group_ends)
    cols = sh.shape[-1]
    if gh is None:
        G, R = sh.shape[0], sh.shape[1]
    else:
        G, R = gh.shape[0], sh.shape[0]
    n = core.mx_scales_blocked_bytes(cols, G, R, gh is not None)
    out = torch.full((n,), 0xA5, dtype=torch.uint8)
    args = C.MxScalesArgs(int(gh is not None), _p(sh), _p(out), G, R, _p(gh), 0, 0)
    C.check(C.lib.moejit_mx_scales_reference(ctypes.byref(core.mx_spec_c(cols)), ctypes.byref(args)))
    return out


def permute_backward(grad_out, slot_of, ids=None, scale=None):
    gh, sh, ih, ch = host(grad_out), host(slot_of), host(ids), host(scale)
    R, H = gh.shape
    T, K = sh.shape
    if ih is not None:
        ih = ih.clamp(-1, ch.shape[0]).to(torch.int32)
    out = torch.full((T, H), float("nan"), dtype=gh.dtype)
    spec = core.permute_backward_spec_c(H, core.dtype_name(grad_out.dtype), int(scale is not None))
    C.check(C.lib.moejit_permute_backward_reference(ctypes.byref(spec), ctypes.byref(C.PermuteBackwardArgs(
        _p(gh), _p(sh), _p(ih), _p(ch), _p(out), T, K, ch.shape[0] if ch is not None else 0, R))))
    return out


def combine_backward(grad_out, slot_of, y, weights, sorted_ids):
    """(grad_y [R, H], grad_weights [T, K]) of the C reference; R from y."""
    gh, sh, yh, wh, oh = host(grad_out), host(slot_of), host(y), host(weights), host(sorted_ids)
    T, H = gh.shape
    K = sh.shape[1]
    R = yh.shape[0]
    grad_y = torch.full((R, H), float("nan"), dtype=gh.dtype)
    grad_w = torch.full((T, K), float("nan"), dtype=torch.float32)
    spec = core.combine_backward_spec_c(H, core.dtype_name(grad_out.dtype))
    C.check(C.lib.moejit_combine_backward_reference(ctypes.byref(spec), ctypes.byref(C.CombineBackwardArgs(
        _p(gh), _p(yh), _p(sh), _p(wh), _p(oh), _p(grad_y), _p(grad_w), T, K, 0, R))))
    return grad_y, grad_w


def route_backward(logits, ids, grad_weights, spec_c):
    """grad_logits [T, E] of the C reference (in double, rounded to f32); spec_c: the forward's."""
    x, ih, gh = host(logits), host(ids), host(grad_weights)
    T, E = x.shape
    out = torch.full((T, E), float("nan"), dtype=torch.float32)
    key = core.spec_key(spec_c)
    params = key[2:-1]
    rb = core.route_backward_spec_c(core.route_backward_key(key[0], params, ids.dtype))
    C.check(C.lib.moejit_route_backward_reference(ctypes.byref(rb), ctypes.byref(C.RouteBackwardArgs(
        _p(x), _p(ih), _p(gh), _p(out), T, E))))
    return out
