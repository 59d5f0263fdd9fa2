"""Circuits and IR graphs shared by several test files.

Small circuits and IR graphs built by hand for the IR tests; `seed_like` (and `quad_tree_2x2`)
for the template circuits that many files build with the seed notebook's options, and
`two_unit_tree` for the tiny circuits over a random binary tree that the numerics tests build
around one kind of input layer.
The seed circuit itself is a session fixture (`seed_circuit`, `seed_graph` in conftest.py).
"""

from __future__ import annotations

from typing import Any

from cirkit_ir.ir import FoldMap, Graph
from cirkit_ir.ir import ops as o
from cirkit_ir.ir.pic_ops import PICInnerNetOp, PICInputNetOp
from cirkit_ir.region_graph import random_binary_tree
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    ConstantInitializer,
    ConstantTensorInitializer,
    DenseLayer,
    DirichletInitializer,
    HadamardLayer,
    KroneckerLayer,
    MixingLayer,
    NormalInitializer,
    UniformInitializer,
)
from cirkit_ir.templates import circuit_from_region_graph, circuit_templates
from cirkit_ir.templates.from_region_graph import InputFactory

NORMAL = NormalInitializer()

# -- template circuits ---------------------------------------------------------------------------

SEED_OPTIONS = {
    "region_graph": "quad-graph",
    "input_layer": "categorical",
    "num_input_units": 4,
    "sum_product_layer": "tucker",
    "num_sum_units": 4,
    "sum_weight_param": "softmax",
}
"""The seed notebook's `circuit_templates.image_data` options (its images are 1x28x28)."""


def seed_like(image_shape: tuple[int, int, int] = (1, 4, 4), **overrides: Any) -> Circuit:
    """A circuit built like the seed notebook's, over images of `image_shape`.

    `overrides` replace some of `SEED_OPTIONS`. The default 4x4 image keeps the circuit small
    enough to compile in milliseconds; ``seed_like((1, 28, 28))`` is the seed circuit itself
    (but use the shared `seed_circuit` fixture for that: it takes a while to build).
    """
    return circuit_templates.image_data(image_shape, **{**SEED_OPTIONS, **overrides})


def quad_tree_2x2(num_channels: int = 1) -> Circuit:
    """The smallest image circuit: 2x2 images of `num_channels` channels (of 256 categories),
    a quad tree, 2 input units and 2 tucker units."""
    return seed_like(
        (num_channels, 2, 2), region_graph="quad-tree-2", num_input_units=2, num_sum_units=2
    )


def two_unit_tree(
    input_factory: InputFactory, sum_product: str, *, num_variables: int = 2, seed: int = 0
) -> Circuit:
    """A circuit over a random binary tree of `num_variables` variables, 2 input and 2 sum
    units: the smallest circuit around the input layers that `input_factory` makes."""
    return circuit_from_region_graph(
        random_binary_tree(num_variables, seed=seed),
        input_factory=input_factory,
        sum_product=sum_product,
        num_input_units=2,
        num_sum_units=2,
    )


# -- circuits and graphs by hand -----------------------------------------------------------------


def tiny_circuit() -> Circuit:
    """Two binary variables, a kronecker product of their inputs, one dense sum on top."""
    x0 = CategoricalLayer((0,), 2, num_categories=2)
    x1 = CategoricalLayer((1,), 2, num_categories=2)
    kron = KroneckerLayer(2, 2)
    dense = DenseLayer(4, 1)
    return Circuit([x0, x1, kron, dense], {kron: [x0, x1], dense: [kron]}, [dense])


def four_variable_circuit() -> Circuit:
    """Variables 0..3 split two ways ({0,1}{2,3} and {0,2}{1,3}), mixed at the root."""
    cats = [CategoricalLayer((v,), 2, num_categories=3) for v in range(4)]
    layers: list = list(cats)
    wiring: dict = {}

    def tucker(a, b, out: int = 2):
        kron = KroneckerLayer(2, 2)
        dense = DenseLayer(4, out)
        layers.extend([kron, dense])
        wiring[kron] = [a, b]
        wiring[dense] = [kron]
        return dense

    left = tucker(tucker(cats[0], cats[1]), tucker(cats[2], cats[3]))
    right = tucker(tucker(cats[0], cats[2]), tucker(cats[1], cats[3]))
    mix = MixingLayer(2, 2)
    top = DenseLayer(2, 1)
    layers += [mix, top]
    wiring[mix] = [left, right]
    wiring[top] = [mix]
    return Circuit(layers, wiring, [top])


