"""Every pass keeps the circuit's function: IR graphs after any pipeline are interpreted here,
fold by fold, and compared with `cirkit_ir.reference` on the symbolic circuit.

The interpreter below is deliberately naive (float64, log space, one op at a time, fold maps
read edge by edge); it knows nothing of how passes work.
"""

from __future__ import annotations

import math

import pytest
import torch

from cirkit_ir import symbolic as sym
from cirkit_ir.ir import Graph, lower
from cirkit_ir.ir import ops as O
from cirkit_ir.ir.verify import verify
from cirkit_ir.passes import PassManager
from cirkit_ir.reference import draw_values, evaluate
from cirkit_ir.templates import circuit_templates

REAL = torch.float64


def _log_matmul(log_w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log(W @ exp(x)) per fold: log_w (F, O, I), x (F, B, I) -> (F, B, O)."""
    return torch.logsumexp(log_w[:, None, :, :] + x[:, :, None, :], dim=-1)


def _kron(xs: list[torch.Tensor]) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        f, b, k = out.shape
        out = (out[:, :, :, None] + x[:, :, None, :]).reshape(f, b, k * x.shape[-1])
    return out


def _param(op: O.ParamOp, args: list[torch.Tensor], values) -> torch.Tensor:
    if isinstance(op, O.TensorOp):
        return torch.stack([values[s].to(REAL) for s in op.sources])
    x = args[0] if args else None
    if isinstance(op, O.SoftmaxOp):
        return torch.softmax(x, op.axis)
    if isinstance(op, O.LogSoftmaxOp):
        return torch.log_softmax(x, op.axis)
    if isinstance(op, O.ExpOp):
        return torch.exp(x)
    if isinstance(op, O.LogOp):
        return torch.log(x)
    if isinstance(op, O.SigmoidOp):
        return torch.sigmoid(x)
    if isinstance(op, O.SoftplusOp):
        return torch.nn.functional.softplus(x, threshold=1000)
    if isinstance(op, O.ClampOp):
        return torch.clamp(x, min=op.vmin, max=op.vmax)
    if isinstance(op, O.ScaledSigmoidOp):
        return op.vmin + (op.vmax - op.vmin) * torch.sigmoid(x)
    if isinstance(op, O.MatMulOp):
        return args[0] @ args[1]
    if isinstance(op, O.StackOp):
        return torch.stack(args, dim=1)
    if isinstance(op, O.KroneckerParamOp):
        a, b = args
        f, a0, a1 = a.shape
        _, b0, b1 = b.shape
        return (a[:, :, None, :, None] * b[:, None, :, None, :]).reshape(f, a0 * b0, a1 * b1)
    if isinstance(op, O.MixingWeightOp):
        f, k, h = x.shape
        out = torch.zeros((f, k, h * k), dtype=x.dtype)
        for unit in range(k):
            for branch in range(h):
                out[:, unit, branch * k + unit] = x[:, unit, branch]
        return out
    if isinstance(op, O.ReduceOp):
        if op.kind == "sum":
            return x.sum(op.axis)
        if op.kind == "prod":
            return x.prod(op.axis)
        return torch.logsumexp(x, op.axis)
    raise NotImplementedError(op.name)


def _input(op: O.InputOp, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Log-densities (F, B, K); x is (B, C, D)."""
    data = x[:, :, list(op.variables)].permute(2, 0, 1)  # (F, B, C)
    if isinstance(op, O.CategoricalOp):
        table = params[op.param]  # (F, K, C, N)
        if op.param == "probs":
            table = torch.log(table)
        elif op.param == "logits":
            table = torch.log_softmax(table, -1)
        f, k, c, n = table.shape
        idx = data.long()  # (F, B, C)
        out = torch.zeros((f, data.shape[1], k), dtype=REAL)
        for ch in range(c):
            gathered = torch.gather(
                table[:, :, ch, :], 2, idx[:, None, :, ch].expand(f, k, idx.shape[1])
            )  # (F, K, B)
            out = out + gathered.permute(0, 2, 1)
        return out
    if isinstance(op, O.GaussianOp):
        mean, std = params["mean"][:, None], params["stddev"][:, None]  # (F, 1, K, C)
        xs = data.to(REAL)[:, :, None, :]
        terms = -0.5 * ((xs - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
        return terms.sum(-1)
    if isinstance(op, O.BinomialOp):
        n = float(op.total_count)
        xs = data.to(REAL)[:, :, None, :]
        if op.param == "logits":
            logit = params["logits"][:, None]
            log_p = torch.nn.functional.logsigmoid(logit)
            log_q = torch.nn.functional.logsigmoid(-logit)
        else:
            log_p = torch.log(params["probs"][:, None])
            log_q = torch.log1p(-params["probs"][:, None])
        terms = xs * log_p + (n - xs) * log_q
        terms = terms + math.lgamma(n + 1) - torch.lgamma(xs + 1) - torch.lgamma(n - xs + 1)
        return terms.sum(-1)
    raise NotImplementedError(op.name)


def evaluate_ir(graph: Graph, x: torch.Tensor, values) -> torch.Tensor:
    """Log-values of the graph's outputs: (B, num_outputs, units)."""
    computed: dict[int, torch.Tensor] = {}

    def slot(node: int, name: int | str) -> torch.Tensor:
        op = graph.op(node)
        pieces = [e for e in graph.operands(node) if e.slot == name]
        first = computed[pieces[0].producer]
        out = torch.empty((op.num_folds, *first.shape[1:]), dtype=first.dtype)
        covered = torch.zeros(op.num_folds, dtype=torch.bool)
        for e in pieces:
            out[list(e.fold_map.consumer)] = computed[e.producer][list(e.fold_map.producer)]
            covered[list(e.fold_map.consumer)] = True
        assert bool(covered.all()), f"slot {name} of %{node} misses folds"
        return out

    for node in graph.topological_order():
        op = graph.op(node)
        if isinstance(op, O.ParamOp):
            computed[node] = _param(op, [slot(node, i) for i in range(op.arity)], values)
            continue
        params = {name: slot(node, name) for name in op.param_slots}
        ins = [slot(node, i) for i in range(op.arity)]
        if isinstance(op, O.InputOp):
            value = _input(op, params, x)
        elif isinstance(op, O.DenseOp):
            value = _log_matmul(torch.log(params["weight"]), ins[0])
        elif isinstance(op, O.MixingOp):
            stacked = torch.stack(ins, dim=-1)  # (F, B, K, H)
            value = torch.logsumexp(torch.log(params["weight"])[:, None] + stacked, dim=-1)
        elif isinstance(op, O.HadamardOp):
            value = sum(ins)
        elif isinstance(op, O.KroneckerOp):
            value = _kron(ins)
        elif isinstance(op, O.TuckerOp):
            value = _log_matmul(torch.log(params["weight"]), _kron(ins))
        elif isinstance(op, O.CPTOp):
            value = _log_matmul(torch.log(params["weight"]), sum(ins))
        elif isinstance(op, O.CPOp):
            w = torch.log(params["weight"])
            value = sum(_log_matmul(w[:, i], ins[i]) for i in range(op.arity))
        else:
            raise NotImplementedError(op.name)
        computed[node] = value
    return torch.stack([computed[n][f] for n, f in graph.outputs], dim=1)


def _check(circuit: sym.Circuit, pipeline: str, x: torch.Tensor) -> Graph:
    values = draw_values(circuit, torch.Generator().manual_seed(0))
    expected = evaluate(circuit, x, values)
    graph = PassManager.parse(pipeline, verify=True).run(lower(circuit))
    verify(graph)
    got = evaluate_ir(graph, x, values)
    torch.testing.assert_close(got, expected.to(REAL), rtol=1e-9, atol=1e-9)
    return graph


PIPELINES = [
    "fold",
    "fuse",
    "lower-semiring,fold",
    "lower-semiring,fuse,fold",
    "lower-semiring,fold,fuse",
    "fold,fuse,lower-semiring{semiring=sum-product}",
    "lower-semiring,fold,lower-semiring{semiring=sum-product},fuse,fold,dce",
    "fold,fold,fuse,fuse,canonicalize,dce",
    "fixed-point(fuse,fold,canonicalize)",
]


def _images(batch: int = 3, channels: int = 1, pixels: int = 16) -> torch.Tensor:
    return torch.randint(256, (batch, channels, pixels), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("region_graph", ["quad-graph", "quad-tree-2", "poon-domingos"])
def test_templates_keep_their_function(pipeline: str, layer: str, region_graph: str) -> None:
    circuit = circuit_templates.image_data(
        (1, 4, 4),
        region_graph=region_graph,
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer=layer,
        num_sum_units=3,
    )
    _check(circuit, pipeline, _images())


@pytest.mark.parametrize("input_layer", ["gaussian", "binomial"])
@pytest.mark.parametrize("pipeline", ["lower-semiring,fuse,fold", "fold,fuse,canonicalize"])
def test_other_inputs_keep_their_function(input_layer: str, pipeline: str) -> None:
    circuit = circuit_templates.image_data(
        (2, 2, 4),
        region_graph="random-binary-tree",
        input_layer=input_layer,
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
        num_classes=2,
    )
    _check(circuit, pipeline, _images(channels=2, pixels=8))


def _hand_made() -> sym.Circuit:
    """Dense chains, one-input products and mixings, a shared weight and a 3-way kronecker."""
    cats = [sym.CategoricalLayer([v], 3, num_categories=4) for v in range(4)]
    shared = sym.SoftmaxParameter(sym.TensorParameter((3, 3)), axis=-1)
    d1 = [sym.DenseLayer(3, 3, weight=shared) for _ in range(2)]
    d2 = [sym.DenseLayer(3, 3) for _ in range(2)]
    one = sym.HadamardLayer(3, arity=1)
    had = sym.HadamardLayer(3, arity=2)
    kron = sym.KroneckerLayer(3, arity=3)
    top = sym.DenseLayer(27, 3)
    mix1 = sym.MixingLayer(3, arity=1)
    d3 = sym.DenseLayer(3, 2)
    d4 = sym.DenseLayer(2, 2)
    layers = [*cats, *d1, *d2, one, had, kron, top, mix1, d3, d4]
    wires = {
        d1[0]: [cats[0]],
        d1[1]: [cats[1]],
        d2[0]: [d1[0]],
        d2[1]: [d1[1]],
        one: [d2[0]],
        had: [one, d2[1]],
        kron: [had, cats[2], cats[3]],
        top: [kron],
        mix1: [top],
        d3: [mix1],
        d4: [d3],
    }
    return sym.Circuit(layers, wires, [d4])


@pytest.mark.parametrize("pipeline", PIPELINES + ["canonicalize", "fuse,fold,fuse,fold"])
def test_hand_made_circuit_keeps_its_function(pipeline: str) -> None:
    x = torch.randint(4, (5, 1, 4), generator=torch.Generator().manual_seed(2))
    _check(_hand_made(), pipeline, x)


def test_fuse_simplifies_the_hand_made_circuit() -> None:
    x = torch.randint(4, (5, 1, 4), generator=torch.Generator().manual_seed(2))
    graph = _check(_hand_made(), "fuse", x)
    names = [graph.op(n).name for n in graph.circuit_ops()]
    # d2[0](d1[0]) and d2[1](d1[1]) -> one dense each (a matmul weight); the unary hadamard
    # goes, then those two denses and the hadamard -> cp; kronecker + top -> tucker; the
    # one-input mixing goes; d4(d3) -> one dense.
    assert sorted(names) == ["categorical"] * 4 + ["cp", "dense", "tucker"]
