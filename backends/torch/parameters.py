"""Parameter graphs: one module per IR parameter op, and `TorchParameter`, a layer's view of
the graph that computes one of its parameters.

Every node computes a folded tensor (fold axis first) from its inputs' values. Leaves
(`TorchTensorParameter`) hold the learnable tensors. The compiled circuit evaluates every
node once per forward in generated code; `TorchParameter.forward` evaluates one parameter
on its own (for a layer called by hand).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import attrs
import torch
from torch import Tensor, nn

from cirkit_ir.backends.torch.gather import GatherPlan
from cirkit_ir.backends.torch.kernels import register_parameter_node
from cirkit_ir.backends.torch.semirings import log
from cirkit_ir.ir import ops
from cirkit_ir.ir.op_def import declaration
from cirkit_ir.symbolic.initializers import Initializer

Shape = tuple[int, ...]


def _set_plain(module: nn.Module, **values: object) -> None:
    """Sets attributes that are neither tensors nor modules, on a module being built.

    `nn.Module.__setattr__` checks every value against the module's parameters, buffers and
    submodules (microseconds each); codegen builds a module per parameter op, thousands for
    an unfolded circuit, and plain values need none of those checks.
    """
    module.__dict__.update(values)


@attrs.frozen
class NodeContext:
    """What building a parameter node may need besides its op: the module's dtype and
    device, the seed parameters are drawn with, and the values the graph holds (by source)."""

    dtype: torch.dtype = torch.float32
    device: torch.device | str | None = None
    seed: int | None = None
    values: Mapping[int, Tensor] = attrs.field(factory=dict)


class TorchParameterNode(nn.Module):
    """A node of a parameter graph: `forward(*inputs)` gives a (folds, ...) tensor.

    `log_forward(*inputs)`, where a node has it, gives the log of that tensor computed
    directly (see `TorchLayer.log_params`). `softmax_axis` is the axis of a node that is a
    softmax of its one operand (see `TorchLayer.softmax_params`), else None.
    """

    log_forward = None
    softmax_axis: int | None = None

    def __init__(self, input_shapes: Sequence[Shape], shape: Shape) -> None:
        super().__init__()
        _set_plain(self, input_shapes=[tuple(s) for s in input_shapes], shape=tuple(shape))

    @classmethod
    def from_op(
        cls, op: ops.ParamOp, input_shapes: Sequence[Shape], context: NodeContext
    ) -> TorchParameterNode:
        """The node computing `op` from operands of `input_shapes`: by default, the op's
        attributes (all but its shape) are the constructor's keywords."""
        fields = declaration(type(op)).signature_fields
        return cls(input_shapes, op.shape, **{f: getattr(op, f) for f in fields})

    @property
    def num_folds(self) -> int:
        return self.shape[0]

    def extra_repr(self) -> str:
        if not self.input_shapes:
            return f"output-shape: {self.shape}"
        return f"input-shapes: {self.input_shapes}\noutput-shape: {self.shape}"


