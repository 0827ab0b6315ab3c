"""The text form of the IR: a printer and a parser that round-trip every value with its type.

```
graph main(%x: float32[batch, 3, 8, 8], %"onnx::Shape_1": int64[4]) {
  meta producer = "pytorch"
  %w = const float32[2] dense<[1.0, 0.5]>
  %big = const float32[4, 3, 3, 3] @big
  %1 = conv(%x, %big, _) {dilations = [1, 1], groups = 1, pads = [1, 1, 1, 1],
       strides = [1, 1]} : float32[batch, 4, 8, 8] loc("conv1")      (one line in the text)
  %2, %3 = split(%1) {axis = 1, sizes = [2, 2]} : float32[batch, 2, 8, 8], float32[batch, 2, 8, 8]
  return %2 as "logits", %3
}
```

Golden tests of passes compare this text, and ``nnxc inspect`` prints it, so it is canonical:
attributes sorted by key, floats in the shortest form that reads back to the same bits (NaN
sign and payload excepted), value names quoted only when they hold characters other than
``[A-Za-z0-9_.]``. ``_`` is an absent optional input; ``as "name"`` gives the user-visible
output name when it differs from the value's; ``loc("...")`` keeps the source model's node
name; ``#`` starts a comment.

A control-flow node prints its regions after it, each with its block arguments and its
terminator; sequences and optionals print as ``seq<dtype>[elements...]``, ``opt<type>`` and
``empty<type>``:

```
  %r = if(%c, %x) : float32[3] {
    then(%x_1: float32[3]) {
      %2 = neg(%x_1) : float32[3]
      yield %2
    }
    else(%x_2: float32[3]) {
      yield %x_2
    }
  }
```

Constants of at most ``INLINE_LIMIT`` elements print as ``dense<...>``. Larger ones print as
``@name`` (their arrays come from ``graph_constants`` and go back through ``parse_graph``'s
``constants=``), as ``dense<...>`` with ``large_constants="inline"``, or as
``<elided sha256=...>`` with ``large_constants="elide"`` (for reading; such text does not parse).
The parser also accepts a splat ``dense<0.0>`` for any shape, and, when checking, omitted
attributes (defaults are filled in) and omitted output types (inferred).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .builder import infer_node_types
from .graph import Block, Graph, Node, Region, Value
from .ops.registry import get_op
from .types import DTYPES, OptionalType, SequenceType, TensorType, Type
from .types import dtype as dtype_of

INLINE_LIMIT = 16
"""Constants with at most this many elements print inline as ``dense<...>``."""

LARGE_CONSTANT_MODES = ("ref", "inline", "elide")

_BARE_NAME = re.compile(r"[A-Za-z0-9_.]+")
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ParseError(ValueError):
    """The text is not a valid graph; the message gives line and column."""

    def __init__(self, message: str, line: int, column: int, source_line: str = "") -> None:
        self.message = message
        self.line = line
        self.column = column
        text = f"line {line}, column {column}: {message}"
        if source_line:
            text += f"\n  {source_line}\n  {' ' * (column - 1)}^"
        super().__init__(text)


# -- printing ------------------------------------------------------------------------------


def _name(name: str) -> str:
    return name if _BARE_NAME.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _float(x: float) -> str:
    """Python's repr: shortest text that reads back to the same double (``inf``, ``nan``)."""
    return repr(float(x))


