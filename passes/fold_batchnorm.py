"""BatchNorm folding: an inference batch_norm after a conv or a matmul becomes weights.

``batch_norm(y) = y * s + (bias - mean * s)`` with ``s = scale / sqrt(var + epsilon)`` per
channel (axis 1). When ``y = conv(x, w, b?)`` the per-output-channel factor goes into ``w``
(axis 0 of a conv weight is the output channel, grouped or not) and the shift into the
conv's bias. When ``y = matmul(a, w)`` with a constant 2-D ``w`` and a 2-D result, axis 1
is ``w``'s column: the factor scales the columns and the shift becomes an ``add``, merged
into an existing ``add`` of a constant (``matmul -> add -> batch_norm``, as Gemm imports).
A ``mul`` or ``add`` of a per-channel constant after a conv folds the same way (factor or
shift alone): Caffe2-era models spell batch norm's affine part that way.

Folding needs constant weights and statistics, and every folded intermediate read only by
the next node of the pattern (not a graph output); otherwise the batch_norm stays. The
per-channel factors are computed in float64; weights are scaled in float32 (or float64
for float64 weights) and cast back to their dtype.
"""

from __future__ import annotations

import numpy as np

from compiler.ir.graph import Block, Graph, Node, Value
from compiler.ir.ops.shapes import broadcast_shapes

from .manager import block_pass
from .rewrite import rewire, substitute, use_counts


def _bn_params(bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(factor, shift) per channel in float64, or None when a statistic is not constant."""
    arrays = [None if v is None else v.const for v in bn.inputs[1:5]]
    if len(arrays) != 4 or any(a is None for a in arrays):
        return None
    scale, bias, mean, var = (np.asarray(a, np.float64).reshape(-1) for a in arrays)
    factor = scale / np.sqrt(var + float(bn.attrs["epsilon"]))
    return factor, bias - mean * factor


def _scaled(w: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``w * factor`` rounded once: in float32 at least (weights are large; the factor was
    computed in float64), never in less precision than the weight."""
    dtype = np.promote_types(w.dtype, np.float32)
    return np.multiply(w, factor.astype(dtype), dtype=dtype)


def _conv(graph: Graph, conv: Node, factor: np.ndarray, shift: np.ndarray) -> bool:
    """Scale the conv's weight and bias in place."""
    x, w, *rest = conv.inputs
    b = rest[0] if rest else None
    if w is None or w.const is None or (b is not None and b.const is None):
        return False
    wc = w.const
    cout = wc.shape[0]
    if factor.shape != (cout,) or w.dtype not in ("float16", "float32", "float64"):
        return False
    old_b = np.zeros(cout) if b is None else np.asarray(b.const, np.float64)
    new_w = _scaled(wc, factor.reshape((cout,) + (1,) * (wc.ndim - 1)))
    new_b = old_b * factor + shift
    new_w_v = graph.constant(new_w.astype(wc.dtype, copy=False), w.name)
    bias_name = b.name if b is not None else f"{w.name}_bias"
    rewire(conv, [x, new_w_v, graph.constant(new_b.astype(wc.dtype), bias_name)])
    return True


def _matmul_weight(graph: Graph, mm: Node, factor: np.ndarray) -> bool:
    """Scale the columns of a constant 2-D right operand in place."""
    a, w = mm.inputs
    if w is None or w.const is None or w.const.ndim != 2 or mm.outputs[0].type.rank != 2:
        return False
    if factor.shape != (w.const.shape[1],) or w.dtype not in ("float16", "float32", "float64"):
        return False
    new_w = _scaled(w.const, factor)
    rewire(mm, [a, graph.constant(new_w.astype(w.const.dtype, copy=False), w.name)])
    return True


def _fold_one(graph: Graph, block: Block, bn: Node, uses: dict[Value, int]) -> bool:
    """Fold ``bn`` into its producer; True when done (bn is then unused)."""
    params = _bn_params(bn)
    y = bn.inputs[0]
    p = y.producer if y is not None else None
    if params is None or p is None or uses.get(y, 0) != 1:
        return False
    factor, shift = params
    out = bn.outputs[0]
    if p.op == "conv" and _conv(graph, p, factor, shift):
        substitute(block, {out: y})
        return True
    if p.op == "matmul" and _matmul_weight(graph, p, factor):
        shift_c = graph.constant(shift.astype(out.type.np_dtype), f"{bn.inputs[2].name}_shift")
        # The add takes over bn's output value: its readers and its name stay as they are.
        block.insert_before(bn, Node("add", [y, shift_c], [out]))
        return True
    if p.op == "add":
        # matmul -> add(constant) -> batch_norm: scale the weight, rewrite the constant.
        side = next(
            (i for i, v in enumerate(p.inputs) if v is not None and v.const is not None), None
        )
        if side is None:
            return False
        mm_out = p.inputs[1 - side]
        mm = mm_out.producer if mm_out is not None else None
        if mm is None or mm.op != "matmul" or uses.get(mm_out, 0) != 1:
            return False
        c = p.inputs[side]
        new_c = np.asarray(c.const, np.float64) * factor + shift
        if broadcast_shapes(new_c.shape, mm_out.shape) != tuple(y.shape):
            return False
        if not _matmul_weight(graph, mm, factor):
            return False
        new_inputs = list(p.inputs)
        new_inputs[side] = graph.constant(new_c.astype(c.const.dtype), c.name)
        rewire(p, new_inputs)
        substitute(block, {out: y})
        return True
    return False


def _per_channel(v: Value | None, out: Value) -> np.ndarray | None:
    """A constant that varies at most along axis 1 of ``out``, as a float64 vector."""
    if v is None or v.const is None or v.const.ndim > out.type.rank or out.type.rank < 2:
        return None
    shape = (1,) * (out.type.rank - v.const.ndim) + v.const.shape
    channels = out.shape[1]
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    if not isinstance(channels, int):
        return None
    return np.broadcast_to(np.asarray(v.const, np.float64).reshape(-1), (channels,))


def _fold_affine(graph: Graph, block: Block, node: Node, uses: dict[Value, int]) -> bool:
    """``conv -> mul(c)`` or ``conv -> add(c)`` with a per-channel constant ``c``
    (a batch norm exported as separate scale and shift, as in Caffe2 models)."""
    out = node.outputs[0]
    for i in (0, 1):
        y, c = node.inputs[i], node.inputs[1 - i]
        p = y.producer if y is not None else None
        if p is None or p.op != "conv" or uses.get(y, 0) != 1 or y.type != out.type:
            continue
        vec = _per_channel(c, y)
        if vec is None:
            continue
        ones, zeros = np.ones_like(vec), np.zeros_like(vec)
        factor, shift = (vec, zeros) if node.op == "mul" else (ones, vec)
        if _conv(graph, p, factor, shift):
            substitute(block, {out: y})
            return True
    return False


@block_pass(
    "fold_batchnorm",
    "fold inference batch_norm (and per-channel mul/add) into a preceding conv or matmul",
)
def fold_batchnorm(graph: Graph, block: Block) -> bool:
    changed = False
    for node in list(block.nodes):
        # Use counts change with every fold (the folded node's result takes node's readers).
        producers = [v.producer.op for v in node.inputs if v is not None and v.producer]
        if node.op == "batch_norm" and producers:
            folded = _fold_one(graph, block, node, use_counts(block))
        elif node.op in ("mul", "add") and "conv" in producers:
            folded = _fold_affine(graph, block, node, use_counts(block))
        else:
            continue
        if folded:
            block.remove_node(node)
            changed = True
    return changed
