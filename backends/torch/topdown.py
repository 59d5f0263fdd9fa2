"""Upward and top-down passes over a compiled circuit's layers, in logs: MAP and sampling.

A `CircuitLinks` reads, from the IR a `TorchCircuit` was generated from, which producer fold
feeds each fold of each operand slot of each layer. `upward` evaluates the layers in log
space with one reduction for every sum, `logsumexp` (marginals: sampling) or `amax` (max-sum:
MAP), and `topdown` walks back from the output: each visited (fold, unit) of a sum picks one
input term, by argmax of its score (MAP) or of its score plus Gumbel noise (an exact draw in
proportion to weight x input value: sampling), and each product passes the unit down to all
its inputs. Every (fold, batch entry) is visited at most once, since a smooth decomposable
circuit's induced trees reach each variable once. Input layers then read off their mode or a
draw. Rules register per layer class (`register_topdown`), beside nothing else: a new layer
kind adds one rule.

Sum rules see a layer's input as (n, H, I, B) logs and its log weights; large folds are
processed a block at a time so that no (folds, out, terms, batch) tensor exceeds `BLOCK`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs
import torch
from torch import Tensor

from cirkit_ir.backends.torch import layers as tl
from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.layers.inputs import _binomial_log_pmf
from cirkit_ir.backends.torch.native import maxsum
from cirkit_ir.errors import PropertyError
from cirkit_ir.ir.ops import CircuitOp

BLOCK = 1 << 23
"""Elements of the largest score tensor one block of folds may make."""
CACHE = 1 << 19
"""Elements of a block of sums reduced while it is in cache."""
SMALL = 1 << 16
"""Below this many elements, a layer's scores are made and reduced in one go."""

Reduce = Callable[[Tensor, int], Tensor]


