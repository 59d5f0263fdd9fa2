"""Adding ops from outside the package: a Poisson input distribution and a sum-like op.

Each new op is declared once, and every other piece registers beside its own kind of thing:

    symbolic layer      what a user builds circuits from (an attrs class)
    lowering rule       `lower.layer_rule(Layer)`: the layer's IR op
    IR op               `@register_op`: attributes, operands, result, parameter slots, traits;
                        the printer, parser, verifier, fold, fuse and dce then know it
    torch kernel        `@register_layer(Op)`: the module that computes the op
    reference rule      `reference.input_rule` / `layer_rule`: the op's plain definition, the
                        oracle compiled circuits are checked against

This file then runs both ops through print -> parse -> verify -> fold -> fuse -> codegen ->
forward, and checks the compiled circuit against the reference evaluator.

Run it with `python examples/custom_op.py`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from cirkit_ir import reference
from cirkit_ir.backends.torch import TorchDenseLayer, TorchInputLayer, register_layer
from cirkit_ir.ir import lower, parse_ir, print_ir, verify
from cirkit_ir.ir.lower import layer_rule
from cirkit_ir.ir.op_def import Need, operands_def, param_def, positive, register_op, result_def
from cirkit_ir.ir.ops import InnerOp, InputOp
from cirkit_ir.ir.traits import Smooth
from cirkit_ir.passes import PassManager
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    Circuit,
    ExpParameter,
    HadamardLayer,
    KroneckerLayer,
    NormalInitializer,
    ParameterNode,
    TensorParameter,
)
from cirkit_ir.symbolic.layers import DenseLayer, InputLayer

# =============================================================================================
# 1. A Poisson input distribution: p(x) = rate^x exp(-rate) / x!, per unit and channel.


@attrs.frozen(eq=False)
class PoissonLayer(InputLayer):
    """Poisson counts; `rate` (units, channels) must be positive (exp of a tensor by default)."""

    kind: ClassVar[str] = "poisson"
    rate: ParameterNode | None = attrs.field(default=None, kw_only=True, repr=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.rate is None:
            shape = (self.num_output_units, self.num_channels)
            rate = ExpParameter(TensorParameter(shape, NormalInitializer()))
            object.__setattr__(self, "rate", rate)

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"rate": self.rate}


@register_op
class PoissonOp(InputOp):
    """Poisson densities; the backend checks at every forward that `rate` is positive,
    unless `cirkit_ir.ir.sign` proves it (a clamp or scaled sigmoid with a positive bound)."""

    name = "poisson"
    rate = param_def("num_units", "num_channels", need=Need.POSITIVE)


@layer_rule(PoissonLayer)
def _lower_poisson(layer: PoissonLayer) -> PoissonOp:
    return PoissonOp(tuple(layer.scope), layer.num_channels, layer.num_output_units)


@register_layer(PoissonOp)
class TorchPoissonLayer(TorchInputLayer):
    """log p(x) = x log(rate) - rate - log(x!), summed over channels: (F, K, B)."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (rate,) = params  # (F, K, C)
        return torch.log(rate).unsqueeze(-1), rate.unsqueeze(-1)

    def log_density(self, x: Tensor, *prepared: Tensor) -> Tensor:
        log_rate, rate = prepared
        counts = self.select(x).unsqueeze(1).to(rate.dtype)  # (F, 1, C, B)
        return (counts * log_rate - rate - torch.lgamma(counts + 1)).sum(2)


@reference.input_rule(PoissonLayer)
def _poisson_reference(layer, params, data, mode):
    x = data.to(reference.REAL)[:, None, :]  # (B, 1, C)
    rate = params["rate"][None]  # (1, K, C)
    log_p = x * torch.log(rate) - rate - torch.lgamma(x + 1)
    return log_p.sum(-1)


# =============================================================================================
# 2. A sum-like op: a dense sum that normalizes its own (non-negative) weights per row.


@attrs.frozen(eq=False)
class NormalizedDenseLayer(DenseLayer):
    """y = (W / W.sum(1)) x: any non-negative weights make a normalized mixture (by default,
    the exp of normal draws)."""

    kind: ClassVar[str] = "normalized-dense"

    @staticmethod
    def _default_weight(shape: tuple[int, ...]) -> ParameterNode:
        return ExpParameter(TensorParameter(shape, NormalInitializer()))


