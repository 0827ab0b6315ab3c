"""The artifact file: metadata appended after the library, read back without TVM, and
written atomically."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from compiler.artifact import (
    FORMAT_VERSION,
    MAGIC,
    Metadata,
    TensorInfo,
    is_artifact,
    read_metadata,
    verify_library,
    write_artifact,
)
from compiler.errors import ArtifactError

LIBRARY = b"\x7fELF" + bytes(range(256)) * 4  # stands in for TVM's shared library


def _meta(**changes) -> Metadata:  # noqa: ANN003
    base = dict(
        inputs=[TensorInfo("data", ("batch", 3, 224, 224), "float32")],
        outputs=[TensorInfo("prob", ("batch", 1000), "float32"), TensorInfo("k", (), "int64")],
        target={"kind": "llvm", "mcpu": "znver3"},
        source_format="onnx",
        source_sha256="ab" * 32,
        source_name="m.onnx",
        nnxc_version="0.1.0",
        tvm_version="0.27.0",
        extra={"note": "ünïcode"},
    )
    base.update(changes)
    return Metadata(**base)


def _write(path: Path, meta: Metadata) -> None:
    write_artifact(path, lambda tmp: Path(tmp).write_bytes(LIBRARY), meta)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.so"
    meta = _meta()
    _write(path, meta)
    data = path.read_bytes()
    assert data.startswith(LIBRARY) and data.endswith(MAGIC)
    assert path.stat().st_mode & 0o111  # loadable library: executable bits
    back = read_metadata(path)
    assert back == replace(meta, library_sha256=hashlib.sha256(LIBRARY).hexdigest())
    assert back.inputs[0].shape == ("batch", 3, 224, 224) and back.outputs[1].shape == ()
    assert back.format_version == FORMAT_VERSION
    assert is_artifact(path)
    assert str(back.inputs[0]) == "data: float32[batch, 3, 224, 224]"
    assert [p.name for p in tmp_path.iterdir()] == ["m.so"]


def test_metadata_readable_without_tvm(tmp_path: Path) -> None:
    """The footer is plain JSON: length (8 bytes, little endian) and magic at the end."""
    path = tmp_path / "m.so"
    _write(path, _meta())
    data = path.read_bytes()
    length = int.from_bytes(data[-16:-8], "little")
    raw = json.loads(data[-16 - length : -16].decode())
    assert raw["source_format"] == "onnx" and raw["inputs"][0]["name"] == "data"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def fails(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("linker failed")

    with pytest.raises(RuntimeError, match="linker failed"):
        write_artifact(tmp_path / "m.so", fails, _meta())
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "m.so"
    _write(path, _meta())
    before = path.read_bytes()

    def fails(tmp: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_artifact(path, fails, _meta(source_name="other.onnx"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.so"]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such directory"):
        _write(tmp_path / "none" / "m.so", _meta())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too small"),
        (b"short", "too small"),
        (LIBRARY, "no nnxc metadata"),
        (LIBRARY + (10**9).to_bytes(8, "little") + MAGIC, "damaged"),
        (LIBRARY + b"{bad" + (4).to_bytes(8, "little") + MAGIC, "damaged"),
        (LIBRARY + b"{}" + (2).to_bytes(8, "little") + MAGIC, "damaged"),
        (LIBRARY + b"\xff\xfe" + (2).to_bytes(8, "little") + MAGIC, "damaged"),
    ],
)
def test_not_an_artifact(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.so"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        read_metadata(path)
    assert not is_artifact(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        read_metadata(tmp_path / "none.so")
    with pytest.raises(ArtifactError, match="no such file"):
        read_metadata(tmp_path)
    assert not is_artifact(tmp_path)


def test_newer_format_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.so"
    _write(path, _meta(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ArtifactError, match="newer than this nnxc"):
        read_metadata(path)


def test_unknown_metadata_keys_are_damage(tmp_path: Path) -> None:
    """A footer from something else (extra keys) is reported, not a TypeError."""
    blob = json.dumps({**json.loads(_meta().to_json()), "surprise": 1}).encode()
    path = tmp_path / "m.so"
    path.write_bytes(LIBRARY + blob + len(blob).to_bytes(8, "little") + MAGIC)
    with pytest.raises(ArtifactError, match="damaged"):
        read_metadata(path)


def test_checksum_refuses_a_damaged_library(tmp_path: Path) -> None:
    """A byte changed in the library, or bytes cut from it, is found before any loader runs."""
    path = tmp_path / "m.so"
    _write(path, _meta())
    assert verify_library(path) == read_metadata(path)
    data = path.read_bytes()
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(ArtifactError, match="damaged.*checksum"):
        verify_library(damaged)
    short = tmp_path / "short.so"
    short.write_bytes(data[:50] + data[60:])  # library shortened, footer intact
    with pytest.raises(ArtifactError, match="damaged.*checksum"):
        verify_library(short)
    truncated = tmp_path / "truncated.so"
    truncated.write_bytes(data[:-40])  # footer gone
    with pytest.raises(ArtifactError, match="not an nnxc artifact"):
        verify_library(truncated)


def test_artifacts_without_checksum_still_load(tmp_path: Path) -> None:
    """Artifacts written before the checksum existed are read as they are."""
    path = tmp_path / "old.so"
    fields = json.loads(_meta().to_json())
    del fields["library_sha256"]
    blob = json.dumps(fields).encode()
    path.write_bytes(LIBRARY + blob + len(blob).to_bytes(8, "little") + MAGIC)
    assert verify_library(path).library_sha256 == ""
