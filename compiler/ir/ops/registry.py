"""One definition per core op: inputs, attribute schema, type inference, numpy reference.

A family module (``elementwise``, ``nn``, ``reduce``, ``tensor``) calls ``define`` once per
op. The reference interpreter, constant folding, the verifier and the op tests all read the
definition registered here; a backend adds only its lowering rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..types import DTYPES, IRTypeError, Type, check_dtype


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of an attribute that has none: leaving it out is an error."""


class AttrError(ValueError):
    """An attribute is missing, unknown, or has a value its schema refuses."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_float(v: Any) -> bool:
    return isinstance(v, float | int | np.floating | np.integer) and not isinstance(v, bool)


def _dim(v: Any) -> bool:
    return _is_int(v) or isinstance(v, str)


_KINDS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    "int?": lambda v: v is None or _is_int(v),
    "float": _is_float,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dtype": lambda v: isinstance(v, str) and v in DTYPES,
    "ints": lambda v: isinstance(v, list | tuple) and all(_is_int(x) for x in v),
    "floats": lambda v: isinstance(v, list | tuple) and all(_is_float(x) for x in v),
    "dims": lambda v: isinstance(v, list | tuple) and all(_dim(x) for x in v),
    "dim": _dim,
    "dim?": lambda v: v is None or _dim(v),
    "float?": lambda v: v is None or _is_float(v),
}


def _canonical(kind: str, v: Any) -> Any:
    """Attribute values as plain Python: lists for sequences, ints and floats, no numpy."""
    if kind in ("int", "int?"):
        return None if v is None else int(v)
    if kind in ("float", "float?"):
        return None if v is None else float(v)
    if kind == "ints":
        return [int(x) for x in v]
    if kind == "floats":
        return [float(x) for x in v]
    if kind == "dtype":
        return check_dtype(v)
    if kind == "dims":
        return [x if isinstance(x, str) else int(x) for x in v]
    if kind in ("dim", "dim?"):
        return v if v is None or isinstance(v, str) else int(v)
    return v


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its kind, default, and the values it may take."""

    kind: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown attribute kind {self.kind!r}")


InferFn = Callable[..., Type | Sequence[Type]]
"""(input types, attributes) -> output types; an op with regions also gets, third, the types
each of its regions yields (a list per region), and checks them."""
ReferenceFn = Callable[..., Any]
"""(input arrays, attributes) -> output arrays; an op with regions also gets, third, one
``RegionRunner`` per region."""
NormalizeFn = Callable[[Sequence[Type | None], dict[str, Any]], dict[str, Any]]
RegionArgsFn = Callable[[Sequence[Type | None], dict[str, Any]], Sequence[Sequence[Type]]]
"""(input types, attributes) -> the block argument types of each region."""


@dataclass(frozen=True)
class RegionRunner:
    """What an op's reference may do with one of its regions: run it on argument values
    (getting the yielded values), and know the types it yields (an empty loop's scans)."""

    run: Callable[[list[Any]], list[Any]]
    yield_types: list[Type]


