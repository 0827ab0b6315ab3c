"""The files of a Core ML model, read safely: a ``.mlmodel`` (one protobuf), an ``.mlpackage``
folder (``Manifest.json``, the root model spec, ``weights/weight.bin``), or an in-memory
``coremltools.models.MLModel`` / ``Model`` spec.

coremltools follows a manifest's paths wherever they lead (``../`` included), so nnxc checks
every manifest entry and every weight file an ML Program names to stay inside the package
before anything is opened, then reads the root spec with ``coremltools.utils.load_spec`` and
the program with coremltools' MIL proto loader. ``MLModel`` is never constructed from a path
(``skip_model_load`` or not, nnxc has no use for a compiled model on Linux).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler.errors import ModelLoadError

from ..base import file_sha256

MAX_MANIFEST_BYTES = 1 << 20
"""A manifest lists a few entries; a larger one is refused unread."""


@dataclass
class CoreMLFiles:
    """A model's spec and where its files are; ``read`` lists every file read (the hash)."""

    name: str
    spec: Any
    package: Path | None = None
    weights_dir: Path | None = None
    read: list[Path] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The spec's model type (``neuralNetwork``, ``mlProgram``, ``pipeline``, ...)."""
        return self.spec.WhichOneof("Type") or ""

    def sha256(self) -> str:
        return file_sha256(self.read, self.package)


def quiet_coremltools() -> Any:
    """coremltools, imported with its Linux start-up noise (no ``libcoremlpython``: it cannot
    run models here, which nnxc never asks of it) kept off the user's terminal."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        import coremltools
    finally:
        logger.setLevel(level)
    return coremltools


def open_model(model: Any) -> CoreMLFiles:
    """The spec of ``model`` (a path or an in-memory model), checked to be a Core ML model."""
    ct = quiet_coremltools()
    from coremltools.proto import Model_pb2

    if isinstance(model, Model_pb2.Model):
        return _checked(CoreMLFiles("model", model))
    if isinstance(model, ct.models.MLModel):
        wdir = getattr(model, "weights_dir", None)
        return _checked(CoreMLFiles("model", model.get_spec(), None, Path(wdir) if wdir else None))
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder")
    if path.is_dir():
        return _checked(_open_package(path))
    return _checked(CoreMLFiles(path.name, _load_spec(path, path.name), read=[path]))


def _open_package(pkg: Path) -> CoreMLFiles:
    root_file, weights = package_paths(pkg)
    files = CoreMLFiles(pkg.name, _load_spec(root_file, pkg.name), pkg, weights, [root_file])
    return files


def package_paths(pkg: Path) -> tuple[Path, Path | None]:
    """The root model file and the weights folder of an ``.mlpackage``, from its manifest,
    every entry checked to stay inside ``Data/`` of the package."""
    where = pkg.name
    manifest = pkg / "Manifest.json"
    if not manifest.is_file():
        raise ModelLoadError(f"{where}: not an .mlpackage (no Manifest.json)")
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelLoadError(f"{where}: Manifest.json is larger than 1 MiB; refused")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        entries = doc["itemInfoEntries"]
        root_id = doc["rootModelIdentifier"]
        if not isinstance(entries, dict) or root_id not in entries:
            raise KeyError("rootModelIdentifier")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{where}: Manifest.json is unreadable ({_one_line(e)})") from None
    data = pkg / "Data"
    paths: dict[str, Path] = {}
    weights = None
    for key, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ModelLoadError(f"{where}: Manifest.json entry {key!r} has no path")
        paths[key] = contained(data, entry["path"], f"{where}: Manifest.json entry {key!r}")
        if entry.get("name") == "weights":
            weights = paths[key]
    root_file = paths[root_id]
    if not root_file.is_file():
        raise ModelLoadError(f"{where}: the root model {root_file.relative_to(pkg)} is missing")
    if weights is None:
        weights = root_file.parent / "weights"
    return root_file, weights if weights.is_dir() else None


def contained(folder: Path, rel: str, what: str) -> Path:
    """``folder / rel``, refused unless it stays inside ``folder`` (absolute paths, ``..``
    and symbolic links leading out), checked before anything is opened."""
    parts = Path(rel).parts
    if not rel or "\0" in rel or Path(rel).is_absolute() or ".." in parts or "\\" in rel:
        raise ModelLoadError(f"{what}: path {rel!r} leaves the package; refused")
    try:
        base = folder.resolve()
        target = (folder / rel).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise ModelLoadError(f"{what}: path {rel!r}: {_one_line(e)}") from None
    if target != base and base not in target.parents:
        raise ModelLoadError(f"{what}: path {rel!r} resolves outside the package; refused")
    return target


def _load_spec(path: Path, where: str) -> Any:
    ct = quiet_coremltools()
    from google.protobuf.message import DecodeError

    try:
        return ct.utils.load_spec(os.fspath(path))
    except DecodeError as e:
        raise ModelLoadError(
            f"{where}: not a Core ML model (the protobuf does not parse: {_one_line(e)})"
        ) from None
    except (OSError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{where}: {_one_line(e)}") from None


def _checked(files: CoreMLFiles) -> CoreMLFiles:
    """A spec with a model type, a version and inputs (a multi-function program declares its
    inputs per function)."""
    spec = files.spec
    if not files.kind:
        raise ModelLoadError(f"{files.name}: not a Core ML model (the spec holds no model type)")
    inputs = spec.description.input or [f.input for f in spec.description.functions]
    if spec.specificationVersion <= 0 or not inputs:
        raise ModelLoadError(
            f"{files.name}: not a Core ML model (no specification version or no inputs)"
        )
    return files


def weight_file(files: CoreMLFiles, file_name: str, what: str) -> Path:
    """The weight file an ML Program's blob value names (``@model_path/weights/weight.bin``):
    coremltools keeps the base name and opens it in the weights folder; so does nnxc, after
    checking that the file exists inside the package."""
    if files.weights_dir is None:
        raise ModelLoadError(
            f"{files.name}: {what} is stored in {file_name!r}, but the model has no weights folder"
        )
    base = file_name.split("/")[-1]
    path = contained(files.weights_dir, base, f"{files.name}: {what}")
    if not path.is_file():
        raise ModelLoadError(f"{files.name}: {what}: weight file {base!r} is missing")
    return path


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
