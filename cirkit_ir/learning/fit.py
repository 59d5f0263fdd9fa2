"""`fit`: a small training loop for compiled circuits, in PyTorch's style (not a framework).

It checks the data once before the first step, trains by EM or by a torch optimizer, shows
NLL and bits per dimension in a tqdm bar, stops early on a validation split (restoring the
best state) and returns the per-epoch history. A loss that turns NaN stops training with an
error naming the parameter and the step, after restoring the state from before that step.
Plain `torch.optim` loops over `circuit(x)` keep working: `fit` only wraps one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs
import torch
import torch.distributed as dist
from torch import Tensor

from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.errors import CirkitIRError, LearningError
from cirkit_ir.learning.em import EM, log_likelihoods

LN2 = math.log(2.0)


@attrs.frozen
class Epoch:
    """One epoch's figures: mean NLL per example (nats), bits per dimension, seconds."""

    epoch: int
    train_nll: float
    train_bpd: float
    val_nll: float | None
    val_bpd: float | None
    seconds: float


@attrs.define
class History:
    """What `fit` did: an `Epoch` per epoch, and the epoch whose state it kept."""

    epochs: list[Epoch] = attrs.field(factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def train_nll(self) -> list[float]:
        return [e.train_nll for e in self.epochs]

    @property
    def val_nll(self) -> list[float | None]:
        return [e.val_nll for e in self.epochs]

    @property
    def train_bpd(self) -> list[float]:
        return [e.train_bpd for e in self.epochs]


def bits_per_dimension(nll: float, num_variables: int) -> float:
    """Mean NLL per example in nats -> bits per variable."""
    return nll / (num_variables * LN2)


def check_data(circuit: TorchCircuit, data: Tensor) -> Tensor:
    """`data` as the circuit's (N, C, D) batch, or a `LearningError` saying what is wrong
    (wrong shape, values out of an input layer's range), before any step is taken."""
    if not isinstance(data, Tensor):
        raise LearningError(f"data must be a torch.Tensor, got {type(data).__name__}")
    if data.dim() == 2 and circuit.num_channels == 1:
        data = data.unsqueeze(1)
    if data.dim() != 3 or data.shape[1:] != (circuit.num_channels, circuit.num_variables):
        raise LearningError(
            f"data of shape {tuple(data.shape)} does not fit the circuit: it reads (N,"
            f" {circuit.num_channels}, {circuit.num_variables}) batches"
            + (f" (or (N, {circuit.num_variables}))" if circuit.num_channels == 1 else "")
        )
    if data.shape[0] == 0:
        raise LearningError("data holds no example")
    try:
        return circuit.check_input(data)
    except CirkitIRError as error:
        raise LearningError(f"data refused before training: {error}") from error


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))