def format_attr(v: Any) -> str:
    """The text of one attribute value (plain Python values, as ``OpDef.check_attrs`` makes)."""
    if v is None:
        return "none"
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return _float(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def _element_formatter(dtype: np.dtype):
    d = dtype_of(dtype)
    if d.is_bool:
        return lambda x: "true" if x else "false"
    if d.is_float:
        # numpy's str of a scalar is the shortest text that reads back to the same value in
        # its own precision; reading it through a double first is exact (53 >= 2 * 24 + 2).
        return str
    return lambda x: str(int(x))


def format_dense(array: np.ndarray) -> str:
    """``dense<...>`` holding every element, nested like the array (a bare scalar for rank 0)."""
    fmt = _element_formatter(array.dtype)
    items = [fmt(x) for x in np.asarray(array).reshape(-1)]

    def nest(start: int, shape: tuple[int, ...]) -> str:
        if not shape:
            return items[start]
        step = math.prod(shape[1:])
        return "[" + ", ".join(nest(start + i * step, shape[1:]) for i in range(shape[0])) + "]"

    return f"dense<{nest(0, tuple(array.shape))}>"


def constant_digest(array: np.ndarray) -> str:
    """A short sha256 of the array's bytes, naming elided constants."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()[:16]


def _is_large(value: Value) -> bool:
    assert value.const is not None
    return value.const.size > INLINE_LIMIT


def graph_constants(graph: Graph) -> dict[str, np.ndarray]:
    """The arrays that ``print_graph`` refers to as ``@name``, for ``parse_graph(constants=)``."""
    out: dict[str, np.ndarray] = {}
    for v in graph.constants():
        if _is_large(v):
            if v.name in out:
                raise ValueError(f"two constants are named {v.name!r}")
            out[v.name] = v.const
    return out


def _constant_line(v: Value, large_constants: str) -> str:
    assert v.const is not None
    head = f"%{_name(v.name)} = const {v.type} "
    if not _is_large(v) or large_constants == "inline":
        return head + format_dense(v.const)
    if large_constants == "elide":
        return head + f"<elided sha256={constant_digest(v.const)}>"
    return head + f"@{_name(v.name)}"


def format_type(t: Type) -> str:
    if isinstance(t, SequenceType):
        return f"seq<{t.dtype}>[{', '.join(map(str, t.elements))}]"
    if isinstance(t, OptionalType):
        return f"{'opt' if t.present else 'empty'}<{format_type(t.of)}>"
    return str(t)


def _node_line(node: Node) -> str:
    args = ", ".join("_" if v is None else f"%{_name(v.name)}" for v in node.inputs)
    text = f"{node.op}({args})"
    if node.outputs:
        text = ", ".join(f"%{_name(v.name)}" for v in node.outputs) + " = " + text
    if node.attrs:
        attrs = ", ".join(f"{_key(k)} = {format_attr(node.attrs[k])}" for k in sorted(node.attrs))
        text += " {" + attrs + "}"
    if node.outputs:
        text += " : " + ", ".join(format_type(v.type) for v in node.outputs)
    if node.name:
        text += f" loc({json.dumps(node.name, ensure_ascii=False)})"
    return text


def _block_lines(block: Block, indent: str) -> list[str]:
    lines = []
    for node in block.nodes:
        head = indent + _node_line(node)
        if not node.regions:
            lines.append(head)
            continue
        lines.append(head + " {")
        for name, region in zip(get_op(node.op).regions, node.regions):
            params = ", ".join(f"%{_name(v.name)}: {format_type(v.type)}" for v in region.inputs)
            lines.append(f"{indent}  {name}({params}) {{")
            lines.extend(_block_lines(region, indent + "    "))
            yields = ", ".join(f"%{_name(v.name)}" for v in region.outputs)
            lines.append(f"{indent}    yield" + (" " + yields if yields else ""))
            lines.append(f"{indent}  }}")
        lines.append(indent + "}")
    return lines


def print_graph(graph: Graph, *, large_constants: str = "ref") -> str:
    """The graph as text: inputs, metadata, constants (in order of first use), nodes, return.

    ``large_constants``: ``"ref"`` prints constants over ``INLINE_LIMIT`` elements as
    ``@name`` (parse with ``constants=graph_constants(graph)``), ``"inline"`` prints them in
    full, ``"elide"`` prints a digest only (text for reading, which ``parse_graph`` refuses).
    """
    if large_constants not in LARGE_CONSTANT_MODES:
        raise ValueError(
            f"large_constants={large_constants!r}; use one of {', '.join(LARGE_CONSTANT_MODES)}"
        )
    params = ", ".join(f"%{_name(v.name)}: {format_type(v.type)}" for v in graph.inputs)
    lines = [f"graph {_key(graph.name)}({params}) {{"]
    for k, val in graph.metadata.items():
        lines.append(f"  meta {_key(k)} = {json.dumps(val, ensure_ascii=False)}")
    lines.extend("  " + _constant_line(v, large_constants) for v in graph.constants())
    lines.extend(_block_lines(graph, "  "))
    outs = []
    for v, name in zip(graph.outputs, graph.output_names):
        item = f"%{_name(v.name)}"
        if name != v.name:
            item += f" as {json.dumps(name, ensure_ascii=False)}"
        outs.append(item)
    lines.append("  return" + (" " + ", ".join(outs) if outs else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- lexing --------------------------------------------------------------------------------

_STRING = r'"(?:[^"\\\n]|\\.)*"'
_TOKEN = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<value>%(?:[A-Za-z0-9_.]+|{_STRING}))
  | (?P<ref>@(?:[A-Za-z0-9_.]+|{_STRING}))
  | (?P<float>-?\d+(?:\.\d*(?:[eE][+-]?\d+)?|[eE][+-]?\d+)|-inf\b|-nan\b)
  | (?P<int>-?\d+)
  | (?P<ident>[^\W\d]\w*)
  | (?P<string>{_STRING})
  | (?P<punct>[(){{}}\[\]<>,:=])
    """,
    re.VERBOSE,
)


