"""Probabilistic integral circuits (PICs) and their quadrature materialization, `pc2qpc`.

A PIC is a circuit whose sums are integrals over continuous latent variables z in [-1, 1]:
an integral unit computes  int f(z_out, z_in) g(z_in) dz_in  and an input unit is a
distribution whose parameters are a function of z, p(x | z) with parameters h(z). The
functions are small MLPs over Fourier features of z (as in libcirkit 0.3.1):

- `PICInputNetParameter`: h(z) = W_L tanh(... tanh(W_1 [cos 2 pi z B; sin 2 pi z B] + b_1)) + b_L,
  the parameters of an input layer, one row per point;
- `PICInnerNetParameter`: f(z_1, ..., z_d) > 0 (a softplus at the end), evaluated on the grid
  of points, times the quadrature weights of the last `num_normalized` (integrated)
  arguments and divided by their sum: the sum weights of a dense layer, each row normalized.

Materializing (`pc2qpc`) replaces every integral by a quadrature rule with one unit per point:
the result, a QPC, is an ordinary tensorized circuit whose parameters are these nets
evaluated at the points. The nets' weights are tensor leaves like any other, so the QPC trains
end to end, and the nodes lower to IR parameter ops (`pic-input-net`, `pic-inner-net`), so
folding, printing and code generation handle them as they handle a softmax.

libcirkit's `pc2qpc` rewrites a compiled torch circuit in place; here it rewrites a symbolic
circuit into a new one (compile it as any other), with the same arguments and defaults.
Because the nets' tensors do not depend on the number of points, the same seed (or the same
held values) gives the same functions for any number of units: compiling `pc2qpc` of a
circuit built with K units approximates one PIC ever better as K grows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.quadrature import quadrature
from cirkit_ir.symbolic.builder import CircuitBuilder, rebuild
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import (
    ConstantInitializer,
    ConstantTensorInitializer,
    NormalInitializer,
    UniformInitializer,
)
from cirkit_ir.symbolic.layers import (
    DenseLayer,
    HadamardLayer,
    InputLayer,
    KroneckerLayer,
    Layer,
    MixingLayer,
    SumLayer,
)
from cirkit_ir.symbolic.parameters import ParameterNode, TensorParameter, UnaryParameter

SHARING = ("none", "f", "c")
"""How layers share nets: 'none' (each its own), 'f' (full: one net for all layers of a kind
and shape), 'c' (composite: shared Fourier features and hidden layers, a head per layer)."""


def _check_net(points: ParameterNode, coeff: ParameterNode, layers: tuple[ParameterNode, ...]):
    """The MLP's shapes chain: points (K,), coeff (d, F/2), then (W (o, i), b (o,)) pairs."""
    if len(points.shape) != 1 or len(coeff.shape) != 2:
        raise StructureError(
            f"a PIC net needs points of shape (K,) and Fourier coefficients (d, F/2), got"
            f" {points.shape} and {coeff.shape}"
        )
    if not layers or len(layers) % 2:
        raise StructureError(
            f"a PIC net's layers are (weight, bias) pairs, at least one; got {len(layers)} nodes"
        )
    width = 2 * coeff.shape[1]
    for i in range(0, len(layers), 2):
        weight, bias = layers[i].shape, layers[i + 1].shape
        if len(weight) != 2 or weight[1] != width or bias != weight[:1]:
            raise StructureError(
                f"PIC net layer {i // 2}: a weight (out, {width}) and a bias (out,) expected,"
                f" got {weight} and {bias}"
            )
        width = weight[0]
    return width


@attrs.frozen(eq=False)
class PICInputNetParameter(ParameterNode):
    """h(z_k) for each of the K `points`: shape (K, *features), the parameters of one input
    layer's K units (e.g. a categorical's (K, channels, categories) logits)."""

    name: ClassVar[str] = "pic-input-net"
    points: ParameterNode
    coeff: ParameterNode
    layers: tuple[ParameterNode, ...] = attrs.field(converter=tuple)
    features: tuple[int, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        out = _check_net(self.points, self.coeff, self.layers)
        if self.coeff.shape[0] != 1 or out != math.prod(self.features):
            raise StructureError(
                f"PICInputNetParameter: a net of one argument with {math.prod(self.features)}"
                f" outputs (features {self.features}) expected, got coefficients"
                f" {self.coeff.shape} and {out} outputs"
            )

    @property
    def inputs(self) -> tuple[ParameterNode, ...]:
        return (self.points, self.coeff, *self.layers)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.points.shape[0], *self.features)


