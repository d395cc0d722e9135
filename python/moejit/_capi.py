"""The one binding of the C API (include/moejit.h, 0.2): ctypes mirrors of every public struct and
enum, the prototypes of every public function, the library loader and the status → exception map.

Nothing else in the package declares a struct layout. tests/abi_dump.c prints the layout the C
compiler gives moejit.h and python/tests/test_abi.py compares it with the mirrors below, field by
field (names, offsets, sizes) and enum by enum.

Needs no torch and no GPU.
"""

import ctypes
import os

from ._header import version_tuple

# -------------------------------------------------------------------------------------------------
# The library: $MOEJIT_LIBRARY, else the copy shipped in this package, else a source checkout's
# build/, else the dynamic loader (an installed libmoejit.so.0).
# -------------------------------------------------------------------------------------------------
_HERE = os.path.dirname(os.path.abspath(__file__))


def library_candidates():
    """Paths tried, in order, to load libmoejit (the first that loads wins)."""
    return [p for p in (os.environ.get("MOEJIT_LIBRARY"),
                        os.path.join(_HERE, "libmoejit.so"),
                        os.path.join(_HERE, "..", "..", "build", "libmoejit.so"),
                        "libmoejit.so.0") if p]


def _load():
    errors = []
    for path in library_candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: no such file")
            if path == os.environ.get("MOEJIT_LIBRARY"):
                break  # an explicit choice that does not exist is an error, not a fallback
            continue
        try:
            return ctypes.CDLL(path), os.path.realpath(path) if os.sep in path else path
        except OSError as e:
            errors.append(f"{path}: {e}")
            if path == os.environ.get("MOEJIT_LIBRARY"):
                break
    raise ImportError("moejit: libmoejit could not be loaded (set MOEJIT_LIBRARY to the library file). Tried:\n  "
                      + "\n  ".join(errors))


lib, library_path = _load()

# -------------------------------------------------------------------------------------------------
# Enums (moejit.h). Short names as the command line and the manifests spell them; c_enums() gives
# the C names for the ABI check.
# -------------------------------------------------------------------------------------------------
STATUS = {"MOEJIT_OK": 0, "MOEJIT_ERR_INVALID_ARGUMENT": 1, "MOEJIT_ERR_INVALID_SPEC": 2,
          "MOEJIT_ERR_UNSUPPORTED": 3, "MOEJIT_ERR_OUT_OF_MEMORY": 4, "MOEJIT_ERR_NO_NVRTC": 5,
          "MOEJIT_ERR_COMPILE": 6, "MOEJIT_ERR_NO_DRIVER": 7, "MOEJIT_ERR_NO_DEVICE": 8, "MOEJIT_ERR_CUDA": 9,
          "MOEJIT_ERR_CACHE_MISS": 10, "MOEJIT_ERR_IO": 11, "MOEJIT_ERR_NOT_FOUND": 12, "MOEJIT_ERR_CORRUPT": 13,
          "MOEJIT_ERR_AMBIGUOUS": 14}
DTYPES = {"f32": 0, "bf16": 1, "f16": 2}
SCORES = {"softmax": 0, "sigmoid": 1, "sqrt_softplus": 2}
GROUP_SCORES = {"max": 0, "top2_sum": 1}
CACHE_MODES = {"from_env": 0, "rw": 1, "ro": 2, "off": 3}
LOG_LEVELS = {"from_env": 0, "silent": 1, "warn": 2, "info": 3, "debug": 4}
MX_LAYOUTS = {"3d": 0, "2d_groups": 1, "2d_k_groups": 2}
INDEX_DTYPES = {"int32": 0, "int64": 1, "int16": 2}
REPLAYS = {"off": 0, "record": 1, "given": 2}
LOAD_COUNTERS = {"none": 0, "int32": 1, "int64": 2}
OPS = {"route": 1, "align": 2, "route_align": 3, "mx_scales": 4, "dispatch_layout": 5, "permute": 10, "combine": 11,
       "permute_backward": 12, "combine_backward": 13, "route_backward": 14, "capacity": 15,
       "route_losses": 16}
