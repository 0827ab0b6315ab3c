"""Compile options: one definition for the API keywords and the ``nnxc compile`` flags."""

from __future__ import annotations

from dataclasses import fields

import pytest

from compiler.cli import build_parser, options_from_args
from compiler.errors import NnxcError
from compiler.options import CompileOptions, parse_shape_binding


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return {s for a in sub.choices[command]._actions for s in a.option_strings}  # noqa: SLF001


@pytest.mark.parametrize("command", ["compile", "inspect"])
def test_every_option_has_a_flag(command: str) -> None:
    flags = _flags(command)
    for f in fields(CompileOptions):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        assert flag in flags, f"{f.name} has no flag {flag} on nnxc {command}"
        assert f.metadata.get("help"), f"{f.name} has no help text"


def test_defaults_match_api_defaults() -> None:
    args = build_parser().parse_args(["compile", "m.onnx"])
    assert CompileOptions.from_kwargs(**options_from_args(args)) == CompileOptions()


def test_flags_parse_into_options() -> None:
    args = build_parser().parse_args(
        [
            "compile",
            "m.onnx",
            "--target",
            "aarch64",
            "--input-shape",
            "data=1,3,224,224",
            "--input-shape",
            "mask=batch,7",
            "--passes",
            "dce, cse",
            "--verify-each",
            "--print-ir-after",
            "all",
            "--time-passes",
            "--precision",
            "fp16",
            "--no-cuda-graph",
            "--no-runtime-checks",
        ]
    )
    opts = CompileOptions.from_kwargs(**options_from_args(args))
    assert opts == CompileOptions(
        target="aarch64",
        input_shapes={"data": [1, 3, 224, 224], "mask": ["batch", 7]},
        passes=["dce", "cse"],
        verify_each=True,
        print_ir_after=["all"],
        time_passes=True,
        precision="fp16",
        cuda_graph=False,
        runtime_checks=False,
    )


def test_unknown_keyword() -> None:
    with pytest.raises(TypeError, match="unknown compile option.*turbo.*known: .*passes"):
        CompileOptions.from_kwargs(turbo=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data=1,3,224,224", ("data", [1, 3, 224, 224])),
        ("x=batch, 4", ("x", ["batch", 4])),
        ("scalar=", ("scalar", [])),
        ("a=b=2,3", ("a=b", [2, 3])),
        ("in/0=1", ("in/0", [1])),
    ],
)
def test_parse_shape_binding(text: str, expected: tuple) -> None:
    assert parse_shape_binding(text) == expected


@pytest.mark.parametrize("text", ["data", "=1,2", "x=1,-2", "x=1.5", "x=1,,2", "x=3d"])
def test_parse_shape_binding_errors(text: str) -> None:
    with pytest.raises(NnxcError, match="--input-shape"):
        parse_shape_binding(text)


@pytest.mark.parametrize(("given", "expected"), [("8G", 8 << 30), (4096, 4096), (None, None)])
def test_max_memory_option(given: str | int | None, expected: int | None) -> None:
    assert CompileOptions(max_memory=given).max_memory == expected


@pytest.mark.parametrize("given", ["lots", 0, -5])
def test_max_memory_option_refuses(given: str | int) -> None:
    with pytest.raises(NnxcError, match="max.memory"):
        CompileOptions(max_memory=given)


def test_max_memory_flag() -> None:
    args = build_parser().parse_args(["compile", "m.onnx", "--max-memory", "512M"])
    assert CompileOptions.from_kwargs(**options_from_args(args)).max_memory == 512 << 20
