"""Parameter graphs: one module per IR parameter op, and `TorchParameter`, a layer's view of
the graph that computes one of its parameters.

Every node computes a folded tensor (fold axis first) from its inputs' values. Leaves
(`TorchTensorParameter`) hold the learnable tensors. The compiled circuit evaluates every
node once per forward in generated code; `TorchParameter.forward` evaluates one parameter
on its own (for a layer called by hand).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cirkit_ir.backends.torch.gather import GatherPlan
from cirkit_ir.backends.torch.semirings import log
from cirkit_ir.errors import CompilationError
from cirkit_ir.ir import ops
from cirkit_ir.symbolic.initializers import Initializer

Shape = tuple[int, ...]


def _set_plain(module: nn.Module, **values: object) -> None:
    """Sets attributes that are neither tensors nor modules, on a module being built.

    `nn.Module.__setattr__` checks every value against the module's parameters, buffers and
    submodules (microseconds each); codegen builds a module per parameter op, thousands for
    an unfolded circuit, and plain values need none of those checks.
    """
    module.__dict__.update(values)


class TorchParameterNode(nn.Module):
    """A node of a parameter graph: `forward(*inputs)` gives a (folds, ...) tensor."""

    def __init__(self, input_shapes: Sequence[Shape], shape: Shape) -> None:
        super().__init__()
        _set_plain(self, input_shapes=[tuple(s) for s in input_shapes], shape=tuple(shape))

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


class TorchTensorParameter(TorchParameterNode):
    """A leaf: the tensor `value`, an `nn.Parameter` when learnable, else a buffer.

    `sources[f]` is the symbolic tensor that fold f holds (see `TorchCircuit.symbolic_state`).
    """

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
    ) -> None:
        super().__init__((), shape)
        _set_plain(self, initializer=initializer, sources=tuple(sources), learnable=learnable)
        if seed is None:
            values = initializer.sample(self.shape, dtype)
        else:
            one = (1, *self.shape[1:])
            values = torch.cat(
                [initializer.sample(one, dtype, _generator(seed, s)) for s in self.sources]
            )
        if device is not None or values.dtype != dtype:
            values = values.to(device=device, dtype=dtype)
        if learnable:
            self.register_parameter("value", nn.Parameter(values))  # what `self.value =` does
        else:
            self.register_buffer("value", values)

    def forward(self) -> Tensor:
        return self.value


class TorchSoftmaxParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, axis: int = -1) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, axis=axis)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(x, self.axis)

    def log_forward(self, x: Tensor) -> Tensor:
        """The log of this node's value, computed stably (for users that read logs)."""
        return torch.log_softmax(x, self.axis)


class TorchLogSoftmaxParameter(TorchParameterNode):
    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, axis: int = -1) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, axis=axis)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log_softmax(x, self.axis)


class TorchExpParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(x)


class TorchLogParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return log(x)  # gradient 0, not NaN, at zeros that the output does not depend on


class TorchSigmoidParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


class TorchSoftplusParameter(TorchParameterNode):
    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.softplus(x)


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


class TorchScaledSigmoidParameter(TorchParameterNode):
    def __init__(
        self, input_shapes: Sequence[Shape], shape: Shape, vmin: float = 0.0, vmax: float = 1.0
    ) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, vmin=vmin, vmax=vmax)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x) * (self.vmax - self.vmin) + self.vmin


class TorchMixingWeightParameter(TorchParameterNode):
    """(F, K, H) mixing weights -> the (F, K, H*K) dense weight, [k, h*K + k] = w[k, h]."""

    def forward(self, x: Tensor) -> Tensor:
        f, k, h = x.shape
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        return (x.unsqueeze(-1) * eye.unsqueeze(1)).reshape(f, k, h * k)


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


class TorchKroneckerParameter(TorchParameterNode):
    """Per fold, the Kronecker product of two matrices."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        f = a.shape[0]
        out = a[:, :, None, :, None] * b[:, None, :, None, :]
        return out.reshape(f, a.shape[1] * b.shape[1], a.shape[2] * b.shape[2])


class TorchMatMulParameter(TorchParameterNode):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.bmm(a, b)


class TorchStackParameter(TorchParameterNode):
    def forward(self, *xs: Tensor) -> Tensor:
        return torch.stack(xs, 1)


_SIMPLE_NODES: dict[type[ops.ParamOp], type[TorchParameterNode]] = {
    ops.ExpOp: TorchExpParameter,
    ops.LogOp: TorchLogParameter,
    ops.SigmoidOp: TorchSigmoidParameter,
    ops.SoftplusOp: TorchSoftplusParameter,
    ops.MixingWeightOp: TorchMixingWeightParameter,
    ops.KroneckerParamOp: TorchKroneckerParameter,
    ops.MatMulOp: TorchMatMulParameter,
    ops.StackOp: TorchStackParameter,
}
"""Parameter ops whose module needs nothing but the shapes."""


def node_from_op(
    op: ops.ParamOp,
    input_shapes: Sequence[Shape],
    *,
    dtype: torch.dtype,
    device: torch.device | str | None,
    seed: int | None,
) -> TorchParameterNode:
    """The module computing IR parameter op `op`."""
    shape = tuple(op.shape)
    if isinstance(op, ops.TensorOp):
        tensor_dtype = dtype
        if op.tensor_dtype == "complex":
            tensor_dtype = torch.promote_types(dtype, torch.complex64)
        return TorchTensorParameter(
            shape,
            op.initializer,
            sources=op.sources,
            learnable=op.learnable,
            dtype=tensor_dtype,
            device=device,
            seed=seed,
        )
    simple = _SIMPLE_NODES.get(type(op))
    if simple is not None:
        return simple(input_shapes, shape)
    if isinstance(op, ops.SoftmaxOp):
        return TorchSoftmaxParameter(input_shapes, shape, op.axis)
    if isinstance(op, ops.LogSoftmaxOp):
        return TorchLogSoftmaxParameter(input_shapes, shape, op.axis)
    if isinstance(op, ops.ClampOp):
        return TorchClampParameter(input_shapes, shape, op.vmin, op.vmax)
    if isinstance(op, ops.ScaledSigmoidOp):
        return TorchScaledSigmoidParameter(input_shapes, shape, op.vmin, op.vmax)
    if isinstance(op, ops.ReduceOp):
        return TorchReduceParameter(input_shapes, shape, op.axis, op.kind)
    raise CompilationError(
        f"the torch backend has no module for parameter op {type(op).__name__} ('{op.name}')"
    )


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