DROP_POLICIES = {"probs": 0, "position": 1}
PREWARM_OUTCOMES = {"failed": 0, "compiled": 1, "cached": 2, "not_stored": 3}
# Flags of moejit_route_spec.aux_stats (#defines, MOEJIT_AUX_*); the command line and the manifests
# spell them lb, seq, z (AUX_STAT_NAMES), joined by commas.
AUX_STATS = {"load_balance": 1, "seq_load_balance": 2, "z_loss": 4}
AUX_STAT_NAMES = {"lb": 1, "seq": 2, "z": 4}

_ENUM_PREFIXES = ((DTYPES, "MOEJIT_DTYPE_"), (SCORES, "MOEJIT_SCORE_"), (GROUP_SCORES, "MOEJIT_GROUP_SCORE_"),
                  (CACHE_MODES, "MOEJIT_CACHE_"), (LOG_LEVELS, "MOEJIT_LOG_"), (MX_LAYOUTS, "MOEJIT_MX_"),
                  (INDEX_DTYPES, "MOEJIT_INDEX_"), (REPLAYS, "MOEJIT_REPLAY_"), (LOAD_COUNTERS, "MOEJIT_LOAD_"),
                  (OPS, "MOEJIT_OP_"), (PREWARM_OUTCOMES, "MOEJIT_PREWARM_"), (DROP_POLICIES, "MOEJIT_DROP_"),
                  (AUX_STATS, "MOEJIT_AUX_"))

# Limits of this build (moejit.h "Limits of this build" and the op sections).
LIMITS = {"MOEJIT_MAX_EXPERTS": 4096, "MOEJIT_MAX_TOPK": 64, "MOEJIT_MAX_ALIGN_EXPERTS": 4096,
          "MOEJIT_ALIGN_MIN_BLOCK": 1, "MOEJIT_ALIGN_MAX_BLOCK": 1024, "MOEJIT_MAX_MX_COLS": 65536,
          "MOEJIT_MAX_HIDDEN": 65536}


def c_enums():
    """Every enum constant of moejit.h by its C name, as this binding knows it."""
    out = dict(STATUS)
    for table, prefix in _ENUM_PREFIXES:
        out.update({prefix + name.upper(): value for name, value in table.items()})
    return out


# -------------------------------------------------------------------------------------------------
# Structs. Field names are moejit.h's (moejit_mx_scales_args' `in` included: read it with getattr).
# -------------------------------------------------------------------------------------------------
_i32, _u32, _i64, _u64, _f32, _ptr, _enum = (ctypes.c_int32, ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64,
                                               ctypes.c_float, ctypes.c_void_p, ctypes.c_int)


class Config(ctypes.Structure):
    _fields_ = [("cache_dir", ctypes.c_char_p), ("cache_mode", _enum), ("no_compile", ctypes.c_int),
                ("always_compile", ctypes.c_int), ("dump_dir", ctypes.c_char_p), ("extra_nvrtc_flags", ctypes.c_char_p),
                ("log_level", _enum), ("device", ctypes.c_int), ("compile_jobs", ctypes.c_int),
                ("cache_max_bytes", _u64), ("cache_lock_timeout_ms", ctypes.c_int), ("pdl", ctypes.c_int),
                ("reserved0", _u32), ("reserved", _u64 * 7)]


class RouteSpec(ctypes.Structure):
    _fields_ = [("num_experts", _i32), ("topk", _i32), ("score", _enum), ("dtype", _enum), ("num_groups", _i32),
                ("topk_groups", _i32), ("group_score", _enum), ("has_bias", _i32), ("softcap", _f32),
                ("score_after_topk", _i32), ("renormalize", _i32), ("scale_output", _i32),
                ("routed_scaling_factor", _f32), ("shared_slots", _i32), ("padded", _i32),
                ("id_dtype", _enum), ("max_replicas", _i32), ("num_physical_experts", _i32),
                ("load_counter", _enum), ("replay", _enum), ("logical_id_dtype", _enum), ("aux_stats", _u32),
                ("seq_offset_dtype", _enum), ("reserved", _u32 * 9)]


