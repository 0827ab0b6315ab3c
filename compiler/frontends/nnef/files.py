"""The files of an NNEF model, read safely: a model folder, a ``.tgz`` archive of one, or a bare
``graph.nnef`` text; variable labels kept inside the folder; ``.dat`` tensors checked against
their declarations.

Neither the ``nnef`` package nor nnef-tools is safe here: ``nnef.load_graph`` joins variable
labels onto the folder unchecked (``../x`` and ``//abs`` read outside it) and nnef-tools
unpacks archives with an unfiltered ``extractall``. So nnxc unpacks archives itself and reads
the graph text with ``nnef.parse_file``, opening every ``.dat`` file itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.errors import ModelLoadError

from ..base import file_sha256

MAX_UNPACKED_BYTES = 16 << 30
"""Archives unpacking to more than this are refused (the bound users can lower with
``NNXC_MAX_ARCHIVE_BYTES``)."""
MAX_EXPANSION = 2000
"""Nor may an archive unpack to more than this many times its packed size (a gzip bomb)."""


@dataclass
class ModelFiles:
    """Where a model's graph text, quantization file and tensors are, and every file read
    (for the source hash)."""

    name: str
    graph: Path
    quant: Path | None
    folder: Path | None
    """The folder holding ``.dat`` files; None for a bare graph text (no weights)."""
    archive: Path | None = None
    """The archive the folder was unpacked from (a temporary folder, removed afterwards)."""
    read: list[Path] = field(default_factory=list)

    def sha256(self) -> str:
        """Of the archive's bytes; or of every file read from the folder, with its name."""
        if self.archive is not None:
            return file_sha256([self.archive])
        return file_sha256(self.read, self.folder)


def max_unpacked_bytes() -> int:
    value = os.environ.get("NNXC_MAX_ARCHIVE_BYTES")
    return int(value) if value else MAX_UNPACKED_BYTES


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".tgz", ".tar.gz", ".tar"))


@contextlib.contextmanager
def open_model(path: Path) -> Iterator[ModelFiles]:
    """The model's files; an archive is unpacked into a private temporary folder that is
    removed afterwards, also on error."""
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder")
    if path.is_dir():
        graph = path / "graph.nnef"
        if not graph.is_file():
            raise ModelLoadError(f"{path}: a folder without graph.nnef; not an NNEF model")
        yield _folder_files(path, path.name)
        return
    if is_archive(path):
        tmp = Path(tempfile.mkdtemp(prefix="nnxc-nnef-"))
        try:
            root = unpack(path, tmp)
            files = _folder_files(root, path.name)
            files.archive = path
            yield files
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    yield ModelFiles(path.name, path, None, None)