def _snapshot(circuit: TorchCircuit, into: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """A copy of the circuit's state; `into` a previous snapshot, its buffers are reused (the
    state before every step is kept: allocating it anew each step would cost a step's worth
    of parameter memory in allocations)."""
    state = circuit.state_dict()
    if into is None or into.keys() != state.keys():
        return {k: v.detach().clone() for k, v in state.items()}
    for k, v in state.items():
        into[k].copy_(v)
    return into


def _first_nonfinite(circuit: TorchCircuit) -> str | None:
    for name, p in circuit.named_parameters():
        if not torch.isfinite(p).all() or (p.grad is not None and not torch.isfinite(p.grad).all()):
            return name
    return None


@torch.no_grad()
def evaluate_nll(circuit: TorchCircuit, data: Tensor, batch_size: int = 1024) -> float:
    """Mean NLL per example (nats) of `data` (all-reduced over processes when distributed)."""
    mode = circuit.training
    circuit.eval()
    try:
        total = sum(float(-log_likelihoods(circuit, b).sum()) for b in data.split(batch_size))
    finally:
        circuit.train(mode)
    count = float(data.shape[0])
    if _distributed():
        buf = torch.tensor([total, count], dtype=torch.float64, device=data.device)
        dist.all_reduce(buf)
        total, count = buf.tolist()
    return total / count


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def fit(
    circuit: TorchCircuit,
    data: Tensor,
    method: str = "em",
    *,
    epochs: int = 10,
    batch_size: int = 256,
    optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None = None,
    lr: float = 0.01,
    step_size: float = 1.0,
    momentum: float = 0.0,
    pseudocount: float = 0.1,
    full_batch: bool = False,
    validation: Tensor | float | None = None,
    patience: int | None = None,
    shuffle: bool = True,
    seed: int | None = 0,
    distributed: bool | None = None,
    model: torch.nn.Module | None = None,
    progress: bool = True,
) -> History:
    """Trains `circuit` on `data` ((N, C, D), or (N, D) with one channel) and returns the
    `History`.

    method: 'em' (mini-batch EM: `step_size`, scaled by each batch's share of a full batch,
        `momentum`, `pseudocount`; `full_batch`
        accumulates every batch's counts before one step per epoch) or 'sgd' (`optimizer`,
        an instance or a class called with the parameters and `lr`; Adam by default).
    validation: a held-out tensor, or a fraction of `data` split off (the last examples
        after a seeded shuffle); with it, the state of the best validation epoch is kept,
        and `patience` epochs without improvement stop training.
    distributed: each process passes its shard of the data; EM all-reduces its counts and
        SGD its gradients (`model`: the circuit wrapped in DistributedDataParallel, else the
        gradients are all-reduced by hand). None: on when torch.distributed is initialized.
    """
    if method not in ("em", "sgd"):
        raise LearningError(f"method must be 'em' or 'sgd', got {method!r}")
    if epochs < 1 or batch_size < 1:
        raise LearningError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    data = check_data(circuit, data)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    val = None
    if isinstance(validation, float):
        if not 0.0 < validation < 1.0:
            raise LearningError(f"a validation fraction must be in (0, 1), got {validation}")
        order = torch.randperm(data.shape[0], generator=generator)
        cut = data.shape[0] - max(1, int(round(validation * data.shape[0])))
        data, val = data[order[:cut]], data[order[cut:]]
    elif validation is not None:
        val = check_data(circuit, validation)
    if distributed:
        _check_same_steps(data.shape[0], batch_size, data.device)
    if patience is not None and val is None:
        raise LearningError("patience needs a validation split (validation=...)")
    distributed = _distributed() if distributed is None else distributed
    em = opt = None
    if method == "em":
        em = EM(circuit, step_size=step_size, momentum=momentum, pseudocount=pseudocount)
    else:
        params = [p for p in circuit.parameters() if p.requires_grad]
        if isinstance(optimizer, torch.optim.Optimizer):
            opt = optimizer
        else:
            opt = (optimizer or torch.optim.Adam)(params, lr=lr)
    trainer = model if model is not None else circuit
    history = History()
    best_val, best_state, waited = math.inf, None, 0
    state: dict[str, Tensor] | None = None  # the circuit before the current step
    num_vars = circuit.num_variables * circuit.num_channels
    bar = None
    if progress and (not distributed or dist.get_rank() == 0):
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"fit ({method})", unit="epoch")
    step = 0
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            total = 0.0
            circuit.train()
            for index in _batches(data.shape[0], batch_size, generator if shuffle else None):
                x = data[index]
                state = _snapshot(circuit, into=state)
                if em is not None:
                    total += float(-em.accumulate(x).sum())
                    if not full_batch:
                        _reduce_counts(em, distributed)
                        em.step(
                            step_size
                            * _batch_fraction(len(index), batch_size, distributed, data.device)
                        )
                else:
                    opt.zero_grad()
                    ll = log_likelihoods(trainer, x) if model is None else _model_ll(model, x)
                    loss = -ll.mean()
                    loss.backward()
                    if distributed and model is None:
                        _reduce_grads(circuit)
                    total += float(-ll.detach().sum())
                    opt.step()
                step += 1
                _check_finite(circuit, total, state, step, epoch)
            if em is not None and full_batch:
                state = _snapshot(circuit, into=state)
                _reduce_counts(em, distributed)
                em.step()
                _check_finite(circuit, total, state, step, epoch)
            count = float(data.shape[0])
            if distributed:
                buf = torch.tensor([total, count], dtype=torch.float64, device=data.device)
                dist.all_reduce(buf)
                total, count = buf.tolist()
            train_nll = total / count
            val_nll = evaluate_nll(circuit, val) if val is not None else None
            record = Epoch(
                epoch,
                train_nll,
                bits_per_dimension(train_nll, num_vars),
                val_nll,
                None if val_nll is None else bits_per_dimension(val_nll, num_vars),
                time.perf_counter() - start,
            )
            history.epochs.append(record)
            if bar is not None:
                shown = {"nll": f"{train_nll:.3f}", "bpd": f"{record.train_bpd:.3f}"}
                if val_nll is not None:
                    shown["val_bpd"] = f"{record.val_bpd:.3f}"
                bar.set_postfix(shown)
                bar.update()
            if val_nll is not None:
                if val_nll < best_val:
                    best_val, best_state, waited = val_nll, _snapshot(circuit, into=best_state), 0
                    history.best_epoch = epoch
                else:
                    waited += 1
                    if patience is not None and waited > patience:
                        history.stopped_early = True
                        break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        circuit.load_state_dict(best_state)
    return history


