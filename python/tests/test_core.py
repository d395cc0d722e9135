"""The ctypes layer without torch or a GPU: version, library selection, specs and their
validation (integer ranges, no silent wrap), presets, kernel descriptors, names, source, size
formulas, prewarm (for an explicit arch: NVRTC only), strict mode, contexts, the status → exception
map and the 0.1 compatibility shim."""
import ctypes
import os
import subprocess
import sys

import pytest

import moejit
from moejit import _capi as C
from moejit import _legacy, core

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- version and library -------------------------------------------------------------------------
def test_version_is_the_libraries():
    assert moejit.__version__ == C.library_version == C.lib.moejit_version_string().decode()
    header = os.path.join(REPO, "include", "moejit.h")
    if os.path.exists(header):
        from moejit._header import version_from_header
        assert moejit.__version__ == version_from_header(header)


def _import_with(env):
    code = "import moejit, sys; sys.stdout.write(moejit.library_path)"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(moejit.__file__)))


def test_moejit_library_overrides():
    r = _import_with({"MOEJIT_LIBRARY": C.library_path})
    assert r.returncode == 0, r.stderr
    assert os.path.realpath(r.stdout) == os.path.realpath(C.library_path)


def test_moejit_library_missing_is_an_import_error():
    r = _import_with({"MOEJIT_LIBRARY": "/nonexistent/libmoejit.so"})
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "/nonexistent/libmoejit.so" in r.stderr and "MOEJIT_LIBRARY" in r.stderr


# ---- specs -----------------------------------------------------------------------------------------
def test_route_spec_fields_and_names():
    s = moejit.RouteSpec(256, 8, score="sigmoid", dtype="bf16", num_groups=8, topk_groups=4, group_score="top2_sum",
                         has_bias=True, renormalize=True, scale_output=True, routed_scaling_factor=2.5, shared_slots=1)
    assert (s.num_experts, s.topk, s.score, s.dtype, s.group_score) == (256, 8, 1, 1, 1)
    assert (s.score_name, s.dtype_name, s.group_score_name, s.outputs) == ("sigmoid", "bf16", "top2_sum", 9)
    assert s.kernel_name.startswith("moejit_route_sigmoid_e256_k8")
    assert moejit.RouteSpec(num_experts=256, topk=8, score=C.SCORES["sigmoid"], dtype=1, num_groups=8, topk_groups=4,
                            group_score="top2_sum", has_bias=True, renormalize=True, scale_output=True,
                            routed_scaling_factor=2.5, shared_slots=1) == s
    assert s.replace(topk=4).topk == 4 and s.replace(topk=4) != s
    with pytest.raises(AttributeError, match="immutable"):
        s.topk = 4


@pytest.mark.parametrize("kw, exc, words", [
    (dict(num_experts=2**32 + 64), ValueError, ["num_experts", "4294967360"]),
    (dict(num_experts=-1), ValueError, ["num_experts", "-1"]),
    (dict(topk=2**31), ValueError, ["topk", "2147483648"]),
    (dict(topk=8.0), TypeError, ["topk", "8.0"]),
    (dict(num_experts=True), TypeError, ["num_experts", "bool"]),
    (dict(shared_slots=-3), ValueError, ["shared_slots", "-3"]),
    (dict(num_groups=2**40), ValueError, ["num_groups"]),
    (dict(score="tanh"), ValueError, ["score", "tanh"]),
    (dict(group_score="sum"), ValueError, ["group_score", "sum"]),
    (dict(dtype="f64"), ValueError, ["dtype", "f64"]),
    (dict(renormalize=2), TypeError, ["renormalize"]),
    (dict(softcap="1"), TypeError, ["softcap"]),
    (dict(topk=80), ValueError, ["topk", "80"]),                       # the library's validator
    (dict(num_experts=5000), ValueError, ["num_experts", "5000"]),
    (dict(num_groups=7), ValueError, ["num_groups", "7"]),
    (dict(routed_scaling_factor=float("nan")), ValueError, ["routed_scaling_factor"]),
    (dict(softcap=-1.0), ValueError, ["softcap"]),
])
def test_route_spec_rejects(kw, exc, words):
    args = dict(num_experts=64, topk=8)
    args.update(kw)
    with pytest.raises(exc) as e:
        moejit.RouteSpec(**args)
    for w in words:
        assert w in str(e.value), f"{w!r} not in {e.value}"


