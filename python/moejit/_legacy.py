"""Compatibility shim for callers written against the 0.1 layouts (the peers' benchmark harness).

Before 0.2, moejit_align_outputs ended at workspace_bytes and moejit_align_args at out. Such
callers build ``moejit._AlignOutputs`` / ``moejit._AlignArgs`` positionally with those fields and
pass ``ctypes.byref(args)`` to ``moejit.library.moejit_align``. Here ``_AlignOutputs`` and
``_AlignArgs`` keep exactly the 0.1 fields, and ``library`` is the loaded CDLL with one method
replaced: its ``moejit_align`` copies 0.1-layout arguments into the 0.2 structs (zero reserved
words) before calling the library, so the library never reads past a Python object. Every other
attribute is the CDLL's. New code uses the torch ops or moejit._capi's structs.
"""

import ctypes

from . import _capi as C


class _AlignOutputs(ctypes.Structure):
    """moejit_align_outputs as of 0.1 (no trailing reserved words)."""
    _fields_ = [(name, typ) for name, typ in C.AlignOutputs._fields_ if name != "reserved"]


class _AlignArgs(ctypes.Structure):
    """moejit_align_args as of 0.1: ids, num_tokens, topk, out."""
    _fields_ = [("ids", ctypes.c_void_p), ("num_tokens", ctypes.c_int64), ("topk", ctypes.c_int32),
                ("out", _AlignOutputs)]


def _upgrade(args):
    """A byref to 0.2 moejit_align_args for a (byref to a) 0.1 _AlignArgs; anything else as is."""
    obj = getattr(args, "_obj", args)
    if isinstance(obj, ctypes._Pointer):
        obj = obj.contents
    if not isinstance(obj, _AlignArgs):
        return args, None
    o = obj.out
    new = C.AlignArgs(obj.ids, obj.num_tokens, obj.topk, 0,
                      C.AlignOutputs(*(getattr(o, name) for name, _ in _AlignOutputs._fields_)))
    return ctypes.byref(new), new  # keep `new` alive for the call


class _Library:
    """The libmoejit CDLL, whose moejit_align also takes 0.1-layout arguments (see module doc)."""

    def __init__(self, cdll):
        self._cdll = cdll

    def __getattr__(self, name):
        return getattr(self._cdll, name)

    def moejit_align(self, ctx, spec, args, stream):
        args, keep = _upgrade(args)
        status = self._cdll.moejit_align(ctx, spec, args, stream)
        del keep
        return status


library = _Library(C.lib)


def _check(status, ctx=None):
    """Raise MoejitError (MoejitValueError for bad arguments) for a failed status (0.1 helper)."""
    C.check(status)
