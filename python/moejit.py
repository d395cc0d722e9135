"""moejit from Python: route torch tensors with shape-specialised, JIT-compiled CUDA kernels.

A thin ctypes layer over libmoejit.so (no build step, no torch extension). Kernels run on the
current torch CUDA stream, so calls are ordered with your other work and capturable in CUDA graphs.

    import torch, moejit
    ctx = moejit.Context()                                   # cache dir etc. from MOEJIT_* env vars
    spec = moejit.RouteSpec.preset("deepseek-v3", dtype=torch.float32)
    ids, weights = ctx.route(spec, logits, bias=correction_bias)   # logits [T, E] on the GPU

The library is found through $MOEJIT_LIBRARY, else next to this file (../build/libmoejit.so of a
source checkout), else by the dynamic loader (an installed libmoejit.so.0).
"""

import ctypes
import os

__all__ = ["Context", "RouteSpec", "AlignMaps", "MoejitError", "preset_names", "library"]

# moejit.h enums
DTYPES = {"f32": 0, "bf16": 1, "f16": 2}
SCORES = {"softmax": 0, "sigmoid": 1, "sqrt_softplus": 2}
GROUP_SCORES = {"max": 0, "top2_sum": 1}
CACHE_MODES = {None: 0, "rw": 1, "ro": 2, "off": 3}


def _load_library():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("MOEJIT_LIBRARY"),
                  os.path.join(here, "..", "build", "libmoejit.so"),
                  os.path.join(here, "libmoejit.so"),
                  "libmoejit.so.0"]
    errors = []
    for path in candidates:
        if not path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise OSError("libmoejit not found; set MOEJIT_LIBRARY to the library file. Tried:\n  " + "\n  ".join(errors))


class _RouteSpec(ctypes.Structure):
    _fields_ = [("num_experts", ctypes.c_int32), ("topk", ctypes.c_int32), ("score", ctypes.c_int),
                ("dtype", ctypes.c_int), ("num_groups", ctypes.c_int32), ("topk_groups", ctypes.c_int32),
                ("group_score", ctypes.c_int), ("has_bias", ctypes.c_int32), ("softcap", ctypes.c_float),
                ("score_after_topk", ctypes.c_int32), ("renormalize", ctypes.c_int32),
                ("scale_output", ctypes.c_int32), ("routed_scaling_factor", ctypes.c_float),
                ("shared_slots", ctypes.c_int32), ("reserved", ctypes.c_uint32 * 18)]


class _RouteArgs(ctypes.Structure):
    _fields_ = [("logits", ctypes.c_void_p), ("bias", ctypes.c_void_p), ("ids", ctypes.c_void_p),
                ("weights", ctypes.c_void_p), ("num_tokens", ctypes.c_int64), ("row_stride", ctypes.c_int64),
                ("reserved", ctypes.c_uint64 * 10)]


class _RouteAlignSpec(ctypes.Structure):
    _fields_ = [("route", _RouteSpec), ("block_size", ctypes.c_int32), ("reserved", ctypes.c_uint32 * 7)]


class _KernelDescBody(ctypes.Union):
    # moejit_kernel_desc's union: route is the member used here; route_align gives the union the
    # size of its largest member, as in C. test_spec checks every size.
    _fields_ = [("route", _RouteSpec), ("route_align", _RouteAlignSpec)]


class _KernelDesc(ctypes.Structure):
    _anonymous_ = ("body",)
    _fields_ = [("op", ctypes.c_int), ("reserved", ctypes.c_uint32), ("body", _KernelDescBody)]


class _Config(ctypes.Structure):
    _fields_ = [("cache_dir", ctypes.c_char_p), ("cache_mode", ctypes.c_int), ("no_compile", ctypes.c_int),
                ("always_compile", ctypes.c_int), ("dump_dir", ctypes.c_char_p),
                ("extra_nvrtc_flags", ctypes.c_char_p), ("log_level", ctypes.c_int), ("device", ctypes.c_int),
                ("compile_jobs", ctypes.c_int), ("cache_max_bytes", ctypes.c_uint64),
                ("cache_lock_timeout_ms", ctypes.c_int), ("reserved", ctypes.c_uint64 * 8)]


class _Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("kernels", "compiles", "disk_hits", "disk_misses", "disk_writes", "bad_entries", "launches",
                 "build_waits", "lock_waits", "lock_timeouts", "lock_failures", "disk_write_errors", "temps_swept")] + [
                ("reserved", ctypes.c_uint64 * 8)]


