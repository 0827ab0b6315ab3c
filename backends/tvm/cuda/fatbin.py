"""What CUDA code a library holds: the entries of its fatbins, and whether it keeps CUDA source.

A CUDA artifact built ahead of time embeds nvcc's fatbin as is (TVM serializes the CUDA
module's bytes into the library's data), so a byte search finds it. A fatbin is a header
(magic 0xBA55ED50, version, header size, payload size) followed by entries, each with its
own header: kind (1 PTX, 2 ELF i.e. SASS), header size, payload size, and at byte 28 the
arch number (80 for sm_80/compute_80). An artifact TVM could not build into binary code
holds the CUDA source instead (compiled with NVRTC at every load), which ``has_cuda_source``
detects by the kernels' ``extern "C" __global__`` declarations.

Reads the file only; needs neither TVM nor CUDA (``nnxc inspect`` and tests use it).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)
_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries
_ENTRY = struct.Struct("<HHIQ")  # kind, version, header size, payload size
_ENTRY_ARCH_OFFSET = 28
_KINDS = {1: "ptx", 2: "sass"}
_SOURCE_MARK = b'extern "C" __global__'


@dataclass(frozen=True)
class FatbinEntry:
    """One code object in a fatbin: SASS for ``sm_NN`` or PTX for ``compute_NN``."""

    kind: str  # "sass" | "ptx"
    arch: int  # 80, 90, ...
    size: int  # payload bytes (compressed when nvcc compressed it)

    @property
    def name(self) -> str:
        return f"sm_{self.arch}" if self.kind == "sass" else f"compute_{self.arch}"


@dataclass(frozen=True)
class CudaContents:
    """The CUDA code found in a library."""

    entries: tuple[FatbinEntry, ...]
    has_source: bool

    @property
    def sass_archs(self) -> tuple[str, ...]:
        return _names(e for e in self.entries if e.kind == "sass")

    @property
    def ptx_archs(self) -> tuple[str, ...]:
        return _names(e for e in self.entries if e.kind == "ptx")

    def describe(self) -> str:
        """One line for people: ``SASS sm_80, sm_90; PTX compute_90``, and any source."""
        parts = []
        if self.sass_archs:
            parts.append("SASS " + ", ".join(self.sass_archs))
        if self.ptx_archs:
            parts.append("PTX " + ", ".join(self.ptx_archs))
        if self.has_source:
            parts.append("CUDA source (compiled at load with NVRTC)")
        return "; ".join(parts) if parts else "no CUDA code"


def _names(entries: object) -> tuple[str, ...]:
    found = sorted({(e.arch, e.name) for e in entries})  # type: ignore[attr-defined]
    return tuple(name for _, name in found)


def read_cuda_contents(path: str | os.PathLike) -> CudaContents:
    """The fatbin entries and CUDA source in the file at ``path`` (a library or artifact)."""
    data = Path(path).read_bytes()
    return CudaContents(tuple(fatbin_entries(data)), _SOURCE_MARK in data)


def fatbin_entries(data: bytes) -> list[FatbinEntry]:
    """Every entry of every well-formed fatbin in ``data``."""
    entries: list[FatbinEntry] = []
    start = data.find(_MAGIC_BYTES)
    while start >= 0:
        parsed = _parse_fatbin(data, start)
        if parsed is None:
            start = data.find(_MAGIC_BYTES, start + 1)
            continue
        found, end = parsed
        entries.extend(found)
        start = data.find(_MAGIC_BYTES, end)
    return entries


def _parse_fatbin(data: bytes, start: int) -> tuple[list[FatbinEntry], int] | None:
    """The entries of the fatbin at ``start`` and where it ends, or None if the bytes there
    only happen to look like the magic number."""
    if start + _HEADER.size > len(data):
        return None
    _, version, header_size, size = _HEADER.unpack_from(data, start)
    end = start + header_size + size
    if version != 1 or header_size < _HEADER.size or end > len(data):
        return None
    entries: list[FatbinEntry] = []
    offset = start + header_size
    while offset < end:
        if offset + _ENTRY_ARCH_OFFSET + 4 > end:
            return None
        kind, _, entry_header, payload = _ENTRY.unpack_from(data, offset)
        if kind not in _KINDS or entry_header < _ENTRY_ARCH_OFFSET + 4:
            return None
        (arch,) = struct.unpack_from("<I", data, offset + _ENTRY_ARCH_OFFSET)
        entries.append(FatbinEntry(_KINDS[kind], arch, payload))
        offset += entry_header + payload
    return (entries, end) if offset == end and entries else None
