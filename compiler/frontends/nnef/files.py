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
import lzma
import math
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.errors import ModelLoadError
from compiler.limits import check_tensor

from ..base import file_sha256

MAX_UNPACKED_BYTES = 16 << 30
"""Archives unpacking to more than this are refused (``NNXC_MAX_ARCHIVE_BYTES`` sets another
bound, which then replaces the expansion bound too)."""
MAX_EXPANSION = 100
"""Nor may an archive unpack to more than this many times its packed size (a compression
bomb: gzip reaches about 1000, bzip2 and xz far more; real weights compress about 1.1)..."""
MIN_EXPANSION_BOUND = 256 << 20
"""... unless it stays under this size (small archives of tiny files compress very well)."""
MAX_MEMBERS = 100_000
"""Nor may an archive hold more members than this (a model has one file per variable)."""
MAX_HEADER_BYTES = 1 << 20
"""Nor may a pax or GNU long-name header declare more than this; ``tarfile`` reads such a
header into memory whole, before nnxc sees the member it describes (a real one is a few
hundred bytes)."""
_TAR_BLOCK = 512
_LONG_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


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
        return file_sha256(dict.fromkeys(self.read), self.folder)


def max_unpacked_bytes() -> int | None:
    """The bound ``NNXC_MAX_ARCHIVE_BYTES`` sets, if any."""
    value = os.environ.get("NNXC_MAX_ARCHIVE_BYTES", "").strip()
    if not value:
        return None
    try:
        bound = int(value)
    except ValueError:
        bound = -1
    if bound < 0:
        raise ModelLoadError(f"NNXC_MAX_ARCHIVE_BYTES={value!r}: give a number of bytes")
    return bound


def is_archive(path: Path) -> bool:
    """A file named like an archive, or one starting like a compressed file or a tar (a
    ``.nnef`` that is really a ``.tgz``)."""
    if not path.is_file():
        return False
    if path.name.lower().endswith((".tgz", ".tar.gz", ".tar")):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(262)
    except OSError:
        return False
    return head.startswith(_COMPRESSED_MAGIC) or head[257:262] == b"ustar"


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
        try:
            tmp = Path(tempfile.mkdtemp(prefix="nnxc-nnef-"))  # mode 0700: private
        except OSError as e:
            msg = f"{path}: cannot make a temporary folder to unpack into ({_one_line(e)})"
            raise ModelLoadError(msg) from None
        try:
            root = unpack(path, tmp)
            files = _folder_files(root, path.name)
            files.archive = path
            yield files
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    yield ModelFiles(path.name, path, None, None, read=[path])


