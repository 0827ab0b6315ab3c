"""A picture of the IR: Graphviz DOT text for a graph, and rendering it to SVG/PNG.

``nnxc inspect MODEL --graph FILE`` draws the same IR the text form prints. The picture is
meant for reading, so it folds what adds boxes but no structure: constants are not nodes but
lines in their users' labels (small ones with their value, large ones with their type); graph
inputs and outputs are distinct shapes; each region of a control-flow node (``then``/``else``
of ``if``, the body of ``loop``) is a cluster entered from its owner by a dashed edge. Large
graphs stay drawable with a node limit: the first ``max_nodes`` op nodes (in the text form's
order) are drawn and one note node says how many were left out.

The DOT text is ours (no graphviz needed for .dot); ``render`` runs Graphviz's ``dot``
program for .svg and .png and writes the file atomically.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from itertools import islice
from pathlib import Path

from compiler.errors import NnxcError

from .graph import Block, Graph, Node, Value, walk
from .ops.registry import get_op
from .text import format_attr, format_dense, format_type

DEFAULT_MAX_NODES = 2000
"""Op nodes drawn at most by default; dot lays out a few thousand boxes in seconds."""

VALUE_LIMIT = 4
"""Constants with at most this many elements show their value in a label, larger ones their
type."""

ATTR_LIMIT = 4
"""Attributes shown per node (sorted by key); the rest are counted."""

TEXT_LIMIT = 40
"""Characters of one label line before it is cut with an ellipsis."""

FORMATS = ("dot", "svg", "png")


class GraphPictureError(NnxcError):
    """The picture cannot be written: unknown format, Graphviz missing or failing."""


def _quote(text: str) -> str:
    """A DOT string literal; ``\\n`` in ``text`` becomes a centred line break."""
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + body.replace("\n", "\\n") + '"'


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _constant_text(v: Value) -> str:
    """`` = value`` for small constants, ``: type`` for large ones (names are left to the
    text form: they are long and say little in a picture)."""
    assert v.const is not None
    if v.const.size <= VALUE_LIMIT:
        return _cut(" = " + format_dense(v.const)[len("dense<") : -1])
    return _cut(": " + format_type(v.type))


def _node_label(node: Node) -> str:
    lines = [node.op]
    for i, v in enumerate(node.inputs):
        if v is not None and v.is_constant:
            lines.append(f"in{i}{_constant_text(v)}")
    keys = sorted(node.attrs)
    for k in keys[:ATTR_LIMIT]:
        lines.append(_cut(f"{k}={format_attr(node.attrs[k])}"))
    if len(keys) > ATTR_LIMIT:
        lines.append(f"(+{len(keys) - ATTR_LIMIT} attributes)")
    if node.outputs:
        lines.append(_cut(", ".join(format_type(v.type) for v in node.outputs)))
    return "\n".join(lines)


class _Emitter:
    """Walks the graph once, giving every drawn thing an id and writing DOT lines."""

    def __init__(self, graph: Graph, max_nodes: int) -> None:
        self.graph = graph
        self.kept = {id(n) for n in islice(walk(graph), max(0, max_nodes))}
        self.elided = sum(1 for _ in walk(graph)) - len(self.kept)
        self.source: dict[int, tuple[str, int]] = {}  # id(value) -> (dot id, output index)
        self.lines: list[str] = []
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def emit(self) -> str:
        g = self.graph
        self.lines = [
            f"digraph {_quote(g.name)} {{",
            "  rankdir=TB;",
            '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", '
            'fontname="Helvetica", fontsize=10];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for v in g.inputs:
            nid = self.fresh("input")
            self.source[id(v)] = (nid, 0)
            label = f"input {v.name}\n{format_type(v.type)}"
            self.lines.append(
                f'  {nid} [label={_quote(label)}, shape=invhouse, fillcolor="#cfe8ff"];'
            )
        self._block(g, "  ")
        note = None
        if self.elided:
            note = "elided"
            label = f"{self.elided} more nodes not drawn\n(--graph-max-nodes)"
            self.lines.append(f'  {note} [label={_quote(label)}, shape=note, fillcolor="#fff3c4"];')
        for v, name in zip(g.outputs, g.output_names):
            nid = self.fresh("output")
            label = f"output {name}\n{format_type(v.type)}"
            if v.is_constant:
                label += "\nconst" + _constant_text(v)
            self.lines.append(f'  {nid} [label={_quote(label)}, shape=house, fillcolor="#d5f5d5"];')
            self._edge_from(v, nid, "  ", note)
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"

    def _block(self, block: Block, indent: str) -> None:
        for node in block.nodes:
            if id(node) not in self.kept:
                continue
            nid = self.fresh("n")
            for i, v in enumerate(node.outputs):
                self.source[id(v)] = (nid, i)
            tip = f", tooltip={_quote(node.name)}" if node.name else ""
            fill = ', fillcolor="#ffe0c0"' if node.regions else ""
            self.lines.append(f"{indent}{nid} [label={_quote(_node_label(node))}{tip}{fill}];")
            for v in node.inputs:
                if v is not None and not v.is_constant:
                    self._edge_from(v, nid, indent)
            for name, region in zip(get_op(node.op).regions, node.regions):
                self._region(nid, name, region, indent)

    def _region(self, owner: str, name: str, region: Block, indent: str) -> None:
        cid = self.fresh("cluster_")
        self.lines.append(f"{indent}subgraph {cid} {{")
        inner = indent + "  "
        self.lines.append(f'{inner}label={_quote(name)}; style="rounded,dashed"; color="#888888";')
        entry = self.fresh("args")
        args = "\n".join(f"{v.name}: {format_type(v.type)}" for v in region.inputs)
        label = name + ("\n" + args if args else "")
        self.lines.append(f"{inner}{entry} [label={_quote(label)}, shape=cds];")
        for i, v in enumerate(region.inputs):
            self.source[id(v)] = (entry, i)
        self._block(region, inner)
        exit_ = self.fresh("yield")
        consts = [f"{v.name}{_constant_text(v)}" for v in region.outputs if v.is_constant]
        self.lines.append(f"{inner}{exit_} [label={_quote(chr(10).join(['yield', *consts]))}];")
        for v in region.outputs:
            if not v.is_constant:
                self._edge_from(v, exit_, inner)
        self.lines.append(f"{indent}}}")
        self.lines.append(f"{indent}{owner} -> {entry} [style=dashed];")

    def _edge_from(self, v: Value, target: str, indent: str, fallback: str | None = None) -> None:
        """An edge from the thing making ``v`` to ``target``; none when its maker was elided
        (unless ``fallback`` names a node to draw it from)."""
        found = self.source.get(id(v))
        if found is None:
            if fallback is not None:
                self.lines.append(f"{indent}{fallback} -> {target} [style=dotted];")
            return
        nid, index = found
        producer = v.producer
        many = producer is not None and len(producer.outputs) > 1
        label = f" [label={_quote(str(index))}]" if many else ""
        self.lines.append(f"{indent}{nid} -> {target}{label};")


def to_dot(graph: Graph, max_nodes: int = DEFAULT_MAX_NODES) -> str:
    """The graph as DOT text: ops with their output types and short attributes, constants in
    their users' labels, regions as clusters, at most ``max_nodes`` op nodes (plus a note
    saying how many were left out)."""
    return _Emitter(graph, max_nodes).emit()


def picture_format(path: str | os.PathLike) -> str:
    """The format a file name asks for (its suffix), or a clear error."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise GraphPictureError(
            f"{path}: unknown picture format {('.' + suffix) if suffix else '(no suffix)'}; "
            f"use {', '.join('.' + f for f in FORMATS)}"
        )
    return suffix


