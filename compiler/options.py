"""Compile options, defined once: the Python API takes them as keywords, and ``nnxc compile``
builds its flags from the same fields (help text included), so the two cannot drift."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from compiler.errors import NnxcError
from compiler.limits import parse_size


@dataclass
class CompileOptions:
    target: str = field(
        default="cpu",
        metadata={
            "help": "cpu (LLVM for this host, -mcpu detected), aarch64, cuda (NVIDIA GPUs: "
            "one fatbin with SASS for sm_80, sm_86, sm_89, sm_90 and PTX for newer GPUs; needs "
            "nvcc), cuda:sm_80,sm_90 (the archs to ship), or a TVM target JSON dict such as "
            '\'{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}\' or \'{"kind": "cuda", '
            '"arch": "sm_90"}\'',
        },
    )
    input_shapes: dict[str, list[int | str]] = field(
        default_factory=dict,
        metadata={
            "flag": "--input-shape",
            "help": "bind an input's shape, e.g. data=1,3,224,224 (repeatable); dims may be "
            "names to keep them symbolic",
            "parse": "shape",
        },
    )
    function: str | None = field(
        default=None,
        metadata={
            "metavar": "NAME",
            "help": "the function of a multi-function Core ML ML Program to compile (default: "
            "its default function, main)",
        },
    )
    passes: list[str] | None = field(
        default=None,
        metadata={
            "help": "comma-separated pass pipeline (default: the standard pipeline)",
            "parse": "list",
        },
    )
    verify_each: bool = field(
        default=False, metadata={"help": "run the IR verifier after every pass"}
    )
    print_ir_after: list[str] = field(
        default_factory=list,
        metadata={
            "help": "print the IR after the named passes (comma-separated) or 'all'",
            "parse": "list",
        },
    )
    time_passes: bool = field(default=False, metadata={"help": "report the time of each pass"})
    records: str | None = field(
        default=None,
        metadata={
            "metavar": "DIR",
            "help": "apply the tuning records in DIR (written by nnxc tune): each kernel with "
            "records gets the fastest one, the others our default schedules",
        },
    )

    precision: str = field(
        default="fp32",
        metadata={
            "help": "fp32 (default) or fp16: mixed precision, float16 kernels with float32 "
            "accumulation and float32 softmax/normalization statistics, inputs and outputs "
            "keeping their dtypes (CUDA targets)",
        },
    )
    cuda_graph: bool = field(
        default=True,
        metadata={
            "flag": "--no-cuda-graph",
            "help": "do not capture a static-shape model's kernels in a CUDA graph (CUDA "
            "targets; on by default: one graph launch per run instead of one per kernel)",
        },
    )
    runtime_checks: bool = field(
        default=True,
        metadata={
            "flag": "--no-runtime-checks",
            "help": "leave out the run-time checks of indices (gather, scatter) and integer "
            "divisors known only at run time (CPU targets; on by default: bad input data then "
            "raises an error instead of crashing the process)",
        },
    )

    max_memory: int | str | None = field(
        default=None,
        metadata={
            "metavar": "SIZE",
            "help": "refuse, before allocating, a model whose constants (in all) or any one "
            "tensor need more than SIZE bytes (8G, 512M, 64K or bytes; default: this machine's "
            "memory)",
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.max_memory, str):
            self.max_memory = parse_size(self.max_memory)
        elif self.max_memory is not None and (
            isinstance(self.max_memory, bool) or self.max_memory <= 0
        ):
            raise NnxcError(f"max_memory {self.max_memory!r}: expected a positive size")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> CompileOptions:
        names = {f.name for f in fields(cls)}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(
                f"unknown compile option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(names))}"
            )
        return cls(**kwargs)


def parse_shape_binding(text: str) -> tuple[str, list[int | str]]:
    """``name=1,3,224,224`` -> ("name", [1, 3, 224, 224]); a dim may be a name (``batch``).

    The input name may itself hold ``=`` or ``/``: the split is at the last ``=``.
    """
    name, sep, dims_text = text.rpartition("=")
    if not sep or not name:
        raise NnxcError(f"--input-shape {text!r}: expected NAME=D0,D1,... (e.g. data=1,3,224,224)")
    dims: list[int | str] = []
    for d in dims_text.split(",") if dims_text.strip() else []:
        d = d.strip()
        if re.fullmatch(r"\d+", d):
            dims.append(int(d))
        elif d.isidentifier():
            dims.append(d)
        else:
            raise NnxcError(f"--input-shape {text!r}: dim {d!r} is neither a size nor a name")
    return name, dims
