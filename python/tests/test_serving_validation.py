"""Every wrong serving argument (route's num_valid, placement, expert_load, replay and id dtypes;
align's expert_map and first_expert; dispatch_layout): a TypeError or ValueError naming the
argument, raised before anything is launched. Each case runs on meta tensors (no GPU needed: the
same checks run, then the fakes give shapes) and, with a GPU, on CUDA tensors, where the launch
counter must not move."""
import pytest

import moejit

if not moejit.TORCH_OPS:
    pytest.skip(f"torch ops: {moejit.TORCH_UNAVAILABLE}", allow_module_level=True)
import torch  # noqa: E402

I16, I32, I64, F32 = torch.int16, torch.int32, torch.int64, torch.float32
E, K, T, R, P, B = 64, 4, 10, 2, 80, 16
SPEC = moejit.RouteSpec(E, K, score="sigmoid", dtype=torch.float32, renormalize=True)
DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


class Make:
    """Tensors of the right kind on one device (each case builds what it needs)."""

    def __init__(self, dev):
        self.dev = dev

    def t(self, *shape, dtype=I32, fill=0):
        return torch.full(shape, fill, dtype=dtype, device=self.dev)

    def logits(self, *shape):
        return torch.zeros(*(shape or (T, E)), device=self.dev)

    def nv(self):
        return self.t(1, fill=T)

    def l2p(self):
        return self.t(E, R)

    def rc(self):
        return self.t(E, fill=1)

    def ids(self, dtype=I32):
        return self.t(T, K, dtype=dtype)


def placement(m, **kw):
    return dict(dict(logical_to_physical=m.l2p(), replica_count=m.rc(), num_physical_experts=P), **kw)