# Auxiliary-loss statistics (route step 13, route_losses, route_backward): device pointers.
class AuxStats(ctypes.Structure):
    _fields_ = [("prob_sums", _ptr), ("counts", _ptr), ("lse", _ptr), ("seq_offsets", _ptr), ("num_seqs", _i64),
                ("reserved", _u64 * 3)]


class RouteArgs(ctypes.Structure):
    _fields_ = [("logits", _ptr), ("bias", _ptr), ("ids", _ptr), ("weights", _ptr), ("num_tokens", _i64),
                ("row_stride", _i64), ("num_valid", _ptr), ("logical_to_physical", _ptr),
                ("replica_count", _ptr), ("expert_load", _ptr), ("logical_ids", _ptr), ("aux", ctypes.POINTER(AuxStats)),
                ("reserved", _u64 * 4)]


class AlignSpec(ctypes.Structure):
    _fields_ = [("num_experts", _i32), ("block_size", _i32), ("id_dtype", _enum), ("global_experts", _i32),
                ("expert_capacity", _i32), ("reserved", _u32 * 3)]


class AlignOutputs(ctypes.Structure):
    _fields_ = [("counts", _ptr), ("offsets", _ptr), ("sorted_ids", _ptr), ("sorted_capacity", _i64),
                ("block_expert", _ptr), ("total_padded", _ptr), ("slot_of", _ptr), ("workspace", _ptr),
                ("workspace_bytes", ctypes.c_size_t), ("reserved", _u64 * 7)]


class AlignArgs(ctypes.Structure):
    _fields_ = [("ids", _ptr), ("num_tokens", _i64), ("topk", _i32), ("first_expert", _i32), ("out", AlignOutputs),
                ("expert_map", _ptr), ("reserved", _u64 * 5)]


class RouteAlignSpec(ctypes.Structure):
    _fields_ = [("route", RouteSpec), ("block_size", _i32), ("reserved", _u32 * 7)]


class RouteAlignArgs(ctypes.Structure):
    _fields_ = [("route", RouteArgs), ("align", AlignOutputs), ("reserved", _u64 * 4)]


class MxScalesSpec(ctypes.Structure):
    _fields_ = [("cols", _i32), ("reserved", _u32 * 7)]


class MxScalesArgs(ctypes.Structure):
    _fields_ = [("layout", _enum), ("in", _ptr), ("out", _ptr), ("groups", _i64), ("rows", _i64),
                ("group_ends", _ptr), ("row_stride", _i64), ("group_stride", _i64), ("reserved", _u64 * 8)]


class DispatchLayoutSpec(ctypes.Structure):
    _fields_ = [("num_experts", _i32), ("num_ranks", _i32), ("topk", _i32), ("id_dtype", _enum),
                ("ranks_per_node", _i32), ("reserved", _u32 * 3)]


class DispatchLayoutArgs(ctypes.Structure):
    _fields_ = [("ids", _ptr), ("num_tokens", _i64), ("tokens_per_rank", _ptr), ("tokens_per_node", _ptr),
                ("tokens_per_expert", _ptr), ("is_token_in_rank", _ptr), ("reserved", _u64 * 8)]


class CapacitySpec(ctypes.Structure):
    _fields_ = [("num_experts", _i32), ("topk", _i32), ("shared_slots", _i32), ("id_dtype", _enum),
                ("policy", _enum), ("reserved", _u32 * 3)]


class CapacityArgs(ctypes.Structure):
    _fields_ = [("ids", _ptr), ("weights", _ptr), ("num_tokens", _i64), ("capacity_factor", ctypes.c_double),
                ("capacity", _i32), ("min_capacity", _i32), ("tokens_per_expert", _ptr), ("kept", _ptr),
                ("reserved", _u64 * 6)]


class PermuteSpec(ctypes.Structure):
    _fields_ = [("hidden", _i32), ("dtype", _enum), ("has_scale", _i32), ("reserved", _u32 * 5)]