def test_library_errors_are_value_errors_with_status():
    with pytest.raises(moejit.MoejitValueError) as e:
        moejit.RouteSpec(64, 80)
    assert isinstance(e.value, ValueError) and isinstance(e.value, moejit.MoejitError)
    assert e.value.status == "MOEJIT_ERR_INVALID_SPEC" and e.value.code == 2


def test_presets():
    names = moejit.preset_names()
    assert {"mixtral", "qwen3-moe", "deepseek-v3", "kimi-k2", "gpt-oss", "llama-4"} <= set(names)
    for name in names:
        for dtype in ("f32", "bf16", "f16"):
            s = moejit.RouteSpec.preset(name, dtype=dtype)
            assert s.dtype_name == dtype
            assert moejit.RouteSpec(dtype=dtype, has_bias=bool(s.has_bias), **dict(zip(core.ROUTE_PARAMS, s.params))) == s
    ds = moejit.RouteSpec.preset("deepseek-v3", dtype="f32")
    assert (ds.num_experts, ds.topk, ds.num_groups, ds.topk_groups, ds.score_name) == (256, 8, 8, 4, "sigmoid")
    with pytest.raises(ValueError, match="'gpt-5'"):
        moejit.RouteSpec.preset("gpt-5")


# ---- kernels: names, source, validation -----------------------------------------------------------
def test_kernels_of_every_op():
    spec = moejit.RouteSpec.preset("kimi-k2", dtype="bf16")
    kernels = [moejit.Kernel.route(spec), moejit.Kernel.align(384, 64), moejit.Kernel.route_align(spec, 16),
               moejit.Kernel.mx_scales(224), moejit.Kernel.permute(7168, "bf16", has_scale=True),
               moejit.Kernel.combine(7168, "f16")]
    names = [k.name for k in kernels]
    assert len(set(names)) == 6 and all(n.startswith("moejit_") for n in names)
    assert names[1] == "moejit_align_e384_b64"
    for k in kernels:
        src = k.source()
        assert k.name in src and 'extern "C"' in src
    layer = moejit.Kernel.moe_layer(spec, 64, 7168, "bf16")
    assert [k.op for k in layer] == ["route", "align", "permute", "combine", "route_align"]


@pytest.mark.parametrize("make, words", [
    (lambda: moejit.Kernel.align(256, 48), ["block_size", "48"]),
    (lambda: moejit.Kernel.align(0, 64), ["num_experts"]),
    (lambda: moejit.Kernel.align(2**33, 64), ["num_experts", str(2**33)]),
    (lambda: moejit.Kernel.mx_scales(0), ["cols"]),
    (lambda: moejit.Kernel.permute(70000, "bf16"), ["hidden", "70000"]),
    (lambda: moejit.Kernel.combine(128, "f64"), ["dtype", "f64"]),
])
def test_bad_kernels(make, words):
    with pytest.raises(ValueError) as e:
        make()
    for w in words:
        assert w in str(e.value)


def test_size_formulas_match_the_library():
    for E in (1, 3, 64, 256, 4096):
        for B in (1, 4, 16, 64, 1024):
            for T, K in ((0, 1), (1, 8), (3, 8), (100, 6), (5000, 8)):
                assert core.align_capacity_formula(E, B, T * K) == moejit.align_capacity(E, B, T, K)
    for cols in (1, 3, 4, 224, 1000):
        for groups, rows in ((0, 0), (1, 1), (2, 256), (7, 1000), (33, 5)):
            for grouped in (False, True):
                assert core.mx_blocked_numel(cols, groups, rows, grouped) == \
                    moejit.mx_scales_blocked_bytes(cols, groups, rows, grouped)


def test_align_workspace():
    assert moejit.align_workspace_bytes(256, 64, 16, 8) == 0
    assert moejit.align_workspace_bytes(256, 64, 100000, 8) > 0
    with pytest.raises(ValueError, match="num_tokens"):
        moejit.align_capacity(256, 64, -1, 8)


