"""The torch kernels of IR ops: which module computes each op, registered beside the module.

    @register_layer(DenseOp)
    class TorchDenseLayer(TorchLayer): ...

    @register_parameter_node(SoftmaxOp)
    class TorchSoftmaxParameter(TorchParameterNode): ...

`codegen` builds every op's module with `annotated_layer_class(op).from_op(...)` or
`parameter_node_class(op).from_op(...)`; nothing lists ops by hand, so an op defined outside
the package compiles once its kernel is registered. An op class without a kernel of its own
uses the kernel of its nearest registered base class. Several kernels may compute one op
class under different names (`kernel=`); "eager" (plain torch) is the one every op has.
Which one computes a circuit op is part of the IR: the `select-kernels` pass chooses
(`choose_layer_kernel`) and records it as the op's `kernel` attribute, which codegen reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs

from cirkit_ir.errors import CompilationError, KernelError, OptionError
from cirkit_ir.ir.ops import CircuitOp, Op, ParamOp

EAGER = "eager"
NATIVE = "native"
"""The fused C++ kernels (`backends.torch.native`), built on first use; CPU."""
TRITON = "triton"
"""The fused Triton kernels (`backends.torch.triton_kernels`), compiled at first launch; GPU."""
KERNEL_CHOICES = ("auto", NATIVE, TRITON, EAGER)
"""`PipelineContext(kernels=...)`: "auto" takes a fused kernel where one computes the op on
the circuit's device, can run here and measured faster; "native" or "triton" that family
wherever it computes the op (an error where it cannot run); "eager" only plain torch (for
debugging)."""


def _native_available() -> bool:
    from cirkit_ir.backends.torch import native

    return native.available()


def _triton_available() -> bool:
    from cirkit_ir.backends.torch import triton_kernels

    return triton_kernels.available()


@attrs.frozen
class KernelFamily:
    """Fused kernels registered under one name (`register_layer(op, kernel=name)`), each
    layer class declaring the `devices` it computes on; `available()` says whether they can
    run in this process, `missing` what to do when a user asks for them where they cannot."""

    name: str
    available: Callable[[], bool]
    missing: str


FUSED_KERNELS = (
    KernelFamily(
        NATIVE,
        _native_available,
        "the native torch kernels could not be built (see the warning)",
    ),
    KernelFamily(
        TRITON,
        _triton_available,
        "Triton is not installed (it ships with torch's CUDA wheels; `pip install triton`)",
    ),
)
"""The fused kernel families, in the order 'auto' tries them."""


def _family(name: str) -> KernelFamily | None:
    return next((family for family in FUSED_KERNELS if family.name == name), None)


_LAYERS: dict[type, dict[str, type]] = {}
_PARAMETER_NODES: dict[type, dict[str, type]] = {}

Kernel = TypeVar("Kernel", bound=type)


def _register(
    table: dict[type, dict[str, type]], base: type, op_class: type, kernel: str, what: str
) -> Callable[[Kernel], Kernel]:
    if not (isinstance(op_class, type) and issubclass(op_class, base)):
        raise OptionError(
            f"{what} kernels register for a subclass of {base.__name__}, got {op_class!r}"
        )

    def register(cls: Kernel) -> Kernel:
        table.setdefault(op_class, {})[kernel] = cls
        cls.op_class = op_class  # type: ignore[attr-defined]
        return cls

    return register


def register_layer(op_class: type[CircuitOp], kernel: str = EAGER) -> Callable[[Kernel], Kernel]:
    """Class decorator: the `TorchLayer` subclass computes circuit ops of `op_class`."""
    return _register(_LAYERS, CircuitOp, op_class, kernel, "layer")


def register_parameter_node(
    op_class: type[ParamOp], kernel: str = EAGER
) -> Callable[[Kernel], Kernel]:
    """Class decorator: the `TorchParameterNode` subclass computes parameter ops of
    `op_class`."""
    return _register(_PARAMETER_NODES, ParamOp, op_class, kernel, "parameter")


def _lookup(table: dict[type, dict[str, type]], op: Op, kernel: str, what: str) -> type:
    for cls in type(op).__mro__:
        found = table.get(cls)
        if found is not None and kernel in found:
            return found[kernel]
    raise CompilationError(
        f"the torch backend has no {kernel} {what} kernel for op '{op.name}'"
        f" ({type(op).__name__}); register one with"
        f" cirkit_ir.backends.torch.kernels.register_{what.replace(' ', '_')}"
    )


def layer_class(op: CircuitOp, kernel: str = EAGER) -> type:
    """The layer class that computes circuit op `op`."""
    return _lookup(_LAYERS, op, kernel, "layer")


def parameter_node_class(op: ParamOp, kernel: str = EAGER) -> type:
    """The parameter node class that computes parameter op `op`."""
    return _lookup(_PARAMETER_NODES, op, kernel, "parameter node")


def registered_kernels() -> dict[type, dict[str, type]]:
    """op class -> {kernel name: module class}, layers and parameter nodes together."""
    merged = {cls: dict(k) for cls, k in _LAYERS.items()}
    merged.update({cls: dict(k) for cls, k in _PARAMETER_NODES.items()})
    return merged


def layer_kernels(op: CircuitOp) -> dict[str, type]:
    """kernel name -> layer class, every kernel registered for `op`'s class or a base of it
    (the nearest registration of a name wins)."""
    found: dict[str, type] = {}
    for cls in reversed(type(op).__mro__):
        found.update(_LAYERS.get(cls, {}))
    return found


def annotated_layer_class(op: CircuitOp) -> type:
    """The layer class of the kernel that `op`'s annotation names (`op.kernel`, set by the
    `select-kernels` pass; None names the eager kernel): what codegen builds.

    `KernelError` when no kernel of that name is registered for the op, or when it does not
    `supports` the op. A native kernel whose extension cannot be built on this machine (a
    graph annotated elsewhere, a saved circuit) computes with the eager kernel, as the
    extension's warning says.
    """
    name = op.kernel or EAGER
    found = layer_kernels(op)
    cls = found.get(name)
    if cls is None:
        raise KernelError(
            f"kernel={name}: the torch backend has no kernel of that name for {op.name} ops;"
            f" it has {', '.join(sorted(found)) or 'none'} (select-kernels chooses one)"
        )
    supports = getattr(cls, "supports", None)
    if supports is not None and not supports(op, op.semiring):
        raise KernelError(
            f"kernel={name} does not compute this {op.name} op (semiring"
            f" {op.semiring or 'unset'}, {op.arity} operand(s)); drop the annotation for the"
            " eager kernel, or let select-kernels choose"
        )
    family = _family(name)
    if family is not None and not family.available():
        return found.get(EAGER, cls)
    return cls


def choose_layer_kernel(
    op: CircuitOp, semiring_name: str | None, kernels: str = "auto", device: str = "cpu"
) -> str:
    """The kernel name that computes circuit op `op` under the `kernels` choice on `device`
    (a device type): the first fused kernel (`FUSED_KERNELS`; under 'auto' any, else the one
    named) registered for the op that computes on that device (`devices`, by default CPU
    only), says it `supports` the op and can run here; under 'auto' only where it is also
    `preferred` (measured faster than eager there). Else eager. What the `select-kernels`
    pass records on each op."""
    if kernels not in KERNEL_CHOICES:
        raise OptionError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
    if kernels == EAGER:
        return EAGER
    registered = layer_kernels(op)
    for family in FUSED_KERNELS:
        forced = kernels == family.name
        cls = registered.get(family.name)
        if cls is None or not (forced or kernels == "auto"):
            continue
        devices = getattr(cls, "devices", ("cpu",))
        if device not in devices:
            if forced:
                raise KernelError(
                    f"kernels='{family.name}': the {family.name} {op.name} kernel computes on"
                    f" {', '.join(devices)}, not on {device}; use kernels='auto' or 'eager'"
                )
            continue
        supports = getattr(cls, "supports", None)
        if supports is not None and not supports(op, semiring_name):
            continue
        preferred = getattr(cls, "preferred", None)
        if not forced and preferred is not None and not preferred(op):
            continue
        if family.available():
            return family.name
        if forced:
            raise CompilationError(
                f"kernels='{family.name}': {family.missing}; use kernels='auto' or 'eager'"
            )
    return EAGER
