"""Expectation-maximization for compiled circuits, from circuit flows.

The E-step is one forward and one backward of the batch's log-likelihood. For a parameter w
that the circuit reads linearly (a sum weight, a categorical probability), the expected
count of w over the batch, its *flow*, is w * dLL/dw (Peharz et al., 2020; pyjuice): so the
backward gives every count at once, in linear space, whatever folding and fusion made of the
circuit. The counts are read at the tensor that normalizes a learnable leaf: the output of
its softmax (w * grad), of its log-softmax (grad), of exp (the leaf's own grad) or the leaf
itself (w * grad). The M-step normalizes the counts (plus a pseudocount) per sum unit or per
categorical distribution and writes them back through the leaf's parameterization (logits
= log of the new weights for a softmax), so the compiled circuit and its symbolic state stay
consistent.

Mini-batch EM moves the weights a `step_size` of the way to each batch's EM estimate, with
heavy-ball `momentum` on that move (Peharz et al., 2020, "Einsum Networks"; pyjuice's
`step_size`); full-batch EM accumulates the counts of every batch (`accumulate`) and takes
one step of size 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.layers.inputs import TorchCategoricalLayer, TorchInputLayer
from cirkit_ir.backends.torch.parameters import (
    TorchExpParameter,
    TorchLogSoftmaxParameter,
    TorchMixingWeightParameter,
    TorchParameter,
    TorchSoftmaxParameter,
    TorchStackParameter,
    TorchTensorParameter,
)
from cirkit_ir.errors import LearningError

_NORMALIZERS = {torch.softmax, torch.Tensor.softmax, torch.nn.functional.softmax}
_LOG_NORMALIZERS = {torch.log_softmax, torch.Tensor.log_softmax, torch.nn.functional.log_softmax}


@attrs.frozen
class EMTarget:
    """A learnable leaf that EM updates.

    `form` is how the circuit reads it: 'softmax' (its softmax along the last axis),
    'log-softmax' (the log of that), 'exp' (unnormalized exp, normalized by the first
    M-step) or 'none' (the normalized values themselves). `name` names it in errors.
    """

    leaf: TorchTensorParameter = attrs.field(eq=False)
    form: str
    name: str


_LINEAR = (TorchStackParameter, TorchMixingWeightParameter)
"""Nodes that only copy their operands' entries: counts pass through them unchanged."""


def _parameterizations(
    param: TorchParameter, layer: torch.nn.Module
) -> list[tuple[int, str]] | None:
    """(position, form) of each leaf of a layer slot's graph, or None when the graph is not
    leaves, each optionally normalized along its last axis, then copied (stacked)."""
    nodes = param.nodes
    consumers: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for j, plans in enumerate(param._program):
        for plan in plans:
            for i in plan.producers:
                consumers[i].append(j)
    output = -1
    for i in param._output.producers:
        consumers[i].append(output)

    def linear_only(i: int) -> bool:
        return all(
            j == output or (isinstance(nodes[j], _LINEAR) and linear_only(j)) for j in consumers[i]
        )

    found = []
    for i, node in enumerate(nodes):
        if not isinstance(node, TorchTensorParameter):
            continue
        if linear_only(i):
            form = "none"
            if isinstance(layer, TorchCategoricalLayer) and layer.param != "probs":
                form = {"logits": "softmax", "log_probs": "log-probs"}[layer.param]
            found.append((i, form))
            continue
        if len(consumers[i]) != 1 or consumers[i][0] == output:
            return None
        user = nodes[consumers[i][0]]
        if not linear_only(consumers[i][0]):
            return None
        if isinstance(user, TorchExpParameter):
            found.append((i, "exp"))
        elif isinstance(user, (TorchSoftmaxParameter, TorchLogSoftmaxParameter)) and user.axis in (
            -1,
            len(user.shape) - 1,
        ):
            found.append(
                (i, "softmax" if isinstance(user, TorchSoftmaxParameter) else "log-softmax")
            )
        else:
            return None
    return found


