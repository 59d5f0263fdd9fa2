"""Lowering: a symbolic circuit becomes an IR graph, one op per layer and per parameter node.

Every op starts with one fold. Parameter nodes shared between layers are lowered once, so
sharing survives. Each tensor leaf gets a source id (its index in
`Circuit.tensor_parameters()`), which the backend uses to draw the same values however the
graph is later folded or fused. Each op's location names the layer it came from (its index
in `circuit.layers`, and for parameter ops the layer's slot). The graph declares the
circuit's variables and channels.
Lowering rules are registered per layer / parameter class, beside the classes they lower, so
user layers join in the same way (`layer_rule`, `param_rule`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cirkit_ir.errors import CompilationError
from cirkit_ir.gc_pause import gc_paused
from cirkit_ir.ir import ops
from cirkit_ir.ir.graph import Graph, Location
from cirkit_ir.symbolic import kronecker_dense as sl_kron
from cirkit_ir.symbolic import layers as sl
from cirkit_ir.symbolic import parameters as sp
from cirkit_ir.symbolic import polynomial as sp_poly
from cirkit_ir.symbolic.circuit import Circuit

LayerRule = Callable[[sl.Layer], ops.CircuitOp]
ParamRule = Callable[[sp.ParameterNode, tuple[int, ...]], ops.ParamOp]

LAYER_RULES: dict[type[sl.Layer], LayerRule] = {}
PARAM_RULES: dict[type[sp.ParameterNode], ParamRule] = {}


def layer_rule(cls: type[sl.Layer]) -> Callable[[LayerRule], LayerRule]:
    """Registers how a symbolic layer class lowers to a circuit op."""

    def register(rule: LayerRule) -> LayerRule:
        LAYER_RULES[cls] = rule
        return rule

    return register


def param_rule(cls: type[sp.ParameterNode]) -> Callable[[ParamRule], ParamRule]:
    """Registers how a symbolic parameter node lowers; the rule gets the folded shape."""

    def register(rule: ParamRule) -> ParamRule:
        PARAM_RULES[cls] = rule
        return rule

    return register


@functools.lru_cache(maxsize=4096)
def shared_op(op_class: type[ops.Op], *args: object, **attributes: object) -> ops.Op:
    """`op_class(*args, **attributes)`, one instance per distinct set of attributes: ops are
    immutable values, and a template lowers to thousands of equal ones (every 4x4 dense
    layer, every softmax over one shape); making each once is a tenth of lowering."""
    return op_class(*args, **attributes)


def _lookup(rules: dict, obj: object, what: str):
    rule = rules.get(type(obj))  # the common case: a rule for the class itself
    if rule is not None:
        return rule
    for cls in type(obj).__mro__:
        if cls in rules:
            return rules[cls]
    raise CompilationError(
        f"no lowering rule for the {what} {type(obj).__name__}; register one with"
        f" cirkit_ir.ir.lower.{'layer_rule' if what == 'layer' else 'param_rule'}"
    )


# -- layers ------------------------------------------------------------------------------------


def _input_attrs(layer: sl.InputLayer) -> dict[str, object]:
    return {
        "variables": tuple(layer.scope),
        "num_channels": layer.num_channels,
        "num_units": layer.num_output_units,
    }


@layer_rule(sl.CategoricalLayer)
def _categorical(layer: sl.CategoricalLayer) -> ops.CircuitOp:
    param = next(iter(layer.params))
    return ops.CategoricalOp(
        **_input_attrs(layer), num_categories=layer.num_categories, param=param
    )


@layer_rule(sl.BinomialLayer)
def _binomial(layer: sl.BinomialLayer) -> ops.CircuitOp:
    param = next(iter(layer.params))
    return ops.BinomialOp(**_input_attrs(layer), total_count=layer.total_count, param=param)


@layer_rule(sl.GaussianLayer)
def _gaussian(layer: sl.GaussianLayer) -> ops.CircuitOp:
    return ops.GaussianOp(**_input_attrs(layer))


@layer_rule(sl.EmbeddingLayer)
def _embedding(layer: sl.EmbeddingLayer) -> ops.CircuitOp:
    return ops.EmbeddingOp(**_input_attrs(layer), num_states=layer.num_states)


@layer_rule(sl.ConstantLayer)
def _constant(layer: sl.ConstantLayer) -> ops.CircuitOp:
    return ops.ConstantOp(layer.num_output_units)


@layer_rule(sl.EvidenceLayer)
def _evidence(layer: sl.EvidenceLayer) -> ops.CircuitOp:
    distribution = _lookup(LAYER_RULES, layer.layer, "layer")(layer.layer)
    return ops.EvidenceOp(distribution)


@layer_rule(sl.SumLayer)  # cirkit's sum layer; DenseLayer is its one-input form
def _dense(layer: sl.SumLayer) -> ops.CircuitOp:
    if layer.arity != 1:
        raise CompilationError(
            f"a SumLayer of {layer.arity} inputs (their units concatenated) has no IR op of its"
            " own: lower cirkit_ir.symbolic.lowerable(circuit), which writes it as dense and"
            " mixing layers (PipelineContext.compile does)"
        )
    return shared_op(ops.DenseOp, layer.num_input_units, layer.num_output_units)


@layer_rule(sl.MixingLayer)
def _mixing(layer: sl.MixingLayer) -> ops.CircuitOp:
    return shared_op(ops.MixingOp, layer.num_units, layer.arity)


@layer_rule(sl.HadamardLayer)
def _hadamard(layer: sl.HadamardLayer) -> ops.CircuitOp:
    return shared_op(ops.HadamardOp, layer.num_input_units, layer.arity)


@layer_rule(sl.KroneckerLayer)
def _kronecker(layer: sl.KroneckerLayer) -> ops.CircuitOp:
    return shared_op(ops.KroneckerOp, layer.num_input_units, layer.arity)


# -- parameters --------------------------------------------------------------------------------


def _negative_axis(node: sp.ParameterNode, axis: int) -> int:
    """Symbolic axes count from the front of one layer's shape; IR axes from the end."""
    rank = len(node.inputs[0].shape)
    return axis - rank if axis >= 0 else axis