# ---- contexts, strict mode, prewarm ---------------------------------------------------------------
def test_context_arguments():
    with pytest.raises(ValueError, match="cache_mode"):
        moejit.Context(cache_mode="rwx")
    with pytest.raises(ValueError, match="device"):
        moejit.Context(device=-1)
    with pytest.raises(TypeError, match="no_compile"):
        moejit.Context(no_compile="yes")
    with pytest.raises(TypeError, match="cache_dir"):
        moejit.Context(cache_dir=3)
    with moejit.Context(cache_mode="off") as ctx:
        assert ctx.cache_dir == "" and set(ctx.stats()) >= {"kernels", "compiles", "launches", "disk_hits"}


def test_context_pdl(monkeypatch):
    """Programmatic dependent launch: on by default, off by the argument or MOEJIT_PDL=0."""
    monkeypatch.delenv("MOEJIT_PDL", raising=False)
    with pytest.raises(ValueError, match="pdl"):
        moejit.Context(pdl=2)
    with moejit.Context(cache_mode="off") as ctx:
        assert ctx.pdl
    with moejit.Context(cache_mode="off", pdl=False) as ctx:
        assert not ctx.pdl
    monkeypatch.setenv("MOEJIT_PDL", "0")
    with moejit.Context(cache_mode="off") as ctx:
        assert not ctx.pdl
    with moejit.Context(cache_mode="off", pdl=True) as ctx:
        assert ctx.pdl


def test_strict_mode_is_per_thread_and_scoped():
    assert not moejit.get_context().strict
    with moejit.strict() as ctx:
        assert ctx.strict and moejit.get_context() is ctx
        with moejit.strict(False):
            assert not moejit.get_context().strict
    assert not moejit.get_context().strict


def test_configure(tmp_path):
    before = moejit.get_context()
    try:
        ctx = moejit.configure(cache_dir=str(tmp_path))
        assert ctx.cache_dir == str(tmp_path) and moejit.get_context() is ctx
        with pytest.raises(ValueError):
            moejit.configure(cache_mode="bad")
        assert moejit.get_context() is ctx
    finally:
        moejit.configure()
    assert moejit.get_context() is before


def test_prewarm_without_gpu(tmp_path):
    """Compiles for explicit archs (NVRTC only, no driver needed), then finds the entries."""
    ctx = moejit.Context(cache_dir=str(tmp_path))
    kernels = [moejit.Kernel.align(8, 16), moejit.Kernel.mx_scales(4)]
    seen = []
    try:
        results = moejit.prewarm(kernels, ["sm_90a", "sm_80"], context=ctx,
                                 progress=lambda r, done, total: seen.append((r.kernel, done, total)))
    except moejit.MoejitError as e:
        if e.status == "MOEJIT_ERR_NO_NVRTC":
            pytest.skip(f"no NVRTC here: {e}")
        raise
    assert [(r.arch, r.kernel) for r in results] == [(a, k.name) for a in ("sm_90a", "sm_80") for k in kernels]
    assert all(r.outcome == "compiled" and r.ok and len(r.key) == 32 and r.error == "" for r in results)
    assert sorted(d for _, d, _ in seen) == [1, 2, 3, 4] and {t for _, _, t in seen} == {4}
    again = moejit.prewarm(kernels, "sm_90a", context=ctx)
    assert [r.outcome for r in again] == ["cached", "cached"]
    # strict: a kernel missing from the cache fails with its status; nothing is compiled
    strict_ctx = moejit.Context(cache_dir=str(tmp_path / "empty"), no_compile=True)
    with pytest.raises(moejit.MoejitError) as e:
        moejit.prewarm([moejit.Kernel.align(8, 32)], ["sm_90a"], context=strict_ctx)
    assert e.value.status == "MOEJIT_ERR_CACHE_MISS" and "moejit_align_e8_b32" in str(e.value)
    r = moejit.prewarm([moejit.Kernel.align(8, 32)], ["sm_90a"], context=strict_ctx, check=False)
    assert r[0].outcome == "failed" and r[0].status == "MOEJIT_ERR_CACHE_MISS"
    assert strict_ctx.stats()["compiles"] == 0
    with pytest.raises(TypeError, match=r"kernels\[0\]"):
        moejit.prewarm(["align"], ["sm_90a"], context=ctx)
    with pytest.raises(ValueError, match=r"archs\[1\]"):
        moejit.prewarm(kernels, ["sm_90a", ""], context=ctx)