class _AlignSpec(ctypes.Structure):
    _fields_ = [("num_experts", ctypes.c_int32), ("block_size", ctypes.c_int32), ("reserved", ctypes.c_uint32 * 6)]


class _AlignOutputs(ctypes.Structure):
    _fields_ = [("counts", ctypes.c_void_p), ("offsets", ctypes.c_void_p), ("sorted_ids", ctypes.c_void_p),
                ("sorted_capacity", ctypes.c_int64), ("block_expert", ctypes.c_void_p),
                ("total_padded", ctypes.c_void_p), ("slot_of", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
                ("workspace_bytes", ctypes.c_size_t), ("reserved", ctypes.c_uint64 * 7)]


class _AlignArgs(ctypes.Structure):
    _fields_ = [("ids", ctypes.c_void_p), ("num_tokens", ctypes.c_int64), ("topk", ctypes.c_int32),
                ("reserved0", ctypes.c_uint32), ("out", _AlignOutputs), ("reserved", ctypes.c_uint64 * 6)]


class _MxSpec(ctypes.Structure):
    _fields_ = [("cols", ctypes.c_int32), ("reserved", ctypes.c_uint32 * 7)]


class _MxArgs(ctypes.Structure):
    _fields_ = [("layout", ctypes.c_int), ("input", ctypes.c_void_p), ("output", ctypes.c_void_p),
                ("groups", ctypes.c_int64), ("rows", ctypes.c_int64), ("group_ends", ctypes.c_void_p),
                ("row_stride", ctypes.c_int64), ("group_stride", ctypes.c_int64), ("reserved", ctypes.c_uint64 * 8)]


library = _load_library()
library.moejit_status_str.restype = ctypes.c_char_p
library.moejit_last_error.restype = ctypes.c_char_p
library.moejit_last_error.argtypes = [ctypes.c_void_p]
library.moejit_ctx_cache_dir.restype = ctypes.c_char_p
library.moejit_ctx_cache_dir.argtypes = [ctypes.c_void_p]
library.moejit_route_preset_name.restype = ctypes.c_char_p
library.moejit_route_preset_name.argtypes = [ctypes.c_size_t]
library.moejit_open.argtypes = [ctypes.POINTER(_Config), ctypes.POINTER(ctypes.c_void_p)]
library.moejit_close.argtypes = [ctypes.c_void_p]
library.moejit_route.argtypes = [ctypes.c_void_p, ctypes.POINTER(_RouteSpec), ctypes.POINTER(_RouteArgs),
                                 ctypes.c_void_p]
library.moejit_route_preset.argtypes = [ctypes.c_char_p, ctypes.POINTER(_RouteSpec)]
library.moejit_ctx_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Stats)]
library.moejit_kernel_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
library.moejit_align.argtypes = [ctypes.c_void_p, ctypes.POINTER(_AlignSpec), ctypes.POINTER(_AlignArgs), ctypes.c_void_p]
library.moejit_align_capacity.argtypes = [ctypes.POINTER(_AlignSpec), ctypes.c_int64, ctypes.c_int32,
                                          ctypes.POINTER(ctypes.c_int64)]
library.moejit_align_workspace_bytes.argtypes = [ctypes.POINTER(_AlignSpec), ctypes.c_int64, ctypes.c_int32,
                                                 ctypes.POINTER(ctypes.c_size_t)]
library.moejit_mx_scales.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MxSpec), ctypes.POINTER(_MxArgs), ctypes.c_void_p]
library.moejit_mx_scales_blocked_bytes.argtypes = [ctypes.POINTER(_MxSpec), ctypes.c_int, ctypes.c_int64,
                                                   ctypes.c_int64, ctypes.POINTER(ctypes.c_size_t)]


class MoejitError(RuntimeError):
    """A moejit call failed: .status is the moejit_status name, the message its detail."""

    def __init__(self, status, detail):
        self.status = library.moejit_status_str(status).decode()
        super().__init__(f"{self.status}: {detail}")


def _check(status, ctx=None):
    if status != 0:
        raise MoejitError(status, library.moejit_last_error(ctx).decode(errors="replace"))


def preset_names():
    """Names of the built-in model presets."""
    names, i = [], 0
    while (name := library.moejit_route_preset_name(i)) is not None:
        names.append(name.decode())
        i += 1
    return names


