"""Property tests: random small circuits, compiled every way, equal the reference evaluator.

Circuits come from random region graphs (random binary trees, quad trees, quad graphs,
Poon-Domingos, linear trees, Chow-Liu trees of random data), every input layer, every
sum-product layer, 1-3 units, every semiring, every fold / optimize flag and random orders of
the passes. The compiled circuit's `symbolic_state()` is handed to `cirkit_ir.reference`, so
both compute with the same parameters; errors are measured by `reference.scaled_error`
(relative error for non-negative circuits, error against the sum of the terms' moduli for
signed and complex ones).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from cirkit_ir import reference
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph import (
    chow_liu_tree,
    linear_tree,
    poon_domingos,
    quad_graph,
    quad_tree,
    random_binary_tree,
)
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ClampParameter,
    ConstantInitializer,
    ConstantLayer,
    DenseLayer,
    EmbeddingLayer,
    EvidenceLayer,
    ExpParameter,
    GaussianLayer,
    HadamardLayer,
    KroneckerLayer,
    KroneckerParameter,
    LogParameter,
    LogSoftmaxParameter,
    MatMulParameter,
    MixingLayer,
    MixingWeightParameter,
    ReduceParameter,
    ScaledSigmoidParameter,
    Scope,
    SigmoidParameter,
    SoftmaxParameter,
    SoftplusParameter,
    TensorParameter,
)
from cirkit_ir.templates import Parameterization, circuit_from_region_graph

SEMIRINGS = ("sum-product", "lse-sum", "complex-lse-sum")
INPUT_LAYERS = (
    "categorical",
    "categorical-logits",
    "binomial",
    "binomial-probs",
    "gaussian",
    "embedding",
)
SUM_PRODUCT = ("tucker", "cp", "cp-t")
NUM_CATEGORIES = 3
TOTAL_COUNT = 4
NUM_STATES = 3

# The profile's max_examples (ci: 150, dev: 15) scales each property's budget.
BASE = settings.default.max_examples


def _examples(fraction: float) -> int:
    return max(5, int(BASE * fraction))


# ---------------------------------------------------------------------------------------------
# Strategies


@st.composite
def region_graphs(draw):
    """(description, region graph) of a small random region graph."""
    kind = draw(
        st.sampled_from(
            [
                "random-binary-tree",
                "quad-tree-2",
                "quad-tree-4",
                "quad-graph",
                "poon-domingos",
                "linear-tree",
                "chow-liu",
            ]
        )
    )
    if kind == "random-binary-tree":
        n = draw(st.integers(2, 6))
        depth = draw(st.none() | st.integers(0, math.ceil(math.log2(n))))
        reps = draw(st.integers(1, 2))
        seed = draw(st.integers(0, 2**16))
        return (kind, n, depth, reps, seed), random_binary_tree(n, depth, reps, seed)
    if kind in ("quad-tree-2", "quad-tree-4", "quad-graph"):
        shape = draw(st.sampled_from([(2, 2), (2, 3), (3, 2), (3, 3), (2, 4), (4, 3), (4, 4)]))
        if kind == "quad-graph":
            return (kind, shape), quad_graph(shape)
        return (kind, shape), quad_tree(shape, num_patch_splits=int(kind[-1]))
    if kind == "poon-domingos":
        shape = draw(st.sampled_from([(2, 2), (2, 3), (3, 3), (3, 4), (4, 4)]))
        delta = draw(st.sampled_from([1, 2] if max(shape) <= 3 else [2, 3]))
        return (kind, shape, delta), poon_domingos(shape, delta=delta)
    if kind == "linear-tree":
        n = draw(st.integers(2, 6))
        reps = draw(st.integers(1, 2))
        randomize = draw(st.booleans())
        return (kind, n, reps, randomize), linear_tree(n, reps, randomize=randomize, seed=3)
    n = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    data = np.random.RandomState(seed).randint(0, NUM_CATEGORIES, size=(40, n))
    return (kind, n, seed), chow_liu_tree(data, "categorical", num_categories=NUM_CATEGORIES)


def _input_factory(name: str, num_channels: int):
    def factory(scope, units):
        if name == "categorical":
            return CategoricalLayer(
                scope, units, num_channels=num_channels, num_categories=NUM_CATEGORIES
            )
        if name == "categorical-logits":
            logits = TensorParameter((units, num_channels, NUM_CATEGORIES))
            return CategoricalLayer(
                scope,
                units,
                num_channels=num_channels,
                num_categories=NUM_CATEGORIES,
                logits=logits,
            )
        if name == "binomial":
            return BinomialLayer(scope, units, num_channels=num_channels, total_count=TOTAL_COUNT)
        if name == "binomial-probs":
            probs = SigmoidParameter(TensorParameter((units, num_channels)))
            return BinomialLayer(
                scope, units, num_channels=num_channels, total_count=TOTAL_COUNT, probs=probs
            )
        if name == "gaussian":
            return GaussianLayer(scope, units, num_channels=num_channels)
        table = ExpParameter(TensorParameter((units, num_channels, NUM_STATES)))  # non-negative
        return EmbeddingLayer(
            scope, units, num_channels=num_channels, num_states=NUM_STATES, weight=table
        )

    return factory


# Sum weights: non-negative ones for every semiring; signed ones under sum-product (plain
# arithmetic) and complex-lse-sum (log-values with a phase); complex ones under complex-lse-sum
# (the other semirings reject complex parameters: see tests/test_bad_input.py).
POSITIVE_WEIGHTS = {
    "softmax": Parameterization(activation="softmax"),
    "positive-clamp": Parameterization(initialization="uniform", activation="positive-clamp"),
    "exp": Parameterization(activation="exp"),
    "sigmoid": Parameterization(activation="sigmoid"),
    "softplus": Parameterization(activation="softplus"),
    "none-uniform": Parameterization(initialization="uniform", activation="none"),
}
SIGNED_WEIGHTS = {
    "none-normal": Parameterization(initialization="normal", activation="none"),
    "complex": Parameterization(initialization="normal", activation="none", dtype="complex"),
}


@st.composite
def circuits(draw, semiring: str | None = None):
    """(description, symbolic circuit, semiring)."""
    rg_desc, rg = draw(region_graphs())
    semiring = semiring or draw(st.sampled_from(SEMIRINGS))
    weights = dict(POSITIVE_WEIGHTS)
    if semiring == "complex-lse-sum":
        weights.update(SIGNED_WEIGHTS)
    elif semiring == "sum-product":
        weights["none-normal"] = SIGNED_WEIGHTS["none-normal"]
    weight_name = draw(st.sampled_from(sorted(weights)))
    input_layer = draw(st.sampled_from(INPUT_LAYERS))
    num_channels = draw(st.sampled_from([1, 1, 2]))
    spec = {
        "region_graph": rg_desc,
        "input_layer": input_layer,
        "num_channels": num_channels,
        "sum_product": draw(st.sampled_from(SUM_PRODUCT)),
        "num_input_units": draw(st.integers(1, 3)),
        "num_sum_units": draw(st.integers(1, 3)),
        "num_classes": draw(st.integers(1, 2)),
        "weights": weight_name,
        "use_mixing_weights": draw(st.booleans()),
        "semiring": semiring,
    }
    circuit = circuit_from_region_graph(
        rg,
        input_factory=_input_factory(input_layer, num_channels),
        sum_product=spec["sum_product"],
        num_input_units=spec["num_input_units"],
        num_sum_units=spec["num_sum_units"],
        num_classes=spec["num_classes"],
        sum_weight_factory=weights[weight_name].build,
        use_mixing_weights=spec["use_mixing_weights"],
    )
    event(f"region graph: {rg_desc[0]}")
    event(f"input layer: {input_layer}")
    event(f"sum-product: {spec['sum_product']}")
    event(f"semiring: {semiring}")
    size = len(circuit.layers)
    event(f"layers: {'<10' if size < 10 else '10-49' if size < 50 else '50+'}")
    return spec, circuit, semiring


def make_batch(circuit: Circuit, seed: int, batch: int, dtype=torch.float64) -> torch.Tensor:
    """A (batch, C, D) batch of values that every input layer of `circuit` accepts."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, circuit.num_channels, circuit.num_variables)
    first = next(layer for layer in circuit.layers if hasattr(layer, "scope") and layer.scope)
    if isinstance(first, GaussianLayer):
        return torch.randn(shape, generator=g, dtype=dtype)
    if isinstance(first, BinomialLayer):
        high = first.total_count + 1
    elif isinstance(first, CategoricalLayer):
        high = first.num_categories
    else:
        high = first.num_states
    return torch.randint(high, shape, generator=g)