def render(dot_text: str, path: str | os.PathLike) -> None:
    """Write ``dot_text`` to ``path`` as DOT, SVG or PNG (by its suffix), all or nothing: a
    temporary file beside it is renamed over it once complete."""
    fmt = picture_format(path)
    dot = None
    if fmt != "dot":
        dot = shutil.which("dot")
        if dot is None:
            raise GraphPictureError(
                f"{path}: drawing .{fmt} needs Graphviz's dot program, which is not on PATH; "
                "install Graphviz (apt-get install graphviz) or write a .dot file"
            )
    target = Path(path)
    if not target.parent.is_dir():
        raise GraphPictureError(f"{path}: no such folder {target.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if dot is None:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(dot_text)
        else:
            os.close(fd)
            _run_dot(dot, fmt, dot_text, tmp, path)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets, not pictures
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _run_dot(dot: str, fmt: str, dot_text: str, out: str, path: str | os.PathLike) -> None:
    try:
        r = subprocess.run(
            [dot, f"-T{fmt}", "-o", out],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            check=False,
        )
    except OSError as e:
        raise GraphPictureError(f"{path}: cannot run {dot}: {e}") from None
    if r.returncode != 0:
        lines = [x for x in r.stderr.decode("utf-8", "replace").splitlines() if x.strip()]
        why = lines[0] if lines else f"exit status {r.returncode}"
        raise GraphPictureError(f"{path}: Graphviz's dot failed: {why}")
