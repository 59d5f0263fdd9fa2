"""Symbolic circuits as JSON: layers, their wiring and scopes, and shared parameter graphs.

    {"layers": [{"type": "cirkit_ir.symbolic.layers.CategoricalLayer", "fields": {...}}, ...],
     "in_layers": [[], [0, 1], ...], "outputs": [7],
     "parameters": [{"type": "cirkit_ir.symbolic.parameters.TensorParameter", "fields": {...}}]}

Every layer, parameter node and initializer is an attrs class: it is written as its type and
its constructor arguments, read back by calling that constructor (which checks them again).
Parameter nodes are written once and referenced by number, so parameters that layers share
stay shared. Values that a graph holds live in its initializers (a `ConstantTensorInitializer`
keeps its array as JSON text), so they travel too. Factories (`probs_factory`, ...) only fill
empty parameter slots at construction; the slots they filled are written instead.

Types are looked up among the classes already defined (subclasses of `Layer`, `ParameterNode`
and `Initializer`), never imported by name: a JSON file cannot make the loader run code.
"""

from __future__ import annotations

from typing import Any

import attrs

from cirkit_ir.errors import SerializationError
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import Initializer
from cirkit_ir.symbolic.layers import Layer
from cirkit_ir.symbolic.parameters import ParameterNode
from cirkit_ir.symbolic.scope import Scope

_BASES = (Layer, ParameterNode, Initializer)


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _known_types() -> dict[str, type]:
    """Every defined subclass of the serializable bases, by module and qualified name."""
    found: dict[str, type] = {}
    stack: list[type] = list(_BASES)
    while stack:
        cls = stack.pop()
        if _type_name(cls) not in found:
            found[_type_name(cls)] = cls
            stack.extend(cls.__subclasses__())
    return found


def _init_fields(cls: type) -> list[attrs.Attribute]:
    return [f for f in attrs.fields(cls) if f.init and not f.name.endswith("_factory")]


# -- writing -------------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.parameters: list[dict[str, Any]] = []
        self.numbers: dict[int, int] = {}

    def obj(self, value: Any) -> dict[str, Any]:
        cls = type(value)
        return {
            "type": _type_name(cls),
            "fields": {f.alias: self.value(getattr(value, f.name)) for f in _init_fields(cls)},
        }

    def value(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return {"float": repr(value)}  # exact, and inf / nan without JSON extensions
        if isinstance(value, tuple | list):
            return {"tuple": [self.value(v) for v in value]}
        if isinstance(value, Scope):
            return {"scope": sorted(value)}
        if isinstance(value, ParameterNode):
            return {"parameter": self.parameter(value)}
        if isinstance(value, Layer | Initializer):
            return {"object": self.obj(value)}
        raise SerializationError(
            f"cannot write {type(value).__name__} {value!r} as JSON: a symbolic circuit holds"
            " numbers, strings, tuples, scopes, parameter graphs, initializers and layers"
        )

    def parameter(self, node: ParameterNode) -> int:
        for each in node.nodes():  # inputs first, so a reader builds them first
            if id(each) not in self.numbers:
                self.numbers[id(each)] = len(self.parameters)
                self.parameters.append(self.obj(each))
        return self.numbers[id(node)]


def circuit_to_json(circuit: Circuit) -> dict[str, Any]:
    """The circuit as a JSON-ready dict (see the module docstring)."""
    if not isinstance(circuit, Circuit):
        raise SerializationError(f"expected a symbolic Circuit, got {type(circuit).__name__}")
    writer = _Writer()
    index = {id(layer): i for i, layer in enumerate(circuit.layers)}
    layers = [writer.obj(layer) for layer in circuit.layers]
    return {
        "layers": layers,
        "in_layers": [[index[id(i)] for i in circuit.layer_inputs(x)] for x in circuit.layers],
        "outputs": [index[id(layer)] for layer in circuit.outputs],
        "parameters": writer.parameters,
    }


# -- reading -------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, parameters: list[Any]) -> None:
        self.types = _known_types()
        self.parameters: list[ParameterNode] = []
        for entry in parameters:
            node = self.obj(entry, ParameterNode)
            self.parameters.append(node)

    def obj(self, entry: Any, base: type) -> Any:
        if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
            raise SerializationError(f"expected an object with 'type' and 'fields', got {entry!r}")
        cls = self.types.get(entry.get("type"))  # type: ignore[arg-type]
        if cls is None or not issubclass(cls, base):
            what = getattr(base, "__name__", "layer or initializer")
            raise SerializationError(
                f"unknown {what} type {entry.get('type')!r}: import the module that"
                " defines it before loading"
            )
        kwargs = {name: self.value(v) for name, v in entry["fields"].items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise SerializationError(f"cannot rebuild {cls.__name__}: {error}") from None

    def value(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            raise SerializationError(f"unexpected value {value!r}")
        ((key, inner),) = value.items()
        if key == "float":
            return float(inner)
        if key == "tuple":
            return tuple(self.value(v) for v in inner)
        if key == "scope":
            return Scope(inner)
        if key == "parameter":
            if not isinstance(inner, int) or not 0 <= inner < len(self.parameters):
                raise SerializationError(f"parameter reference {inner!r} points nowhere")
            return self.parameters[inner]
        if key == "object":
            return self.obj(inner, (Layer, Initializer))  # type: ignore[arg-type]
        raise SerializationError(f"unexpected value {value!r}")


def circuit_from_json(data: Any) -> Circuit:
    """The circuit that `circuit_to_json` wrote."""
    try:
        reader = _Reader(data["parameters"])
        layers = [reader.obj(entry, Layer) for entry in data["layers"]]
        in_layers = {
            layer: [layers[i] for i in inputs]
            for layer, inputs in zip(layers, data["in_layers"], strict=True)
        }
        outputs = [layers[i] for i in data["outputs"]]
    except (KeyError, IndexError, TypeError, ValueError) as error:
        if isinstance(error, SerializationError):
            raise
        raise SerializationError(
            f"not a symbolic circuit: {type(error).__name__}: {error}"
        ) from None
    return Circuit(layers, in_layers, outputs)