def compile_and_check(circuit, semiring, x, *, tol=1e-9, dtype=torch.float64, seed=0, **flags):
    ctx = PipelineContext(semiring=semiring, dtype=dtype, **flags)
    compiled = ctx.compile(circuit, seed=seed)
    out = compiled(x)
    values = compiled.symbolic_state()
    if semiring == "sum-product":
        # Linear values underflow below ~1e-308: the semiring's limit, not a bug.
        bound = reference.evaluate(circuit, x, values, mode="bound")
        if bool((bound < -600).any()):
            return compiled
    reference.assert_matches(out, circuit, x, values, semiring, tol)
    return compiled


# ---------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=_examples(1.0))
@given(
    spec=circuits(),
    fold=st.booleans(),
    optimize=st.booleans(),
    seed=st.integers(0, 2**20),
    batch=st.integers(1, 4),
)
def test_compiled_equals_reference(spec, fold, optimize, seed, batch):
    description, circuit, semiring = spec
    note(f"{description} fold={fold} optimize={optimize}")
    x = make_batch(circuit, seed, batch)
    compile_and_check(circuit, semiring, x, seed=seed, fold=fold, optimize=optimize)


PASSES = ("fold", "fuse", "dce", "canonicalize")


@st.composite
def pass_orders(draw):
    """fold / fuse / dce / canonicalize in a random order, some maybe left out or repeated,
    with lower-semiring at a random place among them (the default pipeline folds first)."""
    chosen = draw(st.lists(st.sampled_from(PASSES), min_size=0, max_size=6))
    position = draw(st.integers(0, len(chosen)))
    return chosen[:position], chosen[position:]


