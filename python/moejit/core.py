"""The parts of moejit's Python API that need neither torch nor a GPU: specs and presets, kernel
descriptors, source, kernel names, prewarm, contexts, configuration, strict mode and counters.
"""

import contextlib
import ctypes
import functools
import threading

from . import _capi as C
from . import _checks as chk

__all__ = ["RouteSpec", "Kernel", "Context", "PrewarmResult", "preset_names", "prewarm", "source", "kernel_name",
           "align_capacity", "align_workspace_bytes", "route_align_capacity", "route_align_fused_tokens",
           "mx_scales_blocked_bytes", "get_context", "configure", "strict", "stats", "device_arch", "has_route_backward"]

_MAX_E = C.LIMITS["MOEJIT_MAX_EXPERTS"]
_MAX_K = C.LIMITS["MOEJIT_MAX_TOPK"]


def dtype_name(dtype, name="dtype"):
    """'f32' / 'bf16' / 'f16' from a name, a moejit_dtype value or a torch dtype."""
    if isinstance(dtype, (str, int)) and not isinstance(dtype, bool):
        return chk.choice(name, dtype, C.DTYPES)
    names = {"torch.float32": "f32", "torch.bfloat16": "bf16", "torch.float16": "f16"}
    if str(dtype) not in names:
        raise TypeError(f"{name} = {dtype} must be float32, bfloat16 or float16 (or 'f32', 'bf16', 'f16')")
    return names[str(dtype)]