CASES = {
    # route: padded rows
    "num_valid int64": (lambda m: moejit.route(m.logits(), SPEC, num_valid=m.t(1, dtype=I64)), TypeError,
                        ["num_valid", "int64"]),
    "num_valid shape": (lambda m: moejit.route(m.logits(), SPEC, num_valid=m.t(2)), ValueError, ["num_valid", "(2,)"]),
    "num_valid 0-D": (lambda m: moejit.route(m.logits(), SPEC, num_valid=m.t()), ValueError, ["num_valid", "1-D"]),
    "num_valid on cpu": (lambda m: moejit.route(m.logits(), SPEC, num_valid=torch.tensor([T], dtype=I32)), ValueError,
                         ["num_valid", "cpu"]),
    # route: placement
    "l2p without replica_count": (lambda m: moejit.route(m.logits(), SPEC, logical_to_physical=m.l2p(),
                                                         num_physical_experts=P),
                                  ValueError, ["logical_to_physical", "replica_count"]),
    "replica_count alone": (lambda m: moejit.route(m.logits(), SPEC, replica_count=m.rc()), ValueError,
                            ["logical_to_physical", "replica_count"]),
    "l2p int64": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, logical_to_physical=m.t(E, R, dtype=I64))),
                  TypeError, ["logical_to_physical", "int64"]),
    "l2p rows": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, logical_to_physical=m.t(E + 1, R))),
                 ValueError, ["logical_to_physical", str(E + 1)]),
    "l2p no column": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, logical_to_physical=m.t(E, 0))),
                      ValueError, ["logical_to_physical", "column"]),
    "l2p strided": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, logical_to_physical=m.t(R, E).t())),
                    ValueError, ["logical_to_physical", "contiguous"]),
    "replica_count shape": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, replica_count=m.t(E - 1))),
                            ValueError, ["replica_count", str(E - 1)]),
    "replica_count f32": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, replica_count=m.t(E, dtype=F32))),
                          TypeError, ["replica_count", "float32"]),
    "placement without P": (lambda m: moejit.route(m.logits(), SPEC, logical_to_physical=m.l2p(),
                                                   replica_count=m.rc()),
                            ValueError, ["num_physical_experts", "required"]),
    "P without placement": (lambda m: moejit.route(m.logits(), SPEC, num_physical_experts=P), ValueError,
                            ["num_physical_experts", "logical_to_physical"]),
    "P negative": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, num_physical_experts=-5)), ValueError,
                   ["num_physical_experts", "-5"]),
    # route: load counters
    "expert_load f32": (lambda m: moejit.route(m.logits(), SPEC, expert_load=m.t(E, dtype=F32)), TypeError,
                        ["expert_load", "float32"]),
    "expert_load int16": (lambda m: moejit.route(m.logits(), SPEC, expert_load=m.t(E, dtype=I16)), TypeError,
                          ["expert_load", "int16"]),
    "expert_load not [P]": (lambda m: moejit.route(m.logits(), SPEC, **placement(m, expert_load=m.t(E))), ValueError,
                            ["expert_load", f"({E},)", str(P)]),
    "expert_load not [E]": (lambda m: moejit.route(m.logits(), SPEC, expert_load=m.t(E + 3)), ValueError,
                            ["expert_load", str(E + 3)]),
    "expert_load strided": (lambda m: moejit.route(m.logits(), SPEC, expert_load=m.t(2 * E)[::2]), ValueError,
                            ["expert_load", "contiguous"]),
    # route: replay and ids
    "logical_ids shape": (lambda m: moejit.route(m.logits(), SPEC, logical_ids=m.t(T, K + 1)), ValueError,
                          ["logical_ids", str(K + 1)]),
    "logical_ids float": (lambda m: moejit.route(m.logits(), SPEC, logical_ids=m.t(T, K, dtype=F32)), TypeError,
                          ["logical_ids", "float32"]),
    "record and given": (lambda m: moejit.route(m.logits(), SPEC, record=True, logical_ids=m.ids()), ValueError,
                         ["record", "logical_ids"]),
    "record out pair": (lambda m: moejit.route(m.logits(), SPEC, record=True, out=(m.ids(), m.t(T, K, dtype=F32))),
                        TypeError, ["out", "logical_ids"]),
    "record out None": (lambda m: moejit.route(m.logits(), SPEC, record=True,
                                               out=(m.ids(), m.t(T, K, dtype=F32), None)),
                        ValueError, ["out[2]"]),
    "record out shape": (lambda m: moejit.route(m.logits(), SPEC, record=True,
                                                out=(m.ids(), m.t(T, K, dtype=F32), m.t(T + 1, K))),
                         ValueError, ["logical_ids_out", str(T + 1)]),
    "ids_dtype float": (lambda m: moejit.route(m.logits(), SPEC, ids_dtype=torch.float32), TypeError, ["ids_dtype"]),
    "ids_dtype uint8": (lambda m: moejit.route(m.logits(), SPEC, num_valid=m.nv(), ids_dtype=torch.uint8), TypeError,
                        ["ids_dtype"]),
    "ids_dtype vs out": (lambda m: moejit.route(m.logits(), SPEC, ids_dtype=I64,
                                                out=(m.ids(), m.t(T, K, dtype=F32))),
                         ValueError, ["ids_dtype", "int32"]),
    "out ids int8": (lambda m: moejit.route(m.logits(), SPEC, out=(m.t(T, K, dtype=torch.int8), m.t(T, K, dtype=F32))),
                     TypeError, ["int8"]),
    # route: a spec's serving options must be the call's
    "spec padded": (lambda m: moejit.route(m.logits(), SPEC.replace(padded=True)), ValueError, ["padded", "num_valid"]),
    "spec load int64": (lambda m: moejit.route(m.logits(), SPEC.replace(load_counter=I64), expert_load=m.t(E)),
                        ValueError, ["load_counter", "int64", "int32"]),
    "spec ids int64": (lambda m: moejit.route(m.logits(), SPEC.replace(id_dtype=I64), ids_dtype=I32), ValueError,
                       ["id_dtype", "int64"]),
    "spec record": (lambda m: moejit.route(m.logits(), SPEC.replace(replay="record")), ValueError,
                    ["replay", "record"]),
    "spec placement": (lambda m: moejit.route(m.logits(), SPEC.replace(max_replicas=3, num_physical_experts=P),
                                              **placement(m)),
                       ValueError, ["max_replicas", "3", "2"]),
    "route_align with serving": (lambda m: moejit.route_align(m.logits(), SPEC.replace(padded=True), B), ValueError,
                                 ["route_align", "serving"]),
    # align
    "align ids int8": (lambda m: moejit.align(m.ids(torch.int8), E, B), TypeError, ["topk_ids", "int8"]),
    "align expert_map float": (lambda m: moejit.align(m.ids(), E, B, expert_map=m.t(128, dtype=F32)), TypeError,
                               ["expert_map", "float32"]),
    "align expert_map 2-D": (lambda m: moejit.align(m.ids(), E, B, expert_map=m.t(8, 16)), ValueError,
                             ["expert_map", "1-D"]),
    "align expert_map empty": (lambda m: moejit.align(m.ids(), E, B, expert_map=m.t(0)), ValueError,
                               ["expert_map", "empty"]),
    "align expert_map strided": (lambda m: moejit.align(m.ids(), E, B, expert_map=m.t(256)[::2]), ValueError,
                                 ["expert_map", "contiguous"]),
    "align map and first_expert": (lambda m: moejit.align(m.ids(), E, B, expert_map=m.t(128), first_expert=64),
                                   ValueError, ["first_expert = 64", "expert_map"]),
    "align first_expert negative": (lambda m: moejit.align(m.ids(), E, B, first_expert=-1), ValueError,
                                    ["first_expert", "-1"]),
    "align first_expert wraps": (lambda m: moejit.align(m.ids(), E, B, first_expert=2**31), ValueError,
                                 ["first_expert", str(2**31)]),
    "align first_expert float": (lambda m: moejit.align(m.ids(), E, B, first_expert=1.0), TypeError,
                                 ["first_expert"]),
    # dispatch_layout
    "layout ranks do not divide": (lambda m: moejit.dispatch_layout(m.ids(), 60, 8), ValueError,
                                   ["num_ranks = 8", "num_experts = 60"]),
    "layout ranks_per_node": (lambda m: moejit.dispatch_layout(m.ids(), 64, 16, 3), ValueError,
                              ["ranks_per_node = 3", "16"]),
    "layout ranks 0": (lambda m: moejit.dispatch_layout(m.ids(), 64, 0), ValueError, ["num_ranks"]),
    "layout ids float": (lambda m: moejit.dispatch_layout(m.t(T, K, dtype=F32), 64, 8), TypeError, ["ids", "float32"]),
    "layout ids 1-D": (lambda m: moejit.dispatch_layout(m.t(T * K), 64, 8), ValueError, ["ids", "2-D"]),
    "layout ids strided": (lambda m: moejit.dispatch_layout(m.t(K, T).t(), 64, 8), ValueError, ["ids", "contiguous"]),
    "layout tokens_per_node for one node": (lambda m: moejit.dispatch_layout(m.ids(), 64, 8, out=(
        m.t(8), m.t(1), None, None)), ValueError, ["tokens_per_node", "one node"]),
    "layout tokens_per_node shape": (lambda m: moejit.dispatch_layout(m.ids(), 64, 16, out=(
        None, m.t(3), None, None)), ValueError, ["tokens_per_node", "(3,)"]),
    "layout tokens_per_rank shape": (lambda m: moejit.dispatch_layout(m.ids(), 64, 8, out=(
        m.t(4), None, None, None)), ValueError, ["tokens_per_rank", "(4,)"]),
    "layout tokens_per_expert int64": (lambda m: moejit.dispatch_layout(m.ids(), 64, 8, out=(
        None, None, m.t(64, dtype=I64), None)), TypeError, ["tokens_per_expert", "int64"]),
    "layout is_token_in_rank uint8": (lambda m: moejit.dispatch_layout(m.ids(), 64, 8, out=(
        None, None, None, m.t(T, 8, dtype=torch.uint8))), TypeError, ["is_token_in_rank", "uint8"]),
    "layout is_token_in_rank shape": (lambda m: moejit.dispatch_layout(m.ids(), 64, 8, out=(
        None, None, None, m.t(T + 1, 8, dtype=torch.bool))), ValueError, ["is_token_in_rank", str(T + 1)]),
}


