"""The ctypes mirrors (moejit._capi) against the layout the C compiler gives moejit.h, printed by
tests/abi_dump.c: every struct's size and alignment, every field's name, offset and size in order,
every enum constant and limit, the version. Needs no torch and no GPU.

abi_dump comes from $MOEJIT_ABI_DUMP (ctest sets it), else it is compiled here with $CC (or cc)."""
import ctypes
import json
import os
import shutil
import subprocess

import pytest

import moejit
from moejit import _capi as C
from moejit import _legacy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    exe = os.environ.get("MOEJIT_ABI_DUMP")
    if not exe:
        src, include = os.path.join(REPO, "tests", "abi_dump.c"), os.path.join(REPO, "include")
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not (os.path.exists(src) and cc):
            pytest.skip("no MOEJIT_ABI_DUMP, and no tests/abi_dump.c and C compiler to build it")
        exe = str(tmp_path_factory.mktemp("abi") / "abi_dump")
        subprocess.run([cc, "-std=c11", "-I", include, src, "-o", exe], check=True)
    return json.loads(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)


def flat_fields(struct):
    """(name, offset, size) of each field; the members of an anonymous union at its offset."""
    out = []
    anonymous = getattr(struct, "_anonymous_", ())
    for name, typ in struct._fields_:
        f = getattr(struct, name)
        if name in anonymous:
            out += [(n, f.offset + getattr(typ, n).offset, ctypes.sizeof(t)) for n, t in typ._fields_]
        else:
            out.append((name, f.offset, f.size))
    return out


def test_every_struct_is_mirrored(dump):
    assert sorted(dump["structs"]) == sorted(C.STRUCTS)


@pytest.mark.parametrize("name", sorted(C.STRUCTS))
def test_struct_layout(dump, name):
    c = dump["structs"][name]
    mirror = C.STRUCTS[name]
    assert ctypes.sizeof(mirror) == c["size"], f"{name}: ctypes {ctypes.sizeof(mirror)} bytes, C {c['size']}"
    assert ctypes.alignment(mirror) == c["align"], f"{name}: alignment"
    fields = flat_fields(mirror)
    assert fields == [tuple(f) for f in c["fields"]], f"{name}: fields (name, offset, size) differ"


@pytest.mark.parametrize("name", sorted(C.STRUCTS))
def test_dump_lists_every_c_field(dump, name):
    """abi_dump.c is written by hand: its fields must tile the struct (a field left out of it would
    leave a gap larger than alignment padding), so a field added to moejit.h is noticed here."""
    c = dump["structs"][name]
    fields = sorted((f for f in c["fields"]), key=lambda f: f[1])
    end = 0
    for fname, off, size in fields:
        assert off <= end + 7, f"{name}: {off - end} bytes before {fname} belong to no listed field"
        end = max(end, off + size)
    assert c["size"] - end < c["align"], f"{name}: {c['size'] - end} bytes at the end belong to no listed field"


def test_enums_and_limits(dump):
    assert C.c_enums() == dump["enums"]
    assert C.LIMITS == dump["limits"]


def test_version(dump):
    assert dump["version"] == C.library_version == moejit.__version__
    assert C.lib.moejit_version_number() == sum(int(x) * m for x, m in zip(dump["version"].split("."), (10000, 100, 1)))


def test_legacy_structs_are_the_01_prefix(dump):
    """The 0.1 shim's fields are exactly the harness's and sit where the 0.2 fields do."""
    assert [f[0] for f in _legacy._AlignOutputs._fields_] == [
        "counts", "offsets", "sorted_ids", "sorted_capacity", "block_expert", "total_padded", "slot_of", "workspace",
        "workspace_bytes"]
    assert [f[0] for f in _legacy._AlignArgs._fields_] == ["ids", "num_tokens", "topk", "out"]
    c = {f[0]: f[1] for f in dump["structs"]["moejit_align_outputs"]["fields"]}
    for name, _ in _legacy._AlignOutputs._fields_:
        assert getattr(_legacy._AlignOutputs, name).offset == c[name]
    a = {f[0]: f[1] for f in dump["structs"]["moejit_align_args"]["fields"]}
    for name in ("ids", "num_tokens", "topk", "out"):
        assert getattr(_legacy._AlignArgs, name).offset == a[name]