# ---- the 0.1 shim the peers' harness uses ----------------------------------------------------------
def test_legacy_align_arguments_are_converted():
    o = moejit._AlignOutputs(None, None, 0x1000, 77, 0x2000, 0x3000, None, 0x4000, 123)
    args = moejit._AlignArgs(0x5000, 3, 8, o)
    ref, new = _legacy._upgrade(ctypes.byref(args))
    assert isinstance(new, C.AlignArgs) and ref._obj is new
    assert (new.ids, new.num_tokens, new.topk, new.first_expert, new.expert_map) == (0x5000, 3, 8, 0, None)
    assert (new.out.sorted_ids, new.out.sorted_capacity, new.out.block_expert, new.out.total_padded,
            new.out.workspace, new.out.workspace_bytes) == (0x1000, 77, 0x2000, 0x3000, 0x4000, 123)
    assert not any(new.out.reserved) and not any(new.reserved)
    real = C.AlignArgs()
    assert _legacy._upgrade(ctypes.byref(real))[0]._obj is real  # 0.2 structs pass through


def test_legacy_library_call_validates_through_the_shim():
    ctx = moejit.Context(cache_mode="off")
    spec = core.align_spec_c(128, 64)
    args = moejit._AlignArgs(None, 4, 0, moejit._AlignOutputs())  # topk = 0: rejected before any launch
    status = moejit.library.moejit_align(ctx._ctx, ctypes.byref(spec), ctypes.byref(args), None)
    assert status == C.STATUS["MOEJIT_ERR_INVALID_ARGUMENT"]
    with pytest.raises(moejit.MoejitValueError, match="topk"):
        moejit._check(status, ctx._ctx)
    assert moejit.library.moejit_version_number() == C.lib.moejit_version_number()


def test_torch_names_say_why_without_torch():
    if moejit.TORCH_OPS:
        assert callable(moejit.route)
    else:
        with pytest.raises(AttributeError, match="needs torch"):
            moejit.route


# ---- serving options of route specs (issue 15), align's id dtypes and maps, dispatch_layout ---------
def test_route_spec_serving_fields():
    s = moejit.RouteSpec(64, 4, score="sigmoid", padded=True, id_dtype="int64", max_replicas=2,
                         num_physical_experts=72, load_counter="int32", replay="record", logical_id_dtype="int16")
    assert (s.padded, s.id_dtype, s.max_replicas, s.num_physical_experts, s.load_counter, s.replay,
            s.logical_id_dtype) == (1, C.INDEX_DTYPES["int64"], 2, 72, C.LOAD_COUNTERS["int32"],
                                    C.REPLAYS["record"], C.INDEX_DTYPES["int16"])
    assert s.serving == dict(padded=True, id_dtype="int64", max_replicas=2, num_physical_experts=72,
                             load_counter="int32", replay="record", logical_id_dtype="int16")
    assert s.has_serving and not moejit.RouteSpec(64, 4).has_serving
    assert s.params == moejit.RouteSpec(64, 4, score="sigmoid").params      # the ops' plain arguments
    assert s != moejit.RouteSpec(64, 4, score="sigmoid")
    assert s.replace(topk=2).serving == s.serving and s.replace(padded=False).padded == 0
    assert "id_dtype='int64'" in repr(s) and "padded" not in repr(moejit.RouteSpec(64, 4))
    assert C.RouteSpec.from_buffer_copy(bytes(s._c)).replay == C.REPLAYS["record"]
    # enum values and the C struct's fields are the same thing
    assert moejit.RouteSpec(64, 4, id_dtype=C.INDEX_DTYPES["int16"], load_counter=C.LOAD_COUNTERS["int64"]) == \
        moejit.RouteSpec(64, 4, id_dtype="int16", load_counter="int64")
    assert moejit.RouteSpec.preset("deepseek-v3").replace(padded=True).padded == 1