def _dtype_name(dtype):
    """'f32' / 'bf16' / 'f16' from a name or a torch dtype."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype = {dtype!r} must be one of {sorted(DTYPES)}")
        return dtype
    import torch
    names = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
    if dtype not in names:
        raise ValueError(f"dtype = {dtype} is not float32, bfloat16 or float16")
    return names[dtype]


class RouteSpec:
    """A routing shape (moejit_route_spec). Keyword arguments mirror the C fields; enums by name."""

    def __init__(self, num_experts, topk, score="softmax", dtype="f32", num_groups=0, topk_groups=0,
                 group_score="max", has_bias=False, softcap=0.0, score_after_topk=False, renormalize=False,
                 scale_output=False, routed_scaling_factor=0.0, shared_slots=0):
        for name, table, value in (("score", SCORES, score), ("group_score", GROUP_SCORES, group_score)):
            if value not in table:
                raise ValueError(f"{name} = {value!r} must be one of {sorted(table)}")
        self._c = _RouteSpec(num_experts, topk, SCORES[score], DTYPES[_dtype_name(dtype)], num_groups, topk_groups,
                             GROUP_SCORES[group_score], int(has_bias), softcap, int(score_after_topk),
                             int(renormalize), int(scale_output), routed_scaling_factor, shared_slots)

    @classmethod
    def preset(cls, model, dtype="bf16"):
        """A built-in model preset (see preset_names()) with the given logits dtype."""
        spec = cls.__new__(cls)
        spec._c = _RouteSpec()
        _check(library.moejit_route_preset(model.encode(), ctypes.byref(spec._c)))
        spec._c.dtype = DTYPES[_dtype_name(dtype)]
        return spec

    def __getattr__(self, name):
        return getattr(self._c, name)

    @property
    def outputs(self):
        """Slots per token: K routed + S shared."""
        return self._c.topk + self._c.shared_slots

    @property
    def kernel_name(self):
        buf = ctypes.create_string_buffer(128)
        desc = _KernelDesc(op=1, route=self._c)  # MOEJIT_OP_ROUTE
        _check(library.moejit_kernel_name(ctypes.byref(desc), buf, len(buf)))
        return buf.value.decode()


class Context:
    """A moejit context (moejit_ctx): kernels, caches and counters. Create one and reuse it."""

    def __init__(self, cache_dir=None, cache_mode=None, no_compile=False, always_compile=False, device=0):
        if cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode = {cache_mode!r} must be one of rw, ro, off or None (environment)")
        self._cfg = _Config(cache_dir.encode() if cache_dir else None, CACHE_MODES[cache_mode], int(no_compile),
                            int(always_compile), None, None, 0, device, 0)
        self._ctx = ctypes.c_void_p()
        _check(library.moejit_open(ctypes.byref(self._cfg), ctypes.byref(self._ctx)))

    def close(self):
        if self._ctx:
            library.moejit_close(self._ctx)
            self._ctx = ctypes.c_void_p()

    def __del__(self):
        self.close()

    @property
    def cache_dir(self):
        return library.moejit_ctx_cache_dir(self._ctx).decode()

    def stats(self):
        s = _Stats()
        _check(library.moejit_ctx_stats(self._ctx, ctypes.byref(s)), self._ctx)
        return {name: getattr(s, name) for name, _ in _Stats._fields_}

    def route(self, spec, logits, bias=None, out=None, stream=None):
        """Route `logits` [T, E] (rows may be strided) on the current torch stream (or `stream`, a
        torch.cuda.Stream or a raw CUstream int). Returns (ids int32 [T, K+S], weights f32 [T, K+S]);
        `out` = (ids, weights) reuses preallocated contiguous tensors (needed inside CUDA graphs)."""
        import torch
        if logits.dim() != 2 or logits.stride(1) != 1:
            raise ValueError(f"logits must be 2-D with contiguous rows, got shape {tuple(logits.shape)} "
                             f"strides {logits.stride()}")
        if _dtype_name(logits.dtype) != {v: k for k, v in DTYPES.items()}[spec.dtype]:
            raise ValueError(f"logits dtype {logits.dtype} does not match the spec's dtype")
        T = logits.shape[0]
        if out is None:
            ids = torch.empty((T, spec.outputs), dtype=torch.int32, device=logits.device)
            weights = torch.empty((T, spec.outputs), dtype=torch.float32, device=logits.device)
        else:
            ids, weights = out
        if bias is not None and bias.dtype != torch.float32:
            raise ValueError(f"bias must be float32, got {bias.dtype}")
        args = _RouteArgs(logits.data_ptr(), bias.data_ptr() if bias is not None else None, ids.data_ptr(),
                          weights.data_ptr(), T, logits.stride(0))
        if stream is None:
            stream = torch.cuda.current_stream(logits.device).cuda_stream
        elif hasattr(stream, "cuda_stream"):
            stream = stream.cuda_stream
        _check(library.moejit_route(self._ctx, ctypes.byref(spec._c), ctypes.byref(args), stream), self._ctx)
        return ids, weights


class AlignMaps:
    """Preallocated outputs of Context.align for T tokens of K ids (reuse them across calls and in
    CUDA graphs): counts [E], offsets [E+1], sorted_ids [capacity], block_expert [capacity/B],
    total_padded [1], slot_of [T, K] (int32), and the workspace large batches need."""

    def __init__(self, num_experts, block_size, num_tokens, topk, device="cuda"):
        import torch
        self._spec = _AlignSpec(num_experts, block_size)
        cap, ws = ctypes.c_int64(), ctypes.c_size_t()
        _check(library.moejit_align_capacity(ctypes.byref(self._spec), num_tokens, topk, ctypes.byref(cap)))
        _check(library.moejit_align_workspace_bytes(ctypes.byref(self._spec), num_tokens, topk, ctypes.byref(ws)))
        self.num_tokens, self.topk, self.capacity = num_tokens, topk, cap.value
        i32 = dict(dtype=torch.int32, device=device)
        self.counts = torch.empty(num_experts, **i32)
        self.offsets = torch.empty(num_experts + 1, **i32)
        self.sorted_ids = torch.empty(max(cap.value, 1), **i32)
        self.block_expert = torch.empty(max(cap.value // block_size, 1), **i32)
        self.total_padded = torch.empty(1, **i32)
        self.slot_of = torch.empty((num_tokens, topk), **i32)
        self.workspace = torch.empty(max(ws.value, 1), dtype=torch.uint8, device=device)
        self._ws_bytes = ws.value

    def _outputs(self):
        return _AlignOutputs(self.counts.data_ptr(), self.offsets.data_ptr(), self.sorted_ids.data_ptr(),
                             self.capacity, self.block_expert.data_ptr(), self.total_padded.data_ptr(),
                             self.slot_of.data_ptr(), self.workspace.data_ptr(), self._ws_bytes)


def _stream_of(stream, device):
    import torch
    if stream is None:
        return torch.cuda.current_stream(device).cuda_stream
    return stream.cuda_stream if hasattr(stream, "cuda_stream") else stream


def _align(self, maps, topk_ids, stream=None):
    """Dispatch maps of topk_ids [T, K] int32 (ids outside [0, E) are dropped) into `maps` (an
    AlignMaps of the same T and K) on the current torch stream. Returns maps."""
    if tuple(topk_ids.shape) != (maps.num_tokens, maps.topk) or not topk_ids.is_contiguous():
        raise ValueError(f"topk_ids must be contiguous [{maps.num_tokens}, {maps.topk}], got {tuple(topk_ids.shape)}")
    args = _AlignArgs(topk_ids.data_ptr(), maps.num_tokens, maps.topk, 0, maps._outputs())
    _check(library.moejit_align(self._ctx, ctypes.byref(maps._spec), ctypes.byref(args),
                                _stream_of(stream, topk_ids.device)), self._ctx)
    return maps


def _mx_scales(self, scales, out=None, group_ends=None, stream=None):
    """e8m0 scales (uint8) to the blocked 128x4 layout: [G, R, C] per group (3D), or [M, C] with
    group_ends (int32 [G] on the GPU) for row groups (2D). Returns the blocked bytes (uint8)."""
    import torch
    layout = 0 if group_ends is None else 1
    cols = scales.shape[-1]
    groups = scales.shape[0] if layout == 0 else group_ends.shape[0]
    rows = scales.shape[1] if layout == 0 else scales.shape[0]
    spec = _MxSpec(cols)
    if out is None:
        n = ctypes.c_size_t()
        _check(library.moejit_mx_scales_blocked_bytes(ctypes.byref(spec), layout, groups, rows, ctypes.byref(n)))
        out = torch.empty(n.value, dtype=torch.uint8, device=scales.device)
    args = _MxArgs(layout, scales.data_ptr(), out.data_ptr(), groups, rows,
                   group_ends.data_ptr() if group_ends is not None else None, scales.stride(-2), 0)
    _check(library.moejit_mx_scales(self._ctx, ctypes.byref(spec), ctypes.byref(args),
                                    _stream_of(stream, scales.device)), self._ctx)
    return out


Context.align = _align
Context.mx_scales = _mx_scales
