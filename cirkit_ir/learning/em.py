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

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.layers.base import wrapped_outputs
from cirkit_ir.backends.torch.layers.inputs import (
    TorchBinomialLayer,
    TorchCategoricalLayer,
    TorchGaussianLayer,
    TorchInputLayer,
)
from cirkit_ir.backends.torch.parameters import (
    TorchExpParameter,
    TorchLogSoftmaxParameter,
    TorchMixingWeightParameter,
    TorchParameter,
    TorchScaledSigmoidParameter,
    TorchSigmoidParameter,
    TorchSoftmaxParameter,
    TorchSoftplusParameter,
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


_LINEAR_NODES: set[type] = set()
_INVERSES: dict[type, Callable[[torch.nn.Module, Tensor], Tensor]] = {}


def register_linear_node(cls: type) -> type:
    """Declares a parameter node class that only copies its operands' entries (stacks,
    gathers, expansions with zeros): EM's counts pass through it unchanged."""
    _LINEAR_NODES.add(cls)
    return cls


def register_inverse(cls: type, inverse: Callable[[torch.nn.Module, Tensor], Tensor]) -> None:
    """Declares `inverse(node, value)`: the leaf value for which a node of class `cls`
    computes `value`, so that EM can write a gaussian's stddev through it."""
    _INVERSES[cls] = inverse


def _inverse_scaled_sigmoid(node: torch.nn.Module, value: Tensor) -> Tensor:
    unit = (value - node.vmin) / (node.vmax - node.vmin)
    return torch.logit(unit.clamp(1e-6, 1 - 1e-6))


register_linear_node(TorchStackParameter)
register_linear_node(TorchMixingWeightParameter)
register_inverse(TorchExpParameter, lambda node, value: torch.log(value))
register_inverse(
    TorchSoftplusParameter, lambda node, value: value + torch.log(-torch.expm1(-value))
)
register_inverse(TorchScaledSigmoidParameter, _inverse_scaled_sigmoid)


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
            j == output or (type(nodes[j]) in _LINEAR_NODES and linear_only(j))
            for j in consumers[i]
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


@attrs.frozen
class GaussianTarget:
    """A gaussian input layer whose mean and stddev EM updates (from its units' flows and
    the data's first and second moments). `stddev_node` is the stddev's parameterization
    (None: the leaf itself), which the M-step inverts."""

    layer: TorchGaussianLayer = attrs.field(eq=False)
    mean: TorchTensorParameter = attrs.field(eq=False)
    stddev: TorchTensorParameter = attrs.field(eq=False)
    stddev_node: torch.nn.Module | None = attrs.field(eq=False)
    name: str


def _private_leaf(
    param: TorchParameter,
) -> tuple[TorchTensorParameter, torch.nn.Module | None] | None:
    """(leaf, optional unary node) of a slot computed fold for fold from one leaf."""
    nodes = param.nodes
    if not nodes or not isinstance(nodes[0], TorchTensorParameter) or len(nodes) > 2:
        return None
    plans = [plan for plans in param._program for plan in plans] + [param._output]
    if any(plan.index is not None for plan in plans) or nodes[0].shape != param.shape:
        return None
    return nodes[0], (nodes[1] if len(nodes) == 2 else None)


def _gaussian_target(layer: TorchGaussianLayer, name: str) -> GaussianTarget | None:
    mean, stddev = _private_leaf(layer.mean), _private_leaf(layer.stddev)
    if mean is None or stddev is None or mean[1] is not None:
        return None
    if stddev[1] is not None and type(stddev[1]) not in _INVERSES:
        return None
    return GaussianTarget(layer, mean[0], stddev[0], stddev[1], name)


def _write_stddev(target: GaussianTarget, stddev: Tensor) -> None:
    node, value = target.stddev_node, target.stddev.value
    value.copy_(stddev if node is None else _INVERSES[type(node)](node, stddev))


def _read_stddev(target: GaussianTarget) -> Tensor:
    node, value = target.stddev_node, target.stddev.value.detach()
    return value if node is None else node(value)


@attrs.frozen
class BinomialTarget:
    """A binomial input layer whose success probabilities EM updates: p = E[x] / n under
    its units' flows, written as probs, or as logits (`logits`: the leaf is read as logits,
    directly or through a sigmoid's inverse)."""

    layer: TorchBinomialLayer = attrs.field(eq=False)
    leaf: TorchTensorParameter = attrs.field(eq=False)
    logits: bool
    name: str


def _binomial_target(layer: TorchBinomialLayer, name: str) -> BinomialTarget | None:
    found = _private_leaf(getattr(layer, layer.param_names[0]))
    if found is None:
        return None
    leaf, node = found
    if layer.param == "logits" and node is None:
        return BinomialTarget(layer, leaf, True, name)
    if layer.param == "probs" and (node is None or isinstance(node, TorchSigmoidParameter)):
        return BinomialTarget(layer, leaf, node is not None, name)
    return None


def em_targets(circuit: TorchCircuit) -> list[EMTarget | GaussianTarget | BinomialTarget]:
    """The leaves EM updates, or a `LearningError` naming the first parameter it cannot:
    EM has closed-form M-steps for sum weights and categorical probabilities, read through
    softmax, log-softmax, exp or as they are, and for gaussian inputs (a plain mean; a
    stddev plain or through exp, softplus or a scaled sigmoid)."""
    if not isinstance(circuit, TorchCircuit):
        raise LearningError(f"EM trains a compiled TorchCircuit, got {type(circuit).__name__}")
    if circuit.semiring.name not in ("lse-sum", "sum-product"):
        raise LearningError(
            f"EM needs a circuit compiled with semiring 'lse-sum' or 'sum-product', not"
            f" {circuit.semiring.name!r} (its values are not likelihoods)"
        )
    targets: dict[int, EMTarget | GaussianTarget | BinomialTarget] = {}
    for index, layer in enumerate(circuit.layers):
        if isinstance(layer, TorchBinomialLayer):
            name = f"layer {index} (TorchBinomialLayer)"
            binomial = _binomial_target(layer, name)
            if binomial is None:
                raise LearningError(
                    f"EM cannot update {name}: it needs its probs held as a tensor or as a"
                    " sigmoid of one, or its logits held as a tensor, fold for fold; train"
                    " this circuit with method='sgd'"
                )
            if binomial.leaf.learnable:
                targets[id(layer)] = binomial
            continue
        if isinstance(layer, TorchGaussianLayer):
            name = f"layer {index} (TorchGaussianLayer)"
            gaussian = _gaussian_target(layer, name)
            if gaussian is None:
                raise LearningError(
                    f"EM cannot update {name}: it needs the mean held as a tensor and the"
                    " stddev held as one, optionally through exp, softplus or a scaled"
                    " sigmoid, each fold for fold; train this circuit with method='sgd'"
                )
            if gaussian.mean.learnable or gaussian.stddev.learnable:
                targets[id(layer)] = gaussian
            continue
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
                    " log-softmax or exp along the last axis, and for gaussian inputs; train"
                    " this circuit with method='sgd' (or make the parameter not learnable)"
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
        min_stddev: float = 1e-3,
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
        self._step = step_size
        self.min_stddev = min_stddev
        self.counts: list[Tensor] = [c for t in self.targets for c in _zero_counts(t)]
        """Every target's accumulated statistics, flat (what data-parallel EM all-reduces):
        a weight's counts, or a gaussian's (flow, flow * x, flow * x^2) sums."""
        self._velocity: list[Tensor | None] = [None] * len(self.targets)

    def _slices(self) -> list[list[Tensor]]:
        out, start = [], 0
        for t in self.targets:
            n = {EMTarget: 1, BinomialTarget: 2, GaussianTarget: 3}[type(t)]
            out.append(self.counts[start : start + n])
            start += n
        return out

    def zero_counts(self) -> None:
        for count in self.counts:
            count.zero_()

    def accumulate(self, x: Tensor) -> Tensor:
        """The E-step on batch `x`: adds its expected counts; returns its (B,) detached
        log-likelihoods."""
        x = self.circuit.check_input(x)
        weights = [t for t in self.targets if isinstance(t, EMTarget)]
        recorder = _Recorder({id(t.leaf.value): t for t in weights})
        for t in weights:
            t.leaf.value.grad = None
        outputs: dict[int, Tensor] = {}
        with _training(self.circuit), torch.enable_grad(), _recording(self.targets, outputs):
            with recorder:
                ll = log_likelihoods(self.circuit, x)
        ll.sum().backward()
        slices = {id(t): counts for t, counts in zip(self.targets, self._slices(), strict=True)}
        with torch.no_grad():
            for target, out, is_log in recorder.outputs:
                if out.grad is not None:
                    slices[id(target)][0] += out.grad if is_log else out * out.grad
            read = {id(target) for target, _, _ in recorder.outputs}
            for t in weights:
                if t.form in ("softmax", "log-softmax") and id(t) not in read:
                    if t.leaf.value.grad is not None:  # used, but not normalized as a whole
                        raise LearningError(
                            f"EM could not read the counts of {t.name}: the circuit does not"
                            " normalize its tensor as a whole; train it with method='sgd'"
                        )
            for target in self.targets:
                if isinstance(target, (GaussianTarget, BinomialTarget)):
                    _moment_stats(target, x, outputs.get(id(target)), slices[id(target)])
                    continue
                grad = target.leaf.value.grad
                if grad is not None and target.form == "exp":
                    slices[id(target)][0] += grad
                elif grad is not None and target.form == "none":  # read linearly
                    slices[id(target)][0] += target.leaf.value * grad
        for p in self.circuit.parameters():
            p.grad = None
        return ll.detach()

    @torch.no_grad()
    def step(self, step_size: float | None = None) -> None:
        """The M-step: each target moves `step_size` (default: the EM's) of the way toward
        its EM estimate, then the counts are cleared."""
        self._step = self.step_size if step_size is None else step_size
        for i, (target, counts) in enumerate(zip(self.targets, self._slices(), strict=True)):
            if isinstance(target, GaussianTarget):
                self._gaussian_step(target, *counts)
                continue
            if isinstance(target, BinomialTarget):
                self._binomial_step(target, *counts)
                continue
            smoothed = counts[0] + self.pseudocount
            estimate = smoothed / smoothed.sum(-1, keepdim=True).clamp_min(1e-30)
            current = _probabilities(target)
            move = estimate - current
            if self.momentum:
                velocity = self._velocity[i]
                velocity = move if velocity is None else self.momentum * velocity + move
                self._velocity[i] = velocity
                move = velocity
            new = (current + self._step * move).clamp_min(1e-30)
            _write(target, new / new.sum(-1, keepdim=True))
        self.zero_counts()
        self.circuit.invalidate_cache()

    def _gaussian_step(self, target: GaussianTarget, f0: Tensor, f1: Tensor, f2: Tensor) -> None:
        """mean = E[x], var = E[x^2] - mean^2 under the units' flows (a unit without flow
        keeps its parameters), moved `step_size` of the way."""
        n = f0.unsqueeze(-1)  # (F, K, 1)
        seen = n > 1e-12
        n = n.clamp_min(1e-12)
        mean = f1 / n
        var = (f2 / n - mean * mean).clamp_min(self.min_stddev**2)
        old_mean, old_std = target.mean.value.detach(), _read_stddev(target)
        mean = torch.where(seen, mean, old_mean)
        std = torch.where(seen, var.sqrt(), old_std)
        a = self._step
        if target.mean.learnable:
            target.mean.value.copy_(old_mean + a * (mean - old_mean))
        if target.stddev.learnable:
            _write_stddev(target, old_std + a * (std - old_std))

    def _binomial_step(self, target: BinomialTarget, f0: Tensor, f1: Tensor) -> None:
        """p = (sum flow * x + pseudocount) / (n * sum flow + 2 pseudocount), moved
        `step_size` of the way (in probability)."""
        n = target.layer.total_count
        a = self.pseudocount
        estimate = (f1 + a) / (n * f0.unsqueeze(-1) + 2 * a).clamp_min(1e-30)
        value = target.leaf.value
        current = torch.sigmoid(value) if target.logits else value
        new = (current + self._step * (estimate - current)).clamp(1e-6, 1 - 1e-6)
        value.copy_(torch.logit(new) if target.logits else new)

    def state_dict(self) -> dict[str, object]:
        """The accumulated counts and momentum velocities (for checkpoints)."""
        return {"counts": [c.clone() for c in self.counts], "velocity": list(self._velocity)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        counts, velocity = state["counts"], state["velocity"]
        if len(counts) != len(self.counts) or len(velocity) != len(self._velocity):
            raise LearningError("the EM state comes from another circuit (its counts differ)")
        for mine, theirs in zip(self.counts, counts, strict=True):
            mine.copy_(theirs)
        self._velocity = list(velocity)


def _zero_counts(target: EMTarget | GaussianTarget | BinomialTarget) -> list[Tensor]:
    if isinstance(target, EMTarget):
        return [torch.zeros_like(target.leaf.value)]
    if isinstance(target, BinomialTarget):
        p = target.leaf.value
        return [p.new_zeros(p.shape[:2]), torch.zeros_like(p)]
    mean = target.mean.value
    return [mean.new_zeros(mean.shape[:2]), torch.zeros_like(mean), torch.zeros_like(mean)]


def _recording(targets: list, outputs: dict[int, Tensor]):  # type: ignore[no-untyped-def]
    """Within it, the gaussian and binomial target layers keep their outputs (gradients
    retained), from which `_flows` reads each unit's flow per batch entry."""
    wraps = {
        target.layer: _keeping(outputs, id(target))
        for target in targets
        if isinstance(target, (GaussianTarget, BinomialTarget))
    }
    return wrapped_outputs(wraps)


def _keeping(outputs: dict[int, Tensor], key: int):  # type: ignore[no-untyped-def]
    """An output wrap that keeps the output in `outputs[key]`."""

    def keep(method: str, out: Tensor, prepared: tuple[Tensor, ...]) -> Tensor:
        if out.requires_grad:
            out.retain_grad()
            outputs[key] = out
        return out

    return keep


def _flows(layer: TorchInputLayer, out: Tensor | None) -> Tensor | None:
    """(F, K, B) flows of an input layer's units, from its output in the form layers compute
    with: linear values v (and, in log semirings, one log-scale row after them); a unit's
    flow is v * dLL/dv, whatever the scale."""
    if out is None or out.grad is None:
        return None
    k = layer.num_output_units
    return out[:, :k] * out.grad[:, :k]


def _moment_stats(
    target: GaussianTarget | BinomialTarget, x: Tensor, out: Tensor | None, stats: list[Tensor]
) -> None:
    """Flow-weighted data moments of an input layer's units: stats[0] += the flows' sum,
    stats[p] += the sum of flows * x^p (p = 1, 2 for gaussians, p = 1 for binomials)."""
    flows = _flows(target.layer, out)  # (F, K, B)
    if flows is None:
        return
    xs = target.layer.select(x).to(flows.dtype)  # (F, C, B)
    stats[0] += flows.sum(-1)
    power = xs
    for moment in stats[1:]:
        moment += torch.einsum("fkb,fcb->fkc", flows, power)
        power = power * xs


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