def hadamard_circuit() -> Circuit:
    """A cp-style circuit: dense per input, hadamard, dense."""
    x0 = CategoricalLayer((0,), 3, num_categories=2)
    x1 = CategoricalLayer((1,), 3, num_categories=2)
    d0, d1 = DenseLayer(3, 3), DenseLayer(3, 3)
    had = HadamardLayer(3, 2)
    top = DenseLayer(3, 1)
    return Circuit(
        [x0, x1, d0, d1, had, top], {d0: [x0], d1: [x1], had: [d0, d1], top: [had]}, [top]
    )


def _param(g: Graph, shape: tuple[int, ...], wrap: type[o.ParamOp] | None = o.SoftmaxOp) -> int:
    """A tensor leaf (normal init), optionally under a unary parameter op."""
    sources = [g.new_source() for _ in range(shape[0])]
    leaf = g.add_op(o.TensorOp(NORMAL, shape=shape, sources=sources))
    return leaf if wrap is None else g.add_op(wrap(shape=shape), inputs=[leaf])


def folded_graph() -> Graph:
    """A folded graph: slots fed by several producers, one slot in explicit (unordered) form.

    cat4 (4 folds, variables 0..3) and cat2 (2 folds, variables 4, 5) feed a kronecker op of 3
    folds whose folds cover the variable pairs (0,1), (4,5), (2,3); a dense op of 3 folds sums
    each; a hadamard op of 1 fold multiplies the three dense folds.
    """
    g = Graph()
    cat4 = g.add_op(
        o.CategoricalOp((0, 1, 2, 3), 1, 2, num_categories=2),
        params={"probs": _param(g, (4, 2, 1, 2))},
    )
    cat2 = g.add_op(
        o.CategoricalOp((4, 5), 1, 2, num_categories=2), params={"probs": _param(g, (2, 2, 1, 2))}
    )
    kron = g.add_op(o.KroneckerOp(2, 2, num_folds=3))
    g.connect(cat4, kron, 0, FoldMap((0, 2), (0, 2)))
    g.connect(cat2, kron, 0, FoldMap((1,), (0,)))
    g.connect(cat4, kron, 1, FoldMap((0, 2), (1, 3)))
    g.connect(cat2, kron, 1, FoldMap((1,), (1,)))
    dense = g.add_op(
        o.DenseOp(4, 2, num_folds=3), inputs=[kron], params={"weight": _param(g, (3, 2, 4))}
    )
    had = g.add_op(o.HadamardOp(2, 3))
    for slot in range(3):
        g.connect(dense, had, slot, FoldMap((0,), (slot,)))
    g.set_outputs([had])
    return g


def stacked_graph() -> Graph:
    """A folded graph in the shape folding produces: each slot a concatenation of pieces."""
    g = Graph()
    cat_a = g.add_op(
        o.CategoricalOp((0, 1, 2, 3), 1, 2, num_categories=2),
        params={"probs": _param(g, (4, 2, 1, 2))},
    )
    cat_b = g.add_op(
        o.CategoricalOp((4, 5), 1, 2, num_categories=2), params={"probs": _param(g, (2, 2, 1, 2))}
    )
    kron = g.add_op(o.KroneckerOp(2, 2, num_folds=3))
    g.connect(cat_a, kron, 0, FoldMap((0, 1), (0, 2)))
    g.connect(cat_b, kron, 0, FoldMap((2,), (0,)))
    g.connect(cat_a, kron, 1, FoldMap((0, 1), (1, 3)))
    g.connect(cat_b, kron, 1, FoldMap((2,), (1,)))
    dense = g.add_op(
        o.DenseOp(4, 2, num_folds=3), inputs=[kron], params={"weight": _param(g, (3, 2, 4))}
    )
    had = g.add_op(o.HadamardOp(2, 3))
    for slot in range(3):
        g.connect(dense, had, slot, FoldMap((0,), (slot,)))
    g.set_outputs([had, (dense, 2), (dense, 0)])
    return g