@param_rule(sp.SoftmaxParameter)
def _softmax(node, shape):
    return shared_op(ops.SoftmaxOp, axis=_negative_axis(node, node.axis), shape=shape)


@param_rule(sp.LogSoftmaxParameter)
def _log_softmax(node, shape):
    return shared_op(ops.LogSoftmaxOp, axis=_negative_axis(node, node.axis), shape=shape)


@param_rule(sp.ReduceParameter)
def _reduce(node, shape):
    return ops.ReduceOp(axis=_negative_axis(node, node.axis), kind=node.kind, shape=shape)


@param_rule(sp.ClampParameter)
def _clamp(node, shape):
    return ops.ClampOp(vmin=node.vmin, vmax=node.vmax, shape=shape)


@param_rule(sp.ScaledSigmoidParameter)
def _scaled_sigmoid(node, shape):
    return ops.ScaledSigmoidOp(vmin=node.vmin, vmax=node.vmax, shape=shape)


def _attributeless(op_class: type[ops.ParamOp]) -> ParamRule:
    """The rule of a parameter node whose op has no attributes but its shape."""
    return lambda node, shape: shared_op(op_class, shape=shape)


param_rule(sp.ExpParameter)(_attributeless(ops.ExpOp))
param_rule(sp.LogParameter)(_attributeless(ops.LogOp))
param_rule(sp.SigmoidParameter)(_attributeless(ops.SigmoidOp))
param_rule(sp.SoftplusParameter)(_attributeless(ops.SoftplusOp))
param_rule(sp.MixingWeightParameter)(_attributeless(ops.MixingWeightOp))
param_rule(sp.KroneckerParameter)(_attributeless(ops.KroneckerParamOp))
param_rule(sp.MatMulParameter)(_attributeless(ops.MatMulOp))