class PermuteArgs(ctypes.Structure):
    _fields_ = [("x", _ptr), ("sorted_ids", _ptr), ("ids", _ptr), ("scale", _ptr), ("out", _ptr),
                ("num_tokens", _i64), ("topk", _i32), ("num_experts", _i32), ("num_rows", _i64),
                ("reserved", _u64 * 8)]


class CombineSpec(ctypes.Structure):
    _fields_ = [("hidden", _i32), ("dtype", _enum), ("reserved", _u32 * 6)]


class CombineArgs(ctypes.Structure):
    _fields_ = [("y", _ptr), ("slot_of", _ptr), ("weights", _ptr), ("out", _ptr), ("num_tokens", _i64),
                ("topk", _i32), ("reserved0", _u32), ("num_rows", _i64), ("reserved", _u64 * 9)]


class PermuteBackwardSpec(ctypes.Structure):
    _fields_ = [("hidden", _i32), ("dtype", _enum), ("has_scale", _i32), ("reserved", _u32 * 5)]


class PermuteBackwardArgs(ctypes.Structure):
    _fields_ = [("grad_out", _ptr), ("slot_of", _ptr), ("ids", _ptr), ("scale", _ptr), ("grad_x", _ptr),
                ("num_tokens", _i64), ("topk", _i32), ("num_experts", _i32), ("num_rows", _i64),
                ("reserved", _u64 * 8)]


class CombineBackwardSpec(ctypes.Structure):
    _fields_ = [("hidden", _i32), ("dtype", _enum), ("reserved", _u32 * 6)]


class CombineBackwardArgs(ctypes.Structure):
    _fields_ = [("grad_out", _ptr), ("y", _ptr), ("slot_of", _ptr), ("weights", _ptr), ("sorted_ids", _ptr),
                ("grad_y", _ptr), ("grad_weights", _ptr), ("num_tokens", _i64), ("topk", _i32), ("reserved0", _u32),
                ("num_rows", _i64), ("reserved", _u64 * 8)]


# route_backward (moejit.h Operation 1b): newer than some 0.2 libraries (see _NEWER below).
class RouteBackwardSpec(ctypes.Structure):
    _fields_ = [("route", RouteSpec), ("reserved", _u32 * 8)]


class RouteBackwardArgs(ctypes.Structure):
    _fields_ = [("logits", _ptr), ("ids", _ptr), ("grad_weights", _ptr), ("grad_logits", _ptr), ("num_tokens", _i64),
                ("row_stride", _i64), ("grad_losses", _ptr), ("aux", ctypes.POINTER(AuxStats)), ("reserved", _u64 * 6)]


# route_losses (moejit.h Operation 1c): newer than some 0.2 libraries (see _NEWER below).
class RouteLossesSpec(ctypes.Structure):
    _fields_ = [("num_experts", _i32), ("topk", _i32), ("aux_stats", _u32), ("seq_offset_dtype", _enum),
                ("reserved", _u32 * 4)]


class RouteLossesArgs(ctypes.Structure):
    _fields_ = [("aux", ctypes.POINTER(AuxStats)), ("losses", _ptr), ("num_tokens", _i64), ("reserved", _u64 * 5)]


class _KernelDescBody(ctypes.Union):
    _fields_ = [("route", RouteSpec), ("align", AlignSpec), ("route_align", RouteAlignSpec),
                ("mx_scales", MxScalesSpec), ("dispatch_layout", DispatchLayoutSpec), ("permute", PermuteSpec),
                ("combine", CombineSpec), ("permute_backward", PermuteBackwardSpec),
                ("combine_backward", CombineBackwardSpec), ("route_backward", RouteBackwardSpec),
                ("capacity", CapacitySpec), ("route_losses", RouteLossesSpec)]


class KernelDesc(ctypes.Structure):
    """moejit_kernel_desc; the C struct's anonymous union is the anonymous member `body`."""
    _anonymous_ = ("body",)
    _fields_ = [("op", _enum), ("reserved", _u32), ("body", _KernelDescBody)]


