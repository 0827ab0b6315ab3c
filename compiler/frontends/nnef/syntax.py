"""Graph texts the Khronos NNEF parser crashes on, refused before it sees them.

``nnef.parse_file`` (C++) dies with a segmentation fault, instead of raising ``nnef.Error``,
when the left side of an assignment holds an invocation: ``y(x);``, ``relu(x);``,
``y, z(x) = x;``, ``[y, f(x)] = x;``, also inside fragment bodies (found by fuzzing, nnef
1.0.x). A light token scan finds every such statement, so that the user gets a one-line error
naming the line instead of a dead process.
"""

from __future__ import annotations

import re

from compiler.errors import ModelLoadError

_TOKEN = re.compile(
    r"(?P<comment>#[^\n]*)"
    r"|(?P<string>'[^'\n]*'?|\"[^\"\n]*\"?)"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<number>\d[\w.]*)"
    r"|(?P<op>==|!=|<=|>=|->|&&|\|\||\S)"
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of every token but comments."""
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "op"
        if kind != "comment":
            out.append((kind, m.group(), m.start()))
    return out


def check_assignments(text: str, where: str) -> None:
    """Refuse a statement in a graph or fragment body whose left side (everything before
    its ``=``, or the whole statement without one) has a name followed by ``(``."""
    tokens = _tokens(text)
    depth = 0  # of { }: statements are checked inside bodies only
    left = False  # still left of the statement's "="
    for i, (kind, tok, offset) in enumerate(tokens):
        if tok == "{":
            depth += 1
            left = True
            continue
        if tok == "}":
            depth = max(depth - 1, 0)
            left = depth > 0
            continue
        if depth == 0:
            continue
        if tok == ";":
            left = True
            continue
        if tok == "=":
            left = False
            continue
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if left and kind == "name" and nxt == "(":
            line = text.count("\n", 0, offset) + 1
            column = offset - (text.rfind("\n", 0, offset) + 1) + 1
            raise ModelLoadError(
                f"{where}: graph.nnef line {line}, column {column}: an invocation of {tok!r} "
                "where a result name must be (left of '='); not a valid NNEF statement"
            )