@attrs.frozen(eq=False)
class PICInnerNetParameter(ParameterNode):
    """Sum weights from f(z_1, ..., z_d) on the grid of the K `points`.

    Shape (K^(d - n), K^n), n = `num_normalized`: rows index the free arguments, columns the
    integrated ones (the input units of a dense layer; over a Kronecker product of n inputs,
    their joint units). Entry [i, j] is f(z_i, z_j) w_j / sum_j' f(z_i, z_j') w_j', where w_j
    is the product of the quadrature `weights` of the points that make up j.
    """

    name: ClassVar[str] = "pic-inner-net"
    points: ParameterNode
    weights: ParameterNode
    coeff: ParameterNode
    layers: tuple[ParameterNode, ...] = attrs.field(converter=tuple)
    num_normalized: int = 1

    def __attrs_post_init__(self) -> None:
        out = _check_net(self.points, self.coeff, self.layers)
        d = self.coeff.shape[0]
        if out != 1 or self.weights.shape != self.points.shape:
            raise StructureError(
                f"PICInnerNetParameter: a net with one output and weights shaped as the points"
                f" {self.points.shape} expected, got {out} outputs and weights {self.weights.shape}"
            )
        if not 1 <= self.num_normalized <= d:
            raise StructureError(
                f"PICInnerNetParameter: num_normalized must be in 1..{d} (the net's arguments),"
                f" got {self.num_normalized}"
            )

    @property
    def inputs(self) -> tuple[ParameterNode, ...]:
        return (self.points, self.weights, self.coeff, *self.layers)

    @property
    def shape(self) -> tuple[int, ...]:
        k, d, n = self.points.shape[0], self.coeff.shape[0], self.num_normalized
        return (k ** (d - n), k**n)


# -- building nets -----------------------------------------------------------------------------


def _linear(fan_in: int, fan_out: int, bias: bool) -> tuple[ParameterNode, ParameterNode]:
    """A (weight, bias) pair drawn as torch's linear layers draw them, U(-1/sqrt(fan_in), ...)."""
    bound = 1.0 / math.sqrt(fan_in)
    weight = TensorParameter((fan_out, fan_in), UniformInitializer(-bound, bound))
    if not bias:
        return weight, TensorParameter((fan_out,), ConstantInitializer(0.0), learnable=False)
    return weight, TensorParameter((fan_out,), UniformInitializer(-bound, bound))


@attrs.frozen
class _NetOptions:
    net_dim: int
    bias: bool
    ff_dim: int
    ff_sigma: float
    learn_ff: bool