def _generator(seed: int, source: int) -> torch.Generator:
    """A generator for one symbolic tensor: a function of (seed, source) only, so that a
    tensor gets the same values whatever graph (folded, fused) it ends up in."""
    digest = hashlib.blake2b(f"{seed}:{source}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


@register_parameter_node(ops.TensorOp)
class TorchTensorParameter(TorchParameterNode):
    """A leaf: the tensor `value`, an `nn.Parameter` when learnable, else a buffer.

    `sources[f]` is the symbolic tensor that fold f holds (see `TorchCircuit.symbolic_state`).
    Folds whose source has a held value (`values`) start from it; the others are drawn.
    """

    @classmethod
    def from_op(cls, op, input_shapes, context):  # type: ignore[override]
        dtype = context.dtype
        if op.tensor_dtype == "complex":
            dtype = torch.promote_types(dtype, torch.complex64)
        return cls(
            op.shape,
            op.initializer,
            sources=op.sources,
            learnable=op.learnable,
            dtype=dtype,
            device=context.device,
            seed=context.seed,
            values=context.values,
        )

    def __init__(
        self,
        shape: Shape,
        initializer: Initializer,
        *,
        sources: Sequence[int],
        learnable: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        seed: int | None = None,
        values: Mapping[int, Tensor] | None = None,
    ) -> None:
        super().__init__((), shape)
        _set_plain(self, initializer=initializer, sources=tuple(sources), learnable=learnable)
        held = values or {}
        if any(s in held for s in self.sources):
            one = (1, *self.shape[1:])
            values = torch.cat(
                [
                    held[s].reshape(one).to(dtype) if s in held else self._draw(one, dtype, seed, s)
                    for s in self.sources
                ]
            )
        elif seed is None:
            values = initializer.sample(self.shape, dtype)
        else:
            one = (1, *self.shape[1:])
            values = torch.cat([self._draw(one, dtype, seed, s) for s in self.sources])
        if device is not None or values.dtype != dtype:
            values = values.to(device=device, dtype=dtype)
        if learnable:
            self.register_parameter("value", nn.Parameter(values))  # what `self.value =` does
        else:
            self.register_buffer("value", values)

    def _draw(self, shape: Shape, dtype: torch.dtype, seed: int | None, source: int) -> Tensor:
        generator = None if seed is None else _generator(seed, source)
        return self.initializer.sample(shape, dtype, generator)

    def forward(self) -> Tensor:
        return self.value


@register_parameter_node(ops.SoftmaxOp)
class TorchSoftmaxParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, axis: int = -1) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, axis=axis)

    @property
    def softmax_axis(self) -> int:  # type: ignore[override]
        return self.axis

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(x, self.axis)

    def log_forward(self, x: Tensor) -> Tensor:
        """The log of this node's value, computed stably (for users that read logs)."""
        return torch.log_softmax(x, self.axis)


@register_parameter_node(ops.LogSoftmaxOp)
class TorchLogSoftmaxParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, axis: int = -1) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, axis=axis)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log_softmax(x, self.axis)


@register_parameter_node(ops.ExpOp)
class TorchExpParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(x)


@register_parameter_node(ops.LogOp)
class TorchLogParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return log(x)  # gradient 0, not NaN, at zeros that the output does not depend on


@register_parameter_node(ops.SigmoidOp)
class TorchSigmoidParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


@register_parameter_node(ops.SoftplusOp)
class TorchSoftplusParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.softplus(x)


@register_parameter_node(ops.ClampOp)
class TorchClampParameter(TorchParameterNode):
    """A clamp the user asked for (a parameterization), not a numerical safeguard."""

    def __init__(
        self,
        input_shapes: Sequence[Shape],
        shape: Shape,
        vmin: float | None = None,
        vmax: float | None = None,
    ) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, vmin=vmin, vmax=vmax)

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x, self.vmin, self.vmax)


@register_parameter_node(ops.ScaledSigmoidOp)
class TorchScaledSigmoidParameter(TorchParameterNode):
    def __init__(
        self, input_shapes: Sequence[Shape], shape: Shape, vmin: float = 0.0, vmax: float = 1.0
    ) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, vmin=vmin, vmax=vmax)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x) * (self.vmax - self.vmin) + self.vmin


@register_parameter_node(ops.MixingWeightOp)
class TorchMixingWeightParameter(TorchParameterNode):
    """(F, K, H) mixing weights -> the (F, K, H*K) dense weight, [k, h*K + k] = w[k, h]."""

    def forward(self, x: Tensor) -> Tensor:
        f, k, h = x.shape
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        return (x.unsqueeze(-1) * eye.unsqueeze(1)).reshape(f, k, h * k)


@register_parameter_node(ops.ReduceOp)
class TorchReduceParameter(TorchParameterNode):
    def __init__(
        self, input_shapes: Sequence[Shape], shape: Shape, axis: int = -1, kind: str = "sum"
    ) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, axis=axis, kind=kind)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "sum":
            return x.sum(self.axis)
        if self.kind == "prod":
            return x.prod(self.axis)
        return torch.logsumexp(x, self.axis)