@settings(max_examples=_examples(1.0))
@given(
    spec=circuits(),
    order=pass_orders(),
    relower=st.none() | st.sampled_from(SEMIRINGS),
    seed=st.integers(0, 2**20),
    batch=st.integers(1, 3),
)
def test_any_pass_order_equals_reference(spec, order, relower, seed, batch):
    """Any order of the passes; optionally lowered first to another semiring (`relower`),
    which the final lower-semiring must undo exactly."""
    description, circuit, semiring = spec
    before, after = order
    first = [] if relower is None else [f"lower-semiring{{semiring={relower}}}"]
    pipeline = ",".join([*first, *before, f"lower-semiring{{semiring={semiring}}}", *after])
    note(f"{description} pipeline={pipeline}")
    x = make_batch(circuit, seed, batch)
    compile_and_check(circuit, semiring, x, seed=seed, pipeline=pipeline)


@settings(max_examples=_examples(0.6))
@given(spec=circuits(), fold=st.booleans(), optimize=st.booleans(), seed=st.integers(0, 2**20))
def test_float32_close_to_reference(spec, fold, optimize, seed):
    description, circuit, semiring = spec
    note(f"{description} fold={fold} optimize={optimize}")
    x = make_batch(circuit, seed, 3, dtype=torch.float32)
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=torch.float32)
    compiled = ctx.compile(circuit, seed=seed)
    out = compiled(x)
    values = compiled.symbolic_state()
    bound = reference.evaluate(circuit, x, values, mode="bound")
    if semiring == "sum-product" and bool((bound < -80).any()):
        return  # float32 values underflow below ~1e-38
    error = reference.scaled_error(out, circuit, x, values, semiring)
    # float32 log-values carry an error relative to their size: 1e-5 of |log bound|, or 1e-5.
    allowed = 1e-5 * torch.clamp(bound.abs(), min=1.0)
    assert not bool(torch.isnan(error).any()), f"NaN in float32 output: {out}"
    assert bool((error <= allowed).all()), f"float32 error {error.max().item():.3g}\n{out}"


