"""Convolution schedule rules and the packed-weight conv2d legalization vs the reference."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from oputil import check_op
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu
from tvm.s_tir import dlight

from backends.tvm import resolve_target
from backends.tvm.legalize import legalize_ops
from backends.tvm.schedules.cpu import conv, conv_layout
from backends.tvm.schedules.cpu.target_info import vector_lanes

_TARGET = resolve_target("cpu").tvm_target()
# An AVX2 CPU that any AVX-512 host also runs: the 256-bit layout choices stay tested there.
_AVX2 = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3"})
_X86 = str(tvm.target.codegen.llvm_get_system_triple()).startswith("x86_64")


def _conv_case(rng, n, c, h, w, o, k, groups=1, **attrs):
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    kh, kw = (k, k) if isinstance(k, int) else k
    wt = (rng.standard_normal((o, c // groups, kh, kw)) * 0.2).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    return x, wt, b, {"groups": groups, **attrs}


CASES = [
    # (n, c, h, w, o, kernel, groups, attrs)
    (1, 16, 14, 14, 32, 3, 1, {"pads": [1, 1, 1, 1]}),
    (1, 3, 23, 23, 16, 7, 1, {"strides": [2, 2], "pads": [3, 3, 3, 3]}),  # stem-like
    (1, 32, 13, 13, 24, 1, 1, {}),  # 1x1, width 13 needs a padded tile
    (1, 24, 8, 14, 40, 1, 1, {}),  # 1x1 on 112 pixels: pointwise, tiles of 16 pixels
    (2, 16, 6, 8, 18, 1, 1, {}),  # pointwise, batch 2, 24-pixel tiles, 2 channels per tile
    (1, 24, 15, 11, 48, 1, 1, {"strides": [2, 2]}),  # strided 1x1 (subsampled)
    (2, 8, 9, 10, 16, (3, 2), 1, {"pads": [0, 1, 2, 0], "dilations": [2, 1]}),
    (1, 12, 10, 10, 48, 1, 3, {}),  # grouped 1x1, 16 outputs per group: pointwise
    (1, 24, 14, 14, 136, 1, 4, {}),  # grouped 1x1, 34 outputs per group (ShuffleNet)
    (1, 12, 9, 13, 12, 1, 4, {}),  # 3 per group: register tiles span groups
    (1, 12, 9, 13, 12, 3, 4, {"pads": [1, 1, 1, 1]}),  # grouped 3x3: width-vectorized
    (1, 8, 9, 13, 20, 3, 2, {"pads": [1, 1, 1, 1], "strides": [2, 1]}),  # 10 per group
    (1, 8, 9, 13, 20, 3, 2, {"pads": [1, 0, 1, 2], "strides": [1, 2]}),  # packed, bn=2
    (1, 16, 9, 9, 64, 3, 2, {"pads": [1, 1, 1, 1], "strides": [2, 1]}),
    (1, 8, 7, 7, 1000, 1, 1, {}),  # 1000 outputs: padded to 1008, cropped
    (1, 16, 5, 9, 72, 3, 1, {"pads": [1, 1, 1, 1]}),  # 72 outputs: padded to 80
    (1, 5, 6, 31, 10, 3, 1, {"pads": [1, 1, 1, 1]}),  # O % lanes != 0: TVM's legalization
    (1, 8, 12, 12, 8, 3, 8, {"pads": [1, 1, 1, 1]}),  # depthwise
    (1, 16, 7, 7, 16, 3, 16, {"pads": [1, 1, 1, 1]}),  # depthwise, width < one vector
    (1, 24, 29, 29, 24, 3, 24, {"pads": [1, 1, 1, 1], "strides": [2, 2]}),  # depthwise s2
    (2, 4, 10, 19, 4, (5, 3), 4, {"pads": [2, 0, 1, 1], "dilations": [1, 2]}),  # depthwise
    (1, 8, 12, 12, 16, 3, 8, {"pads": [1, 1, 1, 1]}),  # 2 outputs per group: TVM's
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_conv_matches_reference(case):
    n, c, h, w, o, k, groups, attrs = case
    x, wt, b, attrs = _conv_case(np.random.default_rng(0), n, c, h, w, o, k, groups, **attrs)
    check_op("conv", [x, wt, b], attrs, const_inputs=[1, 2], rtol=1e-4, atol=1e-4)


def test_conv_without_bias_and_weight_input():
    rng = np.random.default_rng(1)
    x, wt, _, attrs = _conv_case(rng, 1, 16, 8, 8, 16, 3, pads=[1, 1, 1, 1])
    check_op("conv", [x, wt, None], attrs, const_inputs=[1], rtol=1e-4, atol=1e-4)
    # A weight that is no constant keeps TVM's own legalization.
    check_op("conv", [x, wt, None], attrs, rtol=1e-4, atol=1e-4)


def _fused_module(x_shape, w, res_shape, **conv_attrs):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    r = relax.Var("r", relax.TensorType(res_shape, "float32"))
    with bb.function("main", [x, r]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), **conv_attrs))
            bias = np.linspace(-1, 1, w.shape[0], dtype=np.float32).reshape(1, -1, 1, 1)
            y = bb.emit(relax.op.add(y, relax.const(bias)))
            y = bb.emit(relax.op.add(y, r))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


def _schedule(mod, target=_TARGET):
    with target:
        seq = [legalize_ops(target), *cpu.legalize_passes(target)]
        mod = tvm.transform.Sequential(seq)(mod)
        return mod, dlight.ApplyDefaultSchedule(*conv.RULES)(mod)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(_TARGET, id="host"),
        pytest.param(_AVX2, id="avx2", marks=pytest.mark.skipif(not _X86, reason="x86 only")),
    ],
)
@pytest.mark.parametrize(
    "width,out_c,k", [(13, 32, 3), (16, 32, 3), (13, 72, 3), (16, 32, 1), (13, 32, 1)]
)
def test_rule_schedules_conv_with_residual_epilogue(width, out_c, k, target):
    """72 outputs: computed as 80 (blocks of 16: two AVX2 vectors or one AVX-512 one) and
    cropped, still by the conv rule. The 1x1 convs go to the pointwise rule (12x13 pixels:
    padded to tiles of 16)."""
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((out_c, 16, k, k)) * 0.2).astype(np.float32)
    mod = _fused_module((1, 16, 12, width), w, (1, out_c, 12, width), padding=[k // 2] * 4)
    before, after = _schedule(mod, target)
    convs = [
        f
        for gv, f in after.functions.items()
        if isinstance(f, tvm.tirx.PrimFunc)
        and ("conv2d_packed" if k == 3 else "conv2d_pointwise") in gv.name_hint
    ]
    assert len(convs) == 1 and convs[0].attrs["tirx.is_scheduled"]
    x = rng.standard_normal((1, 16, 12, width)).astype(np.float32)
    r = rng.standard_normal((1, out_c, 12, width)).astype(np.float32)
    outs = []
    for m in (before, after):
        ex = tvm.compile(m, target=target, relax_pipeline=_rest_of_pipeline(target))
        vm = relax.VirtualMachine(ex, tvm.cpu())
        outs.append(vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(r)).numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-4)


def _rest_of_pipeline(target=_TARGET):
    @tvm.transform.module_pass(opt_level=0, name="rest")
    def rest(mod, _ctx):
        with target:
            seq = cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target)
            return tvm.transform.Sequential(seq)(mod)

    return rest


def test_register_tile_fits_and_pads_little():
    assert conv_layout.register_tile(56, 16, 8) == 4
    assert conv_layout.register_tile(7, 16, 8) == 4
    assert conv_layout.register_tile(7, 8, 8) == 7
    assert conv_layout.register_tile(13, 16, 8) == 5
    assert conv_layout.register_tile(13, 8, 8) == 7


@pytest.mark.parametrize(
    "mcpu,lanes", [("znver3", 8), ("haswell", 8), ("znver5", 16), ("skylake-avx512", 16)]
)
def test_vector_lanes_follow_the_cpu(mcpu, lanes):
    """Named CPUs, not the host: the suite runs on AVX2 and on AVX-512 machines."""
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
    assert vector_lanes(target) == lanes


@pytest.mark.parametrize(
    "out_c,lanes,padded,bn,wvec",
    [
        (72, 8, 80, 16, False),  # AVX2: two vectors per block
        (68, 8, 80, 16, True),  # AVX2: only a 4-channel block: width-vectorized at stride 1
        (40, 8, 40, 8, False),
        (72, 16, 80, 16, False),  # AVX-512: a 256-bit block divides 72: padded to one vector
        (40, 16, 40, 8, True),  # too few channels to pad: width-vectorized at stride 1
        (136, 16, 160, 32, False),  # 128 and more: two vectors, as with AVX2
        (1000, 16, 1024, 32, False),
        (48, 16, 48, 16, False),
    ],
)
def test_channel_padding_per_vector_width(out_c, lanes, padded, bn, wvec):
    """The channel blocks for either vector width, whatever the host's."""
    block = conv_layout.oc_block(out_c, lanes)
    assert conv_layout._padded_channels(out_c, block, 1, lanes) == (padded, bn)
    assert conv_layout._width_vectorized(out_c, 1, lanes) == wvec