@pytest.mark.parametrize("kw, exc, words", [
    (dict(max_replicas=2), ValueError, ["num_physical_experts", "max_replicas = 2"]),
    (dict(num_physical_experts=80), ValueError, ["num_physical_experts = 80", "placement"]),
    (dict(max_replicas=-1, num_physical_experts=8), ValueError, ["max_replicas", "-1"]),
    (dict(max_replicas=2**31, num_physical_experts=8), ValueError, ["max_replicas", str(2**31)]),
    (dict(max_replicas=2, num_physical_experts=2.5), TypeError, ["num_physical_experts", "2.5"]),
    (dict(id_dtype="int8"), ValueError, ["id_dtype", "int8"]),
    (dict(id_dtype=3), ValueError, ["id_dtype", "3"]),
    (dict(logical_id_dtype="uint32", replay="given"), ValueError, ["logical_id_dtype", "uint32"]),
    (dict(logical_id_dtype="int64"), ValueError, ["logical_id_dtype", "replay"]),
    (dict(load_counter="int16"), ValueError, ["load_counter", "int16"]),
    (dict(replay="replay"), ValueError, ["replay", "'replay'"]),
    (dict(padded=2), TypeError, ["padded"]),
    (dict(num_experts=4096, topk=4, shared_slots=2, id_dtype="int16", max_replicas=1, num_physical_experts=32767),
     ValueError, ["int16", "32768"]),
])
def test_route_spec_serving_rejects(kw, exc, words):
    args = dict(num_experts=64, topk=4)
    args.update(kw)
    with pytest.raises(exc) as e:
        moejit.RouteSpec(**args)
    for w in words:
        assert w in str(e.value), f"{w!r} not in {e.value}"


def test_align_kernels_of_id_dtypes_and_maps():
    k = moejit.Kernel.align(64, 16)
    assert moejit.Kernel.align(64, 16, "int32").desc.align.id_dtype == 0 and k.desc.align.global_experts == 0
    k64 = moejit.Kernel.align(64, 16, "int64", expert_map_size=256)
    assert (k64.desc.align.id_dtype, k64.desc.align.global_experts) == (C.INDEX_DTYPES["int64"], 256)
    with pytest.raises(ValueError, match="id_dtype"):
        moejit.Kernel.align(64, 16, "uint8")
    with pytest.raises(ValueError, match="global_experts"):
        moejit.Kernel.align(64, 16, expert_map_size=-1)


@pytest.mark.parametrize("args, words", [
    ((60, 8, 2), ["num_ranks = 8", "num_experts = 60"]),
    ((64, 0, 2), ["num_ranks", "0"]),
    ((64, 16, 2, "int32", 3), ["ranks_per_node = 3", "num_ranks = 16"]),
    ((64, 16, 2, "int32", 0), ["ranks_per_node", "0"]),
    ((0, 1, 2), ["num_experts"]),
    ((64, 8, 0), ["topk"]),
    ((64, 8, 2, "float"), ["id_dtype"]),
])
def test_dispatch_layout_specs_rejected_in_python(args, words):
    with pytest.raises(ValueError) as e:
        core.dispatch_layout_spec_c(*args)
    for w in words:
        assert w in str(e.value), f"{w!r} not in {e.value}"


def test_dispatch_layout_nodes():
    assert core.dispatch_layout_nodes(1) == (1, 0) and core.dispatch_layout_nodes(8) == (8, 0)
    assert core.dispatch_layout_nodes(16) == (8, 2) and core.dispatch_layout_nodes(12, 4) == (4, 3)
    with pytest.raises(ValueError, match="ranks_per_node = 8 must divide num_ranks = 12"):
        core.dispatch_layout_nodes(12)


def _library_has_dispatch_layout():
    d = C.KernelDesc(op=C.OPS["dispatch_layout"])
    d.dispatch_layout = C.DispatchLayoutSpec(8, 2, 2, 0, 2)
    return "moejit_dispatch_layout" not in C.missing and C.lib.moejit_validate(ctypes.byref(d)) == 0


@pytest.mark.skipif(not _library_has_dispatch_layout(),
                    reason="this libmoejit predates dispatch_layout (Operation 5 of moejit.h)")
def test_dispatch_layout_kernel():
    k = moejit.Kernel.dispatch_layout(256, 8, 8, "int64")
    d = k.desc.dispatch_layout
    assert (d.num_experts, d.num_ranks, d.topk, d.id_dtype, d.ranks_per_node) == (256, 8, 8, 1, 8)
    assert k.name.startswith("moejit_") and k.name in k.source()
    assert moejit.Kernel.dispatch_layout(256, 16, 8).desc.dispatch_layout.ranks_per_node == 8
    assert moejit.Kernel.dispatch_layout(256, 4, 8).desc.dispatch_layout.ranks_per_node == 4  # one node
    assert k.name != moejit.Kernel.dispatch_layout(256, 8, 8, "int32").name


