"""How nnxc handles each NNEF 1.0.5 standard fragment: a declaration the importer reads, a
converter of its own, expanded by the parser into other ops, or refused with a reason.

    python -m compiler.frontends.nnef.coverage     # the table of docs/nnef.md

The fragment list is the standard library compiled into the Khronos parser (the ``nnef``
package ships its source), so the table follows the installed parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DECLARATIONS = ("external", "variable", "constant")


@dataclass(frozen=True)
class Fragment:
    name: str
    compound: bool
    """Whether the standard library defines it with a body (else it is a primitive)."""
    handling: str
    """``declaration``, ``converted``, ``expanded``, ``refused: why`` or ``missing``."""


def standard_fragments() -> list[tuple[str, bool]]:
    """(name, compound) of every fragment in the parser's standard library, in its order."""
    import nnef

    source = Path(nnef.__file__).parent / "cpp/include/nnef/comp/stdlib_source.h"
    text = source.read_text()
    found = re.finditer(
        r"fragment\s+(\w+)\s*(<[^>]*>)?\s*\((.*?)\)\s*->\s*\((.*?)\)\s*([;{])", text, re.S
    )
    return [(m.group(1), m.group(5) == "{") for m in found]


def coverage() -> list[Fragment]:
    from .importer import LOWERED
    from .registry import CONVERTERS, REFUSED

    out = []
    for name, compound in standard_fragments():
        if name in DECLARATIONS:
            handling = "declaration"
        elif name in REFUSED:
            handling = f"refused: {REFUSED[name]}"
        elif name in LOWERED:
            handling = "expanded"
        elif CONVERTERS.find("", name, 1) is not None:
            handling = "converted"
        else:
            handling = "missing"
        out.append(Fragment(name, compound, handling))
    return out


def table() -> str:
    """The markdown table of ``coverage()``, with totals."""
    rows = coverage()
    lines = ["| fragment | kind | nnxc |", "|---|---|---|"]
    for f in rows:
        lines.append(f"| `{f.name}` | {'compound' if f.compound else 'primitive'} | {f.handling} |")
    counts: dict[str, int] = {}
    for f in rows:
        key = f.handling.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    primitive = sum(not f.compound for f in rows)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines.append("")
    lines.append(
        f"{len(rows)} fragments ({primitive} primitive, {len(rows) - primitive} compound): "
        f"{summary}."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