POOLS = [
    ("max_pool", (1, 16, 13, 13), {"kernel": [3, 3], "strides": [2, 2]}),
    ("max_pool", (1, 8, 14, 14), {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": True}),
    ("max_pool", (2, 3, 9, 11), {"kernel": [2, 3], "pads": [1, 1, 1, 1]}),
    ("avg_pool", (1, 16, 13, 13), {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (
        "avg_pool",
        (1, 5, 12, 12),
        {"kernel": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": True},
    ),
    ("avg_pool", (1, 8, 7, 7), {"kernel": [7, 7]}),
]


@pytest.mark.parametrize("case", POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_pool_matches_reference(case):
    op, shape, attrs = case
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    check_op(op, [x], attrs, rtol=1e-5, atol=1e-5)


def test_rules_schedule_depthwise_grouped_and_pool():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 15, 15), "float32"))
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    wg = rng.standard_normal((16, 4, 3, 3)).astype(np.float32)
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=[1, 1, 1, 1], groups=16))
            y = bb.emit(relax.op.nn.relu(y))
            y = bb.emit(relax.op.nn.conv2d(y, relax.const(wg), padding=[1, 1, 1, 1], groups=4))
            y = bb.emit(relax.op.nn.max_pool2d(y, pool_size=[3, 3], strides=[2, 2]))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    _, after = _schedule(bb.get())
    names = [
        gv.name_hint
        for gv, f in after.functions.items()
        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs and "tirx.is_scheduled" in f.attrs
    ]
    for kind in ("depthwise", "wvec", "pool"):
        assert any(kind in n for n in names), (kind, names)


CONV_TRANSPOSES = [
    # (n, c, h, w, o, kernel, groups, attrs)
    (1, 32, 8, 8, 16, 2, 1, {"strides": [2, 2]}),  # U-Net upsampling: kernel = stride
    (1, 16, 5, 7, 16, 4, 1, {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # DCGAN-like
    (
        1,
        8,
        6,
        6,
        32,
        3,
        1,
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    ),
    (2, 8, 5, 5, 16, 3, 2, {"strides": [1, 2], "dilations": [2, 1]}),  # grouped, dilated
    (1, 8, 6, 6, 6, 3, 1, {"strides": [2, 2]}),  # 6 outputs: blocks of 2
    (1, 8, 6, 6, 16, 3, 1, {"strides": [2, 2], "pads": [3, 3, 3, 3]}),  # pads past reach: TVM's
]


@pytest.mark.parametrize("case", CONV_TRANSPOSES, ids=[str(i) for i in range(len(CONV_TRANSPOSES))])
def test_conv_transpose_matches_reference(case):
    n, c, h, w, o, k, groups, attrs = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((c, o // groups, k, k)) * 0.2).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    attrs = {"groups": groups, **attrs}
    check_op("conv_transpose", [x, wt, b], attrs, const_inputs=[1, 2], rtol=1e-4, atol=1e-4)


def test_conv_transpose_is_scheduled_as_packed_conv():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 32, 8, 8), "float32"))
    w = np.random.default_rng(6).standard_normal((32, 16, 2, 2)).astype(np.float32)
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d_transpose(x, relax.const(w), strides=[2, 2]))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    _, after = _schedule(bb.get())
    scheduled = [
        gv.name_hint
        for gv, f in after.functions.items()
        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs and "tirx.is_scheduled" in f.attrs
    ]
    assert any("conv2d_transpose_packed" in n for n in scheduled), scheduled
