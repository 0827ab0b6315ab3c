"""Compressed weights made by coremltools' ``optimize.coreml`` (linear quantization,
palettization, pruning, and their joint forms) decompress to the values coremltools' own
``materialized_val_inference`` gives; run-time quantize/dequantize against numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import coremltools.optimize.coreml as cto
import numpy as np
import pytest
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import types
from coremlutil import check, ct, save_program

from compiler.frontends.coreml.files import open_model
from compiler.frontends.coreml.mil.importer import load_program

SHAPE = (16, 32)


def _weight() -> np.ndarray:
    w = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    w[np.abs(w) < 0.6] = 0  # sparse enough for pruning to keep the pattern
    return w


def _model(tmp_path: Path, target: Any) -> Any:
    w = _weight()

    @mb.program(input_specs=[mb.TensorSpec(SHAPE)], opset_version=target)
    def prog(x):
        return mb.mul(x=x, y=w)

    path = save_program(prog, tmp_path, target=target, name="dense")
    return ct.models.MLModel(str(path), skip_model_load=True)


def _decompressed(path: Path) -> np.ndarray:
    """What coremltools decompresses the weight read by ``mul`` to."""
    fn = load_program(open_model(path)).functions["main"]
    (mul,) = [op for op in fn.operations if op.op_type == "mul"]
    weight = mul.inputs["y"]
    return np.asarray(weight.op.materialized_val_inference(), np.float32)


def _palettize(nbits: int, joint: bool = False, **kw: Any) -> Any:
    op = cto.OpPalettizerConfig(mode="uniform", nbits=nbits, weight_threshold=1, **kw)
    config = cto.OptimizationConfig(global_config=op)
    return lambda m: cto.palettize_weights(m, config, joint_compression=joint)


def _quantize(joint: bool = False, **kw: Any) -> Any:
    op = cto.OpLinearQuantizerConfig(weight_threshold=1, **kw)
    config = cto.OptimizationConfig(global_config=op)
    return lambda m: cto.linear_quantize_weights(m, config, joint_compression=joint)


def _prune(**kw: Any) -> Any:
    op = cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=1, **kw)
    return lambda m: cto.prune_weights(m, cto.OptimizationConfig(global_config=op))


CASES = {
    # iOS16: constexpr_affine_dequantize, packed LUT, packed sparse mask
    "affine_ios16": (ct.target.iOS16, [_quantize(mode="linear", dtype="int8")], True),
    "lut_ios16": (ct.target.iOS16, [_palettize(4)], False),
    "sparse_ios16": (ct.target.iOS16, [_prune()], False),
    # iOS18: blockwise shift-scale (int4 blocks), per-block and vector LUTs, joint forms
    "blockwise_ios18": (
        ct.target.iOS18,
        [_quantize(dtype="int4", granularity="per_block", block_size=8)],
        True,
    ),
    "lut_grouped_ios18": (
        ct.target.iOS18,
        [_palettize(2, granularity="per_grouped_channel", group_size=4)],
        False,
    ),
    "sparse_ios18": (ct.target.iOS18, [_prune()], False),
    "lut_to_sparse_ios18": (ct.target.iOS18, [_prune(), _palettize(2, joint=True)], False),
    "sparse_shift_scale_ios18": (
        ct.target.iOS18,
        [_prune(), _quantize(joint=True, mode="linear_symmetric", dtype="int8")],
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compressed_weights(tmp_path: Path, case: str) -> None:
    target, steps, tvm = CASES[case]
    model = _model(tmp_path, target)
    for step in steps:
        model = step(model)
    path = tmp_path / "compressed.mlpackage"
    model.save(str(path))
    ops = {op.op_type for op in load_program(open_model(path)).functions["main"].operations}
    assert any(op.startswith("constexpr_") for op in ops), ops
    if case in ("lut_to_sparse_ios18", "sparse_shift_scale_ios18"):
        assert {"constexpr_lut_to_sparse", "constexpr_sparse_blockwise_shift_scale"} & ops, ops
    weight = _decompressed(path)
    assert not np.array_equal(weight, np.zeros_like(weight))
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    check(path, {"x": x}, [x * weight], rtol=1e-6, atol=1e-6, tvm=tvm)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantize_dequantize_per_axis(tmp_path: Path, dtype: str) -> None:
    scale = np.array([0.5, 0.25, 0.1], np.float32)
    zero = np.array([0, 3, -2] if dtype == "int8" else [128, 120, 5], dtype)

    @mb.program(input_specs=[mb.TensorSpec((2, 3, 4))], opset_version=ct.target.iOS17)
    def prog(x):
        q = mb.quantize(input=x, scale=scale, zero_point=zero, axis=1, output_dtype=dtype)
        return mb.dequantize(input=q, scale=scale, zero_point=zero, axis=1)

    x = (np.random.default_rng(2).standard_normal((2, 3, 4)) * 20).astype(np.float32)
    s, z = scale.reshape(1, 3, 1), zero.reshape(1, 3, 1).astype(np.float32)
    low, high = (-128, 127) if dtype == "int8" else (0, 255)
    q = np.clip(np.round(x / s) + z, low, high)
    path = save_program(prog, tmp_path, target=ct.target.iOS17)
    check(path, {"x": x}, [(q - z) * s], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vector_axis", [0, -1])
def test_vector_lut(tmp_path: Path, vector_axis: int) -> None:
    """Vector palettization (which coremltools' optimizer makes with k-means only): each
    index picks 2 values that lie along ``vector_axis``; two LUTs, one per row block."""
    rng = np.random.default_rng(3)
    uint2 = types.nptype_from_builtin(types.string_to_builtin("uint2"))
    indices = rng.integers(0, 4, (4, 6)).astype(uint2)
    lut = rng.standard_normal((2, 1, 4, 2)).astype(np.float32)
    shape = (8, 6) if vector_axis == 0 else (4, 12)

    @mb.program(input_specs=[mb.TensorSpec(shape)], opset_version=ct.target.iOS18)
    def prog(x):
        w = mb.constexpr_lut_to_dense(indices=indices, lut=lut, vector_axis=vector_axis)
        return mb.mul(x=x, y=w)

    path = save_program(prog, tmp_path, target=ct.target.iOS18)
    weight = _decompressed(path)
    x = rng.standard_normal(shape).astype(np.float32)
    check(path, {"x": x}, [x * weight], rtol=1e-6, atol=1e-6, tvm=False)


def test_constexpr_cast(tmp_path: Path) -> None:
    w = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float16)

    @mb.program(input_specs=[mb.TensorSpec((3, 4))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.mul(x=x, y=mb.constexpr_cast(source_val=w, output_dtype="fp32"))

    path = save_program(prog, tmp_path, target=ct.target.iOS16)
    ops = {op.op_type for op in load_program(open_model(path)).functions["main"].operations}
    assert "constexpr_cast" in ops
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    check(path, {"x": x}, [x * w.astype(np.float32)], rtol=1e-6, atol=1e-6, tvm=False)
