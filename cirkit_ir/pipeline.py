"""`PipelineContext`: the one-call compiler, wiring lowering, a pass pipeline and a backend.

It only wires stages that a user can also run by hand:

    graph = cirkit_ir.ir.lower(cirkit_ir.symbolic.lowerable(symbolic_circuit))
    pipeline = cirkit_ir.passes.default_pipeline("sum-product", False, False)
    graph = cirkit_ir.passes.PassManager.parse(pipeline).run(graph)
    circuit = cirkit_ir.backends.torch.codegen(graph, seed=0)

`with ctx: compile(sc)` compiles with the innermost active context, and without one with
`PipelineContext.from_default_backend()`. The defaults are libcirkit 0.3.1's: a context made
with no flags computes probabilities unfolded and unoptimized ('sum-product'), while
`compile` outside any context uses the default backend's 'lse-sum', folded and optimized.
"""

from __future__ import annotations

import contextvars
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

import attrs
import torch

from cirkit_ir.errors import OptionError, PropertyError
from cirkit_ir.gc_pause import gc_paused
from cirkit_ir.ir import Graph, lower, verify
from cirkit_ir.ir.types import SEMIRINGS
from cirkit_ir.passes.manager import DEFAULT_VERIFY, check_option
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.lowerable import lowerable

BACKENDS: tuple[str, ...] = ("torch",)

_ACTIVE: contextvars.ContextVar[tuple[PipelineContext, ...]] = contextvars.ContextVar(
    "cirkit_ir_pipeline_contexts", default=()
)


def _one_of(allowed: tuple[str, ...], what: str):
    def check(instance: object, attribute: attrs.Attribute, value: str) -> None:
        if value not in allowed:
            raise OptionError.choose(what, value, allowed)

    return check


def _flag(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, bool):
        raise OptionError(f"{attribute.name} must be True or False, got {value!r}")