@dataclass(frozen=True)
class OpDef:
    """All the facts of one core op.

    ``inputs`` names the operands: a trailing ``?`` marks an optional one (may be None),
    a trailing ``*`` a variadic tail (one or more), a trailing ``...`` one of zero or more.
    ``infer`` and ``reference`` get the attributes after ``normalize`` and the schema's
    defaults were applied; ``infer`` may return one type or a list, ``reference`` one array
    or a list. ``regions`` names the nested blocks a node of the op owns (``then``, ``else``);
    ``region_args`` gives their argument types, which the verifier checks and shape
    inference sets.
    """

    name: str
    inputs: tuple[str, ...]
    attrs: dict[str, Attr]
    infer: InferFn
    reference: ReferenceFn
    normalize: NormalizeFn | None = None
    foldable: bool | Callable[[dict[str, Any]], bool] = True
    """False, or a predicate of the node's attributes that is false, when the result is not
    a function of the inputs (an unseeded random op): such a node is never folded or merged."""
    reads_values: bool = True
    """False when the result depends only on input types (``shape``): then it folds as soon
    as the input types are static, constant or not."""
    doc: str = ""
    num_outputs: int | None = 1
    """Outputs per node; None when an attribute decides (split)."""
    regions: tuple[str, ...] = ()
    region_args: RegionArgsFn | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- inputs ----------------------------------------------------------------------------
    def check_arity(self, n: int) -> None:
        required = sum(1 for i in self.inputs if not i.endswith(("?", "*", "...")))
        if self.inputs and self.inputs[-1].endswith("..."):
            if n < required:
                raise IRTypeError(f"{self.name} takes at least {required} inputs, got {n}")
            return
        variadic = bool(self.inputs) and self.inputs[-1].endswith("*")
        if variadic:
            if n < len(self.inputs):
                raise IRTypeError(f"{self.name} takes at least {len(self.inputs)} inputs, got {n}")
        elif not required <= n <= len(self.inputs):
            raise IRTypeError(f"{self.name} takes {required}..{len(self.inputs)} inputs, got {n}")

    def input_is_optional(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index].endswith("?")

    # -- attributes ------------------------------------------------------------------------
    def check_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in, kinds and choices checked, values made plain Python."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise AttrError(f"{self.name}: unknown attribute(s) {', '.join(sorted(unknown))}")
        out: dict[str, Any] = {}
        for key, spec in self.attrs.items():
            if key in attrs:
                v = attrs[key]
            elif spec.default is REQUIRED:
                raise AttrError(f"{self.name}: attribute {key!r} is required")
            else:
                v = spec.default
            if isinstance(v, np.ndarray):
                v = v.tolist()
            if v is not None or not spec.kind.endswith("?"):
                if not _KINDS[spec.kind](v):
                    raise AttrError(
                        f"{self.name}: attribute {key}={v!r} is not of kind {spec.kind}"
                    )
            v = _canonical(spec.kind, v)
            if spec.choices is not None and v not in spec.choices:
                raise AttrError(
                    f"{self.name}: attribute {key}={v!r} is not one of {list(spec.choices)}"
                )
            out[key] = v
        return out

    def prepare(self, in_types: Sequence[Type | None], attrs: dict[str, Any]) -> dict[str, Any]:
        """Attributes as stored on a node: normalized against the input types, then checked."""
        self.check_arity(len(in_types))
        attrs = self.check_attrs(attrs)
        if self.normalize is not None:
            attrs = self.check_attrs(self.normalize(in_types, attrs))
        return attrs

    def is_pure(self, attrs: dict[str, Any]) -> bool:
        """Whether a node with these attributes computes a function of its inputs."""
        return self.foldable(attrs) if callable(self.foldable) else self.foldable

    # -- semantics -------------------------------------------------------------------------
    def infer_types(
        self,
        in_types: Sequence[Type | None],
        attrs: dict[str, Any],
        yields: Sequence[Sequence[Type]] = (),
    ) -> list[Type]:
        if self.regions:
            if len(yields) != len(self.regions):
                raise IRTypeError(
                    f"{self.name} has {len(self.regions)} regions, {len(yields)} were given"
                )
            result = self.infer(in_types, attrs, [list(y) for y in yields])
        else:
            result = self.infer(in_types, attrs)
        return list(result) if isinstance(result, list | tuple) else [result]

    def arg_types(self, in_types: Sequence[Type | None], attrs: dict[str, Any]) -> list[list[Type]]:
        """The block argument types each region of a node with these inputs must have."""
        if self.region_args is None:
            return [[] for _ in self.regions]
        return [list(args) for args in self.region_args(in_types, attrs)]

    def evaluate(
        self,
        arrays: Sequence[Any],
        attrs: dict[str, Any],
        regions: Sequence[RegionRunner] = (),
    ) -> list[Any]:
        """Outputs as arrays (tensors), lists (sequences), or None (an empty optional)."""
        if self.regions:
            result = self.reference(arrays, attrs, list(regions))
        else:
            result = self.reference(arrays, attrs)
        if isinstance(result, np.ndarray | np.generic):
            result = [result]
        return [r if r is None or isinstance(r, list) else np.asarray(r) for r in result]


OPS: dict[str, OpDef] = {}


def define(
    name: str,
    *,
    inputs: Sequence[str],
    infer: InferFn,
    reference: ReferenceFn,
    attrs: dict[str, Attr] | None = None,
    normalize: NormalizeFn | None = None,
    foldable: bool | Callable[[dict[str, Any]], bool] = True,
    reads_values: bool = True,
    num_outputs: int | None = 1,
    regions: Sequence[str] = (),
    region_args: RegionArgsFn | None = None,
    doc: str = "",
) -> OpDef:
    """Register a core op; each name is defined exactly once."""
    if name in OPS:
        raise ValueError(f"op {name!r} is defined twice")
    op = OpDef(
        name=name,
        inputs=tuple(inputs),
        attrs=dict(attrs or {}),
        infer=infer,
        reference=reference,
        normalize=normalize,
        foldable=foldable,
        reads_values=reads_values,
        num_outputs=num_outputs,
        regions=tuple(regions),
        region_args=region_args,
        doc=doc,
    )
    OPS[name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise IRTypeError(f"unknown core op {name!r}") from None
