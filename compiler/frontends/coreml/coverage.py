"""How nnxc handles each Core ML NeuralNetwork layer type and each MIL op of ML Programs:
converted, refused with a reason, or missing.

    python -m compiler.frontends.coreml.coverage     # the tables of docs/coreml.md

The layer list is the ``layer`` oneof of coremltools' ``NeuralNetworkLayer`` message, the op list
coremltools' MIL op registry (the ops an ML Program of opset iOS15 or later may hold), so the
tables follow the installed coremltools.
"""

from __future__ import annotations

from dataclasses import dataclass

_INTERNAL = ("const", "_const_symbolic")
"""MIL ops that are not computations (constants are read where they are used)."""


@dataclass(frozen=True)
class Entry:
    name: str
    since: str
    """The spec version (NeuralNetwork layers) or opset (MIL ops) that introduced it."""
    handling: str
    """``converted``, ``refused: why`` or ``missing``."""


def nn_layers() -> list[Entry]:
    from coremltools.proto import NeuralNetwork_pb2

    from .nn.importer import LAYERS
    from .nn.registry import REFUSED

    fields = NeuralNetwork_pb2.NeuralNetworkLayer.DESCRIPTOR.oneofs_by_name["layer"].fields
    return [
        Entry(f.name, _layer_since(f.number), _handling(f.name, REFUSED, LAYERS))
        for f in sorted(fields, key=lambda f: f.number)
    ]


def _layer_since(number: int) -> str:
    """Field numbers in NeuralNetwork.proto: legacy layers below 600, spec 4 from 600 up to
    the spec 5 additions (1450 and later)."""
    if number < 600:
        return "spec 1-3"
    return "spec 4" if number < 1450 else "spec 5"


def mil_ops() -> list[Entry]:
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    from .mil.importer import OPS
    from .mil.registry import REFUSED

    out = []
    for name, versions in sorted(SSAOpRegistry.core_ops.items()):
        targets = sorted(int(t) for t in versions)
        if name in _INTERNAL or targets[-1] < 6:  # 6: iOS15, the first ML Program opset
            continue
        since = f"iOS{max(15, targets[0] + 9)}"  # ct.target values: iOS13 = 4 ... iOS18 = 9
        out.append(Entry(name, since, _handling(name, REFUSED, OPS)))
    return out


def _handling(name: str, refused: dict[str, str], table: object) -> str:
    if name in refused:
        return f"refused: {refused[name]}"
    return "converted" if table.find("", name, 1 << 30) is not None else "missing"


def table(entries: list[Entry], what: str) -> str:
    """A markdown table of ``entries`` with totals."""
    lines = [f"| {what} | since | nnxc |", "|---|---|---|"]
    lines += [f"| `{e.name}` | {e.since} | {e.handling} |" for e in entries]
    counts: dict[str, int] = {}
    for e in entries:
        key = e.handling.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines += ["", f"{len(entries)} {what}s: {summary}."]
    return "\n".join(lines)


def tables() -> str:
    return (
        "### NeuralNetwork layers\n\n"
        + table(nn_layers(), "layer type")
        + "\n\n### MIL ops\n\n"
        + table(mil_ops(), "MIL op")
    )


if __name__ == "__main__":
    from .files import quiet_coremltools

    quiet_coremltools()
    print(tables())