def test_missing_functions_raise_clearly():
    if not C.missing:
        pytest.skip("this libmoejit exports every function of the binding")
    with pytest.raises(NotImplementedError, match=C.missing[0]):
        getattr(C.lib, C.missing[0])()


# ---- the backward operations (issue 16): kernels, the route_backward guard, the references ---------
_HAS_ROWS_BACKWARD = C.has("moejit_permute_backward") and C.has("moejit_combine_backward")
rows_backward = pytest.mark.skipif(not _HAS_ROWS_BACKWARD, reason="this libmoejit predates permute/combine backward")


@rows_backward
def test_backward_kernels():
    pb = moejit.Kernel.permute_backward(7168, "bf16", has_scale=True)
    cb = moejit.Kernel.combine_backward(7168, "bf16")
    names = {pb.name, cb.name, moejit.Kernel.permute(7168, "bf16", True).name, moejit.Kernel.combine(7168, "bf16").name,
             moejit.Kernel.permute_backward(7168, "bf16").name}
    assert len(names) == 5 and all(n.startswith("moejit_") for n in names)
    for k in (pb, cb):
        assert k.name in k.source() and (k.desc.op, k.op) == (C.OPS[k.op], k.op)
    assert (pb.desc.permute_backward.hidden, pb.desc.permute_backward.dtype, pb.desc.permute_backward.has_scale) == \
        (7168, C.DTYPES["bf16"], 1)
    spec = moejit.RouteSpec.preset("qwen3-moe", dtype="bf16")
    layer = moejit.Kernel.moe_layer(spec, 64, 2048, "bf16", backward=True)
    ops = [k.op for k in layer]
    assert ops[:5] == ["route", "align", "permute", "combine", "route_align"]
    assert ops[5:] == ["permute_backward", "combine_backward"] + (["route_backward"] if moejit.has_route_backward()
                                                                   else [])
    assert [k.op for k in moejit.Kernel.moe_layer(spec, 64, 2048, "bf16")] == ops[:5]   # inference: as before


@rows_backward
@pytest.mark.parametrize("make, words", [
    (lambda: moejit.Kernel.permute_backward(0, "bf16"), ["hidden", "0"]),
    (lambda: moejit.Kernel.permute_backward(70000, "f32"), ["hidden", "70000"]),
    (lambda: moejit.Kernel.combine_backward(128, "f64"), ["dtype", "f64"]),
    (lambda: moejit.Kernel.combine_backward(2**33, "f16"), ["hidden", str(2**33)]),
])
def test_bad_backward_kernels(make, words):
    with pytest.raises(ValueError) as e:
        make()
    for w in words:
        assert w in str(e.value)


def test_route_backward_kernel_or_a_clear_error():
    spec = moejit.RouteSpec.preset("deepseek-v3", dtype="f32")
    if not moejit.has_route_backward():
        assert "moejit_route_backward" in C.missing
        with pytest.raises(NotImplementedError) as e:
            moejit.Kernel.route_backward(spec)
        assert "moejit_route_backward" in str(e.value) and C.library_path in str(e.value)
        with pytest.raises(NotImplementedError, match="moejit_route_backward"):
            C.lib.moejit_route_backward(None, None, None, None)
        return
    k = moejit.Kernel.route_backward(spec)
    assert k.name.startswith("moejit_route_backward") and k.name in k.source()
    assert k.desc.route_backward.route.num_experts == 256 and k.desc.route_backward.route.has_bias == 0
    # the bias moves only the selection: one backward kernel with or without it; the ids' type matters
    assert moejit.Kernel.route_backward(spec.replace(has_bias=False)).name == k.name
    assert moejit.Kernel.route_backward(spec, ids_dtype="int64").name != k.name


def _arr(ctype, values):
    return (ctype * max(len(values), 1))(*values)


def _floats(arr, n):
    return [arr[i] for i in range(n)]