def zoo_graph(semiring: str | None = "lse-sum") -> Graph:
    """One graph holding every op type and every initializer; it verifies."""
    g = Graph()
    s = {"semiring": semiring}

    sources = iter(range(1000))

    def tensor(shape, init=NORMAL, **kw) -> int:
        return g.add_op(o.TensorOp(init, shape=shape, sources=(next(sources),), **kw))

    def op(cls, inputs, **kw) -> int:
        return g.add_op(cls(**kw), inputs=inputs)

    probs = op(o.SoftmaxOp, [tensor((1, 2, 1, 3))], shape=(1, 2, 1, 3))
    c0 = g.add_op(o.CategoricalOp((0,), 1, 2, num_categories=3, **s), params={"probs": probs})
    logits = tensor((1, 2, 1, 3), UniformInitializer(-1.0, 1.0))
    c1 = g.add_op(
        o.CategoricalOp((1,), 1, 2, num_categories=3, param="logits", **s),
        params={"logits": logits},
    )
    lp_leaf = tensor((1, 2, 1, 3), DirichletInitializer(0.5, axis=-1))
    log_probs = op(o.LogSoftmaxOp, [lp_leaf], shape=(1, 2, 1, 3), axis=-1)
    c2 = g.add_op(
        o.CategoricalOp((2,), 1, 2, num_categories=3, param="log_probs", **s),
        params={"log_probs": log_probs},
    )
    b_probs = op(o.SigmoidOp, [tensor((1, 2, 1), ConstantInitializer(0.5))], shape=(1, 2, 1))
    b3 = g.add_op(
        o.BinomialOp((3,), 1, 2, total_count=5, param="probs", **s), params={"probs": b_probs}
    )
    stddev = op(o.ScaledSigmoidOp, [tensor((1, 2, 1))], shape=(1, 2, 1), vmin=1e-4, vmax=10.0)
    g4 = g.add_op(
        o.GaussianOp((4,), 1, 2, **s), params={"mean": tensor((1, 2, 1)), "stddev": stddev}
    )
    conj_mean = op(o.ConjugateOp, [tensor((1, 2, 1))], shape=(1, 2, 1))
    dg7 = g.add_op(
        o.GaussianDerivativeOp((7,), 1, 2, **s), params={"mean": conj_mean, "stddev": stddev}
    )
    weight = op(o.ExpOp, [tensor((1, 2, 1, 4))], shape=(1, 2, 1, 4))
    e5 = g.add_op(o.EmbeddingOp((5,), 1, 2, num_states=4, **s), params={"weight": weight})
    value = op(o.SoftplusOp, [tensor((1, 2))], shape=(1, 2))
    const = g.add_op(o.ConstantOp(2, **s), params={"value": value})
    obs = tensor((1, 1), ConstantInitializer(1.0), learnable=False)
    ev_probs = op(o.SoftmaxOp, [tensor((1, 2, 1, 3))], shape=(1, 2, 1, 3))
    ev = g.add_op(
        o.EvidenceOp(o.CategoricalOp((6,), 1, 2, num_categories=3), **s),
        params={"observation": obs, "probs": ev_probs},
    )
    kron = g.add_op(o.KroneckerOp(2, 2, **s), inputs=[c0, c1])
    mw = op(o.MixingWeightOp, [tensor((1, 2, 2))], shape=(1, 2, 4))
    d01 = g.add_op(o.DenseOp(4, 2, **s), inputs=[kron], params={"weight": mw})
    kw = op(o.KroneckerParamOp, [tensor((1, 1, 2)), tensor((1, 2, 2))], shape=(1, 2, 4))
    t23 = g.add_op(o.TuckerOp(2, 2, 2, **s), inputs=[c2, b3], params={"weight": kw})
    h45 = g.add_op(o.HadamardOp(2, 2, **s), inputs=[g4, e5])
    clamp = op(o.ClampOp, [tensor((1, 2, 2))], shape=(1, 2, 2), vmin=1e-18, vmax=None)
    cpt_w = op(o.LogOp, [clamp], shape=(1, 2, 2))
    cpt = g.add_op(o.CPTOp(2, 2, 2, **s), inputs=[d01, t23], params={"weight": cpt_w})
    fixed = tensor((1, 2, 2), ConstantTensorInitializer([[0.5, 2.0], [1.0, 0.25]]))
    stack = op(o.StackOp, [tensor((1, 2, 2)), fixed], shape=(1, 2, 2, 2), num_inputs=2)
    cp = g.add_op(o.CPOp(2, 2, 2, **s), inputs=[h45, const], params={"weight": stack})
    # A PIC's nets (`cirkit_ir.ir.pic_ops`): 2 points, 4 Fourier features, a hidden layer.
    points = tensor((1, 2), ConstantTensorInitializer([-0.5, 0.5]), learnable=False)
    quad_w = tensor((1, 2), ConstantTensorInitializer([1.0, 1.0]), learnable=False)
    net_in = [points, tensor((1, 1, 2)), tensor((1, 4, 4)), tensor((1, 4)), tensor((1, 3, 4))]
    h_z = op(PICInputNetOp, [*net_in, tensor((1, 3))], shape=(1, 2, 1, 3), num_layers=2)
    c7 = g.add_op(
        o.CategoricalOp((8,), 1, 2, num_categories=3, param="logits", **s),
        params={"logits": h_z},
    )
    net = [points, quad_w, tensor((1, 2, 2)), tensor((1, 4, 4)), tensor((1, 4))]
    f_zz = op(
        PICInnerNetOp,
        [*net, tensor((1, 1, 4)), tensor((1, 1))],
        shape=(1, 2, 2),
        num_normalized=1,
        num_layers=2,
    )
    d7 = g.add_op(o.DenseOp(2, 2, **s), inputs=[c7], params={"weight": f_zz})
    prod = g.add_op(o.HadamardOp(2, 5, **s), inputs=[cpt, cp, ev, dg7, d7])
    reduced = op(o.ReduceOp, [tensor((1, 3, 2, 5))], shape=(1, 3, 2), axis=-1, kind="lse")
    mm = op(o.MatMulOp, [tensor((1, 2, 3)), reduced], shape=(1, 2, 2))
    dh = g.add_op(o.DenseOp(2, 2, **s), inputs=[prod], params={"weight": mm})
    mix_w = op(o.SoftmaxOp, [tensor((1, 2, 2))], shape=(1, 2, 2))
    mix = g.add_op(o.MixingOp(2, 2, **s), inputs=[prod, dh], params={"weight": mix_w})
    # The circuit algebra's ops (cirkit_ir.symbolic.functional), in a third output.
    conj = op(o.ConjugateOp, [tensor((1, 2, 1, 3))], shape=(1, 2, 1, 3))
    outer = op(o.OuterOp, [conj, tensor((1, 1, 1, 3))], shape=(1, 2, 1, 3), axis=-3)
    e7 = g.add_op(o.EmbeddingOp((7,), 1, 2, num_states=3, **s), params={"weight": outer})
    gram = op(o.GramOp, [tensor((1, 2, 1, 3)), tensor((1, 1, 1, 3))], shape=(1, 2, 1))
    gram_value = op(o.ReduceOp, [gram], shape=(1, 2), axis=-1, kind="prod")
    gram_const = g.add_op(o.ConstantOp(2, **s), params={"value": gram_value})
    poly = op(
        o.PolynomialProductOp, [tensor((1, 1, 1, 2)), tensor((1, 2, 1, 2))], shape=(1, 2, 1, 3)
    )
    poly_diff = op(o.PolynomialDifferentialOp, [poly], shape=(1, 2, 1, 2), order=1)
    p8 = g.add_op(o.PolynomialOp((8,), 1, 2, degree=1, **s), params={"coeff": poly_diff})
    gaussians = [tensor((1, 1, 1)), tensor((1, 1, 1)), tensor((1, 2, 1)), tensor((1, 2, 1))]
    g_mean = op(o.GaussianProductOp, gaussians, shape=(1, 2, 1), output="mean")
    g_std = op(o.GaussianProductOp, gaussians, shape=(1, 2, 1), output="stddev")
    g9 = g.add_op(o.GaussianOp((9,), 1, 2, **s), params={"mean": g_mean, "stddev": g_std})
    g_norm = op(o.GaussianProductOp, gaussians, shape=(1, 2), output="normalizer")
    norm_const = g.add_op(o.ConstantOp(2, **s), params={"value": g_norm})
    table = op(o.BinomialTableOp, [tensor((1, 2, 1))], shape=(1, 2, 1, 3), total_count=2)
    e10 = g.add_op(o.EmbeddingOp((10,), 1, 2, num_states=3, **s), params={"weight": table})
    algebra = g.add_op(o.HadamardOp(2, 6, **s), inputs=[e7, gram_const, p8, g9, norm_const, e10])
    kd_weights = {"weight1": tensor((1, 1, 2)), "weight2": tensor((1, 2, 1))}
    kd = g.add_op(o.KroneckerDenseOp(2, 1, 1, 2, **s), inputs=[algebra], params=kd_weights)
    g.set_outputs([mix, cp, kd])
    return g


DISCRETE_STATES = (3, 3, 2, 2)
"""The states of `discrete_circuit`'s variables: categorical(3), binomial(2), embedding(2),
categorical(2), small enough to enumerate."""


def discrete_circuit(
    sum_product_layer: str = "cp", seed: int = 42, num_classes: int = 1
) -> Circuit:
    """A random binary tree over one variable of each discrete input kind (an unnormalized
    embedding among them), two units per layer: queries are checked against enumeration."""
    from cirkit_ir.templates.parameterization import Parameterization

    specs = [
        {"name": "categorical", "args": {"num_categories": 3}},
        {"name": "binomial", "args": {"total_count": 2}},
        {
            "name": "embedding",
            "args": {"num_states": 2, "weight": Parameterization(activation="exp")},
        },
        {"name": "categorical", "args": {"num_categories": 2}},
    ]
    return circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers=specs,
        num_input_units=2,
        sum_product_layer=sum_product_layer,
        num_sum_units=2,
        num_classes=num_classes,
        seed=seed,
    )
