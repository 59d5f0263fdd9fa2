"""The circuit algebra, with libcirkit's names: ``import cirkit_ir.symbolic.functional as SF``.

Every operator takes symbolic circuits and returns a new one; the operands are never changed.
The new circuit's layers read the operands' parameter nodes (or are the operands' layers), so
compiling a circuit that holds both (`concatenate`) trains them together. Preconditions are
checked before anything is built, and a missing one raises `PropertyError` naming the layer.
Per-layer rules live in `cirkit_ir.symbolic.operators`, where user layers register theirs.

The keyword `registry` is accepted for libcirkit's signatures and ignored: the rules are
registered globally, per layer class.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

import attrs

from cirkit_ir.errors import OptionError, PropertyError, StructureError
from cirkit_ir.symbolic import operators
from cirkit_ir.symbolic.builder import CircuitBuilder, rebuild
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import ConstantInitializer, ConstantTensorInitializer
from cirkit_ir.symbolic.layers import (
    EvidenceLayer,
    HadamardLayer,
    InputLayer,
    Layer,
    ProductLayer,
)
from cirkit_ir.symbolic.parameters import TensorParameter
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.symbolic.sum_layers import expand_sum_layers
from cirkit_ir.validators import short_repr

__all__ = ["concatenate", "conjugate", "differentiate", "evidence", "integrate", "multiply"]


def _name(circuit: Circuit, layer: Layer, which: str = "") -> str:
    return f"{which}layer #{circuit.layer_index(layer)} ({type(layer).__name__})"


def _circuit(sc: object, what: str = "sc") -> Circuit:
    if not isinstance(sc, Circuit):
        raise OptionError(f"{what} must be a symbolic Circuit, got {short_repr(sc)}")
    return sc


def _check_smooth_decomposable(sc: Circuit, operator: str, which: str = "") -> None:
    layer = sc.smoothness_violation()
    if layer is not None:
        raise PropertyError(
            f"{operator} needs a smooth circuit: {_name(sc, layer, which)} sums inputs over"
            " different scopes; smooth it first (cirkit_ir.symbolic.smooth)"
        )
    layer = sc.decomposability_violation()
    if layer is not None:
        raise PropertyError(
            f"{operator} needs a decomposable circuit: {_name(sc, layer, which)} multiplies"
            " inputs that share variables"
        )


def _rebuild(sc: Circuit, replace) -> Circuit:
    """`rebuild`, with every kept layer whose inputs were replaced copied (its parameter
    nodes shared): a layer object has one wiring, so that the result and `sc` can be
    concatenated into one circuit (a squared circuit beside its partition function)."""

    def copy_if_rewired(layer: Layer, inputs: tuple, builder: CircuitBuilder) -> Layer | None:
        replaced = replace(layer, inputs, builder)
        if replaced is None and inputs != sc.layer_inputs(layer):
            return builder.add(attrs.evolve(layer), inputs)
        return replaced

    return rebuild(sc, copy_if_rewired)


# -- concatenate -----------------------------------------------------------------------------


def concatenate(scs: Sequence[Circuit], *, registry: object = None) -> Circuit:
    """A circuit whose outputs are those of `scs`, in order. Layers (and so parameters)
    shared between the circuits are shared in the result: compiling it evaluates, say, a
    squared circuit and its partition function with the same tensors."""
    if isinstance(scs, Circuit) or not isinstance(scs, Iterable):
        raise OptionError(f"concatenate takes a list of circuits, got {short_repr(scs)}")
    circuits = [_circuit(sc, f"scs[{i}]") for i, sc in enumerate(scs)]
    if not circuits:
        raise OptionError("concatenate needs at least one circuit")
    builder = CircuitBuilder()
    added: dict[Layer, tuple[Layer, ...]] = {}
    for sc in circuits:
        for layer in sc.layers:
            inputs = sc.layer_inputs(layer)
            if layer not in added:
                added[layer] = inputs
                builder.add(layer, inputs)
            elif added[layer] != inputs:
                raise StructureError(
                    f"{_name(sc, layer)} reads different layers in two of the circuits; a"
                    " layer has one set of inputs (build the circuits with distinct layers)"
                )
    return builder.build([out for sc in circuits for out in sc.outputs])


# -- integrate -------------------------------------------------------------------------------


def _scope_of(sc: Circuit, scope: object) -> Scope:
    if scope is None:
        return sc.scope
    try:
        variables = Scope(scope)
    except Exception as error:  # noqa: BLE001 - any malformed scope is the user's option
        raise OptionError(
            f"scope must be a Scope or variable ids, got {short_repr(scope)}"
        ) from error
    unknown = sorted(set(variables) - set(sc.scope))
    if unknown:
        raise OptionError(
            f"cannot integrate variables {unknown}: the circuit is over {sc.scope}; integrate"
            " a subset of its variables"
        )
    return variables


def integrate(
    sc: Circuit, scope: Scope | Iterable[int] | None = None, *, registry: object = None
) -> Circuit:
    """The circuit of `sc` summed (integrated) over the variables of `scope` (all by default).

    Each input layer over an integrated variable becomes the layer its integral rule gives
    (a constant layer); the rest of the circuit is kept, layers and parameters shared.
    Needs a smooth and decomposable circuit.
    """
    sc = _circuit(sc)
    _check_smooth_decomposable(sc, "integrate")
    variables = _scope_of(sc, scope)
    targets = [layer for layer in sc.input_layers if not layer.scope.isdisjoint(variables)]
    rules = {}
    for layer in targets:
        rule = operators.lookup(operators.INTEGRATE_RULES, type(layer))
        if rule is None:
            raise PropertyError(
                f"no integral rule for {_name(sc, layer)}; register one with"
                " cirkit_ir.symbolic.operators.integrate_rule"
            )
        rules[layer] = rule
    return _rebuild(
        sc, lambda layer, inputs, b: b.add(rules[layer](layer)) if layer in rules else None
    )


# -- evidence --------------------------------------------------------------------------------


def _observation(sc: Circuit, variable: int, value: object) -> TensorParameter:
    channels = sc.num_channels
    values = value if isinstance(value, tuple | list) else (value,)
    if len(values) != channels or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):
        raise OptionError(
            f"the observation of variable {variable} must be {channels} number(s), one per"
            f" channel, got {short_repr(value)}"
        )
    for layer in sc.input_layers:
        top = layer.max_value
        if variable in layer.scope and top is not None:
            bad = [v for v in values if not math.isfinite(v) or not 0 <= round(v) <= top]
            if bad:
                raise OptionError(
                    f"the observation {short_repr(value)} of variable {variable} is out of range:"
                    f" its {type(layer).__name__} accepts 0..{top}"
                )
    init = (
        ConstantInitializer(float(values[0]))
        if channels == 1
        else ConstantTensorInitializer([float(v) for v in values])
    )
    return TensorParameter((channels,), init, learnable=False)


def evidence(
    sc: Circuit, obs: Mapping[int, numbers.Number | tuple], *, registry: object = None
) -> Circuit:
    """`sc` with the variables of `obs` observed: each input layer over an observed variable
    becomes an evidence layer, that layer at the value (a number, or one per channel)."""
    sc = _circuit(sc)
    if not isinstance(obs, Mapping):
        raise OptionError(f"obs must map variable ids to values, got {short_repr(obs)}")
    unknown = sorted(v for v in obs if not isinstance(v, int) or v not in sc.scope)
    if unknown:
        raise OptionError(f"cannot observe variables {unknown}: the circuit is over {sc.scope}")
    observations = {v: _observation(sc, v, value) for v, value in obs.items()}

    def replace(layer: Layer, inputs: tuple, builder: CircuitBuilder) -> Layer | None:
        if isinstance(layer, InputLayer):
            (variable,) = layer.scope
            if variable in observations:
                return builder.add(EvidenceLayer(layer, observations[variable]))
        return None

    return _rebuild(sc, replace)


# -- multiply --------------------------------------------------------------------------------


class _Product:
    """The state of one `multiply`: layer pairs already multiplied, and the builder."""

    def __init__(self, sc1: Circuit, sc2: Circuit) -> None:
        self.sc1, self.sc2 = sc1, sc2
        self.builder = CircuitBuilder()
        self.done: dict[tuple[Layer, Layer], Layer] = {}

    def pair(self, l1: Layer, l2: Layer) -> Layer:
        key = (l1, l2)
        found = self.done.get(key)
        if found is not None:
            return found
        sc1, sc2 = self.sc1, self.sc2
        where = f"{_name(sc1, l1, 'first circuit ')} and {_name(sc2, l2, 'second circuit ')}"
        if sc1.layer_scope(l1) != sc2.layer_scope(l2):
            raise PropertyError(
                f"the circuits are not compatible: {where} have scopes {sc1.layer_scope(l1)}"
                f" and {sc2.layer_scope(l2)}, which multiply needs equal"
            )
        rule = operators.lookup_pair(type(l1), type(l2))
        if rule is None:
            raise PropertyError(
                f"no product rule for {where}; the circuits must have the same structure"
                " (register a rule with cirkit_ir.symbolic.operators.multiply_rule)"
            )
        layer, pairs = rule(l1, l2)
        in1, in2 = sc1.layer_inputs(l1), sc2.layer_inputs(l2)
        if isinstance(l1, HadamardLayer) and isinstance(l2, HadamardLayer):
            pairs = self._by_scope(in1, in2, where)
        inputs = [
            self.builder.add(item)
            if isinstance(item, Layer)
            else self.pair(in1[item[0]], in2[item[1]])
            for item in pairs
        ]
        self.done[key] = self.builder.add(layer, inputs)
        return self.done[key]

    def _by_scope(self, in1, in2, where: str) -> list[tuple[int, int]]:
        """Pairs the inputs of two element-wise products by scope (their order is free)."""
        position = {self.sc2.layer_scope(c): j for j, c in enumerate(in2)}
        pairs = []
        for i, child in enumerate(in1):
            j = position.get(self.sc1.layer_scope(child))
            if j is None or len(in1) != len(in2):
                raise PropertyError(
                    f"the circuits are not compatible: {where} split their scope differently"
                    f" ({[str(self.sc1.layer_scope(c)) for c in in1]} against"
                    f" {[str(self.sc2.layer_scope(c)) for c in in2]})"
                )
            pairs.append((i, j))
        return pairs


def multiply(sc1: Circuit, sc2: Circuit, *, registry: object = None) -> Circuit:
    """The product of two compatible circuits (output i times output i), as one circuit.

    Both must be smooth and decomposable and split their scopes the same way (products of
    the same scopes, in any order); their layers are multiplied pairwise by the rules of
    `cirkit_ir.symbolic.operators`, so the result has K1 * K2 units where they had K1 and K2.
    Multiplying a circuit by its `conjugate` gives a squared (sum-of-squares) circuit.
    """
    sc1, sc2 = _circuit(sc1, "sc1"), _circuit(sc2, "sc2")
    _check_smooth_decomposable(sc1, "multiply", "first circuit ")
    _check_smooth_decomposable(sc2, "multiply", "second circuit ")
    if len(sc1.outputs) != len(sc2.outputs):
        raise PropertyError(
            f"multiply pairs the outputs of the circuits, but they have {len(sc1.outputs)} and"
            f" {len(sc2.outputs)}"
        )
    if sc1.num_channels != sc2.num_channels:
        raise PropertyError(
            f"the circuits read {sc1.num_channels} and {sc2.num_channels} channels; multiply"
            " needs circuits over the same data"
        )
    product = _Product(expand_sum_layers(sc1), expand_sum_layers(sc2))
    outputs = [
        product.pair(o1, o2)
        for o1, o2 in zip(product.sc1.outputs, product.sc2.outputs, strict=True)
    ]
    return product.builder.build(outputs)


# -- conjugate -------------------------------------------------------------------------------


def conjugate(sc: Circuit, *, registry: object = None) -> Circuit:
    """The complex conjugate of `sc`: every complex parameter conjugated (the layers with
    real parameters are kept as they are). Needs no structural property."""
    sc = _circuit(sc)
    rules = {}
    for layer in sc.layers:
        rule = operators.lookup(operators.CONJUGATE_RULES, type(layer))
        if rule is None:
            raise PropertyError(
                f"no conjugate rule for {_name(sc, layer)}; register one with"
                " cirkit_ir.symbolic.operators.conjugate_rule"
            )
        rules[layer] = rule

    def replace(layer: Layer, inputs: tuple, builder: CircuitBuilder) -> Layer | None:
        new = rules[layer](layer)
        return None if new is layer else builder.add(new, inputs)

    return _rebuild(sc, replace)


# -- differentiate ---------------------------------------------------------------------------


def differentiate(sc: Circuit, order: int = 1, *, registry: object = None) -> Circuit:
    """The `order`-th partial derivatives of `sc` w.r.t. each of its variables, as libcirkit
    lays them out: for each output, one output per variable (in increasing id), then the
    output itself.

    A product depends on a variable through one input only (decomposability), so its
    derivative is the product with that input differentiated; sums are linear; input layers
    follow their registered rule (polynomials have one; discrete layers have none).
    Needs a smooth and decomposable circuit.
    """
    sc = _circuit(sc)
    if isinstance(order, bool) or not isinstance(order, int) or order <= 0:
        raise OptionError(f"the order of differentiation must be a positive int, got {order!r}")
    _check_smooth_decomposable(sc, "differentiate")
    for layer in sc.input_layers:
        if operators.lookup(operators.DIFFERENTIATE_RULES, type(layer)) is None:
            raise PropertyError(
                f"no derivative rule for {_name(sc, layer)} (a discrete or unsupported"
                " input); register one with cirkit_ir.symbolic.operators.differentiate_rule"
            )
    builder = CircuitBuilder()
    kept: dict[Layer, Layer] = {}
    diffs: dict[Layer, dict[int, Layer]] = {}  # layer -> variable -> its derivative
    for layer in sc.topological_ordering():
        inputs = sc.layer_inputs(layer)
        kept[layer] = builder.add(layer, inputs)
        if isinstance(layer, InputLayer):
            rule = operators.lookup(operators.DIFFERENTIATE_RULES, type(layer))
            (variable,) = layer.scope
            diffs[layer] = {variable: builder.add(rule(layer, order))}
        elif isinstance(layer, ProductLayer):
            diffs[layer] = {}
            for position, child in enumerate(inputs):
                for variable, child_diff in diffs[child].items():
                    rewired = list(inputs)
                    rewired[position] = child_diff
                    diffs[layer][variable] = builder.add(attrs.evolve(layer), rewired)
        elif inputs:  # a sum: the same weights over the inputs' derivatives
            diffs[layer] = {
                variable: builder.add(
                    attrs.evolve(layer), [diffs[child][variable] for child in inputs]
                )
                for variable in sorted(diffs[inputs[0]])
            }
        else:  # a constant or evidence layer: no variable
            diffs[layer] = {}
    outputs = []
    for out in sc.outputs:
        outputs += [diffs[out][v] for v in sorted(diffs[out])] + [kept[out]]
    return builder.build(outputs)


# -- expectation -----------------------------------------------------------------------------


def expectation(
    p: Circuit, f: Circuit, scope: Scope | Iterable[int] | None = None, *, registry: object = None
) -> Circuit:
    """int p(x) f(x) dx over the variables of `scope` (all by default): the expectation
    E_p[f] when p is normalized, and Z E_p[f] otherwise (divide by `integrate(p, scope)`, as
    `cirkit_ir.backends.torch.queries.ExpectationQuery` does, also given evidence).

    It is `integrate(multiply(p, f), scope)`: p and f must be compatible (smooth,
    decomposable, splitting their scopes the same way) and their input layers need product
    and integral rules (categorical, binomial and embedding tables; gaussians).
    """
    return integrate(multiply(p, f), scope)


__all__ += ["expectation"]
