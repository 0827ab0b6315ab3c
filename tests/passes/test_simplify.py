"""simplify: identities, no-op data movement, reshape/transpose chains, x*1 and x+0."""

from __future__ import annotations

from passcheck import check_pass


def test_identity_and_dropout_are_removed() -> None:
    check_pass(
        ["simplify"],
        """
        graph main(%x: float32[2, 3]) {
          %1 = identity(%x)
          %2 = dropout(%1) {ratio = 0.3}
          %3 = relu(%2)
          return %3
        }
        """,
        """
        graph main(%x: float32[2, 3]) {
          %3 = relu(%x)
          return %3
        }
        """,
        modified=True,
    )


def test_replaced_graph_output_keeps_its_name() -> None:
    g = check_pass(
        ["simplify"],
        """
        graph main(%x: float32[2, 3]) {
          %1 = relu(%x)
          %y = identity(%1)
          %z = identity(%x)
          return %y, %z
        }
        """,
        """
        graph main(%x: float32[2, 3]) {
          %1 = relu(%x)
          return %1 as "y", %x as "z"
        }
        """,
    )
    assert g.output_names == ["y", "z"]
    assert g.outputs[1] is g.inputs[0]


def test_reshape_chain_reads_the_first_input() -> None:
    check_pass(
        ["simplify", "dce"],
        """
        graph main(%x: float32[batch, 6]) {
          %1 = reshape(%x) {shape = ["batch", 2, 3]}
          %2 = reshape(%1) {shape = [3, 2, "batch"]}
          %3 = reshape(%2) {shape = [6, "batch"]}
          return %3
        }
        """,
        """
        graph main(%x: float32[batch, 6]) {
          %3 = reshape(%x) {shape = [6, "batch"]}
          return %3
        }
        """,
    )


def test_reshape_chain_back_to_the_input_shape_vanishes() -> None:
    check_pass(
        ["simplify", "dce"],
        """
        graph main(%x: float32[4, 6]) {
          %1 = reshape(%x) {shape = [24]}
          %2 = relu(%1)
          %3 = reshape(%1) {shape = [4, 6]}
          return %2, %3
        }
        """,
        """
        graph main(%x: float32[4, 6]) {
          %1 = reshape(%x) {shape = [24]}
          %2 = relu(%1)
          return %2, %x as "3"
        }
        """,
    )


def test_transpose_chain_composes() -> None:
    check_pass(
        ["simplify", "dce"],
        """
        graph main(%x: float32[2, 3, 4]) {
          %1 = transpose(%x) {perm = [1, 2, 0]}
          %2 = transpose(%1) {perm = [0, 2, 1]}
          return %2
        }
        """,
        """
        graph main(%x: float32[2, 3, 4]) {
          %2 = transpose(%x) {perm = [1, 0, 2]}
          return %2
        }
        """,
    )


def test_inverse_transposes_cancel() -> None:
    check_pass(
        ["simplify", "dce"],
        """
        graph main(%x: float32[2, 3, 4]) {
          %1 = transpose(%x) {perm = [1, 2, 0]}
          %2 = transpose(%1) {perm = [2, 0, 1]}
          %3 = transpose(%2) {perm = [0, 1, 2]}
          %4 = relu(%3)
          return %4
        }
        """,
        """
        graph main(%x: float32[2, 3, 4]) {
          %4 = relu(%x)
          return %4
        }
        """,
    )


def test_no_op_data_movement() -> None:
    check_pass(
        ["simplify"],
        """
        graph main(%x: float32[2, 3], %i: int64[2, 3]) {
          %1 = cast(%x) {to = "float32"}
          %2 = reshape(%1) {shape = [2, 3]}
          %3 = broadcast_to(%2) {shape = [2, 3]}
          %4 = tile(%3) {repeats = [1, 1]}
          %5 = pad(%4) {pads = [0, 0, 0, 0]}
          %6 = slice(%5) {axes = [0, 1], starts = [0, 0], ends = [2, 3], steps = [1, 1]}
          %7 = concat(%6) {axis = 0}
          %8 = cast(%i) {to = "int64"}
          return %7, %8
        }
        """,
        """
        graph main(%x: float32[2, 3], %i: int64[2, 3]) {
          return %x as "7", %i as "8"
        }
        """,
    )


def test_data_movement_that_changes_something_stays() -> None:
    source = """
        graph main(%x: float32[2, 3]) {
          %1 = cast(%x) {to = "float16"}
          %2 = broadcast_to(%x) {shape = [4, 2, 3]}
          %3 = pad(%x) {pads = [1, 0, -1, 0]}
          %4 = slice(%x) {axes = [1], starts = [2], ends = [-4], steps = [-1]}
          %5 = transpose(%x) {perm = [1, 0]}
          return %1, %2, %3, %4, %5
        }
        """
    check_pass(["simplify"], source, source, modified=False)


def test_multiplying_by_one_and_adding_zero() -> None:
    check_pass(
        ["simplify"],
        """
        graph main(%x: float32[2, 3], %n: int32[3]) {
          %one = const float32[3] dense<1.0>
          %zero = const float32[] dense<0.0>
          %izero = const int32[1] dense<0>
          %1 = mul(%x, %one)
          %2 = mul(%one, %1)
          %3 = add(%2, %zero)
          %4 = add(%zero, %3)
          %5 = sub(%4, %zero)
          %6 = div(%5, %one)
          %7 = add(%n, %izero)
          return %6, %7
        }
        """,
        """
        graph main(%x: float32[2, 3], %n: int32[3]) {
          return %x as "6", %n as "7"
        }
        """,
    )


def test_neutral_constants_that_broadcast_or_differ_stay() -> None:
    source = """
        graph main(%x: float32[3], %y: float32[2, 3]) {
          %one = const float32[2, 3] dense<1.0>
          %two = const float32[3] dense<[1.0, 2.0, 1.0]>
          %zero = const float32[3] dense<0.0>
          %1 = mul(%x, %one)
          %2 = mul(%y, %two)
          %3 = sub(%zero, %x)
          %4 = div(%one, %y)
          return %1, %2, %3, %4
        }
        """
    check_pass(["simplify"], source, source, modified=False)


def test_unchanged_graph_reports_no_modification() -> None:
    source = """
        graph main(%x: float32[2, 3]) {
          %1 = relu(%x)
          return %1
        }
        """
    check_pass(["simplify"], source, source, modified=False)


def test_rules_apply_inside_regions() -> None:
    check_pass(
        ["simplify", "dce"],
        """
        graph main(%c: bool[], %x: float32[2, 3]) {
          %one = const float32[] dense<1.0>
          %r = if(%c, %x) : float32[2, 3] {
            then(%a: float32[2, 3]) {
              %t = identity(%a)
              %m = mul(%t, %one)
              %r1 = reshape(%m) {shape = [6]}
              %r2 = reshape(%r1) {shape = [2, 3]}
              yield %r2
            }
            else(%b: float32[2, 3]) {
              %e = relu(%b)
              %z = transpose(%e) {perm = [0, 1]}
              yield %z
            }
          }
          return %r
        }
        """,
        """
        graph main(%c: bool[], %x: float32[2, 3]) {
          %r = if(%c, %x) : float32[2, 3] {
            then(%a: float32[2, 3]) {
              yield %a
            }
            else(%b: float32[2, 3]) {
              %e = relu(%b)
              yield %e
            }
          }
          return %r
        }
        """,
        modified=True,
    )