@settings(max_examples=_examples(0.4))
@given(
    spec=circuits(),
    flags=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=2),
    seed=st.integers(0, 2**20),
)
def test_same_seed_same_function_whatever_the_flags(spec, flags, seed):
    description, circuit, semiring = spec
    note(f"{description} flags={flags}")
    x = make_batch(circuit, seed, 3)
    compiled = [
        PipelineContext(semiring=semiring, fold=f, optimize=o, dtype=torch.float64).compile(
            circuit, seed=seed
        )
        for f, o in flags
    ]
    a, b = (c.symbolic_state() for c in compiled)
    assert sorted(a) == sorted(b) == list(range(len(circuit.tensor_parameters())))
    for source in a:
        torch.testing.assert_close(a[source], b[source], rtol=0, atol=0)
    reference.assert_matches(compiled[1](x), circuit, x, a, semiring, 1e-9)


# ---------------------------------------------------------------------------------------------
# Constant and evidence layers (not built by the templates), every semiring and flag


def _constant_evidence_circuit():
    constant = ConstantLayer(ExpParameter(TensorParameter((2,))))
    observed = CategoricalLayer([0], 2, num_categories=NUM_CATEGORIES)
    observation = TensorParameter((1,), ConstantInitializer(2.0), learnable=False)
    evidence = EvidenceLayer(observed, observation)
    cat1 = CategoricalLayer([1], 2, num_categories=NUM_CATEGORIES)
    cat2 = CategoricalLayer([2], 2, num_categories=NUM_CATEGORIES)
    had = HadamardLayer(2, 3)
    kron = KroneckerLayer(2, 2)
    dense = DenseLayer(4, 2, weight=SoftmaxParameter(TensorParameter((2, 4))))
    dense2 = DenseLayer(4, 2)
    mix = MixingLayer(2, 2)
    layers = [constant, evidence, cat1, cat2, kron, dense, dense2, had, mix]
    wiring = {
        kron: [cat1, cat2],
        dense: [kron],
        dense2: [kron],
        had: [constant, evidence, dense],
        mix: [had, dense2],
    }
    return Circuit(layers, wiring, [mix])


@pytest.mark.parametrize(
    ("semiring", "fold", "optimize"),
    list(itertools.product(SEMIRINGS, (False, True), (False, True))),
)
def test_constant_and_evidence_layers(semiring, fold, optimize):
    circuit = _constant_evidence_circuit()
    x = torch.randint(NUM_CATEGORIES, (4, 1, 3), generator=torch.Generator().manual_seed(0))
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=torch.float64)
    compiled = ctx.compile(circuit, seed=1)
    values = compiled.symbolic_state()
    reference.assert_matches(compiled(x), circuit, x, values, semiring, 1e-9)


# ---------------------------------------------------------------------------------------------
# Random circuits built layer by layer (not from region graphs): DAGs that reuse sub-circuits,
# tied weights, several outputs, constant and evidence factors, and every parameter op.


