"""Argument checks shared by every entry point (torch ops, their fake implementations, Context,
the adapters). Each failure names the argument and the value: TypeError for a wrong type or dtype,
ValueError for a wrong value, shape, device, stride or range. Nothing here touches tensor data, so
the same checks run on fake tensors while torch.compile traces.
"""

import operator

INT32_MAX = 2**31 - 1


def integer(name, value, lo, hi):
    """`value` as an int in [lo, hi]: TypeError for a non-integer (bool and float included),
    ValueError out of range — never a silent wrap to a C type."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got the bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} = {v} is out of range [{lo}, {hi}]")
    return v


def flag(name, value):
    """A bool (or 0/1) as an int."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise TypeError(f"{name} must be a bool, got {value!r}")


def real(name, value):
    """A Python float (numpy scalars too); the library checks the range and says why."""
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a float, got {value!r} ({type(value).__name__})")
    return float(value)


def choice(name, value, table):
    """A name of `table` (a dict name → enum value) or one of its values; returns the name."""
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"{name} = {value!r} must be one of {', '.join(sorted(table))}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        for k, v in table.items():
            if v == value:
                return k
    raise ValueError(f"{name} = {value!r} must be one of {', '.join(sorted(table))}")


def _dtype_names(dtypes):
    return " or ".join(str(d).replace("torch.", "") for d in dtypes)


def tensor(name, t, dtypes, ndim, device=None, anchor="", shape=None):
    """A CUDA tensor of one of `dtypes`, `ndim` dimensions, on `device` (when given; `anchor` names
    the argument that set it), of `shape` when given (None entries are free). Returns t."""
    import torch
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name} has dtype {t.dtype}, expected {_dtype_names(dtypes)}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.device.type != "cuda" and t.device.type != "meta":
        raise ValueError(f"{name} is on {t.device}; moejit runs on CUDA tensors")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} (the device of {anchor})")
    if shape is not None:
        for i, (got, want) in enumerate(zip(t.shape, shape)):
            if want is not None and got != want:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected "
                                 f"{tuple('*' if w is None else w for w in shape)} (dimension {i})")
    return t


def contiguous(name, t):
    """Row-major contiguous (what the library writes and reads without strides)."""
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous, got shape {tuple(t.shape)} strides {t.stride()}")
    return t


def at_least(name, t, numel, why):
    """A contiguous 1-D buffer of at least `numel` elements."""
    if t.numel() < numel:
        raise ValueError(f"{name} has {t.numel()} elements, needs at least {numel} ({why})")
    return t


def rows(name, t, row_elems):
    """A 2-D tensor whose rows are contiguous and at least `row_elems` elements apart; returns the
    row stride in elements to pass to the library (which reads 0 as "packed")."""
    if t.shape[1] > 1 and t.stride(1) != 1:
        raise ValueError(f"{name} must have contiguous rows (stride 1 along the last dimension), got strides {t.stride()}")
    if t.shape[0] <= 1:
        return row_elems
    if t.stride(0) < row_elems:
        raise ValueError(f"{name} rows are {t.stride(0)} elements apart, fewer than a row of {row_elems} "
                         f"(strides {t.stride()}); pass .contiguous()")
    return t.stride(0)


def same_device(device, anchor, **tensors):
    """Every non-None tensor on `device`."""
    for name, t in tensors.items():
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device}, expected {device} (the device of {anchor})")


def aligned(name, t, alignment):
    """data_ptr() a multiple of `alignment` bytes (real tensors only)."""
    if t.data_ptr() % alignment:
        raise ValueError(f"{name} must be {alignment}-byte aligned, its data is at {t.data_ptr():#x} "
                         f"(a slice of another tensor?); pass .contiguous() or a fresh tensor")
