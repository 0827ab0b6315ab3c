"""Reading the CUDA code a library holds: fatbin entries found by their headers, and source."""

from __future__ import annotations

import struct
from pathlib import Path

from cudautil import requires_nvcc

from backends.tvm.cuda.fatbin import FatbinEntry, fatbin_entries, read_cuda_contents


def _entry(kind: int, arch: int, payload: bytes) -> bytes:
    """An entry as nvcc writes it: a 64-byte header (kind, version, header size, payload
    size, ..., arch at byte 28), then the payload."""
    header = bytearray(64)
    struct.pack_into("<HHIQ", header, 0, kind, 0x101, 64, len(payload))
    struct.pack_into("<I", header, 28, arch)
    return bytes(header) + payload


def _fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def test_entries_of_a_fatbin_among_other_bytes() -> None:
    fat = _fatbin(_entry(2, 80, b"E" * 40), _entry(2, 90, b"F" * 24), _entry(1, 90, b"P" * 8))
    fake = struct.pack("<IHH", 0xBA55ED50, 7, 16)  # the magic number, but no fatbin
    data = b"\0" * 13 + fake + b"x" * 5 + fat + b"tail"
    assert fatbin_entries(data) == [
        FatbinEntry("sass", 80, 40),
        FatbinEntry("sass", 90, 24),
        FatbinEntry("ptx", 90, 8),
    ]


def test_truncated_or_inconsistent_fatbins_are_ignored() -> None:
    fat = _fatbin(_entry(2, 80, b"E" * 40))
    assert fatbin_entries(fat[:-1]) == []  # ends past the data
    bad_kind = bytearray(fat)
    bad_kind[16] = 7
    assert fatbin_entries(bytes(bad_kind)) == []
    two = _fatbin(_entry(2, 75, b"a" * 8)) + b"--" + _fatbin(_entry(1, 120, b"b" * 8))
    assert [e.name for e in fatbin_entries(two)] == ["sm_75", "compute_120"]


def test_contents_of_a_file(tmp_path: Path) -> None:
    lib = tmp_path / "lib.so"
    fat = _fatbin(_entry(2, 90, b"e"), _entry(1, 90, b"p"), _entry(2, 80, b"e"))
    lib.write_bytes(b"\x7fELF" + fat)
    found = read_cuda_contents(lib)
    assert found.sass_archs == ("sm_80", "sm_90") and found.ptx_archs == ("compute_90",)
    assert not found.has_source
    assert found.describe() == "SASS sm_80, sm_90; PTX compute_90"
    lib.write_bytes(b'\x7fELF...extern "C" __global__ void __launch_bounds__(256) k(float* x)')
    found = read_cuda_contents(lib)
    assert found.has_source and found.entries == ()
    assert found.describe() == "CUDA source (compiled at load with NVRTC)"
    lib.write_bytes(b"\x7fELF")
    assert read_cuda_contents(lib).describe() == "no CUDA code"


@requires_nvcc
def test_nvcc_fatbin() -> None:
    """The layout above is what this machine's nvcc writes (compressed PTX included)."""
    from backends.tvm.cuda.codegen import compile_fatbin
    from backends.tvm.cuda.toolchain import find_toolkit

    code = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] *= 2.0f; }\n'
    data = compile_fatbin(code, ("sm_86", "sm_75", "sm_120"), find_toolkit())
    names = sorted(e.name for e in fatbin_entries(data))
    assert names == ["compute_120", "sm_120", "sm_75", "sm_86"]
    assert code.encode() not in data
