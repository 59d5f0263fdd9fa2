"""`TorchCircuit`: the compiled circuit, an `nn.Module` whose forward is generated source.

`codegen` writes three functions: `parameter_stream`, a generator that evaluates every
parameter graph node once and yields each layer's `prepare`d parameters in layer order;
`evaluate_parameters`, all of them at once; and `forward` (input checks, then one statement
per layer and per fold gather, each layer taking `next(P)` from `parameter_stream()`).
`circuit.code` holds their source, compiled once with `exec` (the source stays in `linecache`,
for tracebacks, until the circuit is collected). `circuit.graph` is the IR it was generated
from, with the current parameter values held: print it to read what the code computes, or
compile it again with other options. Streaming makes each layer's
parameters just before the layer and frees them after it, so a forward holds the largest
layer's prepared parameters at a time, not all of them (at 64 units the seed circuit's
softmax-normalized Tucker weights are 1.6 GB in all, 0.8 GB for the largest layer).

Parameter caching: in eval mode under `torch.no_grad()` the prepared parameters are reused
between forwards (the stream then reads the cache). The cache is keyed by the storage and
version counter of every leaf tensor, so optimizer steps, `load_state_dict`,
`load_symbolic_state`, in-place edits and `.to()` invalidate it, and so do `train()` /
`eval()`. Edits through `tensor.data` bypass version counters: call `invalidate_cache()`
after those (or set `cache_parameters = False`).
"""

from __future__ import annotations

import itertools
import linecache
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cirkit_ir.backends.torch.checks import InputSpec, check_input
from cirkit_ir.backends.torch.diagnose import diagnose
from cirkit_ir.backends.torch.exact import recompute_underflowed
from cirkit_ir.backends.torch.layers.base import TorchLayer, materialized_parameters
from cirkit_ir.backends.torch.parameters import TorchParameterNode, TorchTensorParameter
from cirkit_ir.backends.torch.semirings import Semiring, start_watch, stop_watch
from cirkit_ir.errors import InputError, OptionError

if TYPE_CHECKING:
    from cirkit_ir.ir.graph import Graph

_ids = itertools.count()


def _check_dtype(dtype: torch.dtype) -> None:
    """float32 and float64 (complex64/128 for complex circuits) only: half precision has
    too few bits and too small a range for the packed log-space form (results off by nats)."""
    if dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        raise OptionError(
            f"a compiled circuit computes in float32 or float64, not {dtype}; compile with"
            " PipelineContext(dtype=torch.float32) (or float64), or cast its outputs instead"
        )


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