def em_targets(circuit: TorchCircuit) -> list[EMTarget]:
    """The leaves EM updates, or a `LearningError` naming the first parameter it cannot:
    EM has closed-form M-steps for sum weights and categorical probabilities, read through
    softmax, log-softmax, exp or as they are."""
    if not isinstance(circuit, TorchCircuit):
        raise LearningError(f"EM trains a compiled TorchCircuit, got {type(circuit).__name__}")
    if circuit.semiring.name not in ("lse-sum", "sum-product"):
        raise LearningError(
            f"EM needs a circuit compiled with semiring 'lse-sum' or 'sum-product', not"
            f" {circuit.semiring.name!r} (its values are not likelihoods)"
        )
    targets: dict[int, EMTarget] = {}
    for index, layer in enumerate(circuit.layers):
        for slot in layer.param_names:
            param = getattr(layer, slot)
            leaves = [n for n in param.nodes if isinstance(n, TorchTensorParameter)]
            if not any(leaf.learnable for leaf in leaves):
                continue
            name = f"layer {index} ({type(layer).__name__}) parameter {slot!r}"
            found = _parameterizations(param, layer)
            if isinstance(layer, TorchInputLayer) and not isinstance(layer, TorchCategoricalLayer):
                found = None
            if found is None or any(form == "log-probs" for _, form in found):
                raise LearningError(
                    f"EM cannot update {name}: it has closed-form M-steps for sum weights and"
                    " categorical probabilities held as tensors, optionally through softmax,"
                    " log-softmax or exp along the last axis; train this circuit with"
                    " method='sgd' (or make the parameter not learnable)"
                )
            for position, form in found:
                leaf = param.nodes[position]
                if not leaf.learnable:
                    continue
                previous = targets.get(id(leaf))
                if previous is not None and previous.form != form:
                    raise LearningError(
                        f"EM cannot update {name}: its tensor is also read as"
                        f" {previous.form!r} by {previous.name}"
                    )
                targets.setdefault(id(leaf), EMTarget(leaf, form, name))
    if not targets:
        raise LearningError("the circuit has no learnable parameter that EM can update")
    return list(targets.values())


class _Recorder(TorchFunctionMode):
    """Keeps the outputs of softmax and log-softmax calls on target leaves (for their
    gradients), keyed by the leaf."""

    def __init__(self, leaves: dict[int, EMTarget]) -> None:
        super().__init__()
        self.leaves = leaves
        self.outputs: list[tuple[EMTarget, Tensor, bool]] = []  # (target, output, is a log)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if (func in _NORMALIZERS or func in _LOG_NORMALIZERS) and args:
            target = self.leaves.get(id(args[0]))
            if target is not None and isinstance(out, Tensor) and out.requires_grad:
                out.retain_grad()
                self.outputs.append((target, out, func in _LOG_NORMALIZERS))
        return out


@contextmanager
def _training(circuit: TorchCircuit) -> Iterator[None]:
    mode = circuit.training
    circuit.train()
    try:
        yield
    finally:
        circuit.train(mode)


def log_likelihoods(circuit: TorchCircuit, x: Tensor) -> Tensor:
    """(B,) log-likelihoods of a circuit with one output unit, in any likelihood semiring."""
    y = circuit(x)
    if y.shape[1:] != (1, 1):
        raise LearningError(
            f"training needs a circuit with one output unit, got outputs of shape"
            f" {tuple(y.shape[1:])} per batch entry"
        )
    y = y[:, 0, 0]
    return y if circuit.semiring.log_space else torch.log(y)