class _Lowering:
    """The state of one lowering: the graph so far and the nodes already lowered."""

    def __init__(self, circuit: Circuit) -> None:
        self.graph = Graph(num_variables=circuit.num_variables, num_channels=circuit.num_channels)
        self.params: dict[int, int] = {}  # id(symbolic parameter node) -> IR node
        self.num_sources = 0

    def param(self, node: sp.ParameterNode, location: Location) -> int:
        """The IR node of a symbolic parameter node, lowering it (inputs first) if needed."""
        lowered = self.params.get(id(node))
        if lowered is not None:
            return lowered  # shared with an earlier layer or operand
        # Inputs first, in order: the walk of `ParameterNode.nodes()`.
        inputs = [self.param(child, location) for child in node.inputs]
        shape = (1, *node.shape)
        if isinstance(node, sp.TensorParameter):
            # Source ids count tensor leaves in the order `Circuit.tensor_parameters()` lists
            # them, which is the order this walk first meets them in (layers topologically,
            # their slots in order, each parameter graph inputs first).
            op: ops.ParamOp = ops.TensorOp(
                node.initializer,
                node.learnable,
                node.tensor_dtype,
                shape=shape,
                sources=(self.num_sources,),
            )
            self.num_sources += 1
        else:
            op = _lookup(PARAM_RULES, node, "parameter")(node, shape)
        lowered = self.params[id(node)] = self.graph.add_op(op, inputs=inputs, location=location)
        return lowered


def lower(circuit: Circuit) -> Graph:
    """The IR of `circuit`: one single-fold op per layer, parameters as parameter ops.

    `graph.location(node)` maps every op back to the symbolic layer it came from (its index
    in `circuit.layers`; for parameter ops, also the layer's slot they were lowered for).
    """
    # Lowering allocates tens of thousands of objects and frees none of them: the cyclic
    # garbage collector would rescan the growing heap over and over (half of the time).
    with gc_paused():
        return _lower(circuit)


def _lower(circuit: Circuit) -> Graph:
    state = _Lowering(circuit)
    graph = state.graph
    nodes: dict[sl.Layer, int] = {}
    for layer in circuit.topological_ordering():
        op = _lookup(LAYER_RULES, layer, "layer")(layer)
        index = (circuit.layer_index(layer),)
        params = {
            name: state.param(root, Location(index, name)) for name, root in layer.params.items()
        }
        inputs = [nodes[child] for child in circuit.layer_inputs(layer)]
        nodes[layer] = graph.add_op(op, inputs=inputs, params=params, location=Location(index))
    graph.set_outputs(nodes[layer] for layer in circuit.outputs)
    return graph


param_rule(sp.ConjugateParameter)(_attributeless(ops.ConjugateOp))


@param_rule(sp.OuterParameter)
def _outer(node, shape):
    return ops.OuterOp(axis=_negative_axis(node, node.axis), shape=shape)


@layer_rule(sp_poly.PolynomialLayer)
def _polynomial(layer: sp_poly.PolynomialLayer) -> ops.CircuitOp:
    return ops.PolynomialOp(**_input_attrs(layer), degree=layer.degree)


param_rule(sp_poly.PolynomialProductParameter)(_attributeless(ops.PolynomialProductOp))


@param_rule(sp_poly.PolynomialDifferentialParameter)
def _polynomial_differential(node, shape):
    return ops.PolynomialDifferentialOp(order=node.order, shape=shape)


param_rule(sp.GramParameter)(_attributeless(ops.GramOp))


@param_rule(sp.GaussianProductParameter)
def _gaussian_product(node, shape):
    return ops.GaussianProductOp(output=node.output, shape=shape)


@layer_rule(sl_kron.KroneckerDenseLayer)
def _kronecker_dense(layer: sl_kron.KroneckerDenseLayer) -> ops.CircuitOp:
    (out1, in1), (out2, in2) = layer.weight1.shape, layer.weight2.shape
    return ops.KroneckerDenseOp(in1, in2, out1, out2)


@param_rule(sp.BinomialTableParameter)
def _binomial_table(node, shape):
    return ops.BinomialTableOp(total_count=node.total_count, logits=node.logits, shape=shape)