class PrewarmResult(ctypes.Structure):
    _fields_ = [("status", _enum), ("outcome", _enum), ("key", ctypes.c_char * 33), ("name", ctypes.c_char * 96),
                ("arch", ctypes.c_char * 24), ("seconds", ctypes.c_double), ("error", ctypes.c_char * 1024),
                ("reserved", _u64 * 8)]


_STATS_FIELDS = ("kernels", "compiles", "disk_hits", "disk_misses", "disk_writes", "bad_entries", "launches",
                 "build_waits", "lock_waits", "lock_timeouts", "lock_failures", "disk_write_errors", "temps_swept")


class Stats(ctypes.Structure):
    _fields_ = [(name, _u64) for name in _STATS_FIELDS] + [("reserved", _u64 * 8)]


# C name → mirror, for the ABI check.
STRUCTS = {"moejit_config": Config, "moejit_route_spec": RouteSpec, "moejit_route_args": RouteArgs,
           "moejit_align_spec": AlignSpec, "moejit_align_outputs": AlignOutputs, "moejit_align_args": AlignArgs,
           "moejit_route_align_spec": RouteAlignSpec, "moejit_route_align_args": RouteAlignArgs,
           "moejit_mx_scales_spec": MxScalesSpec, "moejit_mx_scales_args": MxScalesArgs,
           "moejit_dispatch_layout_spec": DispatchLayoutSpec, "moejit_dispatch_layout_args": DispatchLayoutArgs,
           "moejit_permute_spec": PermuteSpec, "moejit_permute_args": PermuteArgs,
           "moejit_combine_spec": CombineSpec, "moejit_combine_args": CombineArgs,
           "moejit_permute_backward_spec": PermuteBackwardSpec, "moejit_permute_backward_args": PermuteBackwardArgs,
           "moejit_combine_backward_spec": CombineBackwardSpec, "moejit_combine_backward_args": CombineBackwardArgs,
           "moejit_route_backward_spec": RouteBackwardSpec, "moejit_route_backward_args": RouteBackwardArgs,
           "moejit_capacity_spec": CapacitySpec, "moejit_capacity_args": CapacityArgs,
           "moejit_aux_stats": AuxStats, "moejit_route_losses_spec": RouteLossesSpec,
           "moejit_route_losses_args": RouteLossesArgs,
           "moejit_kernel_desc": KernelDesc, "moejit_prewarm_result": PrewarmResult, "moejit_stats": Stats}

