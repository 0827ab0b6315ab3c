"""``precision``: fp32 everywhere (the default), or fp16 mixed precision on CUDA targets.

fp16 runs TVM's ``ToMixedPrecision(out_dtype="float32")`` on the Relax module our lowering
emits, before legalization. Its per-op policies decide what happens:

- convs and matmuls ("always") read float16 and accumulate and write float32
  (``out_dtype``), so dlight's ``Matmul`` can take the tensor-core path;
- elementwise ops, pooling, layer_norm ("follow") run in the dtype of their inputs; TOPI's
  ``layer_norm`` computes in float32 whatever its input;
- every op without a policy stays float32: softmax and log_softmax, and mean, variance, sum
  and batch_norm, which are the statistics of our decomposed normalizations
  (``lowering/nn.py``). So softmax and normalization statistics are float32 by construction.

Model inputs and outputs keep their declared dtypes (the casts are inside the model). The
pass casts each weight with an ``astype`` of a constant; ``fold_constant_casts`` does those
casts at compile time, so that weights are stored, and read, as float16.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax import Call, Expr, PyExprMutator, expr_functor

from compiler.errors import NnxcError

PRECISIONS = ("fp32", "fp16")


def check_precision(precision: str, target_kind: str) -> None:
    """fp16 is mixed precision for GPUs; LLVM targets compute in fp32 (refused, not ignored:
    asking for fp16 on a CPU expects something that would not happen)."""
    if precision not in PRECISIONS:
        raise NnxcError(f"unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}")
    if precision == "fp16" and target_kind != "cuda":
        raise NnxcError(
            f"precision fp16 is for CUDA targets; {target_kind} targets compute in fp32 "
            "(use --precision fp32, the default)"
        )


def mixed_precision_passes(precision: str) -> list[tvm.transform.Pass]:
    """The passes that make the module compute in ``precision`` (none for fp32)."""
    if precision == "fp16":
        return [relax.transform.ToMixedPrecision(out_dtype="float32"), fold_constant_casts()]
    return []


@expr_functor.mutator
class _ConstantCasts(PyExprMutator):
    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        if (
            isinstance(call, Call)
            and isinstance(call.op, tvm.ir.Op)
            and call.op.name == "relax.astype"
            and isinstance(call.args[0], tvm.ir.GenericConst)
            and call.args[0].value.numpy().size > 0  # the VM cannot load an empty constant
        ):
            data = call.args[0].value.numpy().astype(str(call.attrs.dtype))
            return relax.const(data, str(call.attrs.dtype))
        return call


def fold_constant_casts() -> tvm.transform.Pass:
    """``astype(constant)`` -> the cast constant. Only casts: Relax's ``FoldConstant`` would
    also fold other ops, turning zero-size results into constants the VM cannot load."""

    @tvm.transform.module_pass(opt_level=0, name="nnxc.fold_constant_casts")
    def _fold(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mutator = _ConstantCasts(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return mutator.builder_.get()

    return _fold