class _Token(NamedTuple):
    kind: str  # value, ref, float, int, ident, string, punct, eof
    text: str
    pos: int


def _unquote(text: str) -> str:
    return json.loads(text) if text.startswith('"') else text


# -- parsing -------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, constants: Mapping[str, np.ndarray], check: bool) -> None:
        self.text = text
        self.constants = constants
        self.check = check
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tokens = self._lex()
        self.i = 0
        self.values: dict[str, Value] = {}

    # -- tokens ----------------------------------------------------------------------------
    def _lex(self) -> list[_Token]:
        tokens = []
        pos = 0
        while pos < len(self.text):
            m = _TOKEN.match(self.text, pos)
            if m is None:
                raise self.error_at(pos, f"unexpected character {self.text[pos]!r}")
            kind = m.lastgroup
            assert kind is not None
            if kind not in ("ws", "comment"):
                tokens.append(_Token(kind, m.group(), pos))
            pos = m.end()
        tokens.append(_Token("eof", "", len(self.text)))
        return tokens

    def error_at(self, pos: int, message: str) -> ParseError:
        line = bisect.bisect_right(self.line_starts, pos) - 1
        start = self.line_starts[line]
        end = self.text.find("\n", start)
        source = self.text[start : end if end >= 0 else len(self.text)]
        return ParseError(message, line + 1, pos - start + 1, source)

    def error(self, message: str, tok: _Token | None = None) -> ParseError:
        return self.error_at((tok or self.peek()).pos, message)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (text is None or tok.text == text)

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        return self.next() if self.at(kind, text) else None

    def expect(self, kind: str, text: str | None = None, what: str = "") -> _Token:
        if not self.at(kind, text):
            tok = self.peek()
            found = "end of text" if tok.kind == "eof" else repr(tok.text)
            wanted = what or (repr(text) if text else kind)
            raise self.error(f"expected {wanted}, found {found}")
        return self.next()

    def comma_list(self, close: str, item):
        out = []
        if self.accept("punct", close):
            return out
        while True:
            out.append(item())
            if self.accept("punct", close):
                return out
            self.expect("punct", ",", f"',' or '{close}'")

    # -- pieces ----------------------------------------------------------------------------
    def key(self) -> str:
        tok = self.peek()
        if tok.kind in ("ident", "string"):
            self.next()
            return _unquote(tok.text)
        raise self.error("expected a name")

    def type(self) -> Type:
        """A tensor, sequence or optional type."""
        tok = self.peek()
        if tok.kind == "ident" and tok.text in ("seq", "opt", "empty"):
            self.next()
            self.expect("punct", "<")
            if tok.text == "seq":
                dtype = self.expect("ident", what="a dtype")
                if dtype.text not in DTYPES:
                    raise self.error(f"unknown dtype {dtype.text!r}", dtype)
                self.expect("punct", ">")
                self.expect("punct", "[")
                elements = self.comma_list("]", self.type)
                try:
                    return SequenceType(dtype.text, tuple(elements))
                except ValueError as e:
                    raise self.error(str(e), tok) from None
            inner = self.type()
            self.expect("punct", ">")
            try:
                return OptionalType(inner, tok.text == "opt")  # type: ignore[arg-type]
            except ValueError as e:
                raise self.error(str(e), tok) from None
        return self.tensor_type()

    def tensor_type(self) -> TensorType:
        tok = self.expect("ident", what="a dtype")
        if tok.text not in DTYPES:
            raise self.error(f"unknown dtype {tok.text!r}", tok)
        self.expect("punct", "[")

        def dim() -> int | str:
            t = self.next()
            if t.kind == "int" and not t.text.startswith("-"):
                return int(t.text)
            if t.kind == "ident":
                return t.text
            raise self.error("expected a dimension (a size or a name)", t)

        return TensorType(tok.text, tuple(self.comma_list("]", dim)))

    def literal(self) -> Any:
        tok = self.next()
        if tok.kind == "int":
            return int(tok.text)
        if tok.kind == "float":
            return float(tok.text)
        if tok.kind == "string":
            return json.loads(tok.text)
        if tok.kind == "ident":
            words = {"true": True, "false": False, "none": None}
            if tok.text in words:
                return words[tok.text]
            if tok.text in ("inf", "nan"):
                return float(tok.text)
        if tok.kind == "punct" and tok.text == "[":
            return self.comma_list("]", self.literal)
        raise self.error("expected a value: number, string, true/false, none, or [list]", tok)

    def define(self, tok: _Token) -> str:
        name = _unquote(tok.text[1:])
        if name in self.values:
            raise self.error(f"value %{name} is defined twice", tok)
        return name

    def use(self, tok: _Token) -> Value:
        name = _unquote(tok.text[1:])
        if name not in self.values:
            raise self.error(f"value %{name} is not defined (yet)", tok)
        return self.values[name]

    # -- statements ------------------------------------------------------------------------
    def graph(self) -> Graph:
        self.expect("ident", "graph", "'graph'")
        name_tok = self.peek()
        if name_tok.kind not in ("ident", "string"):
            raise self.error("expected the graph's name")
        self.next()
        graph = Graph(_unquote(name_tok.text))

        def param() -> None:
            tok = self.expect("value", what="an input (%name)")
            name = self.define(tok)
            self.expect("punct", ":")
            self.values[name] = graph.add_input(name, self.type())

        self.expect("punct", "(")
        self.comma_list(")", param)
        self.expect("punct", "{")
        while not self.accept("ident", "return"):
            if self.at("eof") or self.at("punct", "}"):
                raise self.error("expected 'return' before the end of the graph")
            self.statement(graph, graph)
        outs: list[Value] = []
        names: list[str] = []
        if not self.at("punct", "}"):
            while True:
                v = self.use(self.expect("value", what="an output (%name)"))
                outs.append(v)
                as_name = v.name
                if self.accept("ident", "as"):
                    as_name = json.loads(self.expect("string", what="an output name").text)
                names.append(as_name)
                if not self.accept("punct", ","):
                    break
        graph.set_outputs(outs, names)
        self.expect("punct", "}")
        self.expect("eof", what="end of text after the graph")
        return graph

    def statement(self, graph: Graph, block: Block) -> None:
        if block is graph and self.accept("ident", "meta"):
            key = self.key()
            self.expect("punct", "=")
            graph.metadata[key] = json.loads(self.expect("string", what="a string").text)
            return
        targets: list[_Token] = []
        if self.at("value"):
            targets.append(self.next())
            while self.accept("punct", ","):
                targets.append(self.expect("value", what="an output (%name)"))
            self.expect("punct", "=")
        names = [self.define(t) for t in targets]
        if len(set(names)) != len(names):
            raise self.error("an output is named twice", targets[0])
        if self.at("ident", "const"):
            const_tok = self.next()
            if len(names) != 1:
                raise self.error("a constant defines exactly one value", const_tok)
            self.values[names[0]] = self.constant(graph, names[0])
        else:
            node = self.node(graph, names)
            block.append(node)
            for v in node.outputs:
                self.values[v.name] = v

    def regions(self, graph: Graph, op_tok: _Token, names: tuple[str, ...]) -> list[Region]:
        """``{ name(%arg: type, ...) { statements yield ... } ... }`` after a node."""
        regions: list[Region] = []
        while not self.accept("punct", "}"):
            tok = self.expect("ident", what="a region name or '}'")
            want = names[len(regions)] if len(regions) < len(names) else None
            if tok.text != want:
                expected = repr(want) if want else "'}' (no more regions)"
                raise self.error(f"expected region {expected}, found {tok.text!r}", tok)
            self.expect("punct", "(")

            def param() -> Value:
                ptok = self.expect("value", what="a block argument (%name)")
                name = self.define(ptok)
                self.expect("punct", ":")
                (arg,) = graph.region([self.type()], [name]).inputs
                self.values[name] = arg
                return arg

            region = Region(self.comma_list(")", param))
            self.expect("punct", "{")
            while not self.accept("ident", "yield"):
                if self.at("eof") or self.at("punct", "}"):
                    raise self.error(f"expected 'yield' before the end of region {tok.text!r}")
                self.statement(graph, region)
            if not self.at("punct", "}"):
                region.outputs.append(self.use(self.expect("value", what="a yielded value")))
                while self.accept("punct", ","):
                    region.outputs.append(self.use(self.expect("value", what="a yielded value")))
            self.expect("punct", "}")
            regions.append(region)
        if len(regions) != len(names):
            raise self.error(f"{len(names)} regions expected, found {len(regions)}", op_tok)
        return regions

    def constant(self, graph: Graph, name: str) -> Value:
        type_tok = self.peek()
        ttype = self.tensor_type()
        if not ttype.is_static:
            raise self.error(f"a constant needs a static type, got {ttype}", type_tok)
        tok = self.peek()
        if tok.kind == "ref":
            self.next()
            key = _unquote(tok.text[1:])
            if key not in self.constants:
                raise self.error(
                    f"constant @{key} is not in the constants given to the parser", tok
                )
            array = self.constants[key]
            try:
                got = TensorType.of(array)
            except (TypeError, ValueError) as e:
                raise self.error(f"constant @{key}: {e}", tok) from None
            if got != ttype:
                raise self.error(f"constant @{key} is {got}, the text says {ttype}", tok)
        else:
            if self.at("punct", "<"):
                raise self.error(
                    "an elided constant cannot be parsed; print with large_constants='ref' "
                    "(and pass constants=graph_constants(graph)) or 'inline'"
                )
            self.expect("ident", "dense", "dense<...> or @name")
            self.expect("punct", "<")
            array = self.dense(ttype)
            self.expect("punct", ">")
        return graph.constant(array, name)

    def dense(self, ttype: TensorType) -> np.ndarray:
        tok = self.peek()
        d = ttype.dtype
        allowed = (bool,) if d.is_bool else (int, float) if d.is_float else (int,)

        def element() -> Any:
            t = self.peek()
            if t.kind == "punct" and t.text == "[":
                self.next()
                return self.comma_list("]", element)
            v = self.literal()
            if type(v) not in allowed:
                raise self.error(f"{v!r} is not a valid {ttype.dtype} element", t)
            return v

        data = element()
        try:
            array = np.array(data, dtype=ttype.dtype)
        except (ValueError, OverflowError) as e:
            raise self.error(f"bad dense literal for {ttype}: {e}", tok) from None
        shape = tuple(ttype.shape)
        if array.shape != shape:
            if array.ndim == 0:
                array = np.full(shape, array, dtype=ttype.dtype)
            elif array.size == 0 and math.prod(shape) == 0:
                array = array.reshape(shape)
            else:
                raise self.error(
                    f"dense literal has shape {list(array.shape)}, type is {ttype}", tok
                )
        return array

    def node(self, graph: Graph, names: list[str]) -> Node:
        op_tok = self.expect("ident", what="an op name or 'const'")
        try:
            opdef = get_op(op_tok.text)
        except ValueError as e:
            raise self.error(str(e), op_tok) from None

        def arg() -> Value | None:
            if self.accept("ident", "_"):
                return None
            return self.use(self.expect("value", what="an input (%name or _)"))

        self.expect("punct", "(")
        inputs = self.comma_list(")", arg)
        attrs: dict[str, Any] = {}
        if self.accept("punct", "{"):

            def attr() -> None:
                key_tok = self.peek()
                key = self.key()
                if key in attrs:
                    raise self.error(f"attribute {key!r} is given twice", key_tok)
                self.expect("punct", "=")
                attrs[key] = self.literal()

            self.comma_list("}", attr)
        types: list[Type] | None = None
        if self.accept("punct", ":"):
            types = [self.type()]
            while self.accept("punct", ","):
                types.append(self.type())
            if len(types) != len(names):
                raise self.error(f"{len(names)} outputs but {len(types)} types", op_tok)
        loc = ""
        if self.accept("ident", "loc"):
            self.expect("punct", "(")
            loc = json.loads(self.expect("string", what="a node name string").text)
            self.expect("punct", ")")
        regions: list[Region] = []
        if opdef.regions:
            self.expect("punct", "{", f"the regions of {opdef.name}")
            regions = self.regions(graph, op_tok, opdef.regions)
        if self.check:
            in_types = [None if v is None else v.type for v in inputs]
            try:
                attrs = opdef.prepare(in_types, attrs)
                inferred = infer_node_types(opdef, in_types, attrs, regions)
            except Exception as e:  # noqa: BLE001  (any failure of the op's own checks)
                raise self.error(f"{opdef.name}: {e}", op_tok) from None
            if len(inferred) != len(names):
                raise self.error(
                    f"{opdef.name} has {len(inferred)} outputs, text has {len(names)}", op_tok
                )
            if types is not None and types != inferred:
                shown = ", ".join(map(format_type, inferred))
                said = ", ".join(map(format_type, types))
                raise self.error(f"{opdef.name} infers {shown}, the text says {said}", op_tok)
            types = inferred
        elif types is None:
            if names:
                raise self.error("output types are needed when parsing without check", op_tok)
            types = []
        return graph.make_node(opdef.name, inputs, types, attrs, loc, names, regions)


def parse_graph(
    text: str, constants: Mapping[str, np.ndarray] | None = None, *, check: bool = True
) -> Graph:
    """The graph that ``text`` describes (the inverse of ``print_graph``).

    ``constants`` gives the arrays of ``@name`` constants (kept as given: memory maps stay
    maps). With ``check`` (the default) each node's attributes go through its op's schema and
    normalization (so defaults may be left out) and its output types must equal the op's
    inference (they may be left out too); without it, the text is taken as written, which
    lets tests build graphs that the verifier should refuse.
    """
    return _Parser(text, constants or {}, check).graph()