def _seed(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError(f"seed must be an int or None, got {value!r}")


def _pipeline(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise OptionError(
            f"pipeline must be a pipeline string such as 'fold,lower-semiring{{semiring=lse-sum}}'"
            f" or None, got {type(value).__name__}"
        )


def _dtype(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in (torch.float32, torch.float64):
        raise OptionError(f"dtype must be torch.float32 or torch.float64, got {value!r}")


def _device(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """A device torch can name and this machine has: checked here rather than at the end
    of the first compilation, where torch would fail moving the module."""
    if value is None:
        return
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as error:
        raise OptionError(
            f"device {value!r} is not a torch device ({error}); use e.g. 'cpu' or 'cuda:0'"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise OptionError(f"device {value!r}: this machine has no CUDA device; use 'cpu'")
        if device.index is not None and device.index >= count:
            raise OptionError(
                f"device {value!r}: this machine has {count} CUDA device(s), cuda:0 to"
                f" cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"device {value!r}: MPS is not available on this machine; use 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps") and not _available(device.type):
        raise OptionError(
            f"device {value!r}: torch knows the device type {device.type!r}, but this machine"
            " cannot compute on it; use 'cpu'"
            + (" or 'cuda'" if torch.cuda.is_available() else "")
        )


def _available(device_type: str) -> bool:
    """Whether a device type other than cpu, cuda and mps can run a circuit here: its torch
    module says it is available ('meta' holds no values, so a circuit cannot run on it)."""
    module = getattr(torch, device_type, None)
    is_available = getattr(module, "is_available", None)
    try:
        return bool(callable(is_available) and is_available())
    except Exception:  # noqa: BLE001 - a backend that cannot even say is not usable
        return False


def _print_ir(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """The pass manager's check, made when the context is: a misspelt pass name fails here,
    not silently print nothing."""
    check_option(attribute.name, value)


@attrs.define
class PipelineContext:
    """Compilation flags and the pipeline they stand for.

    The defaults are libcirkit 0.3.1's: 'sum-product', unfolded, unoptimized;
    `from_default_backend()` gives the fast settings ('lse-sum', folded, optimized).

    `semiring`: how sums and products compute (`sum-product`, `lse-sum`, `complex-lse-sum`).
    `fold`: stack same-type ops at equal depth into one folded op. `optimize`: fuse layers
    (kronecker + dense -> tucker, ...). `pipeline`: a custom pass pipeline string that
    replaces the one the flags stand for. `seed`: draw parameters so that the same circuit
    compiled with any flags computes the same function. `dtype`, `device`: of the compiled
    module. `verify`: verify the IR after every pass (default `passes.manager.DEFAULT_VERIFY`,
    off; the final IR is always verified).
    `print_ir_before` / `print_ir_after` (pass names or 'all'), `print_ir_to` (a stream or a
    directory), `statistics` and `timing` (print the per-pass table after each compile) are
    handed to the pass manager's instruments.
    `kernels`: 'auto' (fused kernels where they apply on `device` and can run here: the C++
    ones on CPU once the extension builds, the Triton ones on CUDA GPUs where Triton is
    installed; else eager), 'native' or 'triton' (that family; fail if it cannot run) or
    'eager' (plain torch, for debugging); the pipeline ends with
    `select-kernels{kernels=...,device=...}`, which records the choice in the IR.
    `contraction_dtype`: 'bfloat16' makes native Tucker layers multiply in bfloat16 when no
    gradient is recorded (faster, ~1e-3 relative error per layer; see the README).
    """

    backend: str = attrs.field(default="torch", validator=_one_of(BACKENDS, "backend"))
    semiring: str = attrs.field(default="sum-product", validator=_one_of(SEMIRINGS, "semiring"))
    fold: bool = attrs.field(default=False, validator=_flag)
    optimize: bool = attrs.field(default=False, validator=_flag)
    pipeline: str | None = attrs.field(default=None, kw_only=True, validator=_pipeline)
    seed: int | None = attrs.field(default=None, kw_only=True, validator=_seed)
    dtype: torch.dtype = attrs.field(default=torch.float32, kw_only=True, validator=_dtype)
    device: torch.device | str | None = attrs.field(default=None, kw_only=True, validator=_device)
    verify: bool = attrs.field(default=DEFAULT_VERIFY, kw_only=True, validator=_flag)
    print_ir_before: tuple[str, ...] | str = attrs.field(
        default=(), kw_only=True, validator=_print_ir
    )
    print_ir_after: tuple[str, ...] | str = attrs.field(
        default=(), kw_only=True, validator=_print_ir
    )
    print_ir_to: IO[str] | str | None = attrs.field(default=None, kw_only=True)
    statistics: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    timing: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    kernels: str = attrs.field(
        default="auto", kw_only=True, validator=_one_of(("auto", "native", "triton", "eager"), "kernels")
    )
    contraction_dtype: str = attrs.field(
        default="float32",
        kw_only=True,
        validator=_one_of(("float32", "bfloat16"), "contraction_dtype"),
    )
    last_pass_manager: Any = attrs.field(default=None, init=False, repr=False)
    _optimized: Graph | None = attrs.field(default=None, init=False, repr=False, eq=False)

    @classmethod
    def from_default_backend(cls, **options: Any) -> PipelineContext:
        """The default backend's context (libcirkit's name): torch, 'lse-sum', folded and
        optimized; `options` are the keyword options (seed, dtype, ...)."""
        return cls("torch", "lse-sum", fold=True, optimize=True, **options)

    # -- stages ---------------------------------------------------------------------------------

    @property
    def pipeline_string(self) -> str:
        """The pass pipeline this context runs: the flags' (or `pipeline`), then
        `select-kernels{kernels=...}` (unless `pipeline` runs it), so that the kernel choice
        is part of the IR that dumps show and `circuit.graph` keeps."""
        from cirkit_ir.passes import default_pipeline

        if self.pipeline is not None:
            passes = self.pipeline
            if re.search(r"(?<![\w-])select-kernels(?![\w-])", passes):
                return passes  # the custom pipeline chooses the kernels itself
        else:
            passes = default_pipeline(self.semiring, fold=self.fold, optimize=self.optimize)
        device = torch.device(self.device).type if self.device is not None else "cpu"
        on = "" if device == "cpu" else f",device={device}"
        select = f"select-kernels{{kernels={self.kernels}{on}}}"
        return f"{passes},{select}" if passes.strip() else select

    def pass_manager(self):
        """The configured `passes.PassManager` (a fresh one per compilation)."""
        from cirkit_ir.passes import PassManager

        return PassManager.parse(
            self.pipeline_string,
            verify=self.verify,
            print_ir_before=self.print_ir_before,
            print_ir_after=self.print_ir_after,
            print_ir_to=self.print_ir_to if self.print_ir_to is not None else sys.stdout,
            statistics=self.statistics,
        )

    def lower(self, circuit: Circuit) -> Graph:
        """The unoptimized IR of a symbolic circuit: of `cirkit_ir.symbolic.lowerable(circuit)`,
        which writes cirkit's sum layers as dense and mixing layers and smooths the circuit
        (same values). Decomposability is checked here; smoothing raises a `PropertyError`
        where it cannot be done."""
        if not isinstance(circuit, Circuit):
            raise OptionError(
                f"compile expects a cirkit_ir.symbolic.Circuit (or an IR Graph), got"
                f" {type(circuit).__name__}"
            )
        if not circuit.is_decomposable:  # cached on the (immutable) circuit, as `is_smooth`
            layer = circuit.decomposability_violation()
            assert layer is not None
            raise PropertyError(
                f"the circuit is not decomposable: layer #{circuit.layer_index(layer)}"
                f" ({type(layer).__name__}) multiplies inputs that share variables; compiled"
                " circuits need decomposable products"
            )
        return lower(lowerable(circuit))

    def optimize_graph(self, graph: Graph) -> Graph:
        """Runs the pass pipeline on a graph (in place), verifies the result and returns it."""
        self.last_pass_manager = self.pass_manager()
        graph = self.last_pass_manager.run(graph)
        if not self.verify or not self.last_pass_manager.passes:
            # (with `verify`, the pass manager checked after every pass)
            verify(graph, pass_name=str(self.last_pass_manager))
        if self.timing:
            print(self.timing_report(), file=self._report_stream())
        if self.statistics:
            print(self.last_pass_manager.statistics_report(), file=self._report_stream())
        return graph

    def compile_graph(
        self,
        graph: Graph,
        *,
        seed: int | None = None,
        parameters: Mapping[int, torch.Tensor] | None = None,
    ):
        """The backend module for an already optimized graph.

        `parameters` maps source ids (indices into `circuit.tensor_parameters()`) to values,
        e.g. another compiled circuit's `symbolic_state()`; sources not given are drawn.
        """
        from cirkit_ir.backends.torch import codegen

        seed = self.seed if seed is None else seed
        # `optimize_graph` verified the graph; a graph handed here directly is verified now.
        verified = self.last_pass_manager is not None and graph is self._optimized
        compiled = codegen(
            graph,
            seed=seed,
            dtype=self.dtype,
            device=self.device,
            verify=not verified,
            contraction_dtype=self.contraction_dtype,
        )
        if parameters is not None:
            compiled.load_symbolic_state(parameters, strict=False)
        return compiled

    def compile(
        self,
        circuit: Circuit | Graph,
        *,
        seed: int | None = None,
        parameters: Mapping[int, torch.Tensor] | None = None,
    ):
        """Symbolic circuit (or IR graph) -> backend module (a `TorchCircuit`).

        With `seed` (or the context's), or with `parameters` taken from another compiled
        circuit, the same symbolic circuit compiles to the same function whatever the flags.
        A graph (say a compiled circuit's `circuit.graph`, which holds its trained values)
        runs through this context's pipeline too, on a copy.
        """
        # One collector pause for the whole compilation, not one per phase: in a process
        # holding many objects (another circuit, a dataset), every collection between the
        # phases would walk all of them.
        with gc_paused():
            if isinstance(circuit, Graph):
                graph = circuit.clone()
            else:
                graph = self.lower(circuit)
            graph = self._optimized = self.optimize_graph(graph)
            return self.compile_graph(graph, seed=seed, parameters=parameters)

    def _report_stream(self) -> IO[str]:
        to = self.print_ir_to
        return to if to is not None and not isinstance(to, str) else sys.stdout

    def timing_report(self) -> str:
        """The per-pass timing table of the last compilation (with `timing=True`)."""
        if self.last_pass_manager is None:
            return "no compilation has run in this context yet"
        return self.last_pass_manager.timing_report()

    # -- `with ctx:` ------------------------------------------------------------------------------

    def __enter__(self) -> PipelineContext:
        _ACTIVE.set((*_ACTIVE.get(), self))
        return self

    def __exit__(self, *exc: object) -> None:
        stack = _ACTIVE.get()
        _ACTIVE.set(stack[:-1])


def current_context() -> PipelineContext:
    """The innermost `with PipelineContext(...)` block's context, or else the default
    backend's (`PipelineContext.from_default_backend()`, as in libcirkit)."""
    stack = _ACTIVE.get()
    return stack[-1] if stack else PipelineContext.from_default_backend()


def compile(  # noqa: A001 - the name the seed notebook uses
    circuit: Circuit,
    *,
    seed: int | None = None,
    parameters: Mapping[int, torch.Tensor] | None = None,
):
    """Compiles with the active pipeline context (see `PipelineContext.compile`)."""
    return current_context().compile(circuit, seed=seed, parameters=parameters)