def _model_ll(model: torch.nn.Module, x: Tensor) -> Tensor:
    y = model(x)
    y = y[:, 0, 0]
    return y if getattr(model, "module", model).semiring.log_space else torch.log(y)


def _check_finite(
    circuit: TorchCircuit, total: float, state: dict[str, Tensor], step: int, epoch: int
) -> None:
    """After a step: the NaN error naming the parameter (restoring `state`, the circuit
    before the step), or nothing."""
    name = _first_nonfinite(circuit)
    if name is None and math.isfinite(total):
        return
    circuit.load_state_dict(state)
    for p in circuit.parameters():
        p.grad = None
    what = f"parameter {name!r} became non-finite" if name else "the loss is not finite"
    raise LearningError(
        f"training stopped at step {step} (epoch {epoch}): {what}; the circuit holds its"
        " state from before that step. Lower the learning rate or step size, or check the"
        " data and the initial parameters"
    )


def _check_same_steps(n: int, batch_size: int, device: torch.device) -> None:
    """Every process must take as many steps per epoch (each step all-reduces). Tensors
    that are all-reduced live on the data's device (NCCL reduces only CUDA tensors)."""
    steps = torch.tensor([-math.ceil(n / batch_size), math.ceil(n / batch_size)], device=device)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    if -int(steps[0]) != int(steps[1]):
        raise LearningError(
            f"the processes' shards make from {-int(steps[0])} to {int(steps[1])} batches of"
            f" {batch_size}: give every process a shard of the same size (e.g. data.chunk)"
        )


def _batch_fraction(size: int, batch_size: int, distributed: bool, device: torch.device) -> float:
    """The batch's size over a full batch's (over all processes): mini-batch EM scales its
    step by it, so that a short last batch (13 examples, say) moves the weights only as far
    as its evidence warrants rather than a full step toward its noisy estimate."""
    if not distributed:
        return size / batch_size
    sizes = torch.tensor([float(size)], dtype=torch.float64, device=device)
    dist.all_reduce(sizes)
    return float(sizes) / (batch_size * dist.get_world_size())


def _reduce_counts(em: EM, distributed: bool) -> None:
    if distributed:
        for count in em.counts:
            dist.all_reduce(count)


def _reduce_grads(circuit: TorchCircuit) -> None:
    world = dist.get_world_size()
    for p in circuit.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
