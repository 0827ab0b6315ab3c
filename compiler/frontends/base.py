"""The interface every model format plugs into, and the registry the driver looks formats up in.

A frontend says what it accepts (file suffixes, folders, in-memory objects) and turns a model
into an IR graph plus a ``Source`` (format, display name, sha256 of every byte it read). The
registry lists frontends in a fixed order; the first that accepts a model imports it.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import ModelLoadError, NnxcError
from compiler.ir.graph import Graph


@dataclass(frozen=True)
class Source:
    """Where a graph came from: format, a name to show, and the sha256 of the model bytes."""

    format: str
    name: str
    sha256: str


class Frontend(ABC):
    """One model format. Subclasses set the class attributes and implement ``import_model``;
    they import their format's library lazily, so that listing formats stays cheap."""

    name: str
    """Short lower-case name, as in artifact metadata (``onnx``, ``nnef``)."""
    title: str
    """Name shown to users (``ONNX``, ``NNEF``)."""
    suffixes: tuple[str, ...] = ()
    """File name endings this format uses, lower case, longest first (``.nnef.tgz``)."""
    folders: bool = False
    """Whether a model can be a folder."""
    accepts_text: str = ""
    """What to give, in words, for help and errors (``an .onnx file``)."""
    objects: tuple[str, ...] = ()
    """In-memory models the API accepts, by type name (``onnx.ModelProto``)."""
    fallback: bool = False
    """Whether this format reads files whose suffix no format claims (ONNX: ``model.pb``)."""
    functions: bool = False
    """Whether a model may hold several functions, one chosen by ``import_model(...,
    function=NAME)`` (Core ML ML Programs)."""

    def accepts(self, model: Any) -> bool:
        """Whether ``model`` (a path or an in-memory object) is in this format."""
        if not isinstance(model, str | os.PathLike):
            return False
        path = Path(model)
        if path.is_dir():
            return self.folders and self.accepts_folder(path)
        return path.name.lower().endswith(self.suffixes)

    def accepts_folder(self, path: Path) -> bool:
        """Whether the folder holds a model of this format."""
        return False

    def sniff(self, path: Path) -> bool:
        """Whether a file with a suffix no format claims looks like this format inside."""
        return False

    def stem(self, path: Path) -> str:
        """The model's name without the format's suffix (default artifact names)."""
        name = path.name
        for suffix in self.suffixes:
            if name.lower().endswith(suffix):
                return name[: -len(suffix)] or name
        return name

    @abstractmethod
    def import_model(
        self,
        model: Any,
        input_shapes: Mapping[str, Any] | None = None,
        input_values: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[Graph, Source]:
        """The model as an IR graph of core ops, before any pass, and where it came from.

        ``input_shapes`` binds inputs to shapes (sizes or dim names); ``input_values`` binds
        inputs to fixed data (they become constants).
        """


_MODULES = (
    "compiler.frontends.onnx.frontend",
    "compiler.frontends.nnef.frontend",
    "compiler.frontends.coreml.frontend",
)
"""The frontends nnxc ships, in the order they are asked whether they accept a model."""

_FRONTENDS: dict[str, Frontend] = {}


def register(frontend: Frontend) -> Frontend:
    """Add a frontend (formats of plug-ins register the same way)."""
    if frontend.name in _FRONTENDS:
        raise ValueError(f"frontend {frontend.name!r} registered twice")
    _FRONTENDS[frontend.name] = frontend
    return frontend


def frontends() -> list[Frontend]:
    """Every registered frontend, in lookup order."""
    if not _FRONTENDS:
        import importlib

        for module in _MODULES:
            importlib.import_module(module)
    return list(_FRONTENDS.values())


def formats_text() -> str:
    """One line naming what each format accepts, for help texts and errors."""
    return "; ".join(f"{f.title}: {f.accepts_text}" for f in frontends())


def frontend_for(model: Any) -> Frontend:
    """The frontend that reads ``model``, or an error naming the formats nnxc reads."""
    for frontend in frontends():
        if frontend.accepts(model):
            return frontend
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError(f"{path}: no such file or folder")
        if path.is_file():
            for frontend in frontends():
                if frontend.sniff(path):
                    return frontend
            for frontend in frontends():
                if frontend.fallback:
                    return _Guessed(frontend)
        what = "folder" if path.is_dir() else "file"
        raise NnxcError(
            f"{path}: not a model nnxc can read (a {what} of no known format); "
            f"nnxc reads {formats_text()}"
        )
    objects = [name for f in frontends() for name in f.objects]
    raise NnxcError(
        f"cannot compile an object of type {type(model).__name__}; give a path "
        f"({formats_text()}) or {' or '.join(objects) or 'a path'}"
    )


class _Guessed(Frontend):
    """The fallback format, reading a file that neither its name nor its first bytes place: a
    load error also says which formats nnxc reads (the file may be of none)."""

    def __init__(self, inner: Frontend) -> None:
        self.inner = inner
        self.name, self.title = inner.name, inner.title
        self.suffixes, self.folders = inner.suffixes, inner.folders
        self.accepts_text, self.fallback = inner.accepts_text, inner.fallback
        self.functions = False

    def accepts(self, model: Any) -> bool:
        return self.inner.accepts(model)

    def stem(self, path: Path) -> str:
        return self.inner.stem(path)

    def import_model(
        self,
        model: Any,
        input_shapes: Mapping[str, Any] | None = None,
        input_values: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[Graph, Source]:
        try:
            return self.inner.import_model(model, input_shapes, input_values)
        except ModelLoadError as e:
            raise ModelLoadError(
                f"{e}; read as {self.title} since no format claims the file's name; nnxc reads "
                f"{formats_text()}"
            ) from None


def file_sha256(paths: Iterable[Path], root: Path | None = None) -> str:
    """sha256 over files: each file's path relative to ``root`` (when given) and its bytes,
    so that a folder's hash covers every file read and their names."""
    digest = hashlib.sha256()
    for path in paths:
        if root is not None:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
