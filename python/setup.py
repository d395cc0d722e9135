"""Build of the moejit Python package: CMake builds libmoejit.so from the repository root (the
parent of this directory), which ships inside the package with _version.py (moejit.h's version).

Environment:
  MOEJIT_SOURCE_DIR        the repository root (default: the parent of this directory)
  MOEJIT_PREBUILT_LIBRARY  copy this libmoejit.so instead of building one
  MOEJIT_CMAKE_ARGS        extra CMake arguments (space separated)
  CMAKE_BUILD_PARALLEL_LEVEL  compile jobs (default: the number of CPUs)
"""
import importlib.util
import os
import shlex
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def _header_module():
    spec = importlib.util.spec_from_file_location("_moejit_header", os.path.join(HERE, "moejit", "_header.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def source_dir():
    root = os.path.abspath(os.environ.get("MOEJIT_SOURCE_DIR") or os.path.join(HERE, ".."))
    for need in ("CMakeLists.txt", os.path.join("include", "moejit.h")):
        if not os.path.exists(os.path.join(root, need)):
            raise SystemExit(f"moejit: {root} has no {need}: build the package from a checkout of the repository "
                             f"(pip install --no-build-isolation ./python), or set MOEJIT_SOURCE_DIR")
    return root


VERSION = _header_module().version_from_header(os.path.join(source_dir(), "include", "moejit.h"))


class BuildPy(build_py):
    """build_py, then libmoejit.so and _version.py into the built package."""

    def run(self):
        super().run()
        if self.dry_run:
            return
        dest = os.path.join(self.build_lib, "moejit")
        os.makedirs(dest, exist_ok=True)
        shutil.copyfile(self._library(), os.path.join(dest, "libmoejit.so"))
        with open(os.path.join(dest, "_version.py"), "w") as f:
            f.write(f'# written by setup.py from include/moejit.h\n__version__ = "{VERSION}"\n')

    def _library(self):
        prebuilt = os.environ.get("MOEJIT_PREBUILT_LIBRARY")
        if prebuilt:
            return os.path.realpath(prebuilt)
        build = os.path.join(HERE, "build", "cmake")
        configure = ["cmake", "-S", source_dir(), "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                     "-DMOEJIT_BUILD_TESTS=OFF", "-DMOEJIT_BUILD_TOOLS=OFF", "-DMOEJIT_BUILD_EXAMPLES=OFF",
                     "-DMOEJIT_BUILD_BENCH=OFF"] + shlex.split(os.environ.get("MOEJIT_CMAKE_ARGS", ""))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2)
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", build, "--target", "moejit", "-j", jobs], check=True)
        return os.path.realpath(os.path.join(build, "libmoejit.so"))


class BinaryDistribution(Distribution):
    """The wheel carries a native library: a platform wheel."""

    def has_ext_modules(self):
        return True


setup(version=VERSION, cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
