"""The artifact: TVM's shared library with nnxc's metadata appended after the ELF image.

The dynamic loader ignores bytes past the ELF sections, so the file still loads with
``tvm.runtime.load_module``; the metadata (JSON) is found from a fixed-size footer at the
end of the file and is readable without TVM at all. Layout of the tail:

    ... ELF image ... | JSON (utf-8) | length: 8 bytes little-endian | b"NNXCMETA"

The metadata holds the SHA-256 of the ELF image (``library_sha256``): ``verify_library``
checks it before the file reaches the dynamic loader, so a damaged library is refused by name
instead of crashing the process that loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from compiler.errors import ArtifactError

MAGIC = b"NNXCMETA"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (ints, or dim names for symbolic sizes) and dtype of one model input/output."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(str(d) for d in self.shape)}]"


@dataclass
class Metadata:
    """What ``compiler.load`` needs besides the code: provenance and the I/O signature."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    target: dict[str, Any]
    source_format: str
    source_sha256: str
    source_name: str = ""
    nnxc_version: str = ""
    tvm_version: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    library_sha256: str = ""  # of the bytes before the metadata; "" in older artifacts

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Metadata:
        raw = json.loads(text)
        for key in ("inputs", "outputs"):
            raw[key] = [TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in raw[key]]
        return cls(**raw)


def write_artifact(
    path: str | os.PathLike, write_library: Callable[[str], None], metadata: Metadata
) -> None:
    """Write the library through ``write_library(tmp_path)``, append the metadata (with the
    library's checksum), then move the file into place: a failure leaves no half-written
    artifact behind, and processes writing the same path at once leave one whole artifact."""
    dest = Path(path)
    if dest.is_dir():
        raise ArtifactError(f"{dest}: is a directory; give the artifact's file name")
    if dest.parent and not dest.parent.exists():
        raise ArtifactError(f"{dest.parent}: no such directory")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.stem}.partial.", suffix=".so", dir=dest.parent or "."
    )
    os.close(fd)
    try:
        write_library(tmp)
        metadata = replace(metadata, library_sha256=_sha256(tmp, os.path.getsize(tmp)))
        blob = metadata.to_json().encode()
        with open(tmp, "ab") as f:
            f.write(blob + len(blob).to_bytes(8, "little") + MAGIC)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: str | os.PathLike, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while length > 0:
            chunk = f.read(min(length, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            length -= len(chunk)
    return digest.hexdigest()


def verify_library(path: str | os.PathLike) -> Metadata:
    """The metadata, once the library bytes before it match its checksum: a truncated or
    corrupted artifact gets an ArtifactError here, not a crash in the dynamic loader."""
    meta, library_size = _read(path)
    if not meta.library_sha256:
        return meta  # written before artifacts carried a checksum
    if _sha256(path, library_size) != meta.library_sha256:
        raise ArtifactError(
            f"{path}: the artifact is damaged (its code does not match the checksum nnxc wrote); "
            "compile it again"
        )
    return meta


def read_metadata(path: str | os.PathLike) -> Metadata:
    """The metadata of an nnxc artifact; a clear error for anything else."""
    return _read(path)[0]


def _read(path: str | os.PathLike) -> tuple[Metadata, int]:
    """The metadata and the size of the library before it."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: no such file")
    with open(p, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 16:
            raise ArtifactError(f"{p}: not an nnxc artifact (too small)")
        f.seek(size - 16)
        tail = f.read(16)
        if tail[8:] != MAGIC:
            raise ArtifactError(f"{p}: not an nnxc artifact (no nnxc metadata)")
        length = int.from_bytes(tail[:8], "little")
        if length > size - 16:
            raise ArtifactError(f"{p}: nnxc metadata is damaged")
        f.seek(size - 16 - length)
        blob = f.read(length)
    try:
        meta = Metadata.from_json(blob.decode())
    except (ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{p}: nnxc metadata is damaged ({e})") from None
    if meta.format_version > FORMAT_VERSION:
        raise ArtifactError(
            f"{p}: artifact format {meta.format_version} is newer than this nnxc understands"
        )
    return meta, size - 16 - length


def is_artifact(path: str | os.PathLike) -> bool:
    try:
        read_metadata(path)
        return True
    except ArtifactError:
        return False
