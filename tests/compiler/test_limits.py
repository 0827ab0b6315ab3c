"""Resource bounds: sizes as users write them, the limit in force, and the refusals."""

from __future__ import annotations

import pytest

from compiler.errors import NnxcError, ResourceLimitError
from compiler.limits import (
    MAX_REGION_DEPTH,
    check_depth,
    check_tensor,
    format_size,
    machine_memory,
    max_memory,
    memory_limit,
    parse_size,
    tensor_bytes,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8G", 8 << 30),
        ("512M", 512 << 20),
        ("64k", 64 << 10),
        ("1.5G", 3 << 29),
        ("2GiB", 2 << 30),
        ("1048576", 1 << 20),
        (" 10MB ", 10 << 20),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "8X", "-1M", "0", "1,5G", "eight"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(NnxcError, match="--max-memory"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(4 << 40) == "4.0 TiB"
    assert format_size(3 << 19) == "1.5 MiB"
    assert format_size(100) == "100 B"


def test_default_limit_is_the_machine_memory() -> None:
    assert max_memory() == machine_memory()
    assert machine_memory() > 1 << 28  # a machine running these tests has over 256 MiB


def test_memory_limit_is_scoped() -> None:
    with memory_limit(1 << 20):
        assert max_memory() == 1 << 20
        with memory_limit(None):
            assert max_memory() == machine_memory()
        assert max_memory() == 1 << 20
    assert max_memory() == machine_memory()


def test_tensor_bytes_does_not_wrap_around() -> None:
    # numpy's int64 product of these dims is 0; the true size is 2^80 elements.
    assert tensor_bytes([1 << 40, 1 << 40], 4) == 1 << 82


def test_check_tensor() -> None:
    with memory_limit(1000):
        check_tensor("w", [250], 4)  # exactly the limit
        with pytest.raises(ResourceLimitError, match=r"w of shape \[251\] needs 1004 B.*1000 B"):
            check_tensor("w", [251], 4)


def test_check_depth() -> None:
    check_depth(MAX_REGION_DEPTH, "m.onnx")
    with pytest.raises(ResourceLimitError, match="m.onnx: subgraphs nested more than"):
        check_depth(MAX_REGION_DEPTH + 1, "m.onnx")
