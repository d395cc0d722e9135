"""Every wrong argument of every op: a TypeError or ValueError naming the argument, raised before
anything is launched (the context's launch counter does not move and poisoned outputs stay
poisoned). Run the file under compute-sanitizer too (see README)."""
import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("GPU test: torch sees no CUDA device", allow_module_level=True)

DEV = "cuda"
E, K, T, B, H = 64, 4, 10, 16, 32
SPEC = moejit.RouteSpec(E, K, score="sigmoid", dtype=torch.float32, renormalize=True)
BSPEC = SPEC.replace(has_bias=True)
CAP = moejit.align_capacity(E, B, T, K)
P = SPEC.params
ops = torch.ops.moejit


def i32(*s, fill=-7):
    return torch.full(s, fill, dtype=torch.int32, device=DEV)


def f32(*s):
    return torch.full(s, float("nan"), device=DEV)


def logits(*s, dtype=torch.float32):
    return torch.randn(*(s or (T, E)), device=DEV).to(dtype)


def ids32():
    return torch.randint(0, E, (T, K), dtype=torch.int32, device=DEV)


_SORTED = []


def sorted_ids():
    """A real sorted_ids (made once, before any case is measured: making it launches align)."""
    if not _SORTED:
        _SORTED.append(moejit.align(ids32(), E, B).sorted_ids)
    return _SORTED[0]


def u8(*s):
    return torch.randint(0, 256, s, dtype=torch.uint8, device=DEV)


def big_tensor_view():
    return torch.zeros(T, E + 3, device=DEV)[:, 1:E + 1].t().contiguous().t()  # column-major