def _launches(dev):
    if dev != "cuda":
        return 0
    torch.cuda.synchronize()
    return moejit.stats()["launches"]


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_serving_argument(case, dev):
    call, exc, words = CASES[case]
    m = Make(dev)
    before = _launches(dev)
    with pytest.raises(exc) as e:
        call(m)
    for w in words:
        assert w in str(e.value), f"{w!r} not in: {e.value}"
    assert _launches(dev) == before, "something was launched"


def test_fakes_give_the_serving_shapes():
    """The operators on meta tensors: the fakes' output shapes and dtypes (what torch.compile sees)."""
    o = torch.ops.moejit
    x = torch.empty(5, E, device="meta")
    nv = torch.empty(1, dtype=I32, device="meta")
    l2p, rc = torch.empty(E, R, dtype=I32, device="meta"), torch.empty(E, dtype=I32, device="meta")
    load = torch.empty(P, dtype=I64, device="meta")
    ids, w, rec = o.route_serving(x, None, nv, l2p, rc, load, None, *SPEC.params, P, "int64", "int16")
    assert (ids.shape, ids.dtype, w.dtype, rec.shape, rec.dtype) == ((5, K), I64, F32, (5, K), I16)
    ids, w, rec = o.route_serving(x, None, None, None, None, None, torch.empty(5, K, dtype=I64, device="meta"),
                                  *SPEC.params, 0, "int32", "")
    assert ids.dtype == I32 and rec.shape == (0, K)
    tpr, tpn, tpe, itr = o.dispatch_layout(torch.empty(7, 8, dtype=I64, device="meta"), 256, 16, 8)
    assert [tuple(t.shape) for t in (tpr, tpn, tpe, itr)] == [(16,), (2,), (256,), (7, 16)] and itr.dtype == torch.bool
    assert o.dispatch_layout(torch.empty(7, 8, dtype=I32, device="meta"), 256, 4, 8)[1].shape == (0,)
    m = o.align(torch.empty(5, 8, dtype=I16, device="meta"), 32, B, torch.empty(256, dtype=I32, device="meta"), 0)
    assert [tuple(t.shape) for t in m][:2] == [(32,), (33,)] and m[5].shape == (5, 8)
    o.route_serving_out(x, None, torch.empty(5, K, dtype=I16, device="meta"), torch.empty(5, K, device="meta"), nv,
                        l2p, rc, load, None, torch.empty(5, K, dtype=I64, device="meta"), *SPEC.params, P)
    with pytest.raises(ValueError, match="num_physical_experts"):
        o.route_serving(x, None, None, l2p, rc, None, None, *SPEC.params, 0, "int32", "")
    with pytest.raises(ValueError, match="ids_dtype"):
        o.route_serving(x, None, None, None, None, None, None, *SPEC.params, 0, "uint8", "")


def test_schemas_declare_what_is_mutated():
    """expert_load is mutated by route_serving (in place), the _out forms mutate their outputs;
    align keeps its earlier schema with the new arguments last and defaulted."""
    schema = {name: str(getattr(torch.ops.moejit, name).default._schema) for name in
              ("route_serving", "route_serving_out", "align", "align_out", "dispatch_layout_out")}
    assert "!)? expert_load" in schema["route_serving"] and "!)" not in schema["route_serving"].split("expert_load")[1]
    for name in ("ids", "weights", "expert_load", "logical_ids_out"):
        assert f"!) {name}" in schema["route_serving_out"] or f"!)? {name}" in schema["route_serving_out"], name
    head = schema["align"].split("block_size, ")
    assert head[0].startswith("moejit::align(Tensor topk_ids, ") and head[1].startswith("Tensor? expert_map=None, ")
    assert "first_expert=0)" in head[1]
    assert "expert_map=None" in schema["align_out"] and "first_expert=0" in schema["align_out"]
    for name in ("tokens_per_rank", "tokens_per_node", "tokens_per_expert", "is_token_in_rank"):
        assert f"!)? {name}" in schema["dispatch_layout_out"], name