class _Nets:
    """Makes the nets of one `pc2qpc` call, sharing tensors as the sharing modes say."""

    def __init__(
        self, integration_method: str, options: _NetOptions, input_sharing: str, inner_sharing: str
    ) -> None:
        self.method = integration_method
        self.options = options
        self.sharing = {"input": input_sharing, "inner": inner_sharing}
        self.rules: dict[int, tuple[ParameterNode, ParameterNode]] = {}
        self.trunks: dict[tuple, tuple[ParameterNode, ...]] = {}
        self.whole: dict[tuple, ParameterNode] = {}

    def rule(self, nip: int) -> tuple[ParameterNode, ParameterNode]:
        """The points and weights of `nip` points: constant leaves, one pair per size."""
        if nip not in self.rules:
            z, w = quadrature(self.method, nip)
            self.rules[nip] = tuple(  # type: ignore[assignment]
                TensorParameter((nip,), ConstantTensorInitializer(v), learnable=False)
                for v in (z, w)
            )
        return self.rules[nip]

    def _trunk(self, kind: str, key: tuple, num_dim: int, hidden: int) -> tuple[ParameterNode, ...]:
        """Fourier coefficients and the hidden (weight, bias) pairs of a net of `num_dim`
        arguments, shared by the nets of one `key` under 'c' sharing."""
        if self.sharing[kind] == "c" and key in self.trunks:
            return self.trunks[key]
        o = self.options
        coeff = TensorParameter(
            (num_dim, o.ff_dim // 2), NormalInitializer(0.0, o.ff_sigma), learnable=o.learn_ff
        )
        layers: list[ParameterNode] = []
        width = o.ff_dim
        for _ in range(hidden):
            layers += _linear(width, o.net_dim, o.bias)
            width = o.net_dim
        trunk = self.trunks[key] = (coeff, *layers)
        return trunk

    def _shared(self, kind: str, key: tuple, make: Callable[[], ParameterNode]) -> ParameterNode:
        if self.sharing[kind] != "f":
            return make()
        if key not in self.whole:
            self.whole[key] = make()
        return self.whole[key]

    def input_net(self, slot: str, shape: tuple[int, ...]) -> ParameterNode:
        """h(z) for the leaf of an input layer's `slot`, of shape (K, *features): one hidden
        layer, as libcirkit's. Nets of different slots (a mean, a stddev) share nothing."""

        def make() -> ParameterNode:
            coeff, *hidden = self._trunk("input", ("input", slot), 1, 1)
            head = _linear(self.options.net_dim, math.prod(shape[1:]), self.options.bias)
            return PICInputNetParameter(self.rule(shape[0])[0], coeff, (*hidden, *head), shape[1:])

        return self._shared("input", ("input", slot, shape), make)

    def inner_net(self, nip: int, num_dim: int, num_normalized: int) -> ParameterNode:
        """Sum weights from f of `num_dim` arguments: two hidden layers, as libcirkit's."""

        def make() -> ParameterNode:
            coeff, *hidden = self._trunk("inner", ("inner", num_dim), num_dim, 2)
            head = _linear(self.options.net_dim, 1, self.options.bias)
            points, weights = self.rule(nip)
            return PICInnerNetParameter(points, weights, coeff, (*hidden, *head), num_normalized)

        return self._shared("inner", ("inner", nip, num_dim, num_normalized), make)


# -- pc2qpc --------------------------------------------------------------------------------------


def _replace_leaf(root: ParameterNode, net: Callable[[tuple[int, ...]], ParameterNode]):
    """`root` with its tensor leaf replaced by a net of the leaf's shape; `root` must be the
    leaf or a chain of one-input ops over it (a softmax, a scaled sigmoid, ...)."""
    if isinstance(root, TensorParameter):
        return net(root.shape)
    if isinstance(root, UnaryParameter):
        return attrs.evolve(root, x=_replace_leaf(root.x, net))
    raise StructureError(
        f"pc2qpc replaces an input layer's parameter leaf by a net, but its parameter is a"
        f" {type(root).__name__}, not a tensor or one-input ops over one"
    )


def pc2qpc(
    pc: Circuit,
    integration_method: str,
    net_dim: int = 128,
    bias: bool = True,
    input_sharing: str = "f",
    inner_sharing: str = "c",
    ff_dim: int | None = None,
    ff_sigma: float = 1.0,
    learn_ff: bool = False,
) -> Circuit:
    """The quadrature circuit (QPC) of the PIC with the structure of `pc`.

    Each layer's units are the integration points of its latent variable (`integration_method`
    as `cirkit_ir.quadrature` names it, on [-1, 1]). Input layers get their parameter leaf
    replaced by a `PICInputNetParameter` (any one-input ops above it are kept: a softmax stays
    a softmax). Dense layers (and one-input `SumLayer`s) get `PICInnerNetParameter` weights:
    f(z_out, z_in), or f(z_out, z_1, ..., z_n) over a Kronecker product of n inputs, with no
    z_out when the layer has one unit (the root). Mixing layers get fixed uniform weights,
    hadamard and Kronecker layers stay. Every layer's units must be its inputs' (one grid
    per latent), except for a one-unit output.

    Args and defaults are libcirkit 0.3.1's: `net_dim` the hidden width, `bias`, the sharing
    modes ('none', 'f' full, 'c' composite; see `SHARING`), `ff_dim` the number of Fourier
    features (even; `net_dim` if None), `ff_sigma` their scale, `learn_ff` whether they train.
    """
    if not isinstance(pc, Circuit):
        raise OptionError(f"pc2qpc takes a symbolic Circuit, got {type(pc).__name__}")
    quadrature(integration_method, 4)  # an unknown method fails here, before any work
    for what, value in (("input_sharing", input_sharing), ("inner_sharing", inner_sharing)):
        if value not in SHARING:
            raise OptionError(f"{what} must be one of {SHARING}, got {value!r}")
    ff_dim = net_dim if ff_dim is None else ff_dim
    for what, value in (("net_dim", net_dim), ("ff_dim", ff_dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise OptionError(f"{what} must be a positive int, got {value!r}")
    if ff_dim % 2:
        raise OptionError(
            f"ff_dim must be even (cosines and sines of ff_dim / 2 projections), got {ff_dim}"
        )
    if not (isinstance(ff_sigma, (int, float)) and ff_sigma > 0):
        raise OptionError(f"ff_sigma must be a positive number, got {ff_sigma!r}")
    options = _NetOptions(net_dim, bool(bias), ff_dim, float(ff_sigma), bool(learn_ff))
    nets = _Nets(integration_method, options, input_sharing, inner_sharing)

    def replace(layer: Layer, inputs: tuple[Layer, ...], builder: CircuitBuilder) -> Layer | None:
        if isinstance(layer, InputLayer):
            params = {
                slot: _replace_leaf(root, functools.partial(nets.input_net, slot))
                for slot, root in layer.params.items()
            }
            return builder.add(attrs.evolve(layer, **params), inputs)
        if isinstance(layer, SumLayer) and layer.arity == 1:
            weight = nets.inner_net(*_integral_shape(layer, inputs[0]))
            dense = DenseLayer(layer.num_input_units, layer.num_output_units, weight=weight)
            return builder.add(dense, inputs)
        if isinstance(layer, MixingLayer):
            uniform = ConstantInitializer(1.0 / layer.arity)
            weight = TensorParameter((layer.num_units, layer.arity), uniform, learnable=False)
            return builder.add(MixingLayer(layer.num_units, layer.arity, weight=weight), inputs)
        if isinstance(layer, (HadamardLayer, KroneckerLayer)):
            return None
        raise StructureError(
            f"pc2qpc cannot turn a {type(layer).__name__} into an integral: it handles input,"
            " dense (one-input sum), mixing, hadamard and Kronecker layers"
        )

    return rebuild(pc, replace)


def _integral_shape(layer: SumLayer, child: Layer) -> tuple[int, int, int]:
    """(points, arguments of f, integrated arguments) of a dense layer reading `child`."""
    if isinstance(child, KroneckerLayer):
        nip, integrated = child.num_input_units, child.arity
    else:
        nip, integrated = layer.num_input_units, 1
    out = layer.num_output_units
    if out not in (1, nip):
        raise StructureError(
            f"pc2qpc needs one grid per latent: a sum layer of {out} units over inputs of"
            f" {nip} units; build the circuit with equal input and sum units"
        )
    return nip, integrated + (out > 1), integrated


def net_state(qpc: Circuit, state: Mapping[int, Any]) -> dict[int, Any]:
    """The entries of `state` (values by source id, e.g. `TorchCircuit.symbolic_state()`)
    that are `qpc`'s net tensors, leaving out its constants (quadrature points and weights,
    fixed mixing weights, zero biases), which `pc2qpc` makes for each number of points.

    QPCs materialized from one structure with different numbers of units list their tensors
    in the same order, and only the constants change shape, so this state loads
    into any of them (`load_symbolic_state(..., strict=False)`): train with few points,
    evaluate with many.
    """
    leaves = qpc.tensor_parameters()
    return {
        source: value
        for source, value in state.items()
        if not isinstance(leaves[source].initializer, _CONSTANTS)
    }


_CONSTANTS = (ConstantInitializer, ConstantTensorInitializer)