def _folder_files(folder: Path, name: str) -> ModelFiles:
    graph = folder / "graph.nnef"
    quant = folder / "graph.quant"
    files = ModelFiles(name, graph, quant if quant.is_file() else None, folder)
    files.read = [graph] + ([quant] if files.quant else [])
    return files


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` and return the folder holding ``graph.nnef``.

    Members are checked before anything is written: only regular files and folders, no
    absolute paths, no ``..``, no links or devices, and the total size bounded; then
    ``tarfile``'s ``data`` filter extracts them (a second line of defence).
    """
    limit = max_unpacked_bytes()
    packed = archive.stat().st_size
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            total = 0
            bound = min(limit, MAX_EXPANSION * max(packed, 1 << 20))
            for m in members:
                _check_member(archive, m)
                total += m.size
                if total > bound:
                    raise ModelLoadError(
                        f"{archive}: unpacks to more than {bound >> 20} MiB; refused "
                        "(set NNXC_MAX_ARCHIVE_BYTES to allow more)"
                    )
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ModelLoadError(f"{archive}: not a readable .tgz archive ({e})") from None
    graphs = sorted(dest.rglob("graph.nnef"), key=lambda p: len(p.parts))
    if not graphs:
        raise ModelLoadError(f"{archive}: the archive holds no graph.nnef; not an NNEF model")
    return graphs[0].parent


def _check_member(archive: Path, m: tarfile.TarInfo) -> None:
    name = m.name
    if name.startswith(("/", "\\")) or Path(name).is_absolute() or ":" in Path(name).parts[0]:
        raise ModelLoadError(f"{archive}: member {name!r} has an absolute path; refused")
    if ".." in Path(name).parts:
        raise ModelLoadError(f"{archive}: member {name!r} leaves the archive's folder; refused")
    if m.issym() or m.islnk():
        raise ModelLoadError(f"{archive}: member {name!r} is a link; refused")
    if not (m.isfile() or m.isdir()):
        raise ModelLoadError(f"{archive}: member {name!r} is not a regular file; refused")


def variable_path(folder: Path, label: str) -> Path:
    """The ``.dat`` file of a variable label, refused unless it stays inside ``folder``
    (checked before the file is opened)."""
    if not label:
        raise ModelLoadError("a variable has an empty label")
    rel = label[1:] if label.startswith("/") and not label.startswith("//") else label
    parts = Path(rel).parts
    if not rel or rel.startswith(("/", "\\")) or Path(rel).is_absolute() or ".." in parts:
        raise ModelLoadError(f"variable label {label!r} leaves the model's folder; refused")
    root = folder.resolve()
    target = (folder / (rel + ".dat")).resolve()
    if root not in target.parents:
        raise ModelLoadError(f"variable label {label!r} resolves outside the model's folder")
    return target


# -- .dat tensors ------------------------------------------------------------------------------
_HEADER = np.dtype(
    [
        ("magic", "u1", 2),
        ("version", "u1", 2),
        ("data_length", "<u4"),
        ("rank", "<u4"),
        ("extents", "<u4", 8),
        ("bits", "<u4"),
        ("item_type", "<u4"),
        ("reserved", "<u4", 19),
    ]
)
assert _HEADER.itemsize == 128
FLOAT, UINT, QUINT, QINT, INT, BOOL = range(6)
ITEM_TYPES = {FLOAT: "float", UINT: "uint", QUINT: "quint", QINT: "qint", INT: "int", BOOL: "bool"}


@dataclass
class DatTensor:
    """A ``.dat`` file's data and how to read it: ``quantized`` for qint/quint codes."""

    data: np.ndarray
    item_type: str
    bits: int

    @property
    def quantized(self) -> bool:
        return self.item_type in ("qint", "quint")


def read_dat(path: Path, shape: list[int], what: str, mmap: bool = True) -> DatTensor:
    """Read a tensor file whose declared shape is ``shape``; every disagreement (magic,
    version, extents, size, item type) is an error naming ``what``."""
    if not path.is_file():
        raise ModelLoadError(f"{what}: tensor file {path.name} is missing")
    size = path.stat().st_size
    if size < _HEADER.itemsize:
        raise ModelLoadError(f"{what}: tensor file {path.name} is truncated ({size} bytes)")
    header = np.fromfile(path, dtype=_HEADER, count=1)[0]
    if bytes(header["magic"]) != b"\x4e\xef":
        raise ModelLoadError(f"{what}: {path.name} is not an NNEF tensor file (bad magic)")
    if tuple(header["version"]) != (1, 0):
        version = ".".join(str(int(v)) for v in header["version"])
        raise ModelLoadError(
            f"{what}: {path.name} has tensor file version {version}; nnxc reads 1.0"
        )
    rank = int(header["rank"])
    if rank > 8:
        raise ModelLoadError(f"{what}: {path.name} declares rank {rank} (at most 8)")
    extents = [int(e) for e in header["extents"][:rank]]
    if list(extents) != list(shape) and not (np.prod(extents) == np.prod(shape) == 1):
        raise ModelLoadError(
            f"{what}: {path.name} holds a tensor of shape {extents}, the graph declares "
            f"{list(shape)}"
        )
    length = int(header["data_length"])
    if size != _HEADER.itemsize + length:
        raise ModelLoadError(
            f"{what}: {path.name} is {size} bytes, its header says {_HEADER.itemsize + length}"
            " (truncated or padded file)"
        )
    code = int(header["item_type"])
    if code >> 16:
        raise ModelLoadError(f"{what}: {path.name} has a vendor-specific item type {code:#x}")
    if code not in ITEM_TYPES:
        raise ModelLoadError(f"{what}: {path.name} has unknown item type {code}")
    kind = ITEM_TYPES[code]
    if kind == "uint" and header["reserved"][0]:
        kind = "int"  # files written before 1.0.3 marked signed ints this way
    bits = int(header["bits"])
    count = int(np.prod(shape, dtype=np.int64))
    if (count * bits + 7) // 8 != length:
        raise ModelLoadError(
            f"{what}: {path.name} holds {length} bytes of data; {count} items of {bits} bits "
            f"need {(count * bits + 7) // 8}"
        )
    return DatTensor(_decode(path, kind, bits, count, shape, what, mmap), kind, bits)


def _decode(
    path: Path, kind: str, bits: int, count: int, shape: list[int], what: str, mmap: bool
) -> np.ndarray:
    offset = _HEADER.itemsize
    if kind == "float":
        if bits not in (16, 32, 64):
            raise ModelLoadError(f"{what}: {path.name} has {bits}-bit floats (16, 32 or 64)")
        return _read(path, np.dtype(f"<f{bits // 8}"), count, shape, mmap)
    if kind == "bool":
        if bits == 8:
            return _read(path, np.dtype("u1"), count, shape, False).astype(bool)
        if bits != 1:
            raise ModelLoadError(f"{what}: {path.name} has {bits}-bit bools (1 or 8)")
        packed = np.fromfile(path, dtype=np.uint8, offset=offset)
        return np.unpackbits(packed, bitorder="big")[:count].astype(bool).reshape(shape)
    signed = kind in ("int", "qint")
    if not 1 <= bits <= 64:
        raise ModelLoadError(f"{what}: {path.name} has {bits}-bit integers (1 to 64)")
    if bits in (8, 16, 32, 64):
        return _read(path, np.dtype(f"<{'i' if signed else 'u'}{bits // 8}"), count, shape, mmap)
    return _unpack(np.fromfile(path, dtype=np.uint8, offset=offset), bits, count, signed).reshape(
        shape
    )


def _read(path: Path, dtype: np.dtype, count: int, shape: list[int], mmap: bool) -> np.ndarray:
    if count == 0:
        return np.zeros(shape, dtype)
    if mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=_HEADER.itemsize, shape=tuple(shape))
    return np.fromfile(path, dtype=dtype, count=count, offset=_HEADER.itemsize).reshape(shape)


def _unpack(packed: np.ndarray, bits: int, count: int, signed: bool) -> np.ndarray:
    """Sub-byte or odd-width integers packed MSB first, as the C++ writer packs them
    (``nnef/common/binary.h``), one after another with no padding between items."""
    stream = np.unpackbits(packed, bitorder="big")[: count * bits].reshape(count, bits)
    weights = np.left_shift(np.uint64(1), np.arange(bits - 1, -1, -1, dtype=np.uint64))
    values = (stream.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    if signed:
        out = values.astype(np.int64)
        out -= (out >> (bits - 1) & 1) << bits
        return out.astype(np.int32 if bits <= 32 else np.int64)
    return values.astype(np.uint32 if bits <= 32 else np.uint64)
