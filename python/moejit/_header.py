"""Versions: moejit.h's MOEJIT_VERSION_STRING, read at build time (setup.py loads this file by path,
before the package exists) and, in a source checkout, at import time. No imports beyond re."""

import re


def version_from_header(path):
    """MOEJIT_VERSION_STRING of the moejit.h at `path` ("0.2.0"); ValueError if it has none."""
    with open(path, encoding="utf-8") as f:
        m = re.search(r'^#define\s+MOEJIT_VERSION_STRING\s+"([0-9]+\.[0-9]+\.[0-9]+)"', f.read(), re.M)
    if not m:
        raise ValueError(f"{path}: no MOEJIT_VERSION_STRING")
    return m.group(1)


def version_tuple(version):
    """(major, minor, patch) of "0.2.0"."""
    return tuple(int(x) for x in version.split(".")[:3])