@register_parameter_node(ops.KroneckerParamOp)
class TorchKroneckerParameter(TorchParameterNode):
    """Per fold, the Kronecker product of two matrices."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        f = a.shape[0]
        out = a[:, :, None, :, None] * b[:, None, :, None, :]
        return out.reshape(f, a.shape[1] * b.shape[1], a.shape[2] * b.shape[2])


@register_parameter_node(ops.MatMulOp)
class TorchMatMulParameter(TorchParameterNode):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.bmm(a, b)


@register_parameter_node(ops.StackOp)
class TorchStackParameter(TorchParameterNode):
    @classmethod
    def from_op(cls, op, input_shapes, context):  # type: ignore[override]
        return cls(input_shapes, op.shape)  # its arity is its operands'

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.stack(xs, 1)


class TorchParameter(nn.Module):
    """The part of the parameter graph that computes one parameter of one layer.

    Children are the graph's nodes in topological order (a node shared with other
    parameters appears in each). `program[i]` gathers node i's operands from earlier nodes
    and `output` gathers the result (`gather.GatherPlan`s keyed by node position).
    """

    def __init__(
        self,
        nodes: Sequence[TorchParameterNode],
        program: Sequence[Sequence[GatherPlan]],
        output: GatherPlan,
        shape: Shape,
    ) -> None:
        super().__init__()
        for i, node in enumerate(nodes):
            self.add_module(str(i), node)
        _set_plain(
            self,
            _program=[list(plans) for plans in program],
            _output=output,
            shape=tuple(shape),
        )
        # Fold indices are buffers so that they follow the module to its device.
        for i, plans in enumerate(self._program):
            for j, plan in enumerate(plans):
                if plan.index is not None:
                    self.register_buffer(f"_index_{i}_{j}", plan.index, persistent=False)
        if output.index is not None:
            self.register_buffer("_index_out", output.index, persistent=False)

    @property
    def nodes(self) -> list[TorchParameterNode]:
        return list(self.children())  # type: ignore[return-value]

    @property
    def num_folds(self) -> int:
        return self.shape[0]

    def extra_repr(self) -> str:
        return f"shape: {self.shape}"

    def forward(self) -> Tensor:
        """The parameter's value, evaluated on its own (the compiled forward does not call
        this: it evaluates every node of the whole graph once)."""
        values: list[Tensor] = []
        for i, (node, plans) in enumerate(zip(self.children(), self._program, strict=True)):
            args = [
                plan.apply(values.__getitem__, self._buffers.get(f"_index_{i}_{j}"))
                for j, plan in enumerate(plans)
            ]
            values.append(node(*args))
        return self._output.apply(values.__getitem__, self._buffers.get("_index_out"))


@register_parameter_node(ops.ConjugateOp)
class TorchConjugateParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return torch.conj_physical(x)  # a copy: later in-place ops must not see a lazy conj


def outer(a: Tensor, b: Tensor, axis: int) -> Tensor:
    """The outer product of `a` and `b` along the negative `axis`, flattened there."""
    return (a.unsqueeze(axis) * b.unsqueeze(axis - 1)).flatten(axis - 1, axis)


@register_parameter_node(ops.OuterOp)
class TorchOuterParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, axis: int = -1) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, axis=axis)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return outer(a, b, self.axis)


def polynomial_product(a: Tensor, b: Tensor) -> Tensor:
    """(F, K1, C, D1), (F, K2, C, D2) -> (F, K1 * K2, C, D1 + D2 - 1): coefficients of the
    products, each pair's coefficients convolved (a sum of shifted outer products)."""
    f, k1, c, d1 = a.shape
    k2, d2 = b.shape[1], b.shape[3]
    out = a.new_zeros(f, k1, k2, c, d1 + d2 - 1, dtype=torch.promote_types(a.dtype, b.dtype))
    for i in range(d1):  # degrees are small: one shifted outer product per coefficient of a
        out[..., i : i + d2] += a[:, :, None, :, i : i + 1] * b[:, None]
    return out.reshape(f, k1 * k2, c, d1 + d2 - 1)