# -------------------------------------------------------------------------------------------------
# Prototypes: every public function (stable and experimental sections, and the references).
# -------------------------------------------------------------------------------------------------
_P = ctypes.POINTER
PREWARM_FN = ctypes.CFUNCTYPE(None, _P(PrewarmResult), ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, _ptr)
_st = ctypes.c_int  # moejit_status
_PROTOTYPES = {
    "moejit_status_str": (ctypes.c_char_p, [_st]),
    "moejit_last_error": (ctypes.c_char_p, [_ptr]),
    "moejit_version_number": (ctypes.c_uint, []),
    "moejit_version_string": (ctypes.c_char_p, []),
    "moejit_open": (_st, [_P(Config), _P(_ptr)]),
    "moejit_close": (None, [_ptr]),
    "moejit_ctx_cache_dir": (ctypes.c_char_p, [_ptr]),
    "moejit_route": (_st, [_ptr, _P(RouteSpec), _P(RouteArgs), _ptr]),
    "moejit_route_preset": (_st, [ctypes.c_char_p, _P(RouteSpec)]),
    "moejit_route_preset_name": (ctypes.c_char_p, [ctypes.c_size_t]),
    "moejit_align": (_st, [_ptr, _P(AlignSpec), _P(AlignArgs), _ptr]),
    "moejit_align_capacity": (_st, [_P(AlignSpec), _i64, _i32, _P(_i64)]),
    "moejit_align_workspace_bytes": (_st, [_P(AlignSpec), _i64, _i32, _P(ctypes.c_size_t)]),
    "moejit_route_align": (_st, [_ptr, _P(RouteAlignSpec), _P(RouteAlignArgs), _ptr]),
    "moejit_route_align_capacity": (_st, [_P(RouteAlignSpec), _i64, _P(_i64)]),
    "moejit_route_align_workspace_bytes": (_st, [_P(RouteAlignSpec), _i64, _P(ctypes.c_size_t)]),
    "moejit_mx_scales": (_st, [_ptr, _P(MxScalesSpec), _P(MxScalesArgs), _ptr]),
    "moejit_mx_scales_inverse": (_st, [_ptr, _P(MxScalesSpec), _P(MxScalesArgs), _ptr]),
    "moejit_mx_scales_blocked_bytes": (_st, [_P(MxScalesSpec), _enum, _i64, _i64, _P(ctypes.c_size_t)]),
    "moejit_dispatch_layout": (_st, [_ptr, _P(DispatchLayoutSpec), _P(DispatchLayoutArgs), _ptr]),
    "moejit_permute": (_st, [_ptr, _P(PermuteSpec), _P(PermuteArgs), _ptr]),
    "moejit_combine": (_st, [_ptr, _P(CombineSpec), _P(CombineArgs), _ptr]),
    "moejit_permute_backward": (_st, [_ptr, _P(PermuteBackwardSpec), _P(PermuteBackwardArgs), _ptr]),
    "moejit_combine_backward": (_st, [_ptr, _P(CombineBackwardSpec), _P(CombineBackwardArgs), _ptr]),
    "moejit_route_backward": (_st, [_ptr, _P(RouteBackwardSpec), _P(RouteBackwardArgs), _ptr]),
    "moejit_capacity": (_st, [_ptr, _P(CapacitySpec), _P(CapacityArgs), _ptr]),
    "moejit_capacity_of": (_st, [_i64, _i32, _i32, ctypes.c_double, _i32, _P(_i32)]),
    "moejit_route_losses": (_st, [_ptr, _P(RouteLossesSpec), _P(RouteLossesArgs), _ptr]),
    "moejit_validate": (_st, [_P(KernelDesc)]),
    "moejit_source": (_st, [_ptr, _P(KernelDesc), _P(ctypes.c_void_p), _P(ctypes.c_size_t)]),
    "moejit_kernel_name": (_st, [_P(KernelDesc), ctypes.c_char_p, ctypes.c_size_t]),
    "moejit_free": (None, [_ptr]),
    "moejit_prewarm": (_st, [_ptr, _P(KernelDesc), ctypes.c_size_t, ctypes.c_char_p, _P(PrewarmResult)]),
    # experimental section
    "moejit_ctx_stats": (_st, [_ptr, _P(Stats)]),
    "moejit_ctx_device_arch": (_st, [_ptr, ctypes.c_char_p, ctypes.c_size_t]),
    "moejit_ctx_pdl": (_st, [_ptr, _P(ctypes.c_int), _P(ctypes.c_int)]),
    "moejit_prewarm_archs": (_st, [_ptr, _P(KernelDesc), ctypes.c_size_t, _P(ctypes.c_char_p), ctypes.c_size_t,
                                   _P(PrewarmResult), PREWARM_FN, _ptr]),
    "moejit_route_align_fused_tokens": (_st, [_P(RouteAlignSpec), _P(_i64)]),
    # references (moejit_reference.h): host pointers
    "moejit_route_reference": (_st, [_P(RouteSpec), _P(RouteArgs)]),
    "moejit_align_reference": (_st, [_P(AlignSpec), _P(AlignArgs)]),
    "moejit_route_align_reference": (_st, [_P(RouteAlignSpec), _P(RouteAlignArgs)]),
    "moejit_mx_scales_reference": (_st, [_P(MxScalesSpec), _P(MxScalesArgs)]),
    "moejit_mx_scales_inverse_reference": (_st, [_P(MxScalesSpec), _P(MxScalesArgs)]),
    "moejit_dispatch_layout_reference": (_st, [_P(DispatchLayoutSpec), _P(DispatchLayoutArgs)]),
    "moejit_permute_reference": (_st, [_P(PermuteSpec), _P(PermuteArgs)]),
    "moejit_combine_reference": (_st, [_P(CombineSpec), _P(CombineArgs)]),
    "moejit_permute_backward_reference": (_st, [_P(PermuteBackwardSpec), _P(PermuteBackwardArgs)]),
    "moejit_combine_backward_reference": (_st, [_P(CombineBackwardSpec), _P(CombineBackwardArgs)]),
    "moejit_route_backward_reference": (_st, [_P(RouteBackwardSpec), _P(RouteBackwardArgs)]),
    "moejit_capacity_reference": (_st, [_P(CapacitySpec), _P(CapacityArgs)]),
    "moejit_route_losses_reference": (_st, [_P(RouteLossesSpec), _P(RouteLossesArgs)]),
}
# Functions a library built from an older 0.2 tree may lack (added with issue 15's dispatch_layout,
# issue 17's programmatic dependent launch, issue 16's backward operations, capacity and auxiliary losses): the binding
# still
# loads; calling one raises NotImplementedError naming the library (has() tells beforehand).
_NEWER = frozenset(("moejit_dispatch_layout", "moejit_dispatch_layout_reference", "moejit_ctx_pdl",
                    "moejit_permute_backward", "moejit_combine_backward", "moejit_permute_backward_reference",
                    "moejit_combine_backward_reference", "moejit_route_backward", "moejit_route_backward_reference",
                    "moejit_capacity", "moejit_capacity_of", "moejit_capacity_reference",
                    "moejit_route_losses", "moejit_route_losses_reference"))