def lse(t: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(t, dim)


def amax(t: Tensor, dim: int) -> Tensor:
    return t.amax(dim)


class ArgMax:
    """Picks the best-scoring index (MAP)."""

    def __call__(self, scores: Tensor) -> Tensor:
        """(..., M) scores -> (...) indices."""
        return scores.argmax(-1)

    def rows(self, table: Tensor, units: Tensor) -> Tensor:
        """Per entry, an index from row units[f, b] of fold f's (O, M) table: (n, B)."""
        return table.argmax(-1).gather(1, units)


class Gumbel(ArgMax):
    """Draws index m with probability exp(scores[m]) / sum(exp(scores)): Gumbel-max on
    per-entry scores, inverse CDF on a table of rows shared by the batch."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def __call__(self, scores: Tensor) -> Tensor:
        u = torch.rand(
            scores.shape, generator=self.generator, device=scores.device, dtype=scores.dtype
        )
        noise = -torch.log(-torch.log(u.clamp_(min=torch.finfo(u.dtype).tiny)))
        return (scores + noise).argmax(-1)

    def rows(self, table: Tensor, units: Tensor) -> Tensor:
        n, o, m = table.shape
        rows = units + torch.arange(n, device=units.device).unsqueeze(1) * o
        return draw_rows(table.reshape(n * o, m), rows, self.generator)


def draw_rows(logs: Tensor, rows: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per entry of `rows` from the categorical whose logits are row rows[i] of the
    (R, M) `logs`: the rows' CDFs laid end to end (row r spans [r, r + 1]) make one sorted
    array, so every draw is one binary search, whatever the number of states."""
    r, m = logs.shape
    cdf = torch.softmax(logs.double(), -1).nan_to_num_(0.0).cumsum_(-1)
    cdf[:, -1] = 1.0
    cdf += torch.arange(r, dtype=cdf.dtype, device=cdf.device).unsqueeze(1)
    u = torch.rand(rows.shape, generator=generator, dtype=cdf.dtype, device=rows.device)
    found = torch.searchsorted(cdf.flatten(), rows + u, right=True) - rows * m
    return found.clamp_(0, m - 1)


# -- structure ------------------------------------------------------------------------------------


@attrs.frozen
class Edge:
    """Consumer folds `consumer` of a slot read folds `producer` of layer `layer`."""

    layer: int
    consumer: Tensor = attrs.field(eq=False)
    producer: Tensor = attrs.field(eq=False)
    whole: bool = False
    """Whether the edge feeds every consumer fold, in order (consumer = 0, 1, ...)."""
    sole: bool = False
    """Whether no fold of the producer is read twice (by this edge or another): the
    top-down pass then copies the units down rather than reducing them."""


@attrs.frozen
class CircuitLinks:
    """Per layer, per numbered slot, its edges; and the outputs as (layer, fold)."""

    slots: tuple[tuple[tuple[Edge, ...], ...], ...]
    outputs: tuple[tuple[int, int], ...]
    device: torch.device

    @classmethod
    def of(cls, circuit: TorchCircuit) -> CircuitLinks:
        graph = circuit._graph
        if graph is None:
            raise PropertyError("this circuit was built without its IR graph; compile it again")
        order = [n for n in graph.topological_order() if isinstance(graph.op(n), CircuitOp)]
        index = {n: j for j, n in enumerate(order)}
        assert len(order) == len(circuit.layers), "the IR and the layers disagree"
        device = circuit.device
        slots = []
        for n in order:
            op = graph.op(n)
            edges = []
            for h in range(op.arity):
                edges.append(
                    tuple(
                        Edge(
                            index[p],
                            torch.tensor(m.consumer, dtype=torch.long, device=device),
                            torch.tensor(m.producer, dtype=torch.long, device=device),
                            list(m.consumer) == list(range(op.num_folds)),
                        )
                        for p, m in graph.slot_edges(n, h)
                    )
                )
            slots.append(tuple(edges))
        reads: dict[int, list[Tensor]] = {}
        for edges in slots:
            for slot in edges:
                for e in slot:
                    reads.setdefault(e.layer, []).append(e.producer)
        once = {j: _distinct(torch.cat(r)) for j, r in reads.items()}
        slots = [
            tuple(tuple(attrs.evolve(e, sole=once[e.layer]) for e in slot) for slot in edges)
            for edges in slots
        ]
        outputs = tuple((index[n], f) for n, f in graph.outputs)
        return cls(tuple(slots), outputs, device)

    def gather(self, j: int, values: Sequence[Tensor | None], folds: int) -> Tensor:
        """Layer j's input (F, H, I, B) from its producers' (F_p, I, B) values (a view of
        one (H, F, I, B) tensor: each slot is gathered in place)."""
        slots = self.slots[j]
        first = values[slots[0][0].layer]
        assert first is not None
        out = first.new_empty((len(slots), folds, *first.shape[1:]))
        for h, edges in enumerate(slots):
            for e in edges:
                v = values[e.layer]
                if e.whole:
                    torch.index_select(v, 0, e.producer, out=out[h])  # type: ignore[arg-type]
                else:
                    out[h].index_copy_(0, e.consumer, v.index_select(0, e.producer))  # type: ignore[union-attr]
        return out.transpose(0, 1)


def _distinct(index: Tensor) -> bool:
    return index.unique().numel() == index.numel()


# -- rules ---------------------------------------------------------------------------------------


class TopDownRule:
    """How a layer computes upward (in logs, with a given sum) and picks inputs downward."""

    def up(self, layer: tl.TorchLayer, x: Tensor, logw: Tensor | None, reduce: Reduce) -> Tensor:
        """(n, H, I, B) input logs -> (n, O, B)."""
        raise NotImplementedError

    def down(
        self, layer: tl.TorchLayer, x: Tensor, logw: Tensor | None, units: Tensor, pick: ArgMax
    ) -> Tensor:
        """The visited output units (n, B) (0 where unvisited) -> the input unit each slot
        takes (n, H, B), -1 for slots not taken."""
        raise NotImplementedError

    def choose(
        self, layer: tl.TorchLayer, x: Tensor, logw: Tensor | None, units: Tensor, pick: ArgMax
    ) -> Tensor:
        """`down` for units (n, B) with -1 where unvisited, -1 in every slot there."""
        chosen = self.down(layer, x, logw, units.clamp(min=0), pick)
        return torch.where((units >= 0).unsqueeze(1), chosen, -1)


_RULES: dict[type, TopDownRule] = {}


def register_topdown(layer_class: type) -> Callable[[type[TopDownRule]], type[TopDownRule]]:
    """Class decorator: the rule computes layers of `layer_class` upward and downward."""

    def register(rule: type[TopDownRule]) -> type[TopDownRule]:
        _RULES[layer_class] = rule()
        return rule

    return register


def rule_of(layer: tl.TorchLayer) -> TopDownRule:
    for cls in type(layer).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    raise PropertyError(
        f"{type(layer).__name__} has no top-down rule for MAP or sampling; register one with"
        " cirkit_ir.backends.torch.topdown.register_topdown"
    )


def outer_sum(x: Tensor) -> Tensor:
    """(n, H, I, B) -> (n, I**H, B): every sum of one unit per input, first input slowest."""
    y = x[:, 0]
    for h in range(1, x.shape[1]):
        y = (y.unsqueeze(2) + x[:, h].unsqueeze(1)).flatten(1, 2)
    return y


def digits(m: Tensor, base: int, count: int) -> Tensor:
    """(n, B) indices -> (n, count, B) base-`base` digits, most significant first."""
    out = []
    for _ in range(count):
        out.append(m % base)
        m = m // base
    return torch.stack(out[::-1], 1)


def _select_rows(logw: Tensor, units: Tensor) -> Tensor:
    """logw (n, O, M), units (n, B) -> (n, B, M): each entry's row of weights."""
    n, _, m = logw.shape
    return logw.gather(1, units.unsqueeze(-1).expand(n, units.shape[1], m))


class _WeightedSum(TopDownRule):
    """A sum over M terms, term m being the children's `terms(x)[:, m]` (n, M, B)."""

    def terms(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def slots_of(self, m: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def weights(self, logw: Tensor) -> Tensor:
        return logw  # (n, O, M)

    def up(self, layer, x, logw, reduce):  # type: ignore[no-untyped-def]
        t = self.terms(x)  # (n, M, B)
        w = self.weights(logw)
        n, o, m = w.shape
        b = t.shape[2]
        out = t.new_empty((n, o, b))
        if o * m * b <= SMALL:
            return reduce(w.unsqueeze(-1) + t.unsqueeze(1), 2)
        # One output unit at a time over a block of folds: the (folds, M, B) sums stay in
        # cache (about 3x faster than one (folds, O, M, B) tensor reduced over M).
        step = max(1, CACHE // max(1, m * b))
        buffer = t.new_empty((min(step, n), m, b))
        for s in range(0, n, step):
            tb, wb = t[s : s + step], w[s : s + step]
            buf = buffer[: tb.shape[0]]
            for k in range(o):
                torch.add(tb, wb[:, k].unsqueeze(-1), out=buf)
                out[s : s + step, k] = reduce(buf, 1)
        return out

    def down(self, layer, x, logw, units, pick):  # type: ignore[no-untyped-def]
        t = self.terms(x)
        w = self.weights(logw)
        n, _, m = w.shape
        if t.shape[2] == 1:  # values shared by the batch: one table of rows
            return self.slots_of(pick.rows(w + t.transpose(1, 2), units), x)
        chosen = torch.empty_like(units)
        step = max(1, BLOCK // max(1, m * t.shape[2]))
        for s in range(0, n, step):
            scores = _select_rows(w[s : s + step], units[s : s + step])  # (n, B, M)
            chosen[s : s + step] = pick(scores + t[s : s + step].transpose(1, 2))
        return self.slots_of(chosen, x)


@register_topdown(tl.TorchDenseLayer)
class DenseRule(_WeightedSum):
    def terms(self, x):  # type: ignore[no-untyped-def]
        return x[:, 0]

    def slots_of(self, m, x):  # type: ignore[no-untyped-def]
        return m.unsqueeze(1)


@register_topdown(tl.TorchTuckerLayer)
class TuckerRule(_WeightedSum):
    """MAP through the fused max-sum kernels where they apply (`native.maxsum`): no
    (folds, out, K * K, batch) scores upward, one row of scores per visited unit downward."""

    def up(self, layer, x, logw, reduce):  # type: ignore[no-untyped-def]
        out = maxsum.tucker_max(x, logw) if reduce is amax else None
        return super().up(layer, x, logw, reduce) if out is None else out

    def choose(self, layer, x, logw, units, pick):  # type: ignore[no-untyped-def]
        chosen = None
        if type(pick) is ArgMax and x.shape[3] == units.shape[1]:
            chosen = maxsum.tucker_argmax(x, logw, units)
        return super().choose(layer, x, logw, units, pick) if chosen is None else chosen

    def terms(self, x):  # type: ignore[no-untyped-def]
        return outer_sum(x)

    def slots_of(self, m, x):  # type: ignore[no-untyped-def]
        return digits(m, x.shape[2], x.shape[1])


@register_topdown(tl.TorchCPTLayer)
class CPTRule(_WeightedSum):
    def terms(self, x):  # type: ignore[no-untyped-def]
        return x.sum(1)

    def slots_of(self, m, x):  # type: ignore[no-untyped-def]
        return m.unsqueeze(1).expand(-1, x.shape[1], -1)


@register_topdown(tl.TorchMixingLayer)
class MixingRule(TopDownRule):
    """y[o] = sum_h w[o, h] x_h[o]: each unit picks one input slot."""

    def up(self, layer, x, logw, reduce):  # type: ignore[no-untyped-def]
        return reduce(logw.unsqueeze(-1) + x.transpose(1, 2), 2)  # (n, O, H, B) -> (n, O, B)

    def down(self, layer, x, logw, units, pick):  # type: ignore[no-untyped-def]
        n, h, _, b = x.shape[0], x.shape[1], x.shape[2], units.shape[1]
        if x.shape[3] == 1:
            slot = pick.rows(logw + x[..., 0].transpose(1, 2), units)
            out = torch.full((n, h, b), -1, dtype=torch.long, device=x.device)
            out.scatter_(1, slot.unsqueeze(1), units.unsqueeze(1))
            return out
        child = x.gather(2, units.view(n, 1, 1, b).expand(n, h, 1, b)).squeeze(2)  # (n, H, B)
        slot = pick(_select_rows(logw, units) + child.transpose(1, 2))  # (n, B)
        out = torch.full((n, h, b), -1, dtype=torch.long, device=x.device)
        out.scatter_(1, slot.unsqueeze(1), units.unsqueeze(1))
        return out


@register_topdown(tl.TorchCPLayer)
class CPRule(TopDownRule):
    """y = prod_h W_h x_h: one independent sum per input."""

    def up(self, layer, x, logw, reduce):  # type: ignore[no-untyped-def]
        # logw (n, H, O, I); x (n, H, I, B) -> sum_h reduce_i (n, H, O, I, B)
        return reduce(logw.unsqueeze(-1) + x.unsqueeze(2), 3).sum(1)

    def down(self, layer, x, logw, units, pick):  # type: ignore[no-untyped-def]
        n, h, i = x.shape[:3]
        b = units.shape[1]
        if x.shape[3] == 1:
            table = (logw + x[..., 0].unsqueeze(2)).flatten(0, 1)  # (n * H, O, I)
            wide = units.unsqueeze(1).expand(n, h, b).flatten(0, 1)
            return pick.rows(table, wide).view(n, h, b)
        rows = logw.gather(2, units.view(n, 1, b, 1).expand(n, h, b, i))  # (n, H, B, I)
        return pick(rows + x.transpose(2, 3))  # (n, H, B)


@register_topdown(tl.TorchKroneckerLayer)
class KroneckerRule(TopDownRule):
    def up(self, layer, x, logw, reduce):  # type: ignore[no-untyped-def]
        return outer_sum(x)

    def down(self, layer, x, logw, units, pick):  # type: ignore[no-untyped-def]
        return digits(units, x.shape[2], x.shape[1])


@register_topdown(tl.TorchHadamardLayer)
class HadamardRule(TopDownRule):
    def up(self, layer, x, logw, reduce):  # type: ignore[no-untyped-def]
        return x.sum(1)

    def down(self, layer, x, logw, units, pick):  # type: ignore[no-untyped-def]
        return units.unsqueeze(1).expand(-1, x.shape[1], -1)


# -- input layers ------------------------------------------------------------------------------


def log_weights(layer: tl.TorchLayer) -> Tensor | None:
    """The log of a sum layer's weights, in the IR's shape; a `PropertyError` for signed or
    complex ones, which make no distribution."""
    if not layer.param_names:
        return None
    w = getattr(layer, layer.param_names[0])()
    _check_distribution(w, layer)
    return torch.log(w)


def _check_distribution(w: Tensor, layer: tl.TorchLayer) -> None:
    if w.is_complex():
        raise PropertyError(
            f"{type(layer).__name__} has complex parameters: the circuit is not a distribution,"
            " so it has no MAP state and cannot be sampled"
        )
    if w.numel() and bool(w.amin() < 0):
        raise PropertyError(
            f"{type(layer).__name__} has negative parameters: the circuit is not a distribution"
            " (a signed circuit), so it has no MAP state and cannot be sampled; parameterize its"
            " weights with a non-negative activation (softmax, exp, ...)"
        )


def log_table(layer: tl.TorchInputLayer) -> Tensor | None:
    """(F, K, C, N) logs of a discrete layer's value per state, or None when continuous."""
    if isinstance(layer, tl.TorchCategoricalLayer):
        p = layer.probs()
        if layer.param == "probs":
            _check_distribution(p, layer)
            return torch.log(p)
        return p if layer.param == "log_probs" else torch.log_softmax(p, -1)
    if isinstance(layer, tl.TorchEmbeddingLayer):
        w = layer.weight()
        _check_distribution(w, layer)
        return torch.log(w)
    if isinstance(layer, tl.TorchBinomialLayer):
        (name,) = layer.param_names
        p = getattr(layer, name)()
        k = torch.arange(layer.total_count + 1, dtype=p.dtype, device=p.device)
        return _binomial_log_pmf(k, layer.total_count, p.unsqueeze(-1), layer.param)
    return None


def input_max(layer: tl.TorchInputLayer) -> tuple[Tensor, Tensor]:
    """(F, K) the largest log value of each unit, (F, K, C) the state that attains it."""
    table = log_table(layer)
    if table is not None:
        return table_max(table)
    if isinstance(layer, tl.TorchGaussianLayer):
        mean, stddev = layer.mean(), layer.stddev()
        return (-torch.log(stddev) - 0.5 * math.log(2 * math.pi)).sum(-1), mean
    raise PropertyError(f"{type(layer).__name__} has no rule for its mode")


def table_max(table: Tensor) -> tuple[Tensor, Tensor]:
    """`input_max` of a discrete layer from its (F, K, C, N) log table."""
    best, mode = table.max(-1)
    return best.sum(-1), mode


def table_logs(layer: tl.TorchInputLayer, table: Tensor, x: Tensor) -> Tensor:
    """(F, K, B) log values of a discrete input layer at the data, read off its (F, K, C, N)
    log table (`log_table`), the channels' logs added."""
    f, k, c, _ = table.shape
    xs = layer.select(x).long()  # (F, C, B)
    index = xs.unsqueeze(1).expand(f, k, c, xs.shape[2])
    logs = torch.gather(table, 3, index)
    return logs.squeeze(2) if c == 1 else logs.sum(2)


def input_sample(
    layer: tl.TorchInputLayer,
    folds: Tensor,
    units: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """One draw per (fold, unit) pair, (n, C): unit units[i] of fold folds[i]."""
    table = log_table(layer)
    if table is not None:
        f, k, c, m = table.shape
        channels = torch.arange(c, device=folds.device)
        rows = ((folds * k + units).unsqueeze(1) * c + channels).flatten()
        return draw_rows(table.reshape(f * k * c, m), rows, generator).view(-1, c)
    if isinstance(layer, tl.TorchGaussianLayer):
        mean = layer.mean()[folds, units]
        stddev = layer.stddev()[folds, units]
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + stddev * noise
    raise PropertyError(f"{type(layer).__name__} has no sampling rule")


def input_logs(layer: tl.TorchInputLayer, x: Tensor) -> Tensor:
    """(F, K, B) log values of an input layer at the data (any shadowing in force)."""
    values = layer.evaluate_values(x, *layer.parameter_values())
    s = layer.semiring
    if values.is_complex():
        raise PropertyError("the circuit has complex values: it is not a distribution")
    return values if s.log_space else torch.log(values)


# -- the passes ---------------------------------------------------------------------------------


@attrs.frozen
class Upward:
    """The upward pass, per layer: its (F, K, B) logs, its log weights and its gathered
    (F, H, I, B) input (None for input and constant layers), which the top-down pass reads
    again rather than gathering it anew."""

    values: list[Tensor]
    weights: list[Tensor | None]
    inputs: list[Tensor | None]


def upward(
    circuit: TorchCircuit,
    links: CircuitLinks,
    inputs: dict[int, Tensor],
    reduce: Reduce,
) -> Upward:
    """Every layer's (F, K, B) logs and its log weights, from the input layers' `inputs`."""
    up = Upward([], [], [])
    for j, layer in enumerate(circuit.layers):
        logw = x = None
        if j in inputs:
            v = inputs[j]
        elif isinstance(layer, tl.TorchConstantLayer):
            v = layer.evaluate_values(torch.empty(1, 1, 1), *layer.parameter_values())
            v = v if layer.semiring.log_space else torch.log(v)
        else:
            logw = log_weights(layer)
            x = links.gather(j, up.values, layer.num_folds)
            v = rule_of(layer).up(layer, x, logw, reduce)
        up.values.append(v)
        up.weights.append(logw)
        up.inputs.append(x)
    return up


def topdown(
    circuit: TorchCircuit, links: CircuitLinks, up: Upward, batch: int, pick: ArgMax
) -> list[Tensor]:
    """Per layer, (F, B) the unit each batch entry visits in each fold (-1: not visited)."""
    device = circuit.device
    units = [
        torch.full((layer.num_folds, batch), -1, dtype=torch.long, device=device)
        for layer in circuit.layers
    ]
    (root, fold), *rest = links.outputs
    if rest or circuit.layers[root].num_output_units != 1:
        raise PropertyError(
            "MAP and sampling need a circuit with one output unit (a distribution); this one"
            f" has {len(links.outputs)} output(s) of"
            f" {circuit.layers[root].num_output_units} unit(s)"
        )
    units[root][fold] = 0
    for j in range(len(circuit.layers) - 1, -1, -1):
        layer = circuit.layers[j]
        if not links.slots[j]:
            continue
        if type(pick) is not ArgMax and not bool((units[j] >= 0).any()):
            continue  # a draw for nothing would only advance the generator
        x = up.inputs[j]  # batch 1 when shared by the batch
        chosen = rule_of(layer).choose(layer, x, up.weights[j], units[j], pick)
        for h, edges in enumerate(links.slots[j]):
            for e in edges:
                target = units[e.layer]
                child = chosen[:, h] if e.whole else chosen[e.consumer, h]
                if e.sole:  # no other reader: nothing to reduce with
                    target.index_copy_(0, e.producer, child)
                else:
                    index = e.producer.unsqueeze(1).expand_as(child)
                    target.scatter_reduce_(0, index, child, "amax")
    return units