def polynomial_differential(x: Tensor, order: int) -> Tensor:
    """The coefficients of the `order`-th derivative along the last axis."""
    d = x.shape[-1]
    if order >= d:
        return x.new_zeros(*x.shape[:-1], 1)
    degrees = torch.arange(order, d, dtype=torch.float64, device=x.device)
    falling = torch.exp(torch.lgamma(degrees + 1) - torch.lgamma(degrees - order + 1))
    return x[..., order:] * falling.round().to(x.real.dtype if x.is_complex() else x.dtype)


@register_parameter_node(ops.PolynomialProductOp)
class TorchPolynomialProductParameter(TorchParameterNode):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return polynomial_product(a, b)


@register_parameter_node(ops.PolynomialDifferentialOp)
class TorchPolynomialDifferentialParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, order: int = 1) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, order=order)

    def forward(self, x: Tensor) -> Tensor:
        return polynomial_differential(x, self.order)


@register_parameter_node(ops.GramOp)
class TorchGramParameter(TorchParameterNode):
    """(F, K1, C, S), (F, K2, C, S) -> (F, K1 * K2, C): a batched matrix product per channel."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        dtype = torch.promote_types(a.dtype, b.dtype)
        f, k1, c, _ = a.shape
        k2 = b.shape[1]
        gram = torch.matmul(a.to(dtype).transpose(1, 2), b.to(dtype).permute(0, 2, 3, 1))
        return gram.permute(0, 2, 3, 1).reshape(f, k1 * k2, c)  # (F, C, K1, K2) -> ...


def gaussian_product(m1: Tensor, s1: Tensor, m2: Tensor, s2: Tensor, output: str) -> Tensor:
    """The closed-form product of two layers of normal densities (`GaussianProductOp`):
    (F, K1, C) and (F, K2, C) parameters -> unit i * K2 + j."""
    m1, s1 = m1[:, :, None], s1[:, :, None]  # (F, K1, 1, C)
    m2, s2 = m2[:, None], s2[:, None]  # (F, 1, K2, C)
    v1, v2 = s1 * s1, s2 * s2
    total = v1 + v2
    f, k1, k2 = m1.shape[0], m1.shape[1], m2.shape[2]
    if output == "mean":
        return ((m1 * v2 + m2 * v1) / total).reshape(f, k1 * k2, -1)
    if output == "stddev":
        return torch.sqrt(v1 * v2 / total).reshape(f, k1 * k2, -1)
    log_n = -0.5 * (m1 - m2) ** 2 / total - 0.5 * torch.log(2 * math.pi * total)
    return torch.exp(log_n.sum(-1)).reshape(f, k1 * k2)


@register_parameter_node(ops.GaussianProductOp)
class TorchGaussianProductParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, output: str = "mean") -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, output=output)

    def forward(self, m1: Tensor, s1: Tensor, m2: Tensor, s2: Tensor) -> Tensor:
        return gaussian_product(m1, s1, m2, s2, self.output)


def binomial_table(p: Tensor, total_count: int, logits: bool) -> Tensor:
    """(..., ) probabilities or logits -> (..., n + 1) binomial pmfs, exact at p in {0, 1}."""
    k = torch.arange(total_count + 1, dtype=p.dtype, device=p.device)
    log_binom = (
        math.lgamma(total_count + 1) - torch.lgamma(k + 1) - torch.lgamma(total_count - k + 1)
    )
    p = p.unsqueeze(-1)
    if logits:
        log_p = torch.nn.functional.logsigmoid(p)
        log_q = torch.nn.functional.logsigmoid(-p)
        return torch.exp(log_binom + k * log_p + (total_count - k) * log_q)
    return torch.exp(log_binom + torch.xlogy(k, p) + torch.xlogy(total_count - k, 1 - p))


@register_parameter_node(ops.BinomialTableOp)
class TorchBinomialTableParameter(TorchParameterNode):
    def __init__(
        self, input_shapes: Sequence[Shape], shape: Shape, total_count: int = 1, logits=False
    ) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, total_count=total_count, logits=logits)

    def forward(self, p: Tensor) -> Tensor:
        return binomial_table(p, self.total_count, self.logits)
