"""The product of two dense layers, kept factored: y = (W1 (x) W2) x.

Multiplying circuits multiplies their dense layers pairwise; the product's weight is the
Kronecker product of theirs, (O1 O2) x (I1 I2) entries, which a squared circuit of 32 units
would hold a million of per layer. This layer keeps the two factors and computes
y = vec(W1 X W2^T) instead (X the input as an I1 x I2 matrix): O(K^3) work, O(K^2) memory.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from cirkit_ir.errors import StructureError
from cirkit_ir.symbolic.layers import Layer
from cirkit_ir.symbolic.parameters import KroneckerParameter, ParameterNode, _is_node


@attrs.frozen(eq=False)
class KroneckerDenseLayer(Layer):
    """y[o1 * O2 + o2] = sum_{i1, i2} weight1[o1, i1] weight2[o2, i2] x[i1 * I2 + i2]: a dense
    layer whose weight is `weight1` (x) `weight2` (see `weight`), never materialized."""

    kind: ClassVar[str] = "kron-dense"
    weight1: ParameterNode = attrs.field(validator=_is_node("shape"))
    weight2: ParameterNode = attrs.field(validator=_is_node("shape"))

    def __attrs_post_init__(self) -> None:
        if len(self.weight1.shape) != 2 or len(self.weight2.shape) != 2:
            raise StructureError(
                f"KroneckerDenseLayer needs two weight matrices, got shapes"
                f" {self.weight1.shape} and {self.weight2.shape}"
            )

    @property
    def weight(self) -> ParameterNode:
        """The dense weight this layer stands for (a new node: for inspection)."""
        return KroneckerParameter(self.weight1, self.weight2)

    @property
    def num_input_units(self) -> int:
        return self.weight1.shape[1] * self.weight2.shape[1]

    @property
    def num_output_units(self) -> int:
        return self.weight1.shape[0] * self.weight2.shape[0]

    @property
    def arity(self) -> int:
        return 1

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"weight1": self.weight1, "weight2": self.weight2}