CASES = {
    # route
    "route logits on cpu": (lambda: moejit.route(torch.randn(T, E), SPEC), ValueError, ["logits", "cpu"]),
    "route logits int": (lambda: ops.route(torch.zeros(T, E, dtype=torch.int32, device=DEV), None, *P), TypeError,
                         ["logits", "int32"]),
    "route logits 3-D": (lambda: ops.route(logits(2, T, E), None, *P), ValueError, ["logits", "2-D"]),
    "route logits width": (lambda: moejit.route(logits(T, E + 1), SPEC), ValueError, ["logits", "num_experts"]),
    "route logits dtype vs spec": (lambda: moejit.route(logits(dtype=torch.bfloat16), SPEC), TypeError,
                                   ["logits", "bfloat16", "f32"]),
    "route logits columns strided": (lambda: moejit.route(big_tensor_view(), SPEC), ValueError, ["logits", "stride"]),
    "route logits rows overlap": (lambda: moejit.route(logits(1, E).expand(T, E), SPEC), ValueError,
                                  ["logits", "rows"]),
    "route bias f16": (lambda: moejit.route(logits(), BSPEC, torch.zeros(E, dtype=torch.float16, device=DEV)),
                       TypeError, ["bias", "float16"]),
    "route bias shape": (lambda: moejit.route(logits(), BSPEC, torch.zeros(E + 1, device=DEV)), ValueError,
                         ["bias", str(E + 1)]),
    "route bias on cpu": (lambda: moejit.route(logits(), BSPEC, torch.zeros(E)), ValueError, ["bias", "cpu"]),
    "route bias strided": (lambda: moejit.route(logits(), BSPEC, torch.zeros(2 * E, device=DEV)[::2]), ValueError,
                           ["bias", "contiguous"]),
    "route bias missing": (lambda: moejit.route(logits(), BSPEC), ValueError, ["bias", "has_bias"]),
    "route bias unexpected": (lambda: moejit.route(logits(), SPEC, torch.zeros(E, device=DEV)), ValueError,
                              ["bias", "has_bias"]),
    "route out ids int8": (lambda: moejit.route(logits(), SPEC, out=(torch.zeros(T, K, dtype=torch.int8,
                                                                                  device=DEV), f32(T, K))),
                           TypeError, ["ids", "int8"]),   # int64 and int16 ids are route's id dtypes
    "route out ids shape": (lambda: moejit.route(logits(), SPEC, out=(i32(T, K + 1), f32(T, K))), ValueError,
                            ["ids", str(K + 1)]),
    "route out weights strided": (lambda: moejit.route(logits(), SPEC, out=(i32(T, K), f32(K, T).t())), ValueError,
                                  ["weights", "contiguous"]),
    "route out on cpu": (lambda: moejit.route(logits(), SPEC, out=(torch.zeros(T, K, dtype=torch.int32), f32(T, K))),
                         ValueError, ["ids", "cpu"]),
    "route num_experts wraps": (lambda: ops.route(logits(T, 64), None, 2**32 + 64, *P[1:]), ValueError,
                                ["num_experts", str(2**32 + 64)]),
    "route topk > E": (lambda: ops.route(logits(), None, E, 80, *P[2:]), ValueError, ["topk", "80"]),
    "route score name": (lambda: ops.route(logits(), None, E, K, "relu", *P[3:]), ValueError, ["score", "relu"]),
    # align
    "align ids float": (lambda: moejit.align(torch.zeros(T, K, device=DEV), E, B), TypeError, ["topk_ids", "float32"]),
    "align ids 1-D": (lambda: moejit.align(i32(T * K), E, B), ValueError, ["topk_ids", "2-D"]),
    "align ids strided": (lambda: moejit.align(i32(K, T).t(), E, B), ValueError, ["topk_ids", "contiguous"]),
    "align ids on cpu": (lambda: moejit.align(torch.zeros(T, K, dtype=torch.int32), E, B), ValueError,
                         ["topk_ids", "cpu"]),
    "align E = 0": (lambda: moejit.align(ids32(), 0, B), ValueError, ["num_experts"]),
    "align E wraps": (lambda: moejit.align(ids32(), 2**32 + 8, B), ValueError, ["num_experts", str(2**32 + 8)]),
    "align B not a power of two": (lambda: moejit.align(ids32(), E, 48), ValueError, ["block_size", "48"]),
    "align sorted_ids short": (lambda: moejit.align(ids32(), E, B, out=(None, None, i32(CAP - 1), None, None, None)),
                               ValueError, ["sorted_ids", str(CAP - 1), str(CAP)]),
    "align block_expert short": (lambda: moejit.align(ids32(), E, B, out=(None, None, i32(CAP), i32(CAP // B - 1),
                                                                          None, None)),
                                 ValueError, ["block_expert"]),
    "align counts shape": (lambda: moejit.align(ids32(), E, B, out=(i32(E - 1), None, None, None, None, None)),
                           ValueError, ["counts", str(E - 1)]),
    "align slot_of int64": (lambda: moejit.align(ids32(), E, B, out=(None, None, None, None, None,
                                                                     torch.zeros(T, K, dtype=torch.int64, device=DEV))),
                            TypeError, ["slot_of", "int64"]),
    "align total on cpu": (lambda: moejit.align(ids32(), E, B, out=(None, None, None, None,
                                                                    torch.zeros(1, dtype=torch.int32), None)),
                           ValueError, ["total_padded", "cpu"]),
    "align workspace short": (lambda: moejit.align(torch.zeros(9000, 8, dtype=torch.int32, device=DEV), E, B,
                                                   out=(i32(E), None, None, None, None, None),
                                                   workspace=torch.empty(16, dtype=torch.uint8, device=DEV)),
                              ValueError, ["workspace", "16"]),
    "align workspace dtype": (lambda: moejit.align(ids32(), E, B, out=(i32(E), None, None, None, None, None),
                                                   workspace=torch.empty(16, device=DEV)),
                              TypeError, ["workspace", "float32"]),
    # route_align
    "route_align B": (lambda: moejit.route_align(logits(), SPEC, 3), ValueError, ["block_size", "3"]),
    "route_align logits cpu": (lambda: moejit.route_align(torch.randn(T, E), SPEC, B), ValueError, ["logits", "cpu"]),
    # permute
    "permute x int": (lambda: moejit.permute(torch.zeros(T, H, dtype=torch.int32, device=DEV), sorted_ids(), K),
                      TypeError, ["x", "int32"]),
    "permute x strided": (lambda: moejit.permute(f32(H, T).t(), sorted_ids(), K), ValueError, ["x", "contiguous"]),
    "permute sorted_ids int64": (lambda: moejit.permute(f32(T, H), sorted_ids().long(), K), TypeError,
                                 ["sorted_ids", "int64"]),
    "permute topk 0": (lambda: moejit.permute(f32(T, H), sorted_ids(), 0), ValueError, ["topk", "0"]),
    "permute ids without scale": (lambda: moejit.permute(f32(T, H), sorted_ids(), K, ids32()), ValueError,
                                  ["ids", "scale"]),
    "permute scale f16": (lambda: moejit.permute(f32(T, H), sorted_ids(), K, ids32(),
                                                 torch.ones(E, dtype=torch.float16, device=DEV)),
                          TypeError, ["scale", "float16"]),
    "permute ids shape": (lambda: moejit.permute(f32(T, H), sorted_ids(), K, i32(T, K + 1), torch.ones(E, device=DEV)),
                          ValueError, ["ids", str(K + 1)]),
    "permute out shape": (lambda: moejit.permute(f32(T, H), sorted_ids(), K, out=f32(CAP, H + 1)), ValueError,
                          ["out", str(H + 1)]),
    "permute out dtype": (lambda: moejit.permute(f32(T, H), sorted_ids(), K,
                                                 out=torch.zeros(CAP, H, dtype=torch.bfloat16, device=DEV)),
                          TypeError, ["out", "bfloat16"]),
    "permute hidden": (lambda: moejit.permute(f32(2, 70000), i32(4), 2), ValueError, ["hidden", "70000"]),
    # combine
    "combine y f64": (lambda: moejit.combine(torch.zeros(CAP, H, dtype=torch.float64, device=DEV), i32(T, K), f32(T, K)),
                      TypeError, ["y", "float64"]),
    "combine slot_of int64": (lambda: moejit.combine(f32(CAP, H), i32(T, K).long(), f32(T, K)), TypeError,
                              ["slot_of", "int64"]),
    "combine weights bf16": (lambda: moejit.combine(f32(CAP, H), i32(T, K), f32(T, K).bfloat16()), TypeError,
                             ["weights", "bfloat16"]),
    "combine weights shape": (lambda: moejit.combine(f32(CAP, H), i32(T, K), f32(T, K + 1)), ValueError,
                              ["weights", str(K + 1)]),
    "combine out dtype": (lambda: moejit.combine(f32(CAP, H), i32(T, K), f32(T, K),
                                                 out=torch.zeros(T, H, dtype=torch.float16, device=DEV)),
                          TypeError, ["out", "float16"]),
    "combine y on cpu": (lambda: moejit.combine(torch.zeros(CAP, H), i32(T, K), f32(T, K)), ValueError, ["y", "cpu"]),
    "permute slot_of shape": (lambda: moejit.permute(f32(T, H), sorted_ids(), K, slot_of=i32(T, K + 1)), ValueError,
                              ["slot_of", str(K + 1)]),
    "combine sorted_ids int64": (lambda: moejit.combine(f32(CAP, H), i32(T, K), f32(T, K),
                                                        sorted_ids=sorted_ids().long()), TypeError,
                                 ["sorted_ids", "int64"]),
    "combine sorted_ids short": (lambda: moejit.combine(f32(CAP, H), i32(T, K), f32(T, K), sorted_ids=i32(CAP - 1)),
                                 ValueError, ["sorted_ids", str(CAP - 1), str(CAP)]),
    # the backward operations
    "permute_backward grad_out int": (lambda: moejit.permute_backward(i32(CAP, H), i32(T, K)), TypeError,
                                      ["grad_out", "int32"]),
    "permute_backward grad_out strided": (lambda: moejit.permute_backward(f32(H, CAP).t(), i32(T, K)), ValueError,
                                          ["grad_out", "contiguous"]),
    "permute_backward slot_of int64": (lambda: moejit.permute_backward(f32(CAP, H), i32(T, K).long()), TypeError,
                                       ["slot_of", "int64"]),
    "permute_backward ids without scale": (lambda: moejit.permute_backward(f32(CAP, H), i32(T, K), ids32()),
                                           ValueError, ["ids", "scale"]),
    "permute_backward ids shape": (lambda: moejit.permute_backward(f32(CAP, H), i32(T, K), i32(T + 1, K),
                                                                   torch.ones(E, device=DEV)),
                                   ValueError, ["ids", str(T + 1)]),
    "permute_backward out dtype": (lambda: moejit.permute_backward(f32(CAP, H), i32(T, K),
                                                                   out=torch.zeros(T, H, dtype=torch.bfloat16,
                                                                                   device=DEV)),
                                   TypeError, ["grad_x", "bfloat16"]),
    "permute_backward on cpu": (lambda: moejit.permute_backward(torch.zeros(CAP, H), i32(T, K)), ValueError,
                                ["grad_out", "cpu"]),
    "permute_backward hidden": (lambda: moejit.permute_backward(f32(4, 70000), i32(2, 2)), ValueError,
                                ["hidden", "70000"]),
    "combine_backward y dtype": (lambda: moejit.combine_backward(f32(T, H), i32(T, K),
                                                                 torch.zeros(CAP, H, dtype=torch.bfloat16, device=DEV)),
                                 TypeError, ["y", "bfloat16"]),
    "combine_backward y rows": (lambda: ops.combine_backward(f32(T, H), i32(T, K), f32(CAP + 1, H), None, None, CAP,
                                                             False, True),
                                ValueError, ["y", str(CAP + 1)]),
    "combine_backward weights missing": (lambda: ops.combine_backward(f32(T, H), i32(T, K), None, None, sorted_ids(),
                                                                      CAP, True, False),
                                         ValueError, ["weights", "grad_y"]),
    "combine_backward sorted_ids missing": (lambda: moejit.combine_backward(f32(T, H), i32(T, K), weights=f32(T, K),
                                                                            num_rows=CAP),
                                            ValueError, ["sorted_ids", "grad_y"]),
    "combine_backward y missing": (lambda: ops.combine_backward(f32(T, H), i32(T, K), None, None, None, CAP, False,
                                                                True),
                                   ValueError, ["y", "grad_weights"]),
    "combine_backward sorted_ids short": (lambda: moejit.combine_backward(f32(T, H), i32(T, K), weights=f32(T, K),
                                                                          sorted_ids=i32(CAP - 1), num_rows=CAP),
                                          ValueError, ["sorted_ids", str(CAP - 1)]),
    "combine_backward slot_of rows": (lambda: moejit.combine_backward(f32(T + 1, H), i32(T, K), f32(CAP, H)),
                                      ValueError, ["slot_of", str(T + 1)]),
    "combine_backward weights shape": (lambda: moejit.combine_backward(f32(T, H), i32(T, K), None, f32(T, K + 1),
                                                                       sorted_ids()),
                                       ValueError, ["weights", str(K + 1)]),
    "combine_backward out grad_weights bf16": (lambda: moejit.combine_backward(
        f32(T, H), i32(T, K), f32(CAP, H), out=(None, torch.zeros(T, K, dtype=torch.bfloat16, device=DEV))),
        TypeError, ["grad_weights", "bfloat16"]),
    "combine_backward out grad_y shape": (lambda: moejit.combine_backward(
        f32(T, H), i32(T, K), None, f32(T, K), sorted_ids(), out=(f32(CAP, H + 1), None)),
        ValueError, ["grad_y", str(H + 1)]),
    "route_backward ids shape": (lambda: moejit.route_backward(logits(), SPEC, i32(T, K + 1), f32(T, K)), ValueError,
                                 ["ids", str(K + 1)]),
    "route_backward ids float": (lambda: moejit.route_backward(logits(), SPEC, f32(T, K), f32(T, K)), TypeError,
                                 ["ids", "float32"]),
    "route_backward grad_weights f16": (lambda: moejit.route_backward(logits(), SPEC, ids32(),
                                                                      f32(T, K).half()),
                                        TypeError, ["grad_weights", "float16"]),
    "route_backward logits dtype vs spec": (lambda: moejit.route_backward(logits(dtype=torch.float16), SPEC, ids32(),
                                                                          f32(T, K)),
                                            TypeError, ["logits", "float16"]),
    "route_backward logits width": (lambda: ops.route_backward(logits(T, E + 1), ids32(), f32(T, K), *P), ValueError,
                                    ["logits", "num_experts"]),
    "route_backward out shape": (lambda: moejit.route_backward(logits(), SPEC, ids32(), f32(T, K), out=f32(T, E + 1)),
                                 ValueError, ["grad_logits", str(E + 1)]),
    # mx_scales
    "mx scales int8": (lambda: moejit.mx_scales(torch.zeros(2, 128, 4, dtype=torch.int8, device=DEV)), TypeError,
                       ["scales", "int8"]),
    "mx 3-D with group_ends": (lambda: moejit.mx_scales(u8(2, 128, 4), torch.tensor([1], dtype=torch.int32,
                                                                                    device=DEV)),
                               ValueError, ["scales", "2-D"]),
    "mx group_ends int64": (lambda: moejit.mx_scales(u8(300, 4), torch.tensor([300], device=DEV)), TypeError,
                            ["group_ends", "int64"]),
    "mx rows overlap": (lambda: moejit.mx_scales(u8(1, 1, 8).expand(2, 200, 8)), ValueError, ["scales", "rows"]),
    "mx groups overlap": (lambda: moejit.mx_scales(u8(1, 200, 8).expand(3, 200, 8)), ValueError, ["scales", "groups"]),
    "mx out size": (lambda: moejit.mx_scales(u8(2, 128, 4), out=u8(2 * 128 * 4 - 1)), ValueError, ["out", "bytes"]),
    "mx out misaligned": (lambda: moejit.mx_scales(u8(2, 128, 4), out=u8(2 * 128 * 4 + 1)[1:]), ValueError,
                          ["aligned"]),
    "mx cols": (lambda: moejit.mx_scales(u8(1, 1, 65537)), ValueError, ["cols", "65537"]),
    "mx inverse size": (lambda: moejit.mx_scales_inverse(u8(2, 100), 128, 4), ValueError, ["blocked", "bytes"]),
    "mx inverse groups": (lambda: moejit.mx_scales_inverse(u8(2 * 512), 128, 4, torch.tensor([1], dtype=torch.int32,
                                                                                            device=DEV), groups=2),
                          ValueError, ["blocked"]),
    # the harness's forms
    "Context.route dtype": (lambda: moejit.Context().route(SPEC, logits(dtype=torch.float16)), TypeError,
                            ["logits", "float16"]),
    "Context.align shape": (lambda: moejit.Context().align(moejit.AlignMaps(E, B, T, K), i32(T + 1, K)), ValueError,
                            ["topk_ids", str(T + 1)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument(case):
    call, exc, words = CASES[case]
    sorted_ids()
    torch.cuda.synchronize()
    before = moejit.stats()["launches"]
    with pytest.raises(exc) as e:
        call()
    torch.cuda.synchronize()
    for w in words:
        assert w in str(e.value), f"{w!r} not in: {e.value}"
    assert moejit.stats()["launches"] == before, "something was launched"


def test_poisoned_outputs_stay_poisoned():
    ids, w = i32(T, K), f32(T, K)
    with pytest.raises(ValueError):
        moejit.route(logits(T, E + 1), SPEC, out=(ids, w))
    assert (ids == -7).all() and w.isnan().all()