class TorchCircuit(nn.Module):
    """A compiled circuit: (B, C, D) data -> (B, num_outputs, num_units) values.

    Values are in the semiring's representation: log-likelihoods for 'lse-sum', complex
    logs for 'complex-lse-sum', likelihoods for 'sum-product'.
    """

    def __init__(
        self,
        layers: Sequence[TorchLayer],
        param_nodes: Sequence[TorchParameterNode],
        buffers: Mapping[str, Tensor],
        code: str,
        *,
        input_spec: InputSpec,
        semiring: Semiring,
        num_outputs: int,
        device: torch.device | str | None = None,
        graph: Graph | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        # Plain tuples for the generated code (faster than ModuleList indexing); they hold
        # the same module objects, which `.to()` moves in place.
        self._layer_tuple = tuple(layers)
        self._node_tuple = tuple(param_nodes)
        self._leaves = tuple(n for n in param_nodes if isinstance(n, TorchTensorParameter))
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor.to(device), persistent=False)
        self.register_buffer("_anchor", torch.empty(0, device=device), persistent=False)
        self.input_spec = input_spec
        self.semiring = semiring
        self.num_outputs = num_outputs
        self.cache_parameters = True
        self.check_nan = True
        # Float32 log semirings recompute the batch entries whose sums underflowed exactly
        # (`exact`); float64 and sum-product have no wider form to fall back to.
        self.exact = semiring.log_space
        self._cache: tuple[tuple[int, ...], Any] | None = None
        self.code = code
        self._graph = graph
        self._compile()

    # -- generated code ---------------------------------------------------------------------------

    def _compile(self) -> None:
        filename = f"<cirkit-ir generated code {next(_ids)}>"
        linecache.cache[filename] = (len(self.code), None, self.code.splitlines(True), filename)
        weakref.finalize(self, linecache.cache.pop, filename, None)
        namespace: dict[str, Any] = {"torch": torch}
        exec(compile(self.code, filename, "exec"), namespace)  # noqa: S102 - our own source
        self._forward_fn: Callable[..., Tensor] = namespace["forward"]
        self._parameters_fn: Callable[..., tuple] = namespace["evaluate_parameters"]
        self._stream_fn: Callable[..., Iterator[tuple]] = namespace["parameter_stream"]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_forward_fn", None)
        state.pop("_parameters_fn", None)
        state.pop("_stream_fn", None)
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("check_nan", True)  # pickled before these checks existed
        state.setdefault("exact", state["semiring"].log_space)
        super().__setstate__(state)
        self._compile()

    def forward(self, x: Tensor | None = None) -> Tensor:
        """(B, C, D) data ((B, D) when C == 1) -> (B, num_outputs, num_units). A circuit over
        no variable (a partition function) may be called without data, as in libcirkit: it
        then computes one row.

        Raises `NumericalError` naming the layer, parameter, fold and index at fault when the
        result holds NaN (one `isnan().any()` over the B outputs; `check_nan = False` skips it).
        """
        if x is None and self.input_spec.num_variables == 0:
            x = torch.zeros(1, self.input_spec.num_channels, 0, device=self._anchor.device)
        watched = self.exact and isinstance(x, Tensor) and x.dim() > 0
        if watched:
            previous = start_watch(x.shape[0])
            try:
                out = self._forward_fn(self, x)
            finally:
                smallest = stop_watch(previous)
            out = recompute_underflowed(self, x, out, smallest)
        else:
            out = self._forward_fn(self, x)
        if self.check_nan and torch.isnan(out).any():
            raise diagnose(self, x)
        return out

    def check_input(self, x: object) -> Tensor:
        """`x` as a (B, C, D) tensor, or an `InputError` saying what is wrong."""
        return check_input(x, self.input_spec, self._anchor.device)

    # -- parameters -------------------------------------------------------------------------------

    def _cached(self) -> bool:
        return not (self.training or torch.is_grad_enabled() or not self.cache_parameters)

    def parameter_stream(self) -> Iterator[tuple]:
        """Each layer's prepared parameters in layer order, evaluated as they are asked for
        (or read from the cache, which is then filled first)."""
        if self._cached():
            return iter(self.parameter_values())
        return self._stream_fn(self)

    def parameter_values(self) -> tuple:
        """Every layer's prepared parameters as tensors (cached in eval mode under no_grad)."""
        if not self._cached():
            with materialized_parameters():
                return self._parameters_fn(self)
        key = tuple(v for n in self._leaves for v in (n.value.data_ptr(), n.value._version))
        if self._cache is None or self._cache[0] != key:
            with materialized_parameters():
                self._cache = (key, self._parameters_fn(self))
        return self._cache[1]

    def invalidate_cache(self) -> None:
        self._cache = None

    def train(self, mode: bool = True) -> TorchCircuit:
        self._cache = None
        return super().train(mode)

    def to(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """`nn.Module.to`, refusing dtypes the circuit cannot compute exactly in."""
        _device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is not None:
            _check_dtype(dtype)
        return super().to(*args, **kwargs)

    def half(self) -> TorchCircuit:
        _check_dtype(torch.float16)
        return self

    def bfloat16(self) -> TorchCircuit:
        _check_dtype(torch.bfloat16)
        return self

    def type(self, dst_type):  # type: ignore[no-untyped-def]
        if isinstance(dst_type, torch.dtype):
            _check_dtype(dst_type)
        return super().type(dst_type)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        self._cache = None
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[no-untyped-def]
        self._cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def symbolic_state(self) -> dict[int, Tensor]:
        """Values of the symbolic circuit's tensors, keyed by source id (copies, detached)."""
        state: dict[int, Tensor] = {}
        for leaf in self._leaves:
            for fold, source in enumerate(leaf.sources):
                state.setdefault(source, leaf.value[fold].detach().clone())
        return state

    def load_symbolic_state(self, state: Mapping[int, Tensor], strict: bool = True) -> None:
        """Copies values keyed by source id (e.g. another compilation's `symbolic_state()`)."""
        self._cache = None
        with torch.no_grad():
            for leaf in self._leaves:
                missing = [s for s in leaf.sources if s not in state]
                if missing and strict:
                    raise InputError(
                        f"the state has no value for source(s) {missing[:8]}; it must come from"
                        " a circuit compiled from the same symbolic circuit (or pass strict=False)"
                    )
                for fold, source in enumerate(leaf.sources):
                    if source not in state:
                        continue
                    value = torch.as_tensor(state[source])
                    if tuple(value.shape) != leaf.shape[1:]:
                        raise InputError(
                            f"source {source} has shape {tuple(value.shape)} in the state, but"
                            f" {leaf.shape[1:]} here: the circuits differ"
                        )
                    leaf.value[fold].copy_(value)

    # -- structure --------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the circuit computes (follows `.to(...)`, like its parameters)."""
        return self._anchor.device

    @property
    def graph(self) -> Graph:
        """The IR this circuit was generated from, holding the circuit's current parameter
        values (a copy: edit it freely, then compile it again, e.g. with `codegen`)."""
        if self._graph is None:
            raise InputError("this circuit was built without its IR graph")
        graph = self._graph.clone()
        graph.values.update(self.symbolic_state())
        return graph

    @property
    def properties(self):  # -> cirkit_ir.properties.StructuralProperties
        """The structural properties of the IR this circuit computes (libcirkit's names)."""
        from cirkit_ir.properties import structural_properties

        if self._graph is None:
            raise InputError("this circuit was built without its IR graph")
        return structural_properties(self._graph)

    def topological_ordering(self) -> Iterator[TorchLayer]:
        """The layers, producers before consumers."""
        return iter(self.layers)

    @property
    def num_channels(self) -> int:
        return self.input_spec.num_channels

    @property
    def num_variables(self) -> int:
        return self.input_spec.num_variables

    def __repr__(self) -> str:
        lines = [f"({i}): {_addindent(repr(layer), 2)}" for i, layer in enumerate(self.layers)]
        return "TorchCircuit(\n  " + "\n  ".join(lines) + "\n)"