class EM:
    """Expectation-maximization in PyTorch's optimizer style.

    `accumulate(x)` runs the E-step on a batch (adding its expected counts) and returns the
    batch's log-likelihoods; `step()` runs the M-step on the counts accumulated since the
    last step, then clears them. Full-batch EM accumulates every batch before one step;
    mini-batch EM steps after each batch, `step_size` of the way to the batch's estimate
    (1: plain EM), with `momentum`. `pseudocount` is added to every count (Laplace
    smoothing; it keeps every weight positive). Only the circuit's leaves are written.
    """

    def __init__(
        self,
        circuit: TorchCircuit,
        *,
        step_size: float = 1.0,
        momentum: float = 0.0,
        pseudocount: float = 0.1,
    ) -> None:
        if not 0.0 < step_size <= 1.0:
            raise LearningError(f"step_size must be in (0, 1], got {step_size}")
        if not 0.0 <= momentum < 1.0:
            raise LearningError(f"momentum must be in [0, 1), got {momentum}")
        if pseudocount < 0:
            raise LearningError(f"pseudocount must be >= 0, got {pseudocount}")
        self.circuit = circuit
        self.targets = em_targets(circuit)
        self.step_size, self.momentum, self.pseudocount = step_size, momentum, pseudocount
        self.counts: list[Tensor] = [torch.zeros_like(t.leaf.value) for t in self.targets]
        self._velocity: list[Tensor | None] = [None] * len(self.targets)

    def zero_counts(self) -> None:
        for count in self.counts:
            count.zero_()

    def accumulate(self, x: Tensor) -> Tensor:
        """The E-step on batch `x`: adds its expected counts; returns its (B,) detached
        log-likelihoods."""
        leaves = {id(t.leaf.value): t for t in self.targets}
        recorder = _Recorder(leaves)
        values = [t.leaf.value for t in self.targets]
        for v in values:
            v.grad = None
        with _training(self.circuit), torch.enable_grad(), recorder:
            ll = log_likelihoods(self.circuit, x)
        ll.sum().backward()
        index = {id(t): i for i, t in enumerate(self.targets)}
        with torch.no_grad():
            for target, out, is_log in recorder.outputs:
                if out.grad is not None:
                    self.counts[index[id(target)]] += out.grad if is_log else out * out.grad
            for i, target in enumerate(self.targets):
                grad = target.leaf.value.grad
                if grad is None or target.form in ("softmax", "log-softmax"):
                    continue
                if target.form == "exp":
                    self.counts[i] += grad
                else:  # 'none': the leaf is read linearly
                    self.counts[i] += target.leaf.value * grad
                target.leaf.value.grad = None
        for v in values:
            v.grad = None
        return ll.detach()

    @torch.no_grad()
    def step(self) -> None:
        """The M-step: each target moves toward its normalized counts, then the counts are
        cleared."""
        for i, (target, count) in enumerate(zip(self.targets, self.counts, strict=True)):
            smoothed = count + self.pseudocount
            estimate = smoothed / smoothed.sum(-1, keepdim=True).clamp_min(1e-30)
            current = _probabilities(target)
            move = estimate - current
            if self.momentum:
                velocity = self._velocity[i]
                velocity = move if velocity is None else self.momentum * velocity + move
                self._velocity[i] = velocity
                move = velocity
            new = (current + self.step_size * move).clamp_min(1e-30)
            new = new / new.sum(-1, keepdim=True)
            _write(target, new)
            count.zero_()
        self.circuit.invalidate_cache()

    def state_dict(self) -> dict[str, object]:
        return {"counts": [c.clone() for c in self.counts], "velocity": list(self._velocity)}


def _probabilities(target: EMTarget) -> Tensor:
    value = target.leaf.value.detach()
    if target.form in ("softmax", "log-softmax"):
        return torch.softmax(value, -1)
    if target.form == "exp":
        w = torch.exp(value)
        return w / w.sum(-1, keepdim=True)
    return value / value.sum(-1, keepdim=True).clamp_min(1e-30)


def _write(target: EMTarget, probs: Tensor) -> None:
    value = target.leaf.value
    if target.form in ("softmax", "log-softmax", "exp"):
        value.copy_(torch.log(probs))
    else:
        value.copy_(probs)
