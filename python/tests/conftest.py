"""pytest set-up for moejit's Python suites.

- Imports the package from this checkout (python/moejit) unless MOEJIT_TEST_INSTALLED=1, which
  tests the installed one.
- Kernels go to $MOEJIT_CACHE_DIR, by default a per-user directory under $TMPDIR that survives
  runs (the first GPU run compiles every shape once; later runs load them).
- Markers: needs_torch (torch >= 2.4 with torch.library.custom_op) and needs_gpu (also a CUDA
  device); without them the test is skipped with the reason.
"""
import os
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("MOEJIT_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("MOEJIT_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"moejit-pytest-cache-{os.getuid()}"))
os.environ.setdefault("MOEJIT_LOG", "silent")

import moejit  # noqa: E402


def _gpu_status():
    if not moejit.TORCH_OPS:
        return False, moejit.TORCH_UNAVAILABLE
    import torch
    if not torch.cuda.is_available():
        return False, "no CUDA device visible to torch"
    return True, ""


GPU, NO_GPU = _gpu_status()


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_torch: needs torch >= 2.4 (torch.library.custom_op)")
    config.addinivalue_line("markers", "needs_gpu: needs torch >= 2.4 and a CUDA device")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "needs_gpu" in item.keywords and not GPU:
            item.add_marker(pytest.mark.skip(reason=f"GPU test: {NO_GPU}"))
        elif "needs_torch" in item.keywords and not moejit.TORCH_OPS:
            item.add_marker(pytest.mark.skip(reason=f"torch test: {moejit.TORCH_UNAVAILABLE}"))


def pytest_report_header(config):
    torch_line = "torch ops: " + ("yes" if moejit.TORCH_OPS else f"no ({moejit.TORCH_UNAVAILABLE})")
    return [f"moejit {moejit.__version__} from {os.path.dirname(moejit.__file__)}, library {moejit.library_path}",
            torch_line + f"; GPU: {'yes' if GPU else NO_GPU}; cache {os.environ['MOEJIT_CACHE_DIR']}"]
