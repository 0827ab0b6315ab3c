"""The NNEF frontend: NNEF 1.0.5 models read with the Khronos parser.

``import_nnef`` loads the importer (and the ``nnef`` package) on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_nnef"]


def __getattr__(name: str) -> Any:
    if name == "import_nnef":
        from .importer import import_nnef

        return import_nnef
    raise AttributeError(name)
