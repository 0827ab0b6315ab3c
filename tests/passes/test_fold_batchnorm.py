"""fold_batchnorm: batch_norm after conv / matmul folds into weights; otherwise it stays."""

from __future__ import annotations

import numpy as np
from passcheck import check_pass

RNG = np.random.default_rng(7)


def stats(c: int, prefix: str = "") -> dict[str, np.ndarray]:
    """Random batch-norm parameters for ``c`` channels (variance positive)."""
    return {
        f"{prefix}scale": RNG.standard_normal(c).astype(np.float32),
        f"{prefix}bias": RNG.standard_normal(c).astype(np.float32),
        f"{prefix}mean": RNG.standard_normal(c).astype(np.float32),
        f"{prefix}var": RNG.uniform(0.5, 2.0, c).astype(np.float32),
    }


def weights(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


BN_CONSTS = """
          %scale = const float32[{c}] @scale
          %bias = const float32[{c}] @bias
          %mean = const float32[{c}] @mean
          %var = const float32[{c}] @var"""


def test_conv_without_bias() -> None:
    c = 32
    check_pass(
        ["fold_batchnorm", "dce"],
        """
        graph main(%x: float32[2, 3, 8, 8]) {"""
        + BN_CONSTS.format(c=c)
        + """
          %w = const float32[32, 3, 3, 3] @w
          %1 = conv(%x, %w, _) {pads = [1, 1, 1, 1]}
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {epsilon = 0.001}
          %3 = relu(%2)
          return %3
        }
        """,
        """
        graph main(%x: float32[2, 3, 8, 8]) {
          %w_1 = const float32[32, 3, 3, 3] @w_1
          %w_bias = const float32[32] @w_bias
          %1 = conv(%x, %w_1, %w_bias) {pads = [1, 1, 1, 1]}
          %3 = relu(%1)
          return %3
        }
        """,
        constants={"w": weights(c, 3, 3, 3), **stats(c)},
        modified=True,
        rtol=1e-4,
        atol=1e-5,
    )


def test_grouped_conv_with_bias_as_graph_output() -> None:
    c = 24
    g = check_pass(
        ["fold_batchnorm", "dce"],
        """
        graph main(%x: float32[1, 6, 5, 5]) {"""
        + BN_CONSTS.format(c=c)
        + """
          %w = const float32[24, 2, 3, 3] @w
          %b = const float32[24] @b
          %1 = conv(%x, %w, %b) {strides = [2, 2], pads = [0, 1, 0, 1], groups = 3}
          %y = batch_norm(%1, %scale, %bias, %mean, %var) {epsilon = 0.00001}
          return %y
        }
        """,
        """
        graph main(%x: float32[1, 6, 5, 5]) {
          %w_1 = const float32[24, 2, 3, 3] @w_1
          %b_2 = const float32[24] @b_2
          %1 = conv(%x, %w_1, %b_2) {strides = [2, 2], pads = [0, 1, 0, 1], groups = 3}
          return %1 as "y"
        }
        """,
        constants={"w": weights(c, 2, 3, 3), "b": weights(c), **stats(c)},
        rtol=1e-4,
        atol=1e-5,
    )
    assert g.output_names == ["y"]


def test_chained_batch_norms_and_1d_depthwise_conv() -> None:
    c = 20
    g = check_pass(
        ["fold_batchnorm", "dce"],
        """
        graph main(%x: float32[2, 20, 9]) {"""
        + BN_CONSTS.format(c=c)
        + """
          %w = const float32[20, 1, 3] @w
          %1 = conv(%x, %w, _) {strides = [1], pads = [1, 1], dilations = [2], groups = 20}
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {epsilon = 0.001}
          %3 = batch_norm(%2, %var, %mean, %bias, %var) {epsilon = 0.5}
          return %3
        }
        """,
        None,
        constants={"w": weights(c, 1, 3), **stats(c)},
        rtol=1e-4,
        atol=1e-5,
    )
    assert [n.op for n in g.nodes] == ["conv"]


def test_matmul_with_constant_weight_gets_an_add() -> None:
    n = 24
    check_pass(
        ["fold_batchnorm", "dce"],
        """
        graph main(%a: float32[batch, 16]) {"""
        + BN_CONSTS.format(c=n)
        + """
          %w = const float32[16, 24] @w
          %1 = matmul(%a, %w)
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {epsilon = 0.001}
          return %2
        }
        """,
        """
        graph main(%a: float32[batch, 16]) {
          %w_1 = const float32[16, 24] @w_1
          %bias_shift = const float32[24] @bias_shift
          %1 = matmul(%a, %w_1)
          %2 = add(%1, %bias_shift)
          return %2
        }
        """,
        constants={"w": weights(16, n), **stats(n)},
        rtol=1e-4,
        atol=1e-5,
    )


def test_gemm_pattern_matmul_add_merges_the_bias() -> None:
    n = 20
    check_pass(
        ["fold_batchnorm", "dce"],
        """
        graph main(%a: float32[4, 16]) {"""
        + BN_CONSTS.format(c=n)
        + """
          %w = const float32[16, 20] @w
          %c = const float32[1, 20] @c
          %1 = matmul(%a, %w)
          %2 = add(%c, %1)
          %3 = batch_norm(%2, %scale, %bias, %mean, %var) {epsilon = 0.001}
          return %3
        }
        """,
        """
        graph main(%a: float32[4, 16]) {
          %w_1 = const float32[16, 20] @w_1
          %c_2 = const float32[1, 20] @c_2
          %1 = matmul(%a, %w_1)
          %2 = add(%c_2, %1)
          return %2 as "3"
        }
        """,
        constants={"w": weights(16, n), "c": weights(1, n), **stats(n)},
        rtol=1e-4,
        atol=1e-5,
    )


NOT_FOLDED = {
    "conv output read elsewhere": """
        graph main(%x: float32[1, 3, 4, 4]) {{{bn}
          %w = const float32[20, 3, 1, 1] @w
          %1 = conv(%x, %w, _) {{strides = [1, 1]}}
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {{epsilon = 0.001}}
          %3 = relu(%1)
          return %2, %3
        }}
        """,
    "conv output is a graph output": """
        graph main(%x: float32[1, 3, 4, 4]) {{{bn}
          %w = const float32[20, 3, 1, 1] @w
          %1 = conv(%x, %w, _) {{strides = [1, 1]}}
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {{epsilon = 0.001}}
          return %2, %1
        }}
        """,
    "weight not constant": """
        graph main(%x: float32[1, 3, 4, 4], %w: float32[20, 3, 1, 1]) {{{bn}
          %1 = conv(%x, %w, _) {{strides = [1, 1]}}
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {{epsilon = 0.001}}
          return %2
        }}
        """,
    "statistics not constant": """
        graph main(%x: float32[1, 3, 4, 4], %m: float32[20]) {{
          %scale = const float32[20] @scale
          %bias = const float32[20] @bias
          %var = const float32[20] @var
          %w = const float32[20, 3, 1, 1] @w
          %1 = conv(%x, %w, _) {{strides = [1, 1]}}
          %2 = batch_norm(%1, %scale, %bias, %m, %var) {{epsilon = 0.001}}
          return %2
        }}
        """,
    "matmul result of rank 3": """
        graph main(%a: float32[2, 20, 3]) {{{bn}
          %w = const float32[3, 20] @w
          %1 = matmul(%a, %w)
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {{epsilon = 0.001}}
          return %2
        }}
        """,
    "no conv or matmul before": """
        graph main(%x: float32[2, 20]) {{{bn}
          %1 = relu(%x)
          %2 = batch_norm(%1, %scale, %bias, %mean, %var) {{epsilon = 0.001}}
          return %2
        }}
        """,
}


def test_batch_norm_stays_when_folding_is_not_possible() -> None:
    consts = {"w": weights(20, 3, 1, 1), **stats(20)}
    for why, template in NOT_FOLDED.items():
        source = template.format(bn=BN_CONSTS.format(c=20))
        if "matmul" in source:
            consts = {**consts, "w": weights(3, 20)}
        try:
            check_pass(["fold_batchnorm"], source, source, constants=consts, modified=False)
        except AssertionError as e:
            raise AssertionError(f"{why}: {e}") from e


def test_per_channel_mul_and_add_after_conv() -> None:
    g = check_pass(
        ["fold_batchnorm", "dce"],
        """
        graph main(%x: float32[2, 3, 5, 5]) {
          %w = const float32[20, 3, 3, 3] @w
          %s = const float32[20, 1, 1] @s
          %t = const float32[1, 20, 1, 1] @t
          %1 = conv(%x, %w, _)
          %2 = mul(%s, %1)
          %3 = add(%2, %t)
          return %3
        }
        """,
        """
        graph main(%x: float32[2, 3, 5, 5]) {
          %w_1_2 = const float32[20, 3, 3, 3] @w_1_2
          %w_bias_3 = const float32[20] @w_bias_3
          %1 = conv(%x, %w_1_2, %w_bias_3)
          return %1 as "3"
        }
        """,
        constants={"w": weights(20, 3, 3, 3), "s": weights(20, 1, 1), "t": weights(1, 20, 1, 1)},
        rtol=1e-4,
        atol=1e-5,
    )
    assert g.output_names == ["3"]


def test_mul_that_is_not_per_channel_stays() -> None:
    source = """
        graph main(%x: float32[2, 3, 5, 5]) {
          %w = const float32[20, 3, 3, 3] @w
          %s = const float32[1, 1, 5, 5] @s
          %t = const float32[2, 20, 1, 1] @t
          %1 = conv(%x, %w, _) {pads = [1, 1, 1, 1]}
          %2 = mul(%1, %s)
          %3 = conv(%x, %w, _)
          %4 = add(%3, %t)
          return %2, %4
        }
        """
    consts = {"w": weights(20, 3, 3, 3), "s": weights(1, 1, 5, 5), "t": weights(2, 20, 1, 1)}
    check_pass(["fold_batchnorm"], source, source, constants=consts, modified=False)


def test_batch_norm_inside_a_loop_body_folds_into_its_conv() -> None:
    """The fold works block by block: a conv + batch_norm in a loop body becomes one conv
    there (the weights are constants, so the body reads them without captures)."""
    from backends.reference import run_graph
    from compiler.ir.graph import walk
    from compiler.ir.text import parse_graph
    from passes import run_passes

    c = 4
    text = (
        """
        graph main(%n: int64[], %x: float32[1, 4, 5, 5]) {"""
        + BN_CONSTS.format(c=c)
        + """
          %w = const float32[4, 4, 1, 1] @w
          %r = loop(%n, _, %x) {num_carried = 1} : float32[1, 4, 5, 5] {
            body(%i: int64[], %go: bool[], %v: float32[1, 4, 5, 5]) {
              %1 = conv(%v, %w, _) : float32[1, 4, 5, 5]
              %2 = batch_norm(%1, %scale, %bias, %mean, %var) : float32[1, 4, 5, 5]
              %3 = tanh(%2) : float32[1, 4, 5, 5]
              yield %go, %3
            }
          }
          return %r
        }
        """
    )
    consts = {"w": weights(c, c, 1, 1) * 0.3, **stats(c)}
    before, after = parse_graph(text, consts), parse_graph(text, consts)
    run_passes(after, ["fold_batchnorm", "dce"], verify_each=True)
    ops = [node.op for node in walk(after)]
    assert "batch_norm" not in ops and ops.count("conv") == 1
    feeds = {"n": np.array(3), "x": weights(1, c, 5, 5)}
    want, got = run_graph(before, feeds)["r"], run_graph(after, feeds)["r"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