@rows_backward
def test_permute_backward_reference_through_the_binding():
    """The C reference on host arrays through the ctypes mirrors (no torch): every field lands."""
    T, K, H, R, E = 3, 2, 4, 8, 3
    slot_of = [0, 5, 2, -1, 7, 9]              # (1, 1) dropped; (2, 1) names a row past R: adds nothing
    ids = [0, 2, 1, 1, 2, 0]
    scale = [0.5, 2.0, 4.0]
    g = [float(r * 10 + h) for r in range(R) for h in range(H)]
    out = _arr(ctypes.c_float, [float("nan")] * (T * H))
    spec = core.permute_backward_spec_c(H, "f32", 1)
    args = C.PermuteBackwardArgs(ctypes.addressof(_g := _arr(ctypes.c_float, g)),
                                 ctypes.addressof(_s := _arr(ctypes.c_int32, slot_of)),
                                 ctypes.addressof(_i := _arr(ctypes.c_int32, ids)),
                                 ctypes.addressof(_c := _arr(ctypes.c_float, scale)), ctypes.addressof(out), T, K, E, R)
    C.check(C.lib.moejit_permute_backward_reference(ctypes.byref(spec), ctypes.byref(args)))
    want = []
    for t in range(T):
        for h in range(H):
            acc = 0.0
            for k in range(K):
                r = slot_of[t * K + k]
                if 0 <= r < R:
                    acc += g[r * H + h] * scale[ids[t * K + k]]
            want.append(acc)
    assert _floats(out, T * H) == want
    # a wrong argument is a ValueError naming it, with the status
    args.topk = 0
    with pytest.raises(moejit.MoejitValueError, match="topk") as e:
        C.check(C.lib.moejit_permute_backward_reference(ctypes.byref(spec), ctypes.byref(args)))
    assert e.value.status == "MOEJIT_ERR_INVALID_ARGUMENT"
    args.topk, args.reserved[3] = K, 1
    with pytest.raises(moejit.MoejitValueError, match="reserved"):
        C.check(C.lib.moejit_permute_backward_reference(ctypes.byref(spec), ctypes.byref(args)))


@rows_backward
def test_combine_backward_reference_through_the_binding():
    T, K, H, R = 2, 2, 3, 6
    slot_of = [4, 0, -1, 2]                    # (1, 0) dropped
    sorted_ids = [1, 4, 3, 2, 0, 4]            # 4 = T·K: padding; row 3 names (1, 0), whose slot was dropped
    weights = [0.5, 2.0, 3.0, 0.25]
    g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [float(r + h * 10) for r in range(R) for h in range(H)]
    grad_y = _arr(ctypes.c_float, [float("nan")] * (R * H))
    grad_w = _arr(ctypes.c_float, [float("nan")] * (T * K))
    keep = [_arr(ctypes.c_float, g), _arr(ctypes.c_float, y), _arr(ctypes.c_int32, slot_of),
            _arr(ctypes.c_float, weights), _arr(ctypes.c_int32, sorted_ids)]
    spec = core.combine_backward_spec_c(H, "f32")
    args = C.CombineBackwardArgs(*(ctypes.addressof(a) for a in keep), ctypes.addressof(grad_y), ctypes.addressof(grad_w),
                                 T, K, 0, R)
    C.check(C.lib.moejit_combine_backward_reference(ctypes.byref(spec), ctypes.byref(args)))
    want_y = []
    for r in range(R):
        i = sorted_ids[r]
        own = 0 <= i < T * K and slot_of[i] == r
        want_y += [weights[i] * g[(i // K) * H + h] if own else 0.0 for h in range(H)]
    assert _floats(grad_y, R * H) == want_y
    want_w = []
    for t in range(T):
        for k in range(K):
            r = slot_of[t * K + k]
            want_w.append(sum(g[t * H + h] * y[r * H + h] for h in range(H)) if 0 <= r < R else 0.0)
    assert _floats(grad_w, T * K) == want_w
    args.reserved0 = 1
    with pytest.raises(moejit.MoejitValueError, match="reserved0"):
        C.check(C.lib.moejit_combine_backward_reference(ctypes.byref(spec), ctypes.byref(args)))
    args.reserved0, args.sorted_ids = 0, None
    with pytest.raises(moejit.MoejitValueError, match="sorted_ids"):
        C.check(C.lib.moejit_combine_backward_reference(ctypes.byref(spec), ctypes.byref(args)))
