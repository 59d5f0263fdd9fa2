"""The parameter ops of probabilistic integral circuits, and their lowering rules.

`pic-input-net` and `pic-inner-net` evaluate a small MLP over Fourier features at quadrature
points (see `cirkit_ir.symbolic.pic`). Their operands are tensors: the points (folds, K), for
`pic-inner-net` the quadrature weights (folds, K), the Fourier coefficients (folds, d, F/2),
then `num_layers` (weight, bias) pairs. Points and weights are operands rather than
attributes so that a graph can be re-materialized with another rule by rewriting two held
tensors, and so that ops of different layers fold together.

There is no sign rule: the weights operand is a tensor leaf, which the sign analysis counts
as any real, so a circuit reading `pic-inner-net` weights under 'lse-sum' checks at run time
that they are non-negative (they are, for the positive weights of every shipped rule).
"""

from __future__ import annotations

from typing import Any

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.lower import param_rule
from cirkit_ir.ir.op_def import numel, operands_def, positive, register_op
from cirkit_ir.ir.ops import ParamOp
from cirkit_ir.symbolic import pic


def _net_operands(first: int) -> Any:
    """`first` fixed operands, then the (weight, bias) pairs of `num_layers` layers."""
    return operands_def(lambda op: first + 2 * op.num_layers)


@register_op
@attrs.frozen
class PICInputNetOp(ParamOp):
    """h(z) at every point: (folds, K, *features), features' product the last bias's size."""

    name = "pic-input-net"
    num_layers: int = positive()
    operands = _net_operands(2)

    def infer_shape(self, operand_shapes):
        (folds, nip), out = operand_shapes[0], operand_shapes[-1][-1]
        features = self.shape[2:]
        return (folds, nip, *features) if numel(features) == out else (folds, nip, out)


@register_op
@attrs.frozen
class PICInnerNetOp(ParamOp):
    """Row-normalized sum weights from f on the grid: (folds, K^(d - n), K^n), d the net's
    arguments (from the coefficients' shape), n = `num_normalized`."""

    name = "pic-inner-net"
    num_normalized: int = positive()
    num_layers: int = positive()
    operands = _net_operands(3)

    def infer_shape(self, operand_shapes):
        (folds, nip), d = operand_shapes[0], operand_shapes[2][1]
        return (folds, nip ** (d - self.num_normalized), nip**self.num_normalized)

    def validate(self) -> None:
        if len(self.shape) != 3:
            raise OptionError(
                f"pic-inner-net computes (folds, out, in) weights, got shape {self.shape}"
            )


@param_rule(pic.PICInputNetParameter)
def _lower_input_net(node: pic.PICInputNetParameter, shape: tuple[int, ...]) -> ParamOp:
    return PICInputNetOp(num_layers=len(node.layers) // 2, shape=shape)


@param_rule(pic.PICInnerNetParameter)
def _lower_inner_net(node: pic.PICInnerNetParameter, shape: tuple[int, ...]) -> ParamOp:
    return PICInnerNetOp(
        num_normalized=node.num_normalized, num_layers=len(node.layers) // 2, shape=shape
    )
