"""moejit from Python: shape-specialised, JIT-compiled MoE routing kernels for PyTorch engines.

    import torch, moejit
    spec = moejit.RouteSpec.preset("deepseek-v3", dtype=torch.bfloat16)
    ids, weights = moejit.route(router_logits, spec, bias=e_score_correction_bias)
    maps = moejit.align(ids, spec.num_experts, block_size=64)
    x_sorted = moejit.permute(hidden_states, maps.sorted_ids, spec.topk)
    ...
    out = moejit.combine(expert_out, maps.slot_of, weights)

Serving: moejit.route(..., num_valid=, logical_to_physical=, replica_count=, num_physical_experts=,
expert_load=, record=, logical_ids=, ids_dtype=) (padded batches, EPLB placement, load counters,
routing replay, int64/int16 ids); moejit.align(..., expert_map=, first_expert=) for expert
parallelism; moejit.dispatch_layout(ids, E, ranks) for the all-to-all (DeepEP's layout).

The operations are PyTorch operators (torch.ops.moejit.*, moejit.ops) with fake implementations:
they compile with torch.compile(fullgraph=True) and capture in CUDA graphs. permute, combine and
route (where the library has route_backward: moejit.has_route_backward()) are differentiable
(training), through moejit.permute_backward, combine_backward and route_backward;
moejit.route_with_losses adds Megatron-Core's load-balancing, per-sequence and z losses, computed in
route's own pass and differentiable. Adapters with the
engines' own signatures: moejit.compat.vllm, moejit.compat.sglang.

Without torch (or with a torch older than 2.4) the ctypes layer still works: specs, presets,
kernel names, source, prewarm, contexts and counters. The library is found through
$MOEJIT_LIBRARY, else the copy installed in this package, else a source checkout's build/, else
the dynamic loader.
"""

import os as _os
import warnings as _warnings

from . import _capi
from ._capi import (DTYPES, GROUP_SCORES, INDEX_DTYPES, LOAD_COUNTERS, REPLAYS, SCORES, MoejitError, MoejitValueError,
                    library_path)
from ._header import version_from_header as _version_from_header, version_tuple as _version_tuple
from ._legacy import _AlignArgs, _AlignOutputs, _check, library
from .core import (Context, Kernel, PrewarmResult, RouteSpec, align_capacity, align_workspace_bytes, capacity_of,
                   configure, device_arch, get_context, has_route_backward, kernel_name, mx_scales_blocked_bytes, preset_names,
                   prewarm, route_align_capacity, route_align_fused_tokens, source, stats, strict)


def _package_version():
    try:
        from ._version import __version__ as v  # written by setup.py from include/moejit.h
        return v
    except ImportError:
        header = _os.path.join(_os.path.dirname(__file__), "..", "..", "include", "moejit.h")
        return _version_from_header(header) if _os.path.exists(header) else _capi.library_version


__version__ = _package_version()
if __version__ != _capi.library_version:
    if _version_tuple(__version__)[:2] != _version_tuple(_capi.library_version)[:2]:
        raise ImportError(f"moejit {__version__} cannot use {library_path}, version {_capi.library_version} "
                          f"(the ABI changes between minor versions before 1.0)")
    _warnings.warn(f"moejit {__version__} runs with library {library_path} version {_capi.library_version}",
                   RuntimeWarning, stacklevel=2)

TORCH_MIN = (2, 4)


def _torch_status():
    """(ok, reason): whether the torch ops are available here."""
    try:
        import torch
    except ImportError as e:
        return False, f"torch is not installed ({e})"
    version = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2] if x.isdigit())
    if version < TORCH_MIN or not all(hasattr(torch.library, n) for n in ("custom_op", "register_fake", "opcheck")):
        return False, (f"torch {torch.__version__} is older than {TORCH_MIN[0]}.{TORCH_MIN[1]} "
                       f"(moejit's ops need torch.library.custom_op and register_fake)")
    return True, ""


TORCH_OPS, TORCH_UNAVAILABLE = _torch_status()
_TORCH_NAMES = ("route", "align", "route_align", "dispatch_layout", "permute", "combine", "mx_scales",
                "mx_scales_inverse", "permute_backward", "combine_backward", "route_backward", "route_with_losses",
                "RouteWithLosses", "capacity", "AlignResult",
                "RouteAlignResult", "DispatchLayout", "AlignMaps", "ops", "compat")
if TORCH_OPS:
    from . import ops  # registers torch.ops.moejit.*
    from ._launch import AlignMaps
    from .functional import (AlignResult, DispatchLayout, RouteAlignResult, align, combine, combine_backward,
                             dispatch_layout, mx_scales, mx_scales_inverse, permute, permute_backward, route,
                             route_align, route_backward, route_with_losses, RouteWithLosses, capacity)
    from . import compat


def __getattr__(name):
    if name in _TORCH_NAMES:
        raise AttributeError(f"moejit.{name} needs torch >= {TORCH_MIN[0]}.{TORCH_MIN[1]}: {TORCH_UNAVAILABLE}")
    raise AttributeError(f"module 'moejit' has no attribute {name!r}")