missing = []


class _Missing:
    """Stands for a function this library does not export."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise NotImplementedError(f"moejit: {library_path} has no {self.name} (a library older than this binding's "
                                  f"moejit.h; rebuild it, or set MOEJIT_LIBRARY to a current one)")


for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _fn = getattr(lib, _name)
    except AttributeError:
        if _name not in _NEWER:
            raise
        missing.append(_name)
        setattr(lib, _name, _Missing(_name))
        continue
    _fn.restype, _fn.argtypes = _res, _args


def has(name):
    """True when this library exports the function `name` (one of _NEWER may be missing)."""
    return name not in missing

# -------------------------------------------------------------------------------------------------
# Version: the binding mirrors moejit.h 0.2; a library of another minor version has another ABI.
# -------------------------------------------------------------------------------------------------
library_version = lib.moejit_version_string().decode()
ABI = (0, 2)
if version_tuple(library_version)[:2] != ABI:
    raise ImportError(f"moejit: {library_path} is version {library_version}; this binding mirrors the "
                      f"{ABI[0]}.{ABI[1]} ABI (set MOEJIT_LIBRARY to a {ABI[0]}.{ABI[1]}.x library)")


# -------------------------------------------------------------------------------------------------
# Statuses → exceptions
# -------------------------------------------------------------------------------------------------
class MoejitError(RuntimeError):
    """A moejit call failed at run time (driver, NVRTC, cache miss in strict mode, I/O…).

    Attributes:
        status (str): the moejit_status name, e.g. ``"MOEJIT_ERR_CACHE_MISS"``.
        code (int): its numeric value.
    The message is the library's detail (moejit_last_error()).
    """

    def __init__(self, status, detail):
        self.code = int(status)
        self.status = lib.moejit_status_str(self.code).decode()
        super().__init__(f"{self.status}: {detail}")


class MoejitValueError(MoejitError, ValueError):
    """The library rejected an argument or a spec (MOEJIT_ERR_INVALID_ARGUMENT, _INVALID_SPEC,
    _UNSUPPORTED): a ValueError naming the field and the value, and a MoejitError with .status."""


_VALUE_STATUSES = frozenset((STATUS["MOEJIT_ERR_INVALID_ARGUMENT"], STATUS["MOEJIT_ERR_INVALID_SPEC"],
                             STATUS["MOEJIT_ERR_UNSUPPORTED"]))


def check(status, what=None):
    """Raise the exception for a moejit_status (nothing for MOEJIT_OK). `what` prefixes the detail."""
    if status != 0:
        detail = lib.moejit_last_error(None).decode(errors="replace")
        if what:
            detail = f"{what}: {detail}"
        raise (MoejitValueError if status in _VALUE_STATUSES else MoejitError)(status, detail)
