"""Errors a user can act on. The CLI prints these as one line; anything else is a bug."""

from __future__ import annotations


class NnxcError(Exception):
    """Base of every error nnxc reports to users."""


class ModelLoadError(NnxcError):
    """The model file is missing, unreadable, incomplete, or unsafe (external data paths)."""


class UnsupportedOpsError(NnxcError):
    """The model uses ops nnxc cannot convert; the message lists all of them at once."""


class ConversionError(NnxcError):
    """A node could not be converted; the message names the node and its op."""


class NeedsValueError(ConversionError):
    """A shape-defining operand (shape, axes, pads...) is not known at compile time.

    ``value_name`` names the IR value; when it is a graph input, binding that input to a
    value (``input_values=``) lets the conversion go through.
    """

    def __init__(self, message: str, value_name: str) -> None:
        super().__init__(message)
        self.value_name = value_name


class InputError(NnxcError):
    """Run-time inputs do not match the model: unknown or missing names, shapes, dtypes."""


class ArtifactError(NnxcError):
    """A file that is not an nnxc artifact, or one this nnxc/TVM cannot load."""


class ResourceLimitError(NnxcError):
    """The model needs more than nnxc allows: a tensor or the constants over --max-memory,
    subgraphs nested too deep. (An archive unpacking too large is a ModelLoadError.)"""