@register_op
class NormalizedDenseOp(InnerOp):
    """y = (W / W.sum(-1)) x, W (folds, out, in): a sum over one input's units."""

    name = "normalized-dense"
    traits = (Smooth(),)
    in_units: int = positive()
    out_units: int = positive()
    operands = operands_def(1, units="in_units")
    result = result_def("out_units")
    weight = param_def("out_units", "in_units", nonnegative=True)


@layer_rule(NormalizedDenseLayer)
def _lower_normalized_dense(layer: NormalizedDenseLayer) -> NormalizedDenseOp:
    return NormalizedDenseOp(layer.num_input_units, layer.num_output_units)


@register_layer(NormalizedDenseOp)
class TorchNormalizedDenseLayer(TorchDenseLayer):
    """The dense layer's contraction, with each row of weights divided by its sum first."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (w,) = params
        return super().prepare(w / w.sum(-1, keepdim=True))


@reference.layer_rule(NormalizedDenseLayer)
def _normalized_dense_reference(layer, params, inputs, ctx):
    (child,) = inputs  # (B, J) log-values
    w = params["weight"]
    log_w = ctx.log(w / w.sum(-1, keepdim=True))  # (K, J)
    return reference.logsumexp(reference.add(log_w[None], child[:, None, :]), dim=2)


# =============================================================================================
# 3. A circuit of both, through the whole compiler.


def poisson_circuit(num_variables: int = 4, units: int = 3) -> Circuit:
    """Poisson inputs, products of pairs, normalized sums, a hadamard and a normalized root."""
    inputs = [PoissonLayer((v,), units) for v in range(num_variables)]
    layers, wiring, sums = list(inputs), {}, []
    for left, right in zip(inputs[::2], inputs[1::2], strict=True):
        product = KroneckerLayer(units, 2)
        mix = NormalizedDenseLayer(units**2, units)
        layers += [product, mix]
        wiring[product], wiring[mix] = [left, right], [product]
        sums.append(mix)
    top, root = HadamardLayer(units, len(sums)), NormalizedDenseLayer(units, 1)
    layers += [top, root]
    wiring[top], wiring[root] = sums, [top]
    return Circuit(layers, wiring, [root])


def main() -> None:
    circuit = poisson_circuit()
    graph = lower(circuit)
    text = print_ir(graph)
    assert print_ir(parse_ir(text)) == text  # the text form knows both ops
    verify(parse_ir(text))
    print(f"lowered: {graph.op_counts()}")

    pipeline = "fold,lower-semiring{semiring=lse-sum},fuse,dce"
    folded = PassManager.parse(pipeline, verify=True).run(graph.clone())
    print(f"after {pipeline}: {folded.op_counts()}\n")
    print(print_ir(folded))

    data = torch.randint(0, 8, (16, 1, 4))
    for fold, optimize in ((False, False), (True, True)):
        ctx = PipelineContext(semiring="lse-sum", fold=fold, optimize=optimize, seed=0)
        compiled = ctx.compile(circuit)
        log_p = compiled(data)
        expected = reference.evaluate(circuit, data, compiled.symbolic_state())
        error = (log_p.double() - expected).abs().max().item()
        print(f"fold={fold} optimize={optimize}: max |log p - reference| = {error:.2e}")
        assert error < 1e-4, error

    # The root and the normalized sums make a normalized distribution over counts: its
    # probabilities sum to 1 (up to the Poisson tail beyond the counts enumerated here).
    compiled = PipelineContext(semiring="lse-sum", seed=0).compile(poisson_circuit(2, 2))
    grid = torch.cartesian_prod(torch.arange(60), torch.arange(60)).unsqueeze(1)
    total = compiled(grid).exp().sum().item()
    print(f"sum of p over counts 0..59 of a 2-variable circuit: {total:.6f}")
    assert math.isclose(total, 1.0, abs_tol=1e-3), total


if __name__ == "__main__":
    main()
