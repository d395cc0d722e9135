"""pytest set-up for moejit's Python suites.

- Imports the package from this checkout (python/moejit) unless MOEJIT_TEST_INSTALLED=1, which
  tests the installed one.
- Kernels go to $MOEJIT_CACHE_DIR, by default a per-user directory under $TMPDIR that survives
  runs (the first GPU run compiles every shape once; later runs load them).
- Modules that need torch >= 2.4 or a GPU skip themselves with the reason.
"""
import os
import sys
import tempfile

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


def pytest_report_header(config):
    torch_line = "torch ops: " + ("yes" if moejit.TORCH_OPS else f"no ({moejit.TORCH_UNAVAILABLE})")
    return [f"moejit {moejit.__version__} from {os.path.dirname(moejit.__file__)}, library {moejit.library_path}",
            torch_line + f"; GPU: {'yes' if GPU else NO_GPU}; cache {os.environ['MOEJIT_CACHE_DIR']}"]