def _folder_files(folder: Path, name: str) -> ModelFiles:
    graph = folder / "graph.nnef"
    quant = folder / "graph.quant"
    files = ModelFiles(name, graph, quant if quant.is_file() else None, folder)
    files.read = [graph] + ([quant] if files.quant else [])
    return files


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` and return the folder holding ``graph.nnef``.

    Members are checked as their headers are read, before their data is decompressed and
    before anything is written: only regular files and folders, no absolute paths, no
    ``..``, no links or devices, the count and total size bounded; then ``tarfile``'s
    ``data`` filter extracts them (a second line of defence).
    """
    bound, why = _unpack_bound(archive)
    try:
        with tarfile.open(archive, "r:*", tarinfo=_BoundedTarInfo) as tar:
            members = []
            total = 0
            for m in tar:  # lazily: a member's header is checked before its data is read
                _check_member(archive, m)
                members.append(m)
                if len(members) > MAX_MEMBERS:
                    raise ModelLoadError(
                        f"{archive}: holds more than {MAX_MEMBERS} files; not an NNEF model"
                    )
                total += _TAR_BLOCK + m.size
                if total > bound:
                    raise ModelLoadError(f"{archive}: unpacks to more than {why}; refused")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise ModelLoadError(f"{archive}: not a readable .tgz archive ({_one_line(e)})") from None
    graphs = [p for p in dest.rglob("graph.nnef") if p.is_file()]
    if not graphs:
        raise ModelLoadError(f"{archive}: the archive holds no graph.nnef; not an NNEF model")
    top = min(len(p.parts) for p in graphs)
    shallowest = sorted(p for p in graphs if len(p.parts) == top)
    if len(shallowest) > 1:
        where = ", ".join(p.relative_to(dest).as_posix() for p in shallowest)
        raise ModelLoadError(f"{archive}: the archive holds several models ({where})")
    return shallowest[0].parent


class _BoundedTarInfo(tarfile.TarInfo):
    """A member whose extended header is refused before ``tarfile`` reads it into memory."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _LONG_HEADERS and self.size > MAX_HEADER_BYTES:
            raise ModelLoadError(
                f"{tarfile_.name}: a member's extended header declares {self.size} bytes "
                f"(at most {MAX_HEADER_BYTES}); refused"
            )
        return super()._proc_member(tarfile_)


def _unpack_bound(archive: Path) -> tuple[int, str]:
    """The most bytes ``archive`` may unpack to, and that bound in words."""
    explicit = max_unpacked_bytes()
    if explicit is not None:
        return explicit, f"NNXC_MAX_ARCHIVE_BYTES={explicit} bytes"
    packed = archive.stat().st_size
    by_ratio = max(MAX_EXPANSION * packed, MIN_EXPANSION_BOUND)
    if by_ratio < MAX_UNPACKED_BYTES:
        return by_ratio, (
            f"{MAX_EXPANSION} times its size of {packed} bytes (a compression bomb?; set "
            "NNXC_MAX_ARCHIVE_BYTES to the bytes to allow)"
        )
    return MAX_UNPACKED_BYTES, (
        f"{MAX_UNPACKED_BYTES >> 30} GiB (set NNXC_MAX_ARCHIVE_BYTES to the bytes to allow)"
    )


def _check_member(archive: Path, m: tarfile.TarInfo) -> None:
    name = m.name
    parts = Path(name).parts
    if not parts:
        raise ModelLoadError(f"{archive}: a member has an empty name; refused")
    if name.startswith(("/", "\\")) or Path(name).is_absolute() or ":" in parts[0]:
        raise ModelLoadError(f"{archive}: member {name!r} has an absolute path; refused")
    if ".." in parts or ".." in name.split("\\"):
        raise ModelLoadError(f"{archive}: member {name!r} leaves the archive's folder; refused")
    if m.issym() or m.islnk():
        raise ModelLoadError(f"{archive}: member {name!r} is a link; refused")
    if not (m.isfile() or m.isdir()):
        raise ModelLoadError(
            f"{archive}: member {name!r} is not a regular file or folder (a device or fifo); "
            "refused"
        )


def variable_path(folder: Path, label: str) -> Path:
    """The ``.dat`` file of a variable label, refused unless it stays inside ``folder``
    (checked before the file is opened).

    As the Khronos loader does, ONE leading ``/`` is dropped (``'/w'`` is ``w.dat`` in the
    folder); any other absolute form (``'//abs/w'``, ``'\\w'``) and any ``..`` is refused,
    and so is a path that symbolic links lead out of the folder.
    """
    if not label:
        raise ModelLoadError("an empty variable label")
    if "\0" in label:
        raise ModelLoadError(f"variable label {label!r} holds a NUL character; refused")
    rel = label[1:] if label.startswith("/") else label
    parts = Path(rel).parts
    if (
        not rel
        or rel.startswith(("/", "\\"))
        or Path(rel).is_absolute()
        or ".." in parts
        or ".." in rel.split("\\")
    ):
        raise ModelLoadError(f"variable label {label!r} leaves the model's folder; refused")
    try:
        root = folder.resolve()
        target = (folder / (rel + ".dat")).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise ModelLoadError(f"variable label {label!r}: {_one_line(e)}") from None
    if root not in target.parents:
        raise ModelLoadError(f"variable label {label!r} resolves outside the model's folder")
    return folder / target.relative_to(root)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# -- custom fragments ----------------------------------------------------------------------------
_COMMENT_OR_STRING = re.compile(r"#[^\n]*|'[^']*'|\"[^\"]*\"")
_FRAGMENT = re.compile(r"\bfragment\s+([A-Za-z_]\w*)")
_NAME = re.compile(r"[A-Za-z_]\w*")


def fragment_calls(text: str) -> dict[str, set[str] | None]:
    """The fragments a graph text defines, each with the fragments its body names (None for a
    declaration without a body). A light scan, not a parse: any name in a body counts, so
    it errs towards seeing calls (NNEF bodies hold no braces, comments run to the line's end)."""
    clean = _COMMENT_OR_STRING.sub(" ", text)
    found: dict[str, set[str] | None] = {}
    for m in _FRAGMENT.finditer(clean):
        ends = [i for i in (clean.find(";", m.end()), clean.find("{", m.end())) if i >= 0]
        if not ends or clean[min(ends)] == ";":
            found.setdefault(m.group(1), None)
            continue
        brace = min(ends)
        close = clean.find("}", brace)
        body = clean[brace + 1 : close if close >= 0 else len(clean)]
        found[m.group(1)] = set(_NAME.findall(body))
    for calls in found.values():
        if calls is not None:
            calls &= set(found)
    return found


def recursive_fragments(calls: dict[str, set[str] | None]) -> set[str]:
    """The fragments that may call themselves, directly or through others."""
    recursive = set()
    for start in calls:
        seen: set[str] = set()
        todo = list(calls[start] or ())
        while todo:
            name = todo.pop()
            if name == start:
                recursive.add(start)
                break
            if name not in seen:
                seen.add(name)
                todo.extend(calls.get(name) or ())
    return recursive


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
    try:
        return _read_dat(path, shape, what, mmap)
    except OSError as e:
        raise ModelLoadError(f"{what}: cannot read {path.name} ({_one_line(e)})") from None


def _read_dat(path: Path, shape: list[int], what: str, mmap: bool) -> DatTensor:
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
    count = math.prod(shape)  # Python ints: numpy's int64 product wraps around
    # Decoded, odd widths take 8 bytes an item (int64), so check before decoding.
    check_tensor(what, shape, bits // 8 if bits in (8, 16, 32, 64) else 1 if bits == 1 else 8)
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
    (``nnef/common/binary.h``), one after another with no padding between items. Decoded a
    chunk at a time (8 items end on a byte boundary), so that the bit stream of a large
    tensor never exists whole."""
    out = np.empty(count, np.int64 if signed else np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(bits - 1, -1, -1, dtype=np.uint64))
    step = 8 << 14  # items per chunk, a multiple of 8
    for start in range(0, count, step):
        n = min(step, count - start)
        first = start * bits // 8
        chunk = packed[first : first + (n * bits + 7) // 8]
        stream = np.unpackbits(chunk, bitorder="big")[: n * bits].reshape(n, bits)
        values = (stream.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
        if signed:
            v = values.astype(np.int64)
            v -= (v >> (bits - 1) & 1) << bits
            out[start : start + n] = v
        else:
            out[start : start + n] = values
    if signed:
        return out.astype(np.int32) if bits <= 32 else out
    return out.astype(np.uint32) if bits <= 32 else out