def _weight_strategy(draw, shape, signed: bool):
    """A parameter graph of `shape` (out, in): a random parameterization that is
    non-negative (or, when `signed`, anything real)."""
    k, j = shape
    kinds = [
        "softmax",
        "softmax0",
        "exp",
        "softplus",
        "sigmoid",
        "clamp",
        "scaled-sigmoid",
        "log-softmax-exp",
        "log-exp",
        "reduce-sum",
        "reduce-prod",
        "reduce-lse",
        "matmul",
    ]
    if k % 2 == 0 and j % 2 == 0:
        kinds.append("kronecker")
    if j % k == 0:
        kinds.append("mixing-weight")
    if signed:
        kinds += ["raw", "raw"]
    kind = draw(st.sampled_from(kinds))
    event(f"weight: {kind}")
    t = TensorParameter
    match kind:
        case "softmax":
            return SoftmaxParameter(t(shape))
        case "softmax0":
            return SoftmaxParameter(t(shape), axis=0)
        case "exp":
            return ExpParameter(t(shape))
        case "softplus":
            return SoftplusParameter(t(shape))
        case "sigmoid":
            return SigmoidParameter(t(shape))
        case "clamp":
            return ClampParameter(t(shape), vmin=0.05, vmax=0.9)
        case "scaled-sigmoid":
            return ScaledSigmoidParameter(t(shape), vmin=0.5, vmax=2.0)
        case "log-softmax-exp":
            return ExpParameter(LogSoftmaxParameter(t(shape), axis=draw(st.sampled_from([0, 1]))))
        case "log-exp":
            return ExpParameter(LogParameter(SoftplusParameter(t(shape))))
        case "reduce-sum" | "reduce-prod" | "reduce-lse":
            how = kind.split("-")[1]
            inner = t((k, 2, j)) if how != "lse" else t((2, k, j))
            axis = 1 if how != "lse" else 0
            reduced = ReduceParameter(ExpParameter(inner), axis=axis, kind=how)
            return ExpParameter(reduced) if how == "lse" else reduced
        case "matmul":
            return MatMulParameter(ExpParameter(t((k, 3))), SoftmaxParameter(t((3, j))))
        case "kronecker":
            return KroneckerParameter(
                ExpParameter(t((k // 2, j // 2))), SigmoidParameter(t((2, 2)))
            )
        case "mixing-weight":
            # A (k, j) weight that is zero off the mixing pattern: [a, h * k + a] = w[a, h].
            return MixingWeightParameter(SoftmaxParameter(t((k, j // k))))
        case _:
            return t(shape)


@st.composite
def random_circuits(draw, semiring: str | None = None):
    semiring = semiring or draw(st.sampled_from(SEMIRINGS))
    signed = semiring != "lse-sum" and draw(st.booleans())
    num_variables = draw(st.integers(1, 5))
    input_kind = draw(st.sampled_from(INPUT_LAYERS))
    factory = _input_factory(input_kind, 1)
    layers: list = []
    wiring: dict = {}
    memo: dict = {}
    weights: dict = {}

    def add(layer, inputs=()):
        layers.append(layer)
        wiring[layer] = list(inputs)
        return layer

    def dense(child, units):
        shape = (units, child.num_output_units)
        if shape in weights and draw(st.integers(0, 3)) == 0:
            weight = weights[shape]  # tied with an earlier dense layer
            event("tied weights")
        else:
            weight = weights[shape] = _weight_strategy(draw, shape, signed)
        return add(DenseLayer(shape[1], units, weight=weight), [child])

    def block(scope: tuple[int, ...], units: int, depth: int = 0):
        key = (scope, units)
        if key in memo and draw(st.integers(0, 2)) == 0:
            event("reused sub-circuit")
            return memo[key]
        if len(scope) == 1:
            out = add(factory(Scope(scope), units))
            if draw(st.booleans()):
                out = dense(out, units)
        else:
            choices = 2 if depth < 2 else 1
            alternatives = draw(st.integers(1, choices))
            options = []
            for _ in range(alternatives):
                order = draw(st.permutations(scope))
                arity = draw(st.integers(2, min(3, len(scope))))
                cuts = sorted(
                    draw(
                        st.sets(
                            st.integers(1, len(scope) - 1), min_size=arity - 1, max_size=arity - 1
                        )
                    )
                )
                parts = [
                    tuple(sorted(order[a:b]))
                    for a, b in zip([0, *cuts], [*cuts, len(scope)], strict=True)
                ]
                inner = draw(st.integers(1, 2 if len(parts) == 3 else 3))
                children = [block(p, inner, depth + 1) for p in parts]
                if draw(st.integers(0, 4)) == 0:
                    value = ExpParameter(TensorParameter((inner,)))
                    children.append(add(ConstantLayer(value)))
                    event("constant factor")
                if draw(st.booleans()):
                    product = add(HadamardLayer(inner, len(children)), children)
                else:
                    product = add(KroneckerLayer(inner, len(children)), children)
                options.append(dense(product, units))
            if len(options) == 1:
                out = options[0]
            else:
                mix_weight = _weight_strategy(draw, (units, len(options)), signed)
                out = add(MixingLayer(units, len(options), weight=mix_weight), options)
        memo[key] = out
        return out

    everything = tuple(range(num_variables))
    units = draw(st.integers(1, 3))
    outputs = [block(everything, units) for _ in range(draw(st.integers(1, 2)))]
    if draw(st.integers(0, 4)) == 0 and isinstance(layers[0], CategoricalLayer):
        # An evidence factor: a categorical at a fixed observation.
        observed = CategoricalLayer(Scope([0]), units, num_categories=NUM_CATEGORIES)
        observation = TensorParameter((1,), ConstantInitializer(1.0), learnable=False)
        evidence = add(EvidenceLayer(observed, observation))
        outputs[0] = add(HadamardLayer(units, 2), [outputs[0], evidence])
        event("evidence factor")
    size = len(layers)
    event(f"random circuit layers: {'<10' if size < 10 else '10-49' if size < 50 else '50+'}")
    return {"signed": signed, "input": input_kind}, Circuit(layers, wiring, outputs), semiring


@settings(max_examples=_examples(1.0))
@given(
    spec=random_circuits(),
    fold=st.booleans(),
    optimize=st.booleans(),
    order=st.none() | pass_orders(),
    seed=st.integers(0, 2**20),
    batch=st.integers(1, 3),
)
def test_random_circuits_equal_reference(spec, fold, optimize, order, seed, batch):
    description, circuit, semiring = spec
    flags: dict = {"fold": fold, "optimize": optimize}
    if order is not None:
        before, after = order
        flags = {"pipeline": ",".join([*before, f"lower-semiring{{semiring={semiring}}}", *after])}
    note(f"{description} {circuit} {flags}")
    x = make_batch(circuit, seed, batch)
    compile_and_check(circuit, semiring, x, seed=seed, **flags)


@pytest.mark.parametrize(
    ("semiring", "fold", "optimize"),
    list(itertools.product(SEMIRINGS, (False, True), (False, True))),
)
def test_outputs_in_order_with_repeats_inputs_and_dead_layers(semiring, fold, optimize):
    # Outputs: a dense layer, an input layer, the dense layer again; one layer feeds nothing.
    cats = [CategoricalLayer([v], 2, num_categories=NUM_CATEGORIES) for v in range(2)]
    had = HadamardLayer(2, 2)
    dense = DenseLayer(2, 2)
    dead = DenseLayer(2, 2)
    circuit = Circuit(
        [*cats, had, dense, dead], {had: cats, dense: [had], dead: [had]}, [dense, cats[0], dense]
    )
    x = torch.randint(NUM_CATEGORIES, (4, 2), generator=torch.Generator().manual_seed(0))
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=torch.float64)
    compiled = ctx.compile(circuit, seed=2)
    out = compiled(x)
    assert out.shape == (4, 3, 2)
    reference.assert_matches(out, circuit, x, compiled.symbolic_state(), semiring, 1e-9)