def index_dtype_name(value, name="id_dtype"):
    """'int32' / 'int64' / 'int16' from a name, a moejit_index_dtype value or a torch dtype."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return chk.choice(name, value, C.INDEX_DTYPES)
    names = {"torch.int32": "int32", "torch.int64": "int64", "torch.int16": "int16"}
    if str(value) not in names:
        raise TypeError(f"{name} = {value} must be torch.int32, torch.int64 or torch.int16 (or 'int32', 'int64', "
                        f"'int16')")
    return names[str(value)]


def load_counter_name(value, name="load_counter"):
    """'none' / 'int32' / 'int64' from a name, a moejit_load_counter value, a torch dtype or None."""
    if value is None or value is False:
        return "none"
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return chk.choice(name, value, C.LOAD_COUNTERS)
    names = {"torch.int32": "int32", "torch.int64": "int64"}
    if str(value) not in names:
        raise TypeError(f"{name} = {value} must be torch.int32, torch.int64 or None (or 'int32', 'int64', 'none')")
    return names[str(value)]


# -------------------------------------------------------------------------------------------------
# Route specs
# -------------------------------------------------------------------------------------------------
# The plain parameters of a route spec, in the order the torch ops take them (dtype and has_bias
# come from the tensors).
ROUTE_PARAMS = ("num_experts", "topk", "score", "num_groups", "topk_groups", "group_score", "softcap",
                "score_after_topk", "renormalize", "scale_output", "routed_scaling_factor", "shared_slots")
# The serving options of a route spec (moejit.h Operation 1, steps 8-12), in moejit_route_spec's
# order. Every one is off (0) by default; the torch ops derive them from the tensors they are given.
SERVING_PARAMS = ("padded", "id_dtype", "max_replicas", "num_physical_experts", "load_counter", "replay",
                  "logical_id_dtype")
SERVING_OFF = (0, 0, 0, 0, 0, 0, 0)
_INT16_IDS = 2**15  # ids of an int16 array are below this


@functools.lru_cache(maxsize=1024)
def serving_c(padded=False, id_dtype="int32", max_replicas=0, num_physical_experts=0, load_counter="none",
              replay="off", logical_id_dtype="int32"):
    """The serving fields of a route spec as C values (a SERVING_PARAMS-ordered tuple), from names,
    enum values or torch dtypes. TypeError / ValueError name the field."""
    R = chk.integer("max_replicas", max_replicas, 0, chk.INT32_MAX)
    P = chk.integer("num_physical_experts", num_physical_experts, 0, chk.INT32_MAX)
    if R and not P:
        raise ValueError(f"num_physical_experts is required with expert placement (max_replicas = {R}): the "
                         f"physical ids are in [0, num_physical_experts)")
    if P and not R:
        raise ValueError(f"num_physical_experts = {P} is set but expert placement is off (max_replicas = 0)")
    rp = chk.choice("replay", replay, C.REPLAYS)
    lid = index_dtype_name(logical_id_dtype, "logical_id_dtype")
    if rp == "off" and lid != "int32":
        raise ValueError(f"logical_id_dtype = {lid!r} applies only with replay ('record' or 'given')")
    return (chk.flag("padded", padded), C.INDEX_DTYPES[index_dtype_name(id_dtype)], R, P,
            C.LOAD_COUNTERS[load_counter_name(load_counter)], C.REPLAYS[rp], C.INDEX_DTYPES[lid])


def serving_names(serving):
    """A SERVING_PARAMS-ordered tuple of C values as a dict of readable values."""
    padded, ids, R, P, load, replay, lid = serving
    return dict(padded=bool(padded), id_dtype=chk.choice("id_dtype", ids, C.INDEX_DTYPES), max_replicas=R,
                num_physical_experts=P, load_counter=chk.choice("load_counter", load, C.LOAD_COUNTERS),
                replay=chk.choice("replay", replay, C.REPLAYS),
                logical_id_dtype=chk.choice("logical_id_dtype", lid, C.INDEX_DTYPES))


@functools.lru_cache(maxsize=4096)
def route_spec_c(dtype, has_bias, num_experts, topk, score, num_groups, topk_groups, group_score, softcap,
                 score_after_topk, renormalize, scale_output, routed_scaling_factor, shared_slots,
                 serving=SERVING_OFF):
    """A validated moejit_route_spec for plain parameters and the serving fields (a serving_c()
    tuple; cached: one validation per shape). TypeError / ValueError (MoejitValueError from the
    library's validator) name the field."""
    c = C.RouteSpec(
        chk.integer("num_experts", num_experts, 1, chk.INT32_MAX), chk.integer("topk", topk, 1, chk.INT32_MAX),
        C.SCORES[chk.choice("score", score, C.SCORES)], C.DTYPES[dtype_name(dtype)],
        chk.integer("num_groups", num_groups, 0, chk.INT32_MAX), chk.integer("topk_groups", topk_groups, 0, chk.INT32_MAX),
        C.GROUP_SCORES[chk.choice("group_score", group_score, C.GROUP_SCORES)], chk.flag("has_bias", has_bias),
        chk.real("softcap", softcap), chk.flag("score_after_topk", score_after_topk),
        chk.flag("renormalize", renormalize), chk.flag("scale_output", scale_output),
        chk.real("routed_scaling_factor", routed_scaling_factor),
        chk.integer("shared_slots", shared_slots, 0, chk.INT32_MAX))
    if len(serving) != len(SERVING_PARAMS):
        raise ValueError(f"serving must hold the {len(SERVING_PARAMS)} fields {SERVING_PARAMS}, got {serving!r}")
    for name, value in zip(SERVING_PARAMS, serving):
        setattr(c, name, value)
    # ids (physical with placement, shared slots after them) and logical ids must fit their type
    top = (c.num_physical_experts if c.max_replicas else c.num_experts) + c.shared_slots
    if c.id_dtype == C.INDEX_DTYPES["int16"] and top > _INT16_IDS:
        raise ValueError(f"id_dtype = 'int16' holds ids below {_INT16_IDS}, but this routing writes ids up to {top - 1}")
    if c.replay and c.logical_id_dtype == C.INDEX_DTYPES["int16"] and c.num_experts + c.shared_slots > _INT16_IDS:
        raise ValueError(f"logical_id_dtype = 'int16' holds ids below {_INT16_IDS}, but the logical ids reach "
                         f"{c.num_experts + c.shared_slots - 1}")
    desc = C.KernelDesc(op=C.OPS["route"], route=c)
    C.check(C.lib.moejit_validate(ctypes.byref(desc)))
    return c


class RouteSpec:
    """A routing shape: the fields of moejit_route_spec (moejit.h, Operation 1).

    Args:
        num_experts (int): E, 1..4096.
        topk (int): K, 1..min(E, 64).
        score (str): ``"softmax"``, ``"sigmoid"`` or ``"sqrt_softplus"`` (or its moejit_score value).
        dtype: logits dtype: ``torch.float32/bfloat16/float16`` or ``"f32"/"bf16"/"f16"``.
        num_groups (int): G (0 or 1: ungrouped); E % G == 0.
        topk_groups (int): TG groups kept (0: all).
        group_score (str): ``"max"`` or ``"top2_sum"``.
        has_bias (bool): a selection bias [E] f32 is passed with each call.
        softcap (float): > 0 caps logits as softcap·tanh(x/softcap); 0 is off.
        score_after_topk (bool): top-K on raw logits, then score those K.
        renormalize (bool): weights /= their sum.
        scale_output (bool): every weight *= routed_scaling_factor.
        routed_scaling_factor (float): 0 means 1.
        shared_slots (int): S fused shared-expert slots appended to each row.

    Serving options (keyword only, each off by default; moejit.h Operation 1 steps 8-12). The
    torch functions (:func:`moejit.route`) set them from the tensors they are given, so a spec
    needs them only to name or prewarm the kernel of such a call (``Kernel.route(spec)``); a call
    whose tensors disagree with a spec's serving option raises ValueError naming it.
        padded (bool): a device count ``num_valid`` bounds the rows routed.
        id_dtype: of the ids: ``torch.int32`` (default), ``torch.int64`` or ``torch.int16``.
        max_replicas (int): R > 0 turns on expert placement (``logical_to_physical`` [E, R]).
        num_physical_experts (int): P, required with placement (physical ids in [0, P)).
        load_counter: ``torch.int32`` / ``torch.int64`` (or ``"int32"``/``"int64"``): count the
            routed slots per expert in ``expert_load``; None / ``"none"`` is off.
        replay (str): ``"off"``, ``"record"`` (also write the logical ids) or ``"given"`` (route
            the logical ids given).
        logical_id_dtype: of the recorded / given logical ids (with replay), default int32.

    Attributes hold the C values (enums as ints: ``spec.score == moejit.SCORES["sigmoid"]``);
    ``score_name``, ``group_score_name``, ``dtype_name`` and :attr:`serving` give the names. A spec
    is immutable and validated when made: a bad field raises ValueError naming it. Raises
    TypeError for a non-integer count and ValueError for one out of range (never a silent wrap).
    """

    __slots__ = ("num_experts", "topk", "score", "dtype", "num_groups", "topk_groups", "group_score", "has_bias",
                 "softcap", "score_after_topk", "renormalize", "scale_output", "routed_scaling_factor",
                 "shared_slots") + SERVING_PARAMS + ("aux_stats", "seq_offset_dtype") + ("_c", "_params", "_serving")

    def __init__(self, num_experts, topk, score="softmax", dtype="f32", num_groups=0, topk_groups=0,
                 group_score="max", has_bias=False, softcap=0.0, score_after_topk=False, renormalize=False,
                 scale_output=False, routed_scaling_factor=0.0, shared_slots=0, *, padded=False, id_dtype="int32",
                 max_replicas=0, num_physical_experts=0, load_counter="none", replay="off",
                 logical_id_dtype="int32"):
        serving = serving_c(chk.flag("padded", padded), index_dtype_name(id_dtype), max_replicas,
                            num_physical_experts, load_counter_name(load_counter), chk.choice("replay", replay, C.REPLAYS),
                            index_dtype_name(logical_id_dtype, "logical_id_dtype"))
        c = route_spec_c(dtype_name(dtype), chk.flag("has_bias", has_bias), num_experts, topk,
                         chk.choice("score", score, C.SCORES), num_groups, topk_groups,
                         chk.choice("group_score", group_score, C.GROUP_SCORES), softcap, score_after_topk,
                         renormalize, scale_output, routed_scaling_factor, shared_slots, serving)
        self._set(c)

    def _set(self, c):
        for name, _ in C.RouteSpec._fields_[:-1]:
            object.__setattr__(self, name, getattr(c, name))
        object.__setattr__(self, "_c", c)
        object.__setattr__(self, "_params", (
            c.num_experts, c.topk, chk.choice("score", c.score, C.SCORES), c.num_groups, c.topk_groups,
            chk.choice("group_score", c.group_score, C.GROUP_SCORES), float(c.softcap), bool(c.score_after_topk),
            bool(c.renormalize), bool(c.scale_output), float(c.routed_scaling_factor), c.shared_slots))
        object.__setattr__(self, "_serving", tuple(getattr(c, name) for name in SERVING_PARAMS))

    def __setattr__(self, name, value):
        raise AttributeError(f"RouteSpec is immutable; use spec.replace({name}=...)")

    @classmethod
    def preset(cls, model, dtype="bf16"):
        """A built-in model preset (see :func:`preset_names`) with the given logits dtype.

        Raises ValueError for an unknown name."""
        if not isinstance(model, str) or model not in preset_names():
            raise ValueError(f"model = {model!r} is not a preset; presets: {', '.join(preset_names())}")
        c = C.RouteSpec()
        C.check(C.lib.moejit_route_preset(model.encode(), ctypes.byref(c)), f"preset {model!r}")
        c.dtype = C.DTYPES[dtype_name(dtype)]
        spec = cls.__new__(cls)
        spec._set(route_spec_c(*spec_key(c)))
        return spec

    def replace(self, **fields):
        """A copy with some fields changed (names as the constructor's, serving options included)."""
        kw = {name: getattr(self, name) for name in ROUTE_PARAMS}
        kw.update(dtype=self.dtype, has_bias=bool(self.has_bias))
        for name in ("score_after_topk", "renormalize", "scale_output"):
            kw[name] = bool(kw[name])
        kw.update(self.serving)
        kw.update(fields)
        return RouteSpec(**kw)

    @property
    def score_name(self):
        return chk.choice("score", self.score, C.SCORES)

    @property
    def group_score_name(self):
        return chk.choice("group_score", self.group_score, C.GROUP_SCORES)

    @property
    def dtype_name(self):
        return dtype_name(self.dtype)

    @property
    def serving(self):
        """The serving options as a dict (SERVING_PARAMS), enums by name: ``{"padded": False,
        "id_dtype": "int32", …, "replay": "off", …}``."""
        return serving_names(self._serving)

    @property
    def has_serving(self):
        """True when any serving option is on (id_dtype other than int32 included)."""
        return self._serving != SERVING_OFF

    @property
    def outputs(self):
        """Slots per token: K routed + S shared."""
        return self.topk + self.shared_slots

    @property
    def params(self):
        """The plain op arguments (ROUTE_PARAMS order) the torch ops take for this spec."""
        return self._params

    @property
    def kernel_name(self):
        """Entry point name of this spec's route kernel."""
        return Kernel.route(self).name

    def __eq__(self, other):
        return isinstance(other, RouteSpec) and bytes(self._c) == bytes(other._c)

    def __hash__(self):
        return hash(bytes(self._c))

    def __repr__(self):
        serving = "".join(f", {k}={v!r}" for (k, v), off in zip(self.serving.items(), serving_names(SERVING_OFF).values())
                          if v != off)
        return (f"RouteSpec(num_experts={self.num_experts}, topk={self.topk}, score={self.score_name!r}, "
                f"dtype={self.dtype_name!r}, num_groups={self.num_groups}, topk_groups={self.topk_groups}, "
                f"group_score={self.group_score_name!r}, has_bias={bool(self.has_bias)}, softcap={self.softcap}, "
                f"score_after_topk={bool(self.score_after_topk)}, renormalize={bool(self.renormalize)}, "
                f"scale_output={bool(self.scale_output)}, routed_scaling_factor={self.routed_scaling_factor}, "
                f"shared_slots={self.shared_slots}{serving})")


def route_backward_key(dtype, params, ids_dtype="int32"):
    """route_spec_c's arguments for route_backward's spec: the forward's plain parameters (ROUTE_PARAMS),
    ids of ids_dtype and no serving option (they change nothing in the backward) nor bias (it moves
    only the selection, which the backward reads from the ids: one kernel serves both)."""
    return (dtype_name(dtype), 0) + tuple(params) + (serving_c(id_dtype=index_dtype_name(ids_dtype, "ids_dtype")),)


def spec_key(c):
    """route_spec_c's arguments for a C route spec."""
    return (dtype_name(c.dtype), c.has_bias, c.num_experts, c.topk, chk.choice("score", c.score, C.SCORES),
            c.num_groups, c.topk_groups, chk.choice("group_score", c.group_score, C.GROUP_SCORES), c.softcap,
            c.score_after_topk, c.renormalize, c.scale_output, c.routed_scaling_factor, c.shared_slots,
            tuple(getattr(c, name) for name in SERVING_PARAMS))


def preset_names():
    """Names of the built-in model presets ("mixtral", "qwen3-moe", "deepseek-v3", …)."""
    return list(_preset_names())


@functools.lru_cache(maxsize=1)
def _preset_names():
    names, i = [], 0
    while (name := C.lib.moejit_route_preset_name(i)) is not None:
        names.append(name.decode())
        i += 1
    return tuple(names)


# -------------------------------------------------------------------------------------------------
# Other specs (validated C structs, cached) and sizes
# -------------------------------------------------------------------------------------------------
def _validated(op, field, c):
    desc = C.KernelDesc(op=C.OPS[op])
    setattr(desc, field, c)
    C.check(C.lib.moejit_validate(ctypes.byref(desc)))
    return c


@functools.lru_cache(maxsize=1024)
def align_spec_c(num_experts, block_size, id_dtype="int32", global_experts=0):
    """A validated moejit_align_spec: E local experts, blocks of B, ids of id_dtype (a name, enum
    value or torch dtype), global_experts = Eg > 0 when the ids go through an expert_map [Eg]."""
    return _validated("align", "align", C.AlignSpec(chk.integer("num_experts", num_experts, 1, chk.INT32_MAX),
                                                    chk.integer("block_size", block_size, 1, chk.INT32_MAX),
                                                    C.INDEX_DTYPES[index_dtype_name(id_dtype)],
                                                    chk.integer("global_experts", global_experts, 0, chk.INT32_MAX)))


DEFAULT_RANKS_PER_NODE = 8  # DeepEP's NUM_MAX_NVL_PEERS; moejit_dispatch_layout_spec's 0


def dispatch_layout_nodes(num_ranks, ranks_per_node=DEFAULT_RANKS_PER_NODE):
    """(ranks_per_node for the spec, nodes) for R ranks: one node (nodes = 0: no tokens_per_node,
    as DeepEP's None for num_tokens_per_rdma_rank) when R <= ranks_per_node, else R / ranks_per_node
    nodes, which must divide evenly."""
    R = chk.integer("num_ranks", num_ranks, 1, chk.INT32_MAX)
    rpn = chk.integer("ranks_per_node", ranks_per_node, 1, chk.INT32_MAX)
    if R <= rpn:
        return R, 0
    if R % rpn:
        raise ValueError(f"ranks_per_node = {rpn} must divide num_ranks = {R} (nodes of ranks_per_node ranks)")
    return rpn, R // rpn


@functools.lru_cache(maxsize=1024)
def dispatch_layout_spec_c(num_experts, num_ranks, topk, id_dtype="int32", ranks_per_node=DEFAULT_RANKS_PER_NODE):
    """A validated moejit_dispatch_layout_spec: E experts (physical, shared slots included) on R
    ranks of E/R consecutive experts each, ids [T, K] of id_dtype; ranks_per_node as
    dispatch_layout_nodes() gives it for the spec."""
    E = chk.integer("num_experts", num_experts, 1, chk.INT32_MAX)
    R = chk.integer("num_ranks", num_ranks, 1, chk.INT32_MAX)
    K = chk.integer("topk", topk, 1, chk.INT32_MAX)
    if E % R:
        raise ValueError(f"num_ranks = {R} must divide num_experts = {E} (every rank holds E / R consecutive experts)")
    rpn, _ = dispatch_layout_nodes(R, ranks_per_node)
    return _validated("dispatch_layout", "dispatch_layout",
                      C.DispatchLayoutSpec(E, R, K, C.INDEX_DTYPES[index_dtype_name(id_dtype)], rpn))


@functools.lru_cache(maxsize=1024)
def route_align_spec_c(route_key, block_size):
    """A validated moejit_route_align_spec (route_key: route_spec_c's arguments)."""
    return _validated("route_align", "route_align",
                      C.RouteAlignSpec(route_spec_c(*route_key), chk.integer("block_size", block_size, 1, chk.INT32_MAX)))


@functools.lru_cache(maxsize=1024)
def mx_spec_c(cols):
    """A validated moejit_mx_scales_spec."""
    return _validated("mx_scales", "mx_scales", C.MxScalesSpec(chk.integer("cols", cols, 1, chk.INT32_MAX)))


@functools.lru_cache(maxsize=1024)
def permute_spec_c(hidden, dtype, has_scale):
    """A validated moejit_permute_spec."""
    return _validated("permute", "permute", C.PermuteSpec(chk.integer("hidden", hidden, 1, chk.INT32_MAX),
                                                          C.DTYPES[dtype_name(dtype)], chk.flag("has_scale", has_scale)))


@functools.lru_cache(maxsize=1024)
def combine_spec_c(hidden, dtype):
    """A validated moejit_combine_spec."""
    return _validated("combine", "combine", C.CombineSpec(chk.integer("hidden", hidden, 1, chk.INT32_MAX),
                                                          C.DTYPES[dtype_name(dtype)]))


@functools.lru_cache(maxsize=1024)
def permute_backward_spec_c(hidden, dtype, has_scale):
    """A validated moejit_permute_backward_spec (NotImplementedError from a library without it)."""
    _require("moejit_permute_backward", "permute's backward")
    return _validated("permute_backward", "permute_backward",
                      C.PermuteBackwardSpec(chk.integer("hidden", hidden, 1, chk.INT32_MAX), C.DTYPES[dtype_name(dtype)],
                                            chk.flag("has_scale", has_scale)))


@functools.lru_cache(maxsize=1024)
def combine_backward_spec_c(hidden, dtype):
    """A validated moejit_combine_backward_spec (NotImplementedError from a library without it)."""
    _require("moejit_combine_backward", "combine's backward")
    return _validated("combine_backward", "combine_backward",
                      C.CombineBackwardSpec(chk.integer("hidden", hidden, 1, chk.INT32_MAX), C.DTYPES[dtype_name(dtype)]))


def has_route_backward():
    """True when the library has moejit_route_backward (moejit.h Operation 1b): route's weights
    are then differentiable w.r.t. the logits."""
    return C.has("moejit_route_backward")


def _require(fn, what):
    if not C.has(fn):
        raise NotImplementedError(f"moejit: {C.library_path} has no {fn}, so {what} is not available with it (a "
                                  f"library older than this binding's moejit.h: rebuild it, or set MOEJIT_LIBRARY to "
                                  f"a current one)")


@functools.lru_cache(maxsize=1024)
def route_backward_spec_c(route_key):
    """A validated moejit_route_backward_spec for route_spec_c's arguments (the forward's spec).
    NotImplementedError from a library without route_backward."""
    _require("moejit_route_backward", "route's backward (the gradient of its weights w.r.t. the logits; detach "
             "the router logits to train without it)")
    return _validated("route_backward", "route_backward", C.RouteBackwardSpec(route_spec_c(*route_key)))


_I64 = 2**63 - 1


def align_capacity_formula(num_experts, block_size, n, min_fn=min):
    """capacity = N + min(E, N)·(B−1) from sizes alone — moejit_align_capacity's formula, for fake
    tensors whose N is symbolic (min_fn=torch.sym_min). test_core checks it against the library."""
    return n + min_fn(num_experts, n) * (block_size - 1)


def mx_blocked_numel(cols, groups, rows, grouped):
    """Bytes of the blocked layout from sizes alone (also symbolic ones): 3D G·Rp·Cp, 2D
    round_down(M + 127·G, 128)·Cp — moejit_mx_scales_blocked_bytes' formula, checked against it
    by test_core."""
    cp = (cols + 3) // 4 * 4
    if grouped:
        return (rows + 127 * groups) // 128 * 128 * cp
    return groups * ((rows + 127) // 128 * 128) * cp


def align_capacity(num_experts, block_size, num_tokens, topk):
    """Entries of sorted_ids align needs: N + min(E, N)·(B−1) with N = T·K (moejit_align_capacity)."""
    cap = ctypes.c_int64()
    C.check(C.lib.moejit_align_capacity(ctypes.byref(align_spec_c(num_experts, block_size)),
                                        chk.integer("num_tokens", num_tokens, 0, _I64),
                                        chk.integer("topk", topk, 1, chk.INT32_MAX), ctypes.byref(cap)), "align")
    return cap.value


def capacity_of(num_tokens, topk, num_experts, capacity_factor, min_capacity=0):
    """Megatron-Core's expert capacity: ceil((T·K / E) · capacity_factor) in double, at least
    min_capacity (moejit_capacity_of)."""
    c = ctypes.c_int32()
    C.check(C.lib.moejit_capacity_of(chk.integer("num_tokens", num_tokens, 0, _I64),
                                     chk.integer("topk", topk, 1, chk.INT32_MAX),
                                     chk.integer("num_experts", num_experts, 1, chk.INT32_MAX),
                                     chk.real("capacity_factor", capacity_factor),
                                     chk.integer("min_capacity", min_capacity, 0, chk.INT32_MAX), ctypes.byref(c)),
            "capacity_of")
    return c.value


def align_workspace_bytes(num_experts, block_size, num_tokens, topk):
    """Bytes of workspace align needs for T tokens of K ids (0 for one-launch batches)."""
    n = ctypes.c_size_t()
    C.check(C.lib.moejit_align_workspace_bytes(ctypes.byref(align_spec_c(num_experts, block_size)),
                                               chk.integer("num_tokens", num_tokens, 0, _I64),
                                               chk.integer("topk", topk, 1, chk.INT32_MAX), ctypes.byref(n)), "align")
    return n.value


def _route_align_c(spec, block_size):
    return route_align_spec_c(spec_key(spec._c), block_size)


def route_align_capacity(spec, block_size, num_tokens):
    """align_capacity over E+S experts and K+S ids a token (moejit_route_align_capacity)."""
    cap = ctypes.c_int64()
    C.check(C.lib.moejit_route_align_capacity(ctypes.byref(_route_align_c(spec, block_size)),
                                              chk.integer("num_tokens", num_tokens, 0, _I64), ctypes.byref(cap)),
            "route_align")
    return cap.value


def route_align_fused_tokens(spec, block_size):
    """The most tokens route_align does in one launch for this shape on sm_90+ (larger batches:
    route then align); below sm_90 one launch takes at most 8 tokens."""
    n = ctypes.c_int64()
    C.check(C.lib.moejit_route_align_fused_tokens(ctypes.byref(_route_align_c(spec, block_size)), ctypes.byref(n)),
            "route_align")
    return n.value


def mx_scales_blocked_bytes(cols, groups, rows, grouped_rows=False):
    """Bytes of the blocked layout: 3D (G groups of R rows) or, with grouped_rows, 2D (M rows in G
    groups: the largest the groups can need)."""
    n = ctypes.c_size_t()
    C.check(C.lib.moejit_mx_scales_blocked_bytes(ctypes.byref(mx_spec_c(cols)), int(bool(grouped_rows)),
                                                 chk.integer("groups", groups, 0, _I64),
                                                 chk.integer("rows", rows, 0, _I64), ctypes.byref(n)), "mx_scales")
    return n.value


# -------------------------------------------------------------------------------------------------
# Kernel descriptors: prewarm, source, names
# -------------------------------------------------------------------------------------------------
class Kernel:
    """One kernel module: an operation and its spec (moejit_kernel_desc), for :func:`prewarm`,
    :func:`source` and :func:`kernel_name`. Build one with the class methods, which take exactly
    what the torch op of the same name is called with, so a prewarmed kernel is the one the op
    launches."""

    __slots__ = ("op", "desc")

    def __init__(self, op, field, c):
        self.op = op
        self.desc = C.KernelDesc(op=C.OPS[op])
        setattr(self.desc, field, c)

    @classmethod
    def route(cls, spec, has_bias=None):
        """moejit.route with `spec` (has_bias: the spec's unless given)."""
        c = spec._c if has_bias is None else \
            route_spec_c(*((spec.dtype_name, int(bool(has_bias))) + spec.params + (spec._serving,)))
        return cls("route", "route", c)

    @classmethod
    def align(cls, num_experts, block_size, id_dtype="int32", expert_map_size=0):
        """moejit.align over E experts in blocks of B, ids of id_dtype (int32, int64, int16;
        names or torch dtypes), through an expert_map of expert_map_size entries when > 0."""
        return cls("align", "align", align_spec_c(num_experts, block_size, index_dtype_name(id_dtype),
                                                  expert_map_size))

    @classmethod
    def dispatch_layout(cls, num_experts, num_ranks, topk, id_dtype="int32", ranks_per_node=DEFAULT_RANKS_PER_NODE):
        """moejit.dispatch_layout of ids [T, topk] of id_dtype over E experts on R ranks."""
        return cls("dispatch_layout", "dispatch_layout",
                   dispatch_layout_spec_c(num_experts, num_ranks, topk, index_dtype_name(id_dtype), ranks_per_node))

    @classmethod
    def route_align(cls, spec, block_size):
        """moejit.route_align with `spec` and block size B."""
        return cls("route_align", "route_align", _route_align_c(spec, block_size))

    @classmethod
    def mx_scales(cls, cols):
        """moejit.mx_scales and mx_scales_inverse (both layouts) for C scales a row."""
        return cls("mx_scales", "mx_scales", mx_spec_c(cols))

    @classmethod
    def permute(cls, hidden, dtype, has_scale=False):
        """moejit.permute of rows of H elements of `dtype` (has_scale: a per-expert scale)."""
        return cls("permute", "permute", permute_spec_c(hidden, dtype_name(dtype), int(bool(has_scale))))

    @classmethod
    def combine(cls, hidden, dtype):
        """moejit.combine of rows of H elements of `dtype`."""
        return cls("combine", "combine", combine_spec_c(hidden, dtype_name(dtype)))

    @classmethod
    def permute_backward(cls, hidden, dtype, has_scale=False):
        """The gradient of moejit.permute (rows of H elements of `dtype`, has_scale as the forward's)."""
        return cls("permute_backward", "permute_backward",
                   permute_backward_spec_c(hidden, dtype_name(dtype), int(bool(has_scale))))

    @classmethod
    def combine_backward(cls, hidden, dtype):
        """The gradients of moejit.combine (rows of H elements of `dtype`)."""
        return cls("combine_backward", "combine_backward", combine_backward_spec_c(hidden, dtype_name(dtype)))

    @classmethod
    def route_backward(cls, spec, ids_dtype=None):
        """The gradient of moejit.route's weights w.r.t. the logits (what moejit.route_backward and
        route's autograd launch) for the forward's `spec`, ids of ids_dtype: by default the spec's
        id_dtype, or its logical_id_dtype with expert placement (the backward reads logical ids).
        NotImplementedError from a library without moejit_route_backward."""
        if ids_dtype is None:
            ids_dtype = spec.logical_id_dtype if spec.max_replicas else spec.id_dtype
        return cls("route_backward", "route_backward",
                   route_backward_spec_c(route_backward_key(spec.dtype_name, spec.params, ids_dtype)))

    @classmethod
    def moe_layer(cls, spec, block_size, hidden, dtype, permute_scale=False, fused=True, backward=False):
        """Every kernel a MoE layer of this routing uses: route, align (over E+S experts),
        route_align when `fused`, permute and combine at hidden size H of `dtype`; with `backward`
        (training) also permute's and combine's backward, and route's where the library has it."""
        kernels = [cls.route(spec), cls.align(spec.num_experts + spec.shared_slots, block_size),
                   cls.permute(hidden, dtype, permute_scale), cls.combine(hidden, dtype)]
        if fused:
            kernels.append(cls.route_align(spec, block_size))
        if backward:
            kernels += [cls.permute_backward(hidden, dtype, permute_scale), cls.combine_backward(hidden, dtype)]
            if has_route_backward():
                kernels.append(cls.route_backward(spec))
        return kernels

    @property
    def name(self):
        """The entry point's name, e.g. ``moejit_route_sigmoid_e384_k8_bf16``."""
        return kernel_name(self)

    def source(self):
        """The generated CUDA C++ (see :func:`source`)."""
        return source(self)

    def __repr__(self):
        return f"Kernel({self.op}: {self.name})"


def kernel_name(kernel):
    """Name of a :class:`Kernel`'s entry point."""
    buf = ctypes.create_string_buffer(128)
    C.check(C.lib.moejit_kernel_name(ctypes.byref(kernel.desc), buf, len(buf)), "kernel_name")
    return buf.value.decode()


def source(kernel, context=None):
    """The generated CUDA C++ of a :class:`Kernel`: self-contained, every size a compile-time
    constant. Compiles nothing, needs no GPU."""
    ctx = context or get_context()
    p, n = ctypes.c_void_p(), ctypes.c_size_t()
    C.check(C.lib.moejit_source(ctx._ctx, ctypes.byref(kernel.desc), ctypes.byref(p), ctypes.byref(n)), "source")
    try:
        return ctypes.string_at(p, n.value).decode()
    finally:
        C.lib.moejit_free(p)


class PrewarmResult(tuple):
    """One kernel's prewarm outcome: kernel (its name), arch, outcome ("compiled", "cached",
    "failed", "not_stored"), key, seconds, status (moejit_status name), error (detail, "" if ok)."""

    __slots__ = ()
    _fields = ("kernel", "arch", "outcome", "key", "seconds", "status", "error")

    def __new__(cls, r):
        outcome = chk.choice("outcome", r.outcome, C.PREWARM_OUTCOMES)
        return tuple.__new__(cls, (r.name.decode(errors="replace"), r.arch.decode(), outcome, r.key.decode(),
                                   r.seconds, C.lib.moejit_status_str(r.status).decode(),
                                   r.error.decode(errors="replace")))

    kernel, arch, outcome, key, seconds, status, error = (property(lambda self, i=i: self[i]) for i in range(7))

    @property
    def ok(self):
        return self.outcome in ("compiled", "cached")

    def __repr__(self):
        return (f"PrewarmResult({self.outcome} {self.arch} {self.kernel} {self.key[:12]} {self.seconds:.2f}s"
                + (f": {self.error}" if self.error else "") + ")")


def prewarm(kernels, archs=None, *, context=None, progress=None, check=True):
    """Compile kernels into the disk cache, in parallel, for engine start-up or image builds.

    Args:
        kernels: :class:`Kernel` objects (``Kernel.moe_layer(...)`` lists a layer's).
        archs: arch strings (``["sm_90a", "sm_100a"]``; no GPU needed) or None for the current
            GPU's arch.
        context: a :class:`Context` (default: the process context of :func:`get_context`).
        progress: called as progress(result, done, total) after each kernel (from worker threads).
        check: raise MoejitError naming every failed kernel when any failed.

    Returns:
        a list of :class:`PrewarmResult`, one per (arch, kernel) in that order.
    """
    kernels = list(kernels)
    for i, k in enumerate(kernels):
        if not isinstance(k, Kernel):
            raise TypeError(f"kernels[{i}] must be a moejit.Kernel, got {type(k).__name__}")
    ctx = context or get_context()
    n = len(kernels)
    descs = (C.KernelDesc * max(n, 1))(*(k.desc for k in kernels))
    if isinstance(archs, str):
        archs = [archs]
    if archs is not None:
        archs = list(archs)
        for i, a in enumerate(archs):
            if not isinstance(a, str) or not a:
                raise ValueError(f"archs[{i}] = {a!r} must be an arch string such as 'sm_90a'")
    total = n * (len(archs) if archs else 1)
    results = (C.PrewarmResult * max(total, 1))()
    if archs is None and progress is None:
        status = C.lib.moejit_prewarm(ctx._ctx, descs, n, None, results)
    else:
        arch_list = archs if archs is not None else [_current_arch(ctx)]
        arr = (ctypes.c_char_p * len(arch_list))(*(a.encode() for a in arch_list))
        cb = C.PREWARM_FN(lambda r, index, done, tot, user: progress(PrewarmResult(r.contents), done, tot)) \
            if progress else C.PREWARM_FN()
        status = C.lib.moejit_prewarm_archs(ctx._ctx, descs, n, arr, len(arch_list), results, cb, None)
    out = [PrewarmResult(results[i]) for i in range(total)]
    if check and status != 0:
        failed = [r for r in out if not r.ok]
        raise C.MoejitError(status, f"prewarm: {len(failed)} of {total} kernels failed:\n  "
                            + "\n  ".join(f"{r.arch} {r.kernel}: {r.error}" for r in failed))
    return out


def _current_arch(ctx):
    buf = ctypes.create_string_buffer(32)
    C.check(C.lib.moejit_ctx_device_arch(ctx._ctx, buf, len(buf)), "device arch")
    return buf.value.decode()


# -------------------------------------------------------------------------------------------------
# Contexts
# -------------------------------------------------------------------------------------------------
_UNSET = object()


class Context:
    """A moejit context (moejit_ctx): configuration, the disk cache, the kernels loaded and the
    counters. Thread-safe and device-independent (kernels are loaded per device as launched).

    The torch ops use one process context (:func:`get_context`); create others only for a
    different configuration. Every argument falls back to its MOEJIT_* environment variable when
    left at None / 0 (moejit_config).

    Args:
        cache_dir (str): MOEJIT_CACHE_DIR.
        cache_mode (str): ``"rw"``, ``"ro"`` or ``"off"`` (MOEJIT_CACHE).
        no_compile (bool): strict mode: a kernel not in the cache is MOEJIT_ERR_CACHE_MISS.
        always_compile (bool): ignore cached entries.
        device (int): CUDA ordinal used when the calling thread has no current context.
        dump_dir, extra_nvrtc_flags (str), log_level (str: silent, warn, info, debug),
        compile_jobs (int), cache_max_bytes (int), cache_lock_timeout_ms (int): as moejit_config.
        pdl (bool): programmatic dependent launch on sm_90+ (None: MOEJIT_PDL, default on).
    """

    def __init__(self, cache_dir=None, cache_mode=None, no_compile=False, always_compile=False, device=0,
                 dump_dir=None, extra_nvrtc_flags=None, log_level=None, compile_jobs=0, cache_max_bytes=0,
                 cache_lock_timeout_ms=0, pdl=None):
        self._ctx = None
        modes = {None: 0, **{k: v for k, v in C.CACHE_MODES.items() if k != "from_env"}}
        levels = {None: 0, **{k: v for k, v in C.LOG_LEVELS.items() if k != "from_env"}}
        if cache_mode not in modes:
            raise ValueError(f"cache_mode = {cache_mode!r} must be 'rw', 'ro', 'off' or None (environment)")
        if log_level not in levels:
            raise ValueError(f"log_level = {log_level!r} must be 'silent', 'warn', 'info', 'debug' or None")
        if pdl not in (None, True, False):
            raise ValueError(f"pdl = {pdl!r} must be True, False or None (MOEJIT_PDL)")
        for name, value in (("cache_dir", cache_dir), ("dump_dir", dump_dir), ("extra_nvrtc_flags", extra_nvrtc_flags)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        self.config = dict(cache_dir=cache_dir, cache_mode=cache_mode, no_compile=bool(no_compile),
                           always_compile=bool(always_compile), device=device, dump_dir=dump_dir,
                           extra_nvrtc_flags=extra_nvrtc_flags, log_level=log_level, compile_jobs=compile_jobs,
                           cache_max_bytes=cache_max_bytes, cache_lock_timeout_ms=cache_lock_timeout_ms, pdl=pdl)
        enc = lambda s: s.encode() if s else None  # noqa: E731
        self._cfg = C.Config(enc(cache_dir), modes[cache_mode], chk.flag("no_compile", no_compile),
                             chk.flag("always_compile", always_compile), enc(dump_dir), enc(extra_nvrtc_flags),
                             levels[log_level], chk.integer("device", device, 0, chk.INT32_MAX),
                             chk.integer("compile_jobs", compile_jobs, 0, chk.INT32_MAX),
                             chk.integer("cache_max_bytes", cache_max_bytes, 0, 2**64 - 1),
                             chk.integer("cache_lock_timeout_ms", cache_lock_timeout_ms, -2**31, chk.INT32_MAX),
                             {None: 0, True: 1, False: 2}[pdl])
        handle = ctypes.c_void_p()
        C.check(C.lib.moejit_open(ctypes.byref(self._cfg), ctypes.byref(handle)), "moejit_open")
        self._ctx = handle  # a c_void_p: what the harness passes back to library.moejit_align

    def close(self):
        """Release the context and its kernels (no launch may be in flight on it)."""
        if self._ctx:
            C.lib.moejit_close(self._ctx)
            self._ctx = ctypes.c_void_p()

    def __del__(self):
        if getattr(self, "_ctx", None) and C is not None and C.lib is not None:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def cache_dir(self):
        """The cache directory (absolute), "" when the cache is off."""
        return C.lib.moejit_ctx_cache_dir(self._ctx).decode()

    @property
    def strict(self):
        """True when a cache miss is an error (no_compile)."""
        return bool(self._cfg.no_compile)

    def stats(self):
        """The counters (moejit_stats) as a dict: kernels, compiles, disk_hits, launches…"""
        s = C.Stats()
        C.check(C.lib.moejit_ctx_stats(self._ctx, ctypes.byref(s)), "stats")
        return {name: getattr(s, name) for name in C._STATS_FIELDS}

    def device_arch(self):
        """The arch NVRTC targets for the current device ("sm_90a"); needs a driver and a GPU."""
        return _current_arch(self)

    @property
    def pdl(self):
        """True when this context launches with programmatic dependent launch where the device allows
        it (sm_90+, driver 12.3+): the pdl argument, else MOEJIT_PDL, else on. Needs no GPU."""
        requested = ctypes.c_int()
        C.check(C.lib.moejit_ctx_pdl(self._ctx, ctypes.byref(requested), None), "pdl")
        return bool(requested.value)

    # Calls on torch tensors through this context (the torch ops use the process context).
    def route(self, spec, logits, bias=None, out=None, stream=None):
        """Route `logits` [T, E] (rows may be strided) with `spec`. Returns (ids int32 [T, K+S],
        weights f32 [T, K+S]); out = (ids, weights) writes preallocated tensors. stream: a
        torch.cuda.Stream or raw handle (default: the current stream of logits' device)."""
        from . import _launch
        return _launch.route_call(self, spec, logits, bias, out, stream)

    def align(self, maps, topk_ids, stream=None):
        """Build dispatch maps of topk_ids [T, K] (int32, int64 or int16) into `maps` (an
        :class:`AlignMaps` of the same T and K). Returns maps."""
        from . import _launch
        return _launch.align_maps_call(self, maps, topk_ids, stream)

    def mx_scales(self, scales, out=None, group_ends=None, stream=None):
        """e8m0 scales (uint8) to the blocked layout: [G, R, C] (3D), or [M, C] with group_ends
        (int32 [G]) for row groups (2D). Returns the blocked bytes as a flat uint8 tensor (out= may
        be any contiguous uint8 tensor of that many bytes)."""
        from . import _launch
        return _launch.mx_call(self, scales, out, group_ends, stream)


_lock = threading.Lock()
_contexts = {}          # config items → Context; never closed (launches may still be queued on them)
_config = {}            # the process configuration (configure())
_current = [None, None]  # the contexts of _config: [normal, strict]
_strict = threading.local()


def _context_for(strict_mode):
    ctx = _current[strict_mode]
    if ctx is None:
        with _lock:
            cfg = dict(_config, no_compile=True) if strict_mode else dict(_config)
            key = tuple(sorted(cfg.items()))
            ctx = _contexts.get(key)
            if ctx is None:
                ctx = _contexts[key] = Context(**cfg)
            _current[strict_mode] = ctx
    return ctx


def get_context():
    """The process context the torch ops launch through (made at first use from the MOEJIT_*
    environment and :func:`configure`; strict inside :func:`strict`)."""
    return _context_for(1 if getattr(_strict, "on", False) else 0)


def configure(**config):
    """Set the process configuration (the arguments of :class:`Context`) for the torch ops from
    now on, e.g. ``moejit.configure(cache_dir="/models/kernels", cache_mode="ro")``. Kernels already
    loaded are loaded again from the disk cache at their next use. Returns the new context."""
    global _config
    Context(**config).close()  # validate every argument before switching
    with _lock:
        _config = {k: v for k, v in config.items()}
        _current[0] = _current[1] = None
    return get_context()


@contextlib.contextmanager
def strict(enabled=True):
    """Strict mode for the calling thread: inside ``with moejit.strict():`` a kernel missing from
    the disk cache raises MoejitError (status MOEJIT_ERR_CACHE_MISS, naming the kernel) instead of
    compiling — for CUDA graph capture after :func:`prewarm`, or serving from a prewarmed cache.
    (MOEJIT_NO_COMPILE=1 makes the whole process strict.)"""
    prev = getattr(_strict, "on", False)
    _strict.on = bool(enabled)
    try:
        yield get_context()
    finally:
        _strict.on = prev


def stats():
    """Counters of the process context (see :meth:`Context.stats`)."""
    return get_context().stats()


def device_arch():
    """The arch NVRTC targets for the current CUDA device ("sm_90a")."""
    return get_context().device_arch()
