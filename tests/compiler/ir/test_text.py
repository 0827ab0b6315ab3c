"""The IR text form: print -> parse -> print is the identity, and errors point at the text."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.ir.builder import Builder
from compiler.ir.graph import Graph
from compiler.ir.ops import OPS, Attr, define
from compiler.ir.text import (
    INLINE_LIMIT,
    ParseError,
    format_attr,
    format_type,
    graph_constants,
    parse_graph,
    print_graph,
)
from compiler.ir.types import OptionalType, SequenceType, TensorType
from compiler.ir.verify import verify

# -- test-only ops (registration is global: define once even if the module loads twice) ------


def _split_infer(in_types, attrs):
    x = in_types[0]
    axis = attrs["axis"]
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1 :]) for s in attrs["sizes"]]


def _split_ref(xs, attrs):
    return np.split(xs[0], np.cumsum(attrs["sizes"])[:-1], axis=attrs["axis"])


if "test_e_split" not in OPS:
    define(
        "test_e_split",
        inputs=["x"],
        attrs={"axis": Attr("int"), "sizes": Attr("ints")},
        infer=_split_infer,
        reference=_split_ref,
        num_outputs=None,
    )
if "test_e_kinds" not in OPS:
    define(
        "test_e_kinds",
        inputs=["x", "y?", "z?"],
        attrs={
            "i": Attr("int", 0),
            "f": Attr("float", 1.0),
            "b": Attr("bool", False),
            "s": Attr("str", "a", choices=("a", 'b "quoted"\\n')),
            "ints": Attr("ints", []),
            "floats": Attr("floats", []),
            "dims": Attr("dims", []),
            "maybe": Attr("float?", None),
            "dtype": Attr("dtype", "float32"),
        },
        infer=lambda ts, a: ts[0],
        reference=lambda xs, a: xs[0],
    )


def roundtrip(graph: Graph, **kw) -> tuple[str, Graph]:
    text = print_graph(graph)
    parsed = parse_graph(text, graph_constants(graph), **kw)
    assert print_graph(parsed) == text
    verify(parsed)
    return text, parsed


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def full_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    """A graph using every feature of the text form."""
    g = Graph("torch-jit-export")
    g.metadata["producer"] = "pytorch 2.4"
    g.metadata["odd key"] = 'has "quotes"'
    x = g.add_input("gpu_0/data_0", TensorType("float32", ("batch", 4, "w")))
    s = g.add_input("input.1", TensorType("float32", ()))
    b = Builder(g, fold=False)
    arrays = {
        "f16": np.array([0.1, -0.0, 65504, 6e-8, np.inf], np.float16),
        "f64": np.array([[0.1, 1e-300], [np.nan, -np.inf]], np.float64),
        "i8": np.array([-128, 127], np.int8),
        "i64": np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], np.int64),
        "u64": np.array([0, np.iinfo(np.uint64).max], np.uint64),
        "flags": np.array([[True], [False]]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((2, 0), np.int32),
        "onnx::Conv_3": np.random.default_rng(0).standard_normal((5, 4, 1)).astype(np.float32),
    }
    consts = {k: b.const(v, name=k) for k, v in arrays.items()}
    (y,) = b.op("add", [x, x], node_name='n "1"')
    (z,) = b.op("add", [y, s], output_names=["weird name ü"])
    parts = b.op("test_e_split", [z], {"axis": 1, "sizes": [1, 3]}, node_name="split/1")
    attrs = {
        "i": -3,
        "f": 0.1 + 0.2,
        "b": True,
        "s": 'b "quoted"\\n',
        "ints": [1, -2],
        "floats": [float("inf"), float("-inf"), 1e-310],
        "dims": ["batch", 3],
        "maybe": float("nan"),
        "dtype": "int64",
    }
    (k,) = b.op("test_e_kinds", [parts[0], None, parts[1]], attrs)
    (big,) = b.op("add", [consts["onnx::Conv_3"], consts["onnx::Conv_3"]])
    extra = [consts[k] for k in ("f16", "f64", "i8", "i64", "u64", "empty")]
    g.set_outputs(
        [k, parts[1], big, consts["flags"], consts["scalar"], x, *extra],
        ["out", parts[1].name, "big", "flags", "s", "passthrough", *(v.name for v in extra)],
    )
    return g, arrays


def test_roundtrip_every_feature():
    g, arrays = full_graph()
    text, parsed = roundtrip(g)
    assert '%"gpu_0/data_0": float32[batch, 4, w]' in text
    assert "%input.1: float32[]" in text
    assert '%"onnx::Conv_3" = const float32[5, 4, 1] @"onnx::Conv_3"' in text
    assert "%4 = test_e_kinds(%2, _, %3) {" in text
    assert '%"weird name ü" = add(%1, %input.1) : float32[batch, 4, w]\n' in text
    assert 'loc("n \\"1\\"")' in text
    assert 'meta "odd key" = "has \\"quotes\\""' in text
    assert "%2, %3 = test_e_split(" in text
    assert ': float32[batch, 1, w], float32[batch, 3, w] loc("split/1")' in text
    assert 'return %4 as "out", %3, %5 as "big", %flags, %scalar as "s", ' in text
    assert "%f16 = const float16[5] dense<[0.1, -0.0, 6.55e+04, 6e-08, inf]>" in text
    assert "%f64 = const float64[2, 2] dense<[[0.1, 1e-300], [nan, -inf]]>" in text
    assert "%u64 = const uint64[2] dense<[0, 18446744073709551615]>" in text
    assert "%empty = const int32[2, 0] dense<[[], []]>" in text
    assert "%scalar = const float32[] dense<2.5>" in text
    assert 'graph "torch-jit-export"(' in text
    assert parsed.metadata == g.metadata
    assert parsed.output_names == g.output_names
    assert [n.name for n in parsed.nodes] == [n.name for n in g.nodes]
    for v in parsed.constants():
        assert same_bits(v.const, arrays[v.name]), v.name
    assert parsed.nodes[3].attrs["maybe"] != parsed.nodes[3].attrs["maybe"]  # nan kept
    assert parsed.nodes[3].attrs["floats"][2] == 1e-310
    assert parsed.nodes[3].inputs[1] is None


def test_attributes_print_sorted_and_typed():
    g, _ = full_graph()
    line = next(ln for ln in print_graph(g).splitlines() if "test_e_kinds" in ln)
    assert (
        '{b = true, dims = ["batch", 3], dtype = "int64", f = 0.30000000000000004, '
        "floats = [inf, -inf, 1e-310], i = -3, ints = [1, -2], maybe = nan, "
        's = "b \\"quoted\\"\\\\n"}'
    ) in line


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_floats_roundtrip_bit_exactly(dtype):
    rng = np.random.default_rng(1)
    bits = {"float16": np.uint16, "float32": np.uint32, "float64": np.uint64}[dtype]
    for _ in range(20):
        raw = rng.integers(0, np.iinfo(bits).max, INLINE_LIMIT, dtype=bits, endpoint=True)
        a = raw.view(dtype)
        a = np.where(np.isnan(a), np.array(0.5, dtype), a)  # nan payloads are not kept
        g = Graph()
        c = g.constant(a, "c")
        g.set_outputs([c])
        _, parsed = roundtrip(g)
        assert same_bits(parsed.outputs[0].const, a)


def test_large_constants_by_reference_keep_the_array_object():
    g = Graph()
    big = np.arange(INLINE_LIMIT + 1, dtype=np.int64)
    small = np.arange(INLINE_LIMIT, dtype=np.int64)
    g.set_outputs([g.constant(big, "big"), g.constant(small, "small")])
    consts = graph_constants(g)
    assert list(consts) == ["big"] and consts["big"] is big
    text = print_graph(g)
    assert "%big = const int64[17] @big" in text
    parsed = parse_graph(text, consts)
    assert parsed.outputs[0].const is big
    inline = print_graph(g, large_constants="inline")
    assert "%big = const int64[17] dense<[0, 1, 2," in inline
    assert print_graph(parse_graph(inline)) == text


def test_elided_constants_print_a_digest_and_do_not_parse():
    g = Graph()
    g.set_outputs([g.constant(np.ones((4, 5), np.float32), "w")])
    text = print_graph(g, large_constants="elide")
    assert "%w = const float32[4, 5] <elided sha256=" in text
    with pytest.raises(ParseError, match=r"line 2, column 28: an elided constant cannot be parsed"):
        parse_graph(text)


def test_bad_large_constants_mode():
    with pytest.raises(ValueError, match="ref, inline, elide"):
        print_graph(Graph(), large_constants="full")


def test_empty_graph():
    text = print_graph(Graph("g"))
    assert text == "graph g() {\n  return\n}\n"
    assert print_graph(parse_graph(text)) == text


HAND_WRITTEN = """
# comments are ignored
graph main(%x: float32[n, 3], %y: float32[3]) {
  %half = const float32[2, 3] dense<0.5>      # a splat fills the shape
  %1 = add(%x, %y)                            # output type inferred
  %2 = test_e_kinds(%1) {f = 2}               # defaults filled, 2 read as a float
  %3 = add(%half, %half)
  return %2, %3
}
"""


def test_hand_written_text_gets_defaults_types_and_splats():
    g = parse_graph(HAND_WRITTEN)
    verify(g)
    assert g.nodes[0].outputs[0].type == TensorType("float32", ("n", 3))
    attrs = g.nodes[1].attrs
    assert attrs["f"] == 2.0 and isinstance(attrs["f"], float)
    assert attrs["dtype"] == "float32" and attrs["maybe"] is None
    np.testing.assert_array_equal(g.nodes[2].inputs[0].const, np.full((2, 3), 0.5, np.float32))
    text = print_graph(g)
    assert "%half = const float32[2, 3] dense<[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]>" in text
    assert print_graph(parse_graph(text)) == text


def test_without_check_the_text_is_taken_as_written():
    text = """graph main(%x: float32[3]) {
  %1 = test_e_kinds(%x) {f = 2} : int8[7]
  return %1
}"""
    g = parse_graph(text, check=False)
    assert g.nodes[0].attrs == {"f": 2}
    assert g.nodes[0].outputs[0].type == TensorType("int8", (7,))
    with pytest.raises(ParseError, match="infers float32"):
        parse_graph(text)


def test_format_attr_refuses_unknown_values():
    assert format_attr(np.int64(3)) == "3"
    assert format_attr((1.5, None)) == "[1.5, none]"
    with pytest.raises(TypeError, match="no text form"):
        format_attr({"a": 1})


BASE = "graph main(%x: float32[2]) {{\n  {}\n  return %1\n}}"


@pytest.mark.parametrize(
    "line, where, message",
    [
        ("%1 = conv2x(%x) : float32[2]", (2, 8), "unknown core op 'conv2x'"),
        ("%1 = add(%x, %q) : float32[2]", (2, 16), "value %q is not defined"),
        ("%1 = relu(%x) : float32[3]", (2, 8), "relu infers float32[2], the text says float32[3]"),
        ("%1 = relu(%x) : floatt[2]", (2, 19), "unknown dtype 'floatt'"),
        ("%1 = relu(%x) : float32[-1]", (2, 27), "expected a dimension"),
        ("%1 = relu(%x) ; float32[2]", (2, 17), "unexpected character ';'"),
        ("%1 = relu(%x %x)", (2, 16), "expected ',' or ')'"),
        ("%1 = relu(%x) {alpha = 1}", (2, 8), "relu: unknown attribute"),
        ("%1 = add(%x) : float32[2]", (2, 8), "add takes 2..2 inputs, got 1"),
        ("%1, %2 = relu(%x) : float32[2]", (2, 12), "2 outputs but 1 types"),
        ("%1 = const float32[2] dense<[1, 2, 3]>", (2, 31), "dense literal has shape [3]"),
        ("%1 = const int8[2] dense<[1, 300]>", (2, 28), "bad dense literal"),
        ("%1 = const int8[2] dense<[1, 2.5]>", (2, 32), "2.5 is not a valid int8 element"),
        ("%1 = const bool[1] dense<[1]>", (2, 29), "1 is not a valid bool element"),
        ("%1 = const float32[n] dense<1.0>", (2, 14), "a constant needs a static type"),
        ("%1 = const float32[20] @w", (2, 26), "constant @w is not in the constants"),
        ("%x = relu(%x) : float32[2]", (2, 3), "value %x is defined twice"),
        ('%1 = relu(%x) : float32[2] loc("a)', (2, 34), "unexpected character"),
    ],
)
def test_parse_errors_name_line_and_column(line, where, message):
    with pytest.raises(ParseError) as info:
        parse_graph(BASE.format(line))
    err = info.value
    assert message in err.message
    assert (err.line, err.column) == where, str(err)
    assert str(err).startswith(f"line {where[0]}, column {where[1]}: ")
    assert str(err).endswith("\n  " + " " * (where[1] - 1) + "^")


def test_constant_reference_of_the_wrong_type():
    text = "graph g() {\n  %w = const float32[20] @w\n  return %w\n}"
    with pytest.raises(ParseError, match=r"column 26: constant @w is int64\[20\], the text says"):
        parse_graph(text, {"w": np.zeros(20, np.int64)})


def test_missing_return_and_trailing_text():
    with pytest.raises(ParseError, match="line 1, column 12: expected 'return'"):
        parse_graph("graph g() {}")
    with pytest.raises(ParseError, match="line 3, column 1: expected end of text"):
        parse_graph("graph g() {\nreturn }\nextra")
    with pytest.raises(ParseError, match="line 2, column 14: expected an output name"):
        parse_graph("graph g(%x: bool[]) {\nreturn %x as x\n}")


# -- regions, sequences and optionals ---------------------------------------------------------
NESTED = """graph main(%n: int64[], %x: float32[3], %s: seq<float32>[float32[3], float32[2, 3]], %o: opt<float32[3]>, %e: empty<seq<int64>[]>) {
  %k = const int64[] dense<2>
  %z = const int64[] dense<0>
  %r, %ys = loop(%n, _, %x, %k, %z) {iterations = "t", num_carried = 1} : float32[3], float32[t, 3] {
    body(%i: int64[], %go: bool[], %v: float32[3], %k_1: int64[], %z_1: int64[]) {
      %m = mod(%i, %k_1) {fmod = false} : int64[]
      %even = equal(%m, %z_1) : bool[]
      %w = if(%even, %v, %i) : float32[3] {
        then(%v_1: float32[3], %i_1: int64[]) {
          %f = cast(%i_1) {round_mode = "up", saturate = true, to = "float32"} : float32[]
          %a = add(%v_1, %f) : float32[3]
          yield %a
        }
        else(%v_2: float32[3], %i_2: int64[]) {
          %b = neg(%v_2) : float32[3]
          yield %b
        }
      }
      yield %go, %w, %v
    }
  }
  %g = optional_get(%o) : float32[3]
  %first = sequence_at(%s) {position = 0} : float32[3]
  %sum = add(%g, %first) : float32[3]
  return %r, %ys, %sum, %s, %e
}
"""  # noqa: E501


def test_nested_regions_with_captures_roundtrip_exactly():
    g = parse_graph(NESTED)
    assert print_graph(g) == NESTED
    _, parsed = roundtrip(g)
    (loop, *_rest) = parsed.nodes
    assert loop.op == "loop" and len(loop.regions) == 1
    body = loop.regions[0]
    inner = [n for n in body.nodes if n.op == "if"]
    assert len(inner) == 1 and [len(r.nodes) for r in inner[0].regions] == [2, 1]
    # the captures are the if's operands and the regions' arguments, not the outer values
    assert inner[0].inputs[1] is body.inputs[2] and inner[0].inputs[2] is body.inputs[0]
    assert inner[0].regions[0].inputs[0] is not body.inputs[2]
    assert loop.outputs[1].type == TensorType("float32", ("t", 3))


def test_sequences_and_optionals_in_signatures():
    g = parse_graph(NESTED)
    s, o, e = g.inputs[2:]
    assert s.type == SequenceType(
        "float32", (TensorType("float32", (3,)), TensorType("float32", (2, 3)))
    )
    assert o.type == OptionalType(TensorType("float32", (3,)), True)
    assert e.type == OptionalType(SequenceType("int64", ()), False)
    assert [format_type(v.type) for v in g.outputs[3:]] == [
        "seq<float32>[float32[3], float32[2, 3]]",
        "empty<seq<int64>[]>",
    ]


def _region_text(then_name: str = "then", yield_line: str = "yield %a", extra: str = "") -> str:
    return (
        "graph main(%c: bool[], %x: float32[2]) {\n"
        "  %r = if(%c, %x) : float32[2] {\n"
        f"    {then_name}(%a: float32[2]) {{\n"
        f"      {yield_line}\n"
        "    }\n"
        f"{extra}"
        "  }\n"
        "  return %r\n"
        "}"
    )


ELSE = "    else(%b: float32[2]) {\n      yield %b\n    }\n"


@pytest.mark.parametrize(
    "text, line, token, message",
    [
        (_region_text("thn", extra=ELSE), 3, "thn", "expected region 'then', found 'thn'"),
        (
            _region_text(extra=ELSE.replace("else", "otherwise")),
            6,
            "otherwise",
            "expected region 'else', found 'otherwise'",
        ),
        (
            _region_text(yield_line="%d = neg(%a) : float32[2]", extra=ELSE),
            5,
            "}",
            "expected 'yield' before the end of region 'then'",
        ),
        (_region_text(), 2, "if", "2 regions expected, found 1"),
        (_region_text(extra=ELSE + ELSE), 9, "else", "expected region '}' (no more regions)"),
        (_region_text(yield_line="yield %zz", extra=ELSE), 4, "%zz", "value %zz is not defined"),
    ],
)
def test_region_parse_errors_name_line_and_column(text, line, token, message):
    with pytest.raises(ParseError) as info:
        parse_graph(text)
    err = info.value
    assert message in err.message, err.message
    source_line = text.splitlines()[line - 1]
    assert (err.line, err.column) == (line, source_line.index(token) + 1), str(err)


def test_region_yielding_the_wrong_types_is_a_parse_error_at_the_op():
    text = _region_text(
        extra=ELSE.replace("yield %b", '%q = cast(%b) {to = "int32"} : int32[2]\n      yield %q')
    )
    with pytest.raises(ParseError) as info:
        parse_graph(text)
    assert "if: the branches yield different types" in info.value.message
    assert (info.value.line, info.value.column) == (2, 8)
