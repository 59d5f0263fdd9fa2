"""Side-by-side benchmark of cirkit-ir against libcirkit on the seed notebook's circuit.

The circuit is the one the seed notebook builds: a quad-graph region graph over 28x28
one-channel images, categorical inputs over 256 pixel values, tucker sum-product layers and
softmax-parameterized sum weights, with 4 units (and 32 and 64 units for the scaling rows).
Both libraries run in this one process, on the CPU, with torch's default number of threads
(or ``--threads``) and a batch of 256 images. Every timing alternates between the two
libraries (cirkit-ir, libcirkit, cirkit-ir, libcirkit, ...) so that a change in machine speed
hits both alike, and every reported figure is a median. A library stops repeating a
measurement once its runs add up to a minute. On a machine busy with other work, torch's
multi-threaded kernels wait for descheduled threads and single forwards can take 10-40x
longer at random; ``--threads 1`` then gives steady figures.

What is measured:

* compile time for each of the four fold/optimize flag combinations (the symbolic circuit is
  built once per library, outside the timing);
* the no-grad forward of each flag combination (fewer repeats for the slow unfolded ones);
* forward + backward of the mean negative log-likelihood, fold + optimize;
* forward and forward + backward with fold + optimize at more units (``--units``);
* peak memory (VmHWM) of a fresh process per library and configuration that imports the
  library, builds and compiles the circuit and runs one no-grad forward (``_bench_memory.py``);
* a values check: libcirkit's parameters are copied into cirkit-ir (layers are matched by
  their scopes) and both log-likelihoods are compared on the same batch, together with a
  float64 evaluation of the symbolic circuit (``cirkit_ir.reference``);
* the floors: the multiply-adds and bytes a fused forward cannot avoid, against the machine's
  float32 matmul FLOP/s and copy bandwidth, both measured here.

It prints one table (with the speedups the project aims at, met or missed) and writes every
sample to a JSON file.

    python examples/benchmark.py                     # everything (several minutes)
    python examples/benchmark.py --quick             # 4 units, 3 repeats, folded: a smoke test
    python examples/benchmark.py --skip-libcirkit    # cirkit-ir alone
    python examples/benchmark.py --units 4,32 --repeats 5 --json out.json
    python examples/benchmark.py --threads 1         # steadier on a machine busy with other work
    python examples/benchmark.py --device cuda       # on a GPU, with pyjuice beside them

With ``--device cuda`` the same circuit runs on the GPU instead: forward and forward + backward
at each size and the peak GPU memory of each library, for cirkit-ir (its Triton kernels where
Triton is installed, and eager), libcirkit and pyjuice
2.6.3 (its block-sparse Triton kernels, the fastest GPU circuit library we know of; the
``pyjuice`` extra, ``pip install -e ".[pyjuice]"``), which gets the same quad-graph circuit
through its public node API (`pyjuice_nodes`). It stops with a message when the machine has no
CUDA device or pyjuice is missing.

libcirkit (GPL-3.0) is an optional extra that is only called through its public API:
``pip install -e ".[bench]"`` installs it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

IMAGE_SHAPE = (1, 28, 28)
NUM_VARIABLES = 28 * 28
BATCH_SIZE = 256
SEED = 42
SEED_UNITS = 4  # the seed notebook's units: the flag sweep runs at this size
FLAG_COMBINATIONS = ((False, False), (False, True), (True, False), (True, True))
INSTALL_HINT = 'pip install -e ".[bench]"'
MEMORY_PROBE = Path(__file__).with_name("_bench_memory.py")
MEMORY_PROBE_MAX_COMPILE_S = 30.0  # other flag combinations are probed only when this cheap
DEFAULT_JSON = Path("bench-results") / "benchmark.json"
TIMEBOX_S = 60.0  # a library stops repeating a measurement once its runs add up to this
MAX_INTERLEAVED_BACKWARD_UNITS = 32  # larger backward passes run one library at a time
OURS, THEIRS = "cirkit_ir", "libcirkit"
EAGER = "cirkit_ir_eager"  # cirkit-ir with PipelineContext(kernels="eager"): no native kernels
PYJUICE = "pyjuice"
LABELS = {OURS: "cirkit-ir", THEIRS: "libcirkit", EAGER: "cirkit-ir eager", PYJUICE: "pyjuice"}
PYJUICE_HINT = 'pip install -e ".[pyjuice]"'
PYJUICE_MAX_BLOCK = 32  # pyjuice's node block size: the units, up to this (a power of 2)
QUIET_LOAD_PER_CPU = 0.25  # floors measured above this 1-minute load per CPU are flagged


# =============================================================================================
# The two libraries, behind one small interface


class LibraryMissing(RuntimeError):
    """A library the benchmark needs cannot be imported."""


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class _Library:
    """Building and compiling the seed circuit, the same calls in both libraries (each
    subclass sets its templates module, pipeline context class and sum weights)."""

    _templates: Any
    _context: Any
    _sum_weights: Any

    def build(self, units: int) -> Any:
        return self._templates.image_data(
            IMAGE_SHAPE,
            region_graph="quad-graph",
            input_layer="categorical",
            num_input_units=units,
            sum_product_layer="tucker",
            num_sum_units=units,
            sum_weight_param=self._sum_weights,
        )

    device: str = "cpu"

    def compile(self, symbolic: Any, fold: bool, optimize: bool) -> torch.nn.Module:
        context = self._context(backend="torch", semiring="lse-sum", fold=fold, optimize=optimize)
        return context.compile(symbolic).to(self.device)


class CirkitIR(_Library):
    """cirkit-ir, used exactly as the seed notebook uses it (imports say `cirkit_ir`), with
    its default kernels ('auto': the native ones where they build) or `kernels="eager"`."""

    def __init__(self, kernels: str = "auto") -> None:
        self.kernels = kernels
        self.key = EAGER if kernels == "eager" else OURS
        try:
            from cirkit_ir.pipeline import PipelineContext
            from cirkit_ir.templates import circuit_templates
        except ImportError as error:
            raise LibraryMissing(
                f"cannot import cirkit_ir ({error}); install it with `pip install -e .`"
            ) from error
        self._context = PipelineContext
        self._templates = circuit_templates
        self._sum_weights = "softmax"
        self.version = _version("cirkit-ir")

    def compile(self, symbolic: Any, fold: bool, optimize: bool) -> torch.nn.Module:
        context = self._context(
            backend="torch",
            semiring="lse-sum",
            fold=fold,
            optimize=optimize,
            kernels=self.kernels,
            device=self.device,
        )
        return context.compile(symbolic)


class LibCirkit(_Library):
    """libcirkit 0.3.1 (GPL-3.0), called through its public API only.

    Two differences from the notebook: the templates module is `data_modalities`, and the sum
    weights take a `Parameterization` instead of the string 'softmax'. Its circuits read
    (B, D) batches, which cirkit-ir also accepts, so both get the same tensor.
    """

    key = THEIRS

    def __init__(self) -> None:
        try:
            from cirkit.pipeline import PipelineContext
            from cirkit.templates import data_modalities
            from cirkit.templates.utils import Parameterization
        except ImportError as error:
            raise LibraryMissing(
                f"libcirkit is not installed ({error}). Install the benchmark extra with"
                f" `{INSTALL_HINT}` (libcirkit 0.3.1), or pass --skip-libcirkit to run"
                " cirkit-ir alone."
            ) from error
        self._context = PipelineContext
        self._templates = data_modalities
        self._sum_weights = Parameterization(activation="softmax", initialization="normal")
        self.version = _version("libcirkit")


def load_library(key: str) -> CirkitIR | LibCirkit:
    """The adapter of `key` ('cirkit_ir', 'cirkit_ir_eager' or 'libcirkit'); raises
    LibraryMissing."""
    if key == EAGER:
        return CirkitIR(kernels="eager")
    return {OURS: CirkitIR, THEIRS: LibCirkit}[key]()


def make_batch(batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """The benchmark batch: (B, 784) pixel values in [0, 256), the same in every process."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.randint(256, size=(batch_size, NUM_VARIABLES), generator=generator)


def seeded_compile(library: CirkitIR | LibCirkit, symbolic: Any, fold: bool, optimize: bool):
    """Compiles with torch's RNG seeded, so parameters are the same from run to run."""
    torch.manual_seed(SEED)
    return library.compile(symbolic, fold, optimize)


def forward_call(circuit: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            circuit(x)

    return forward


def forward_backward_call(circuit: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward_backward() -> None:
        loss = -circuit(x).mean()
        loss.backward()
        circuit.zero_grad(set_to_none=True)  # free the gradients before the other library runs

    return forward_backward


def config_name(fold: bool, optimize: bool) -> str:
    return f"fold={int(fold)} opt={int(optimize)}"


# =============================================================================================
# Results: one row per measurement, goals, and the printed table


@dataclass(frozen=True)
class Goal:
    """What the project aims at: libcirkit's figure over ours must reach `min_ratio`."""

    text: str
    min_ratio: float


SPEEDUP = {  # issue #18's goals (the unfolded forward's is older)
    "compile": Goal(">= 10x", 10.0),
    "forward": Goal(">= 10x", 10.0),
    "forward+backward": Goal(">= 8x", 8.0),
    "forward 32": Goal(">= 4x", 4.0),
    "forward+backward 32": Goal(">= 5x", 5.0),
    "forward 64": Goal(">= 4x", 4.0),
    "unfolded forward": Goal(">= 3x", 3.0),
    "memory 64": Goal("ours <= 0.35x", 1 / 0.35),
}
FLOOR_GOALS = {4: 3.0, 32: 1.5}
"""Units -> the most times the floor that cirkit-ir's fold + optimize forward should take."""


@dataclass
class Row:
    """One measurement of both libraries: samples (seconds or MB), errors, extra facts."""

    name: str
    unit: str  # "s" or "MB"
    goal: Goal | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        values = self.samples.get(key)
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        """libcirkit's median over ours (a speedup for times, a saving for memory)."""
        ours, theirs = self.median(OURS), self.median(THEIRS)
        if ours is None or theirs is None or ours <= 0:
            return None
        return theirs / ours

    def status(self) -> str:
        ratio = self.ratio()
        if self.goal is None:
            return ""
        if ratio is None:
            return "n/a"
        return "met" if ratio >= self.goal.min_ratio else "missed"

    def cell(self, key: str) -> str:
        if key in self.errors:
            return "error"
        value = self.median(key)
        if value is None:
            return "-"
        if self.unit == "MB":
            return f"{value:,.0f} MB"
        return format_seconds(value)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": {key: self.median(key) for key in self.samples},
            "samples": self.samples,
            "ratio_libcirkit_over_ours": self.ratio(),
            "goal": None if self.goal is None else self.goal.text,
            "goal_min_ratio": None if self.goal is None else self.goal.min_ratio,
            "status": self.status() or None,
            "errors": self.errors,
            **self.extra,
        }


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def format_table(rows: list[Row]) -> str:
    """The table; with the eager kernels measured too, their column and eager/ours."""
    eager = any(EAGER in row.samples or EAGER in row.errors for row in rows)
    pyjuice = any(PYJUICE in row.samples or PYJUICE in row.errors for row in rows)
    header: tuple[str, ...] = ("measurement", "libcirkit", "cirkit-ir")
    if eager:
        header += ("eager", "eager/ours")
    if pyjuice:
        header += ("pyjuice", "pyjuice/ours")
    header += ("libcirkit/ours", "goal", "status")
    lines = []
    for row in rows:
        ratio = row.ratio()
        if row.unit == "MB" and ratio is not None:
            ratio_text = f"{ratio:.2f}x (ours {1 / ratio:.2f}x)"
        else:
            ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
        goal = "" if row.goal is None else row.goal.text
        cells: tuple[str, ...] = (row.name, row.cell(THEIRS), row.cell(OURS))
        if eager:
            ours, theirs = row.median(OURS), row.median(EAGER)
            speedup = "-" if not ours or theirs is None else f"{theirs / ours:.2f}x"
            cells += (row.cell(EAGER), speedup)
        if pyjuice:
            ours, theirs = row.median(OURS), row.median(PYJUICE)
            speedup = "-" if not ours or theirs is None else f"{theirs / ours:.2f}x"
            cells += (row.cell(PYJUICE), speedup)
        lines.append((*cells, ratio_text, goal, row.status()))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:-2], widths[1:-2], strict=True)]
        tail = [cells[-2].rjust(widths[-2]), cells[-1].ljust(widths[-1])]
        return "  ".join([first, *rest, *tail]).rstrip()

    rule = "-" * len(render(header))
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


# =============================================================================================
# Timing


def time_interleaved(
    calls: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    row: Row | None = None,
    timebox: float = TIMEBOX_S,
    collect_each_call: bool = False,
) -> dict[str, Any]:
    """Times every call `repeats` times, one library after the other in each round, after
    `warmup` untimed rounds, and returns each call's last result (kept, so that freeing a
    result is not timed). Wall times go to `row.samples`.

    Python's cyclic garbage collector runs once before the rounds and is off while they run,
    as `timeit` does, so that no collection lands inside a timed call. With
    `collect_each_call` (compile rows, whose results are large object graphs) it runs before
    every call instead. Not before every forward: a full collection walks every Python
    object of both libraries and evicts the CPU caches, which would time every forward
    cold (on the seed circuit that costs cirkit-ir 7.9 -> 9.3 ms, libcirkit 36.1 -> 37.7 ms,
    one thread), unlike a training or evaluation loop.

    A library leaves the rotation early once its timed runs add up to `timebox` seconds; if
    one warm-up run already took that long, that cold run is its only sample. A call that
    raises is recorded in `row.errors` and left out of later rounds.
    """
    row = row if row is not None else Row("", "s")
    row.extra["load_average_before"] = load_average()
    active = dict(calls)
    spent = dict.fromkeys(calls, 0.0)
    last: dict[str, Any] = {}
    from cirkit_ir.gc_pause import gc_paused  # here: cirkit_ir may be missing (LibraryMissing)

    gc.collect()
    with gc_paused(not collect_each_call):
        for round_index in range(warmup + repeats):
            for key, call in list(active.items()):
                if collect_each_call:
                    gc.collect()
                _timed_round(call, key, round_index, warmup, timebox, row, active, spent, last)
    return last


def _timed_round(
    call: Callable[[], Any],
    key: str,
    round_index: int,
    warmup: int,
    timebox: float,
    row: Row,
    active: dict[str, Callable[[], Any]],
    spent: dict[str, float],
    last: dict[str, Any],
) -> None:
    """One call of `time_interleaved`'s rotation, with its bookkeeping."""
    try:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
    except Exception as error:  # reported in the table and the JSON
        row.errors[key] = f"{type(error).__name__}: {error}"
        row.extra.setdefault("tracebacks", {})[key] = traceback.format_exc()
        del active[key]
        return
    last[key] = result
    del result
    warming_up = round_index < warmup
    if warming_up and elapsed < timebox:
        return
    row.samples.setdefault(key, []).append(elapsed)
    spent[key] += elapsed
    if warming_up:
        row.extra.setdefault("cold_single_run", []).append(key)
    if spent[key] >= timebox:
        del active[key]


@contextmanager
def announced(what: str) -> Iterator[None]:
    print(f"  {what} ...", end="", flush=True)
    start = time.perf_counter()
    yield
    print(f" {time.perf_counter() - start:.1f} s", flush=True)


# =============================================================================================
# Peak memory, in a fresh process per library and configuration


def probe_memory(key: str, units: int, fold: bool, optimize: bool) -> dict[str, Any]:
    """Runs `_bench_memory.py` for one library and configuration; its JSON report (MB)."""
    flags = [str(units), str(int(fold)), str(int(optimize))]
    command = [sys.executable, str(MEMORY_PROBE), key, *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"memory probe exited with {done.returncode}: {' | '.join(tail)}")
    return json.loads(lines[-1])


def measure_memory(row: Row, keys: list[str], units: int, fold: bool, optimize: bool) -> None:
    for key in keys:
        try:
            report = probe_memory(key, units, fold, optimize)
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as error:
            row.errors[key] = str(error)
            continue
        row.samples[key] = [report["peak_mb"]]
        row.extra.setdefault("probe", {})[key] = report


# =============================================================================================
# Values: libcirkit's parameters copied into cirkit-ir, both evaluated on the same batch


class MappingFailed(RuntimeError):
    """The two circuits could not be matched layer by layer."""


@torch.no_grad()
def _libcirkit_blocks(circuit: Any) -> dict[tuple, tuple[torch.Tensor, list[tuple]]]:
    """The parameters of an *unfolded, optimized* libcirkit circuit, keyed by structure.

    Keys are ('input', scope), ('product', scope, input scopes as a set) for a tucker block
    (kronecker + dense), and ('mixing', scope). Values are the normalized parameter (without
    its fold dimension) and the ordered keys or scopes of the block's inputs. Scopes come from
    the input layers' variable indices, carried up through the layer inputs.
    """
    scopes: dict[Any, frozenset[int]] = {}
    keys: dict[Any, tuple] = {}
    blocks: dict[tuple, tuple[torch.Tensor, list[tuple]]] = {}
    for layer in circuit.topological_ordering():
        kind = type(layer).__name__
        inputs = list(circuit.layer_inputs(layer))
        if kind == "TorchCategoricalLayer":
            scopes[layer] = frozenset(int(v) for v in layer.scope_idx.flatten().tolist())
            key = ("input", scopes[layer])
            blocks[key] = (layer.probs()[0], [])
        elif kind == "TorchTuckerLayer":
            scopes[layer] = frozenset().union(*(scopes[child] for child in inputs))
            child_scopes = [scopes[child] for child in inputs]
            key = ("product", scopes[layer], frozenset(child_scopes))
            blocks[key] = (layer.weight()[0], child_scopes)
        elif kind == "TorchSumLayer" and layer.arity > 1:
            scopes[layer] = frozenset().union(*(scopes[child] for child in inputs))
            key = ("mixing", scopes[layer])
            # The weight is expanded to (K, H*K) with entry [k, h*K + k] = w[k, h].
            units = layer.num_output_units
            expanded = layer.weight()[0].reshape(units, layer.arity, units)
            weight = torch.diagonal(expanded, dim1=0, dim2=2).T.contiguous()
            off_diagonal = expanded.clone()
            torch.diagonal(off_diagonal, dim1=0, dim2=2).zero_()
            if off_diagonal.any():
                raise MappingFailed("a libcirkit mixing weight is not block-diagonal")
            blocks[key] = (weight, [keys[child] for child in inputs])
        else:
            raise MappingFailed(f"no mapping for libcirkit's {kind} (arity {layer.arity})")
        keys[layer] = key
    return blocks


def _softmax_leaf(root: Any, what: str) -> Any:
    """The tensor leaf under a softmax (or log-softmax) over the last axis."""
    from cirkit_ir.symbolic.parameters import (
        LogSoftmaxParameter,
        SoftmaxParameter,
        TensorParameter,
    )

    if (
        not isinstance(root, SoftmaxParameter | LogSoftmaxParameter)
        or not isinstance(root.x, TensorParameter)
        or root.axis != len(root.x.shape) - 1
    ):
        raise MappingFailed(f"the {what} of cirkit-ir is not a softmax over the last axis")
    return root.x


def state_from_libcirkit(symbolic: Any, libcirkit_unfolded: Any) -> dict[int, torch.Tensor]:
    """A `load_symbolic_state` state for our symbolic circuit holding libcirkit's parameters.

    Every block of ours is found among libcirkit's by its structural key. Our weights sit
    under a softmax over the last axis, so the leaf gets the log of libcirkit's normalized
    weight: the softmax gives back exactly that weight. Input orders may differ between the
    libraries, so kronecker weights are permuted axis by axis and mixing weights column by
    column.
    """
    from cirkit_ir.symbolic import layers as sl

    blocks = _libcirkit_blocks(libcirkit_unfolded)
    source_id = {id(leaf): index for index, leaf in enumerate(symbolic.tensor_parameters())}
    state: dict[int, torch.Tensor] = {}

    def scope(layer: Any) -> frozenset[int]:
        return frozenset(symbolic.layer_scope(layer).variables)

    def block_key(layer: Any) -> tuple:
        if isinstance(layer, sl.InputLayer):
            return ("input", scope(layer))
        if isinstance(layer, sl.MixingLayer):
            return ("mixing", scope(layer))
        (product,) = symbolic.layer_inputs(layer)
        return ("product", scope(layer), frozenset(map(scope, symbolic.layer_inputs(product))))

    def put(root: Any, value: torch.Tensor, what: str) -> None:
        leaf = _softmax_leaf(root, what)
        state[source_id[id(leaf)]] = torch.log(value).reshape(leaf.shape)

    for layer in symbolic.topological_ordering():
        if isinstance(layer, sl.KroneckerLayer):
            continue  # no parameters: its dense layer carries the tucker block's weight
        if isinstance(layer, sl.DenseLayer):
            (product,) = symbolic.layer_inputs(layer)
            if not isinstance(product, sl.KroneckerLayer):
                raise MappingFailed("a dense layer of cirkit-ir does not follow a kronecker one")
        elif not isinstance(layer, sl.CategoricalLayer | sl.MixingLayer):
            raise MappingFailed(f"no mapping for cirkit-ir's {type(layer).__name__}")
        key = block_key(layer)
        if key not in blocks:
            raise MappingFailed(f"libcirkit has no block {key[0]} over {len(key[1])} variables")
        value, their_inputs = blocks[key]
        if isinstance(layer, sl.CategoricalLayer):
            put(layer.params["probs"], value, "categorical probabilities")
        elif isinstance(layer, sl.DenseLayer):
            (product,) = symbolic.layer_inputs(layer)
            our_inputs = [scope(child) for child in symbolic.layer_inputs(product)]
            order = [their_inputs.index(s) for s in our_inputs]
            units = value.shape[0]
            cube = value.reshape(units, *(product.num_input_units,) * len(order))
            weight = cube.permute(0, *(1 + i for i in order)).reshape(units, -1)
            put(layer.params["weight"], weight, "dense weight")
        else:
            order = [their_inputs.index(block_key(child)) for child in symbolic.layer_inputs(layer)]
            put(layer.params["weight"], value[:, order], "mixing weight")
    missing = len(source_id) - len(state)
    if missing:
        raise MappingFailed(f"{missing} cirkit-ir parameter(s) got no value from libcirkit")
    return state


def _summary(log_likelihoods: torch.Tensor) -> dict[str, float]:
    values = log_likelihoods.detach().double().flatten()
    return {"mean": values.mean().item(), "min": values.min().item(), "max": values.max().item()}


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double().flatten() - b.detach().double().flatten()).abs().max().item()


class ValuesCheck:
    """Log-likelihoods of both libraries on the benchmark batch, with the same parameters.

    libcirkit clamps every lse-sum product at -708.4 (the log of the smallest normal double)
    unless `optimize` fuses the kronecker products into tucker einsums, and the seed circuit's
    log-likelihoods are about -4500, so only its fold + optimize output is compared with ours
    (the others are listed, at -708.4). Its
    parameters are read from an *unfolded* optimized compile made with the same seed, where
    every layer is one block with a scope; that compile draws the same parameters as the fold +
    optimize one (the check reports the largest difference of their outputs). The flag sweep
    hands every compiled circuit to `record`: ours get libcirkit's parameters and run on the
    batch. `summary` compares them with libcirkit and with a float64 evaluation of the symbolic
    circuit (`cirkit_ir.reference`). Without libcirkit, or when the layers cannot be matched,
    our circuits all get the parameters of the first one compiled, and the two libraries'
    summaries can only be set side by side.
    """

    def __init__(self, symbolic: dict[str, Any], theirs: LibCirkit | None, x: torch.Tensor):
        self.x = x
        self.symbolic = symbolic[OURS]
        self.state: dict[int, torch.Tensor] | None = None
        self.shared = False  # whether both libraries run with the same parameters
        self.outputs: dict[str, torch.Tensor] = {}
        self.result: dict[str, Any] = {"units": SEED_UNITS, "batch_size": BATCH_SIZE}
        if theirs is None:
            return
        unfolded = seeded_compile(theirs, symbolic[THEIRS], False, True)
        with torch.no_grad():
            self.outputs[f"{LABELS[THEIRS]} {config_name(False, True)}"] = unfolded(x).flatten()
        try:
            self.state = state_from_libcirkit(self.symbolic, unfolded)
            self.shared = True
            self.result["parameters"] = (
                "libcirkit's, copied into cirkit-ir (layers matched by scope)"
            )
        except MappingFailed as error:
            # Different random parameters: summaries can be compared, samples cannot.
            self.result["parameters"] = f"independent draws (no mapping: {error})"

    def record(self, key: str, fold: bool, optimize: bool, circuit: torch.nn.Module) -> None:
        """Runs a circuit of the flag sweep on the batch (ours with the shared parameters)."""
        name = f"{LABELS[key]} {config_name(fold, optimize)}"
        try:
            if key in (OURS, EAGER) and self.state is not None:
                circuit.load_symbolic_state(self.state)
            elif key == OURS:  # the first of ours: its parameters go to the others
                self.state = {k: v.detach().clone() for k, v in circuit.symbolic_state().items()}
                self.result.setdefault("parameters", "cirkit-ir's own (one seeded draw)")
            with torch.no_grad():
                self.outputs[name] = circuit(self.x).flatten()
            if key == THEIRS and fold and optimize:
                self.result["libcirkit log Z"] = _libcirkit_log_partition(circuit)
        except Exception as error:  # reported, the other configurations go on
            self.result[f"{name} error"] = f"{type(error).__name__}: {error}"

    def summary(self) -> dict[str, Any]:
        """Per circuit: mean, min and max log-likelihood and the largest difference from the
        float64 reference; and the largest difference between the two libraries."""
        from cirkit_ir.reference import evaluate

        result = dict(self.result)
        outputs = dict(self.outputs)
        if self.state is not None:
            outputs["reference float64"] = evaluate(self.symbolic, self.x, self.state).flatten()
        reference = outputs.get("reference float64")
        table = result["log_likelihoods"] = {}
        for name, output in sorted(outputs.items(), key=_reference_ours_theirs):
            table[name] = _summary(output)
            same_parameters = self.shared or name.startswith(LABELS[OURS])
            if reference is not None and same_parameters and output is not reference:
                table[name]["max |diff| to reference"] = _max_abs_diff(output, reference)
        theirs = outputs.get(f"{LABELS[THEIRS]} {config_name(True, True)}")
        ours = outputs.get(f"{LABELS[OURS]} {config_name(True, True)}")
        unfolded = outputs.get(f"{LABELS[THEIRS]} {config_name(False, True)}")
        if theirs is not None and unfolded is not None:
            result["libcirkit fold=0 opt=1 vs fold=1 opt=1 max |diff|"] = _max_abs_diff(
                unfolded, theirs
            )
        if self.shared and ours is not None and theirs is not None:
            result["cirkit-ir vs libcirkit (fold=1 opt=1) max |diff|"] = _max_abs_diff(ours, theirs)
        return result


def _reference_ours_theirs(item: tuple[str, torch.Tensor]) -> tuple[int, str]:
    """Sort key of the values table: the reference, then cirkit-ir, then libcirkit."""
    name = item[0]
    return (0 if name.startswith("reference") else 1 if name.startswith(LABELS[OURS]) else 2, name)


def _libcirkit_log_partition(circuit: Any) -> float | None:
    """log Z of a libcirkit circuit: every variable integrated out (0 when normalized)."""
    try:
        from cirkit.backend.torch.queries import IntegrateQuery
    except ImportError:
        return None
    anything = torch.zeros(1, NUM_VARIABLES, dtype=torch.long)
    with torch.no_grad():
        log_z = IntegrateQuery(circuit)(anything, integrate_vars=circuit.scope)
    return log_z.flatten()[0].item()


# =============================================================================================
# Floors: what a fused forward must at least compute and move, and the machine's speed


def measure_machine(repeats: int = 5) -> dict[str, float]:
    """float32 matmul FLOP/s (2048^3) and copy bandwidth (256 MB read + written), best runs."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    source = torch.randn(64 * 2**20)
    target = torch.empty_like(source)
    a @ b, target.copy_(source)  # warm up
    matmul, copy = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        matmul.append(time.perf_counter() - start)
        start = time.perf_counter()
        target.copy_(source)
        copy.append(time.perf_counter() - start)
    return {
        "matmul_flops": 2 * n**3 / min(matmul),
        "copy_bytes_per_s": 2 * source.numel() * source.element_size() / min(copy),
        "threads": torch.get_num_threads(),
    }


def forward_work(symbolic: Any, batch_size: int = BATCH_SIZE) -> dict[str, float]:
    """The multiply-adds and bytes of a forward that fuses each kronecker into its dense layer.

    Multiply-adds: each dense output unit reads all its inputs (out x in), each kronecker
    entry is one add of log-values ((arity - 1) x in^arity), each mixing unit reads `arity`
    inputs; input layers only gather. Bytes: the batch (int64), every parameter once, and each
    non-kronecker layer's float32 output written once and read once per consumer.
    """
    from cirkit_ir.symbolic import layers as sl

    multiply_adds = 0
    activation_elements = 0
    for layer in symbolic.layers:
        if isinstance(layer, sl.DenseLayer):
            multiply_adds += layer.num_output_units * layer.num_input_units
        elif isinstance(layer, sl.MixingLayer):
            multiply_adds += layer.num_output_units * layer.arity
        elif isinstance(layer, sl.KroneckerLayer):
            multiply_adds += (layer.arity - 1) * layer.num_output_units
            continue  # never materialized by a fused forward
        activation_elements += layer.num_output_units * (1 + len(symbolic.layer_outputs(layer)))
    parameter_elements = sum(math.prod(leaf.shape) for leaf in symbolic.tensor_parameters())
    data_bytes = batch_size * NUM_VARIABLES * 8
    return {
        "multiply_adds": multiply_adds * batch_size,
        "flops": 2 * multiply_adds * batch_size,
        "bytes": data_bytes + 4 * parameter_elements + 4 * activation_elements * batch_size,
    }


def floor_report(
    units: int, work: dict[str, float], machine: dict[str, float], row: Row | None
) -> dict[str, Any]:
    compute_s = work["flops"] / machine["matmul_flops"]
    memory_s = work["bytes"] / machine["copy_bytes_per_s"]
    report: dict[str, Any] = {
        "units": units,
        **work,
        "compute_floor_s": compute_s,
        "memory_floor_s": memory_s,
        "floor_s": max(compute_s, memory_s),
    }
    if row is not None:
        for key in (THEIRS, OURS):
            median = row.median(key)
            if median is not None:
                report[f"{key}_s"] = median
                report[f"{key}_over_floor"] = median / report["floor_s"]
    return report


def format_floor(report: dict[str, Any]) -> str:
    def quantity(value: float) -> str:
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.1f} {prefix}"
        return f"{value:.0f} "

    text = (
        f"  {report['units']} units: {quantity(report['multiply_adds'])} multiply-adds"
        f" ({format_seconds(report['compute_floor_s'])} of compute),"
        f" {quantity(report['bytes'])}B touched"
        f" ({format_seconds(report['memory_floor_s'])} of memory traffic)"
        f" -> floor {format_seconds(report['floor_s'])}"
    )
    for key in (THEIRS, OURS):
        if f"{key}_s" in report:
            text += (
                f"; {LABELS[key]} {format_seconds(report[f'{key}_s'])}"
                f" = {report[f'{key}_over_floor']:.1f}x the floor"
            )
    goal = FLOOR_GOALS.get(report["units"])
    if goal is not None and f"{OURS}_over_floor" in report:
        met = "met" if report[f"{OURS}_over_floor"] <= goal else "missed"
        text += f" (goal <= {goal:g}x: {met})"
    return text


# =============================================================================================
# The benchmark


@dataclass
class Plan:
    """How many timed runs each measurement gets, and which sizes run."""

    repeats: int
    units: list[int]
    quick: bool

    @property
    def few(self) -> int:
        """Repeats of the slow measurements (unfolded forwards, more units)."""
        return min(self.repeats, 3)

    def scaling_repeats(self, units: int) -> tuple[int, int]:
        """(warm-up rounds, timed runs) at `units` units: a 64-unit forward takes seconds."""
        if units <= 32:
            return 1, self.few
        return 1, min(self.repeats, 2)

    @property
    def flag_combinations(self) -> tuple[tuple[bool, bool], ...]:
        """The flag sweep's (fold, optimize) pairs; `quick` leaves out the unfolded ones, whose
        compiles (thousands of layers) are most of a full sweep's time."""
        return tuple(c for c in FLAG_COMBINATIONS if c[0]) if self.quick else FLAG_COMBINATIONS

    def memory_configs(self) -> list[tuple[int, bool, bool]]:
        configs = [(SEED_UNITS, True, True)]
        if not self.quick:
            configs = [(SEED_UNITS, fold, opt) for fold, opt in FLAG_COMBINATIONS]
        configs += [(u, True, True) for u in self.units if u != SEED_UNITS]
        return configs


def goal_for(kind: str, units: int, fold: bool, optimize: bool) -> Goal | None:
    if kind == "compile":
        return SPEEDUP["compile"]
    if kind == "forward" and not fold:
        return SPEEDUP["unfolded forward"]
    if kind == "forward" and fold and optimize and units == SEED_UNITS:
        return SPEEDUP["forward"]
    if kind in ("forward", "forward+backward") and fold and optimize and units in (32, 64):
        return SPEEDUP.get(f"{kind} {units}")
    if kind == "forward+backward" and units == SEED_UNITS:
        return SPEEDUP["forward+backward"]
    if kind == "peak memory" and fold and optimize and units == 64:
        return SPEEDUP["memory 64"]
    return None


def row_for(kind: str, units: int, fold: bool, optimize: bool, unit: str = "s") -> Row:
    name = f"{kind}, {units} units, {config_name(fold, optimize)}"
    return Row(name, unit, goal_for(kind, units, fold, optimize))


class Benchmark:
    def __init__(self, libraries: dict[str, CirkitIR | LibCirkit], plan: Plan) -> None:
        self.libraries = libraries  # cirkit-ir first: each round times ours, then theirs
        self.plan = plan
        self.x = make_batch()
        self.rows: list[Row] = []
        self.circuits: dict[str, dict[str, Any]] = {}
        self.results: dict[str, Any] = {"load_average_at_start": load_average()}

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def build(self, units: int) -> dict[str, Any]:
        symbolic = {}
        for key, library in self.libraries.items():
            start = time.perf_counter()
            symbolic[key] = library.build(units)
            self.circuits.setdefault(f"build, {units} units", {})[key] = {
                "seconds": time.perf_counter() - start
            }
        return symbolic

    def describe(self, label: str, circuits: dict[str, torch.nn.Module]) -> None:
        """Layer and parameter counts of each compiled circuit."""
        for key, circuit in circuits.items():
            self.circuits.setdefault(label, {})[key] = {
                "num_layers": len(list(getattr(circuit, "layers", []))),
                "num_parameters": sum(p.numel() for p in circuit.parameters()),
            }

    def flag_sweep(self) -> None:
        """Compile and no-grad forward at 4 units, for every fold/optimize combination; each
        compiled circuit also goes to the values check."""
        symbolic = self.build(SEED_UNITS)
        with announced("values check: matching libcirkit's parameters"):
            self.values_check = ValuesCheck(symbolic, self.libraries.get(THEIRS), self.x)
        forward_rows = []
        for fold, optimize in self.plan.flag_combinations:
            name = config_name(fold, optimize)
            with announced(f"compile and forward, {SEED_UNITS} units, {name}"):
                row = self.add(row_for("compile", SEED_UNITS, fold, optimize))
                calls = {
                    key: self._compile_call(library, symbolic[key], fold, optimize)
                    for key, library in self.libraries.items()
                }
                circuits = time_interleaved(
                    calls, self.plan.repeats, row=row, collect_each_call=True
                )
                self.describe(f"{SEED_UNITS} units, {name}", circuits)
                row = Row(f"forward, {SEED_UNITS} units, {name}", "s")
                row.goal = goal_for("forward", SEED_UNITS, fold, optimize)
                repeats = self.plan.repeats if fold else self.plan.few
                calls = {key: forward_call(c, self.x) for key, c in circuits.items()}
                time_interleaved(calls, repeats, row=row)
                forward_rows.append(row)
                for key, circuit in circuits.items():
                    self.values_check.record(key, fold, optimize, circuit)
                del circuits, calls
        self.rows.extend(forward_rows)

    @staticmethod
    def _compile_call(library: CirkitIR | LibCirkit, symbolic: Any, fold: bool, optimize: bool):
        return lambda: seeded_compile(library, symbolic, fold, optimize)

    def compile_all(self, symbolic: dict[str, Any], units: int) -> dict[str, torch.nn.Module]:
        """Each library's fold + optimize circuit; a library that fails is left out (noted)."""
        circuits = {}
        for key, symbolic_circuit in symbolic.items():
            try:
                circuits[key] = seeded_compile(self.libraries[key], symbolic_circuit, True, True)
            except Exception as error:  # reported with the circuits
                self.circuits.setdefault(f"{units} units errors", {})[key] = repr(error)
        return circuits

    def scaling(self) -> None:
        """Forward (beyond 4 units) and forward + backward with fold + optimize.

        Above `MAX_INTERLEAVED_BACKWARD_UNITS` units, forward + backward is timed one library
        at a time with only its own circuit alive: two 64-unit circuits (1.7 GB of parameters
        each) and one backward (libcirkit's alone peaks near 15 GB) do not fit in 24 GB.
        """
        for units in self.plan.units:
            warmup, repeats = self.plan.scaling_repeats(units)
            with announced(f"fold + optimize, {units} units"):
                symbolic = self.build(units)
                circuits = self.compile_all(symbolic, units)
                self.describe(f"{units} units, {config_name(True, True)}", circuits)
                if units != SEED_UNITS:
                    row = self.add(row_for("forward", units, True, True))
                    calls = {key: forward_call(c, self.x) for key, c in circuits.items()}
                    time_interleaved(calls, repeats, warmup, row=row)
                row = self.add(row_for("forward+backward", units, True, True))
                fb_repeats = self.plan.repeats if units == SEED_UNITS else repeats
                if units <= MAX_INTERLEAVED_BACKWARD_UNITS:
                    calls = {key: forward_backward_call(c, self.x) for key, c in circuits.items()}
                    time_interleaved(calls, fb_repeats, warmup, row=row)
                    del circuits, calls
                    continue
                row.name += " (one library at a time)"
                row.extra["interleaved"] = False
                del circuits
                for key in symbolic:
                    gc.collect()
                    circuits = self.compile_all({key: symbolic[key]}, units)
                    calls = {k: forward_backward_call(c, self.x) for k, c in circuits.items()}
                    time_interleaved(calls, fb_repeats, warmup=0, row=row)
                    del circuits, calls
                gc.collect()

    def memory(self) -> None:
        for units, fold, optimize in self.plan.memory_configs():
            slowest = self._slowest_compile(units, fold, optimize)
            if slowest is not None and slowest > MEMORY_PROBE_MAX_COMPILE_S:
                self.results.setdefault("memory_skipped", []).append(
                    f"{units} units, {config_name(fold, optimize)}: a compile took {slowest:.0f} s"
                )
                continue
            with announced(f"peak memory, {units} units, {config_name(fold, optimize)}"):
                row = self.add(row_for("peak memory", units, fold, optimize, unit="MB"))
                measure_memory(row, list(self.libraries), units, fold, optimize)

    def _slowest_compile(self, units: int, fold: bool, optimize: bool) -> float | None:
        """The slower library's median compile time in the flag sweep (None if not timed)."""
        if (fold and optimize) or units != SEED_UNITS:
            return None  # always probed
        name = f"compile, {units} units, {config_name(fold, optimize)}"
        row = next((r for r in self.rows if r.name == name), None)
        medians = [] if row is None else [row.median(key) for key in row.samples]
        return max((m for m in medians if m is not None), default=None)

    def values(self) -> None:
        with announced("values check: reference evaluation"):
            try:
                self.results["values"] = self.values_check.summary()
            except Exception as error:  # reported, the rest is still written
                self.results["values"] = {"error": f"{type(error).__name__}: {error}"}

    def floors(self) -> None:
        load = load_average()
        with announced("machine FLOP/s and bandwidth"):
            machine = measure_machine()
        # Floors are meant to be measured on a quiet machine: under load the matmul rate
        # drops and every "x the floor" looks better than it is. Say so when it was busy.
        machine["load_average"] = load
        machine["quiet"] = bool(load) and load[0] <= QUIET_LOAD_PER_CPU * (os.cpu_count() or 1)
        self.results["machine"] = machine
        reports = []
        for units in sorted({SEED_UNITS, *self.plan.units}):
            work = forward_work(self.libraries[OURS].build(units))
            wanted = f"forward, {units} units, {config_name(True, True)}"
            row = next((r for r in self.rows if r.name == wanted), None)
            reports.append(floor_report(units, work, machine, row))
        self.results["floors"] = reports

    def run(self, save: Callable[[], None]) -> None:
        """Every measurement, calling `save` after each section (a kill keeps the rest)."""
        print(f"Measuring ({', '.join(LABELS[k] for k in self.libraries)}):", flush=True)
        for section in (self.flag_sweep, self.scaling, self.memory, self.values, self.floors):
            section()
            save()

    # -- reporting ---------------------------------------------------------------------------

    def report(self) -> str:
        lines = [format_table(self.rows), ""]
        machine = self.results.get("machine")
        if machine:
            lines.append(
                f"Floors of a fused fold + optimize forward, batch {BATCH_SIZE}, on this machine"
                f" ({machine['matmul_flops'] / 1e9:.0f} GFLOP/s float32 matmul,"
                f" {machine['copy_bytes_per_s'] / 1e9:.1f} GB/s copy,"
                f" {machine['threads']} threads):"
            )
            if not machine.get("quiet", True):
                lines.append(
                    f"  NOT QUIET: 1-minute load {machine['load_average'][0]:.2f} on"
                    f" {os.cpu_count()} CPUs while measuring: the rates are understated, so the"
                    " floors are too high and 'x the floor' flatters every library"
                )
            lines.extend(format_floor(report) for report in self.results.get("floors", []))
            lines.append("")
        lines.append("Compiled circuits (number of layers):")
        for label, per_library in self.circuits.items():
            if label.startswith("build") or "errors" in label:
                continue
            cells = [f"{LABELS[key]} {info['num_layers']}" for key, info in per_library.items()]
            lines.append(f"  {label}: " + ", ".join(cells))
        lines.extend(format_values(self.results.get("values")))
        start, end = self.results["load_average_at_start"], load_average()
        if start and end:
            lines.append("")
            lines.append(
                f"Load average (1 min) at start {start[0]:.2f}, at end {end[0]:.2f}, on"
                f" {os.cpu_count()} CPUs: other work on the machine slows both libraries"
            )
        errors = [(row.name, key, msg) for row in self.rows for key, msg in row.errors.items()]
        if errors:
            lines.append("")
            lines.append("Errors:")
            lines.extend(f"  {name} [{LABELS[key]}]: {msg}" for name, key, msg in errors)
        return "\n".join(lines)

    def as_json(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "environment": environment(self.libraries),
            "settings": {
                "batch_size": BATCH_SIZE,
                "seed": SEED,
                "repeats": self.plan.repeats,
                "units": self.plan.units,
                "quick": self.plan.quick,
                "skip_libcirkit": args.skip_libcirkit,
                "skip_eager": args.skip_eager,
                "device": args.device,
                "threads": torch.get_num_threads(),
            },
            "rows": [row.as_json() for row in self.rows],
            "circuits": self.circuits,
            **self.results,
        }


def format_values(values: dict[str, Any] | None) -> list[str]:
    if not values:
        return []
    lines = ["", f"Values check ({SEED_UNITS} units, batch {BATCH_SIZE}):"]
    table = values.get("log_likelihoods", {})
    width = max((len(name) for name in table), default=0)
    for name, summary in table.items():
        text = (
            f"    {name.ljust(width)}  mean {summary['mean']:.4f}"
            f" (min {summary['min']:.4f}, max {summary['max']:.4f})"
        )
        if "max |diff| to reference" in summary:
            text += f", max |diff| to reference {summary['max |diff| to reference']:.3g}"
        lines.append(text)
    for name, value in values.items():
        if name in ("log_likelihoods", "units", "batch_size"):
            continue
        lines.append(f"  {name}: {f'{value:.3g}' if isinstance(value, float) else value}")
    return lines


# =============================================================================================
# On a GPU (--device cuda): cirkit-ir, libcirkit and pyjuice


class PyJuice:
    """pyjuice 2.6.3 (the `pyjuice` extra, imported only here), given the seed circuit through
    its public node API (`pyjuice_nodes`) and compiled with `pyjuice.compile`."""

    key = PYJUICE

    def __init__(self, device: str) -> None:
        try:
            import pyjuice
        except ImportError as error:
            raise LibraryMissing(
                f"pyjuice is not installed ({error}); --device cuda runs it beside cirkit-ir:"
                f" install the extra with `{PYJUICE_HINT}` (pyjuice 2.6.3)"
            ) from error
        self.juice = pyjuice
        self.device = device
        self.version = _version("pyjuice")

    def compile(self, symbolic: Any) -> Any:
        torch.manual_seed(SEED)
        return self.juice.compile(pyjuice_nodes(symbolic), verbose=False).to(self.device)


def pyjuice_nodes(symbolic: Any) -> Any:
    """The root of pyjuice nodes computing the seed circuit's function family (`symbolic`, a
    cirkit-ir circuit of categorical, kronecker, dense and mixing layers).

    Each kronecker layer is a block of product nodes over every combination of its inputs'
    units (`multiply(..., edge_ids=all pairs, sparse_edges=True)`), each dense layer a block of
    sum nodes fully connected to them. pyjuice sums read products and inputs only, so a mixing
    layer and the dense layers it mixes become one sum block over all their products: the same
    circuit with each tucker weight scaled by its mixing weight (one sum-product fewer per
    region, the same multiply-adds within 1/units).
    """
    import itertools

    import pyjuice
    from pyjuice.nodes.distributions import Categorical

    from cirkit_ir.symbolic import layers as sl

    nodes: dict[Any, Any] = {}

    def block_size(units: int) -> int:
        size = 1
        while size < PYJUICE_MAX_BLOCK and units % (2 * size) == 0:
            size *= 2
        return size

    def products(dense: Any) -> Any:
        (kronecker,) = symbolic.layer_inputs(dense)
        if not isinstance(kronecker, sl.KroneckerLayer):
            raise MappingFailed("a dense layer that does not follow a kronecker layer")
        return nodes[kronecker]

    for layer in symbolic.topological_ordering():
        units = layer.num_output_units
        if isinstance(layer, sl.CategoricalLayer):
            (variable,) = symbolic.layer_scope(layer).variables
            dist = Categorical(num_cats=layer.num_categories)
            nodes[layer] = pyjuice.inputs(
                variable, num_nodes=units, dist=dist, block_size=block_size(units)
            )
        elif isinstance(layer, sl.KroneckerLayer):
            children = [nodes[child] for child in symbolic.layer_inputs(layer)]
            pairs = itertools.product(range(layer.num_input_units), repeat=len(children))
            edges = torch.tensor(list(pairs), dtype=torch.long)
            nodes[layer] = pyjuice.multiply(*children, edge_ids=edges, sparse_edges=True)
        elif isinstance(layer, sl.DenseLayer | sl.MixingLayer):
            if isinstance(layer, sl.DenseLayer) and any(
                isinstance(user, sl.MixingLayer) for user in symbolic.layer_outputs(layer)
            ):
                continue  # summed by the mixing layer
            dense = [layer] if isinstance(layer, sl.DenseLayer) else symbolic.layer_inputs(layer)
            nodes[layer] = pyjuice.summate(
                *(products(d) for d in dense), num_nodes=units, block_size=block_size(units)
            )
        else:
            raise MappingFailed(f"no pyjuice mapping for {type(layer).__name__}")
    (root,) = symbolic.outputs
    return nodes[root]


def synchronized(call: Callable[[], Any]) -> Callable[[], Any]:
    """`call`, then wait for the GPU: a timing covers the kernels, not only their launch."""

    def run() -> Any:
        result = call()
        torch.cuda.synchronize()
        return result

    return run


def pyjuice_forward_backward(pc: Any, x: torch.Tensor) -> Callable[[], None]:
    """pyjuice's training step without the update: zero the parameter flows, forward, and the
    backward its output's hook runs (`pc.backward`: node and parameter flows)."""

    def forward_backward() -> None:
        pc.init_param_flows(flows_memory=0.0)
        pc(x).mean().backward()

    return forward_backward


def gpu_peak_memory(compile_and_run: Callable[[], Any]) -> float:
    """MB of GPU memory allocated at the peak of `compile_and_run` (compile, one forward),
    above what was allocated before it."""
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = compile_and_run()
    torch.cuda.synchronize()
    del result
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def run_on_gpu(benchmark: Benchmark, pyjuice: PyJuice) -> None:
    """Forward, forward + backward and peak memory at each size, on the GPU, interleaved."""
    x = benchmark.x.to(pyjuice.device)
    print(f"Measuring on {torch.cuda.get_device_name()} (cirkit-ir, libcirkit, pyjuice):")
    for units in benchmark.plan.units:
        warmup, repeats = 1, benchmark.plan.repeats if units == SEED_UNITS else benchmark.plan.few
        with announced(f"GPU, {units} units"):
            symbolic = benchmark.build(units)
            circuits = benchmark.compile_all(symbolic, units)
            try:
                circuits[PYJUICE] = pyjuice.compile(symbolic[OURS])
            except Exception as error:  # reported with the circuits
                benchmark.circuits.setdefault(f"{units} units errors", {})[PYJUICE] = repr(error)
            row = benchmark.add(Row(f"GPU forward, {units} units", "s"))
            calls = {k: synchronized(forward_call(c, x)) for k, c in circuits.items()}
            time_interleaved(calls, repeats, warmup, row=row)
            row = benchmark.add(Row(f"GPU forward+backward, {units} units", "s"))
            calls = {
                k: synchronized(
                    pyjuice_forward_backward(c, x) if k == PYJUICE else forward_backward_call(c, x)
                )
                for k, c in circuits.items()
            }
            time_interleaved(calls, repeats, warmup, row=row)
            del circuits, calls
            row = benchmark.add(Row(f"GPU peak memory, {units} units", "MB"))
            for key in [*benchmark.libraries, PYJUICE]:
                try:
                    row.samples[key] = [
                        gpu_peak_memory(_compiled_forward(benchmark, pyjuice, key, symbolic, x))
                    ]
                except Exception as error:  # reported in the table
                    row.errors[key] = f"{type(error).__name__}: {error}"


def _compiled_forward(
    benchmark: Benchmark, pyjuice: PyJuice, key: str, symbolic: dict[str, Any], x: torch.Tensor
) -> Callable[[], Any]:
    """Compiles library `key`'s circuit (fold + optimize) and runs one no-grad forward."""

    def run() -> Any:
        if key == PYJUICE:
            circuit = pyjuice.compile(symbolic[OURS])
        else:
            circuit = seeded_compile(benchmark.libraries[key], symbolic[key], True, True)
        with torch.no_grad():
            return circuit(x)

    return run


def environment(libraries: dict[str, CirkitIR | LibCirkit]) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "versions": {LABELS[key]: library.version for key, library in libraries.items()},
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine skews timings."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None


def parse_units(text: str) -> list[int]:
    try:
        units = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--units takes integers like 4,32,64: {error}") from None
    if not units or any(u <= 0 for u in units):
        raise argparse.ArgumentTypeError("--units takes positive integers like 4,32,64")
    return units


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Side-by-side benchmark of cirkit-ir against libcirkit (seed circuit)."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 units, 3 repeats, the folded flag combinations only (a smoke test)",
    )
    parser.add_argument(
        "--units",
        type=parse_units,
        default=[4, 32, 64],
        help="units of the fold + optimize scaling rows (default 4,32,64)",
    )
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed runs of the fast measurements (default 7)"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--skip-libcirkit", action="store_true", help="run cirkit-ir alone (no libcirkit)"
    )
    parser.add_argument(
        "--skip-eager",
        action="store_true",
        help="leave out cirkit-ir with kernels='eager' (by default it runs beside the native)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: forward, backward and GPU memory of cirkit-ir, libcirkit and pyjuice on a GPU",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's default); 1 gives steadier figures on a busy machine",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    plan = Plan(repeats=args.repeats, units=args.units, quick=args.quick)
    if args.quick:
        plan = Plan(repeats=min(args.repeats, 3), units=[SEED_UNITS], quick=True)

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print(
            "error: --device cuda needs a CUDA device, and torch sees none on this machine"
            f" (torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'}"
            " CUDA); run without --device for the CPU benchmark",
            file=sys.stderr,
        )
        return 2
    # On a GPU ours runs the Triton kernels where Triton is installed, the eager column not.
    keys = [OURS] + ([] if args.skip_eager else [EAGER])
    keys += [] if args.skip_libcirkit else [THEIRS]
    try:
        libraries = {key: load_library(key) for key in keys}
        pyjuice = PyJuice(args.device) if gpu else None
    except LibraryMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for library in libraries.values():
        library.device = args.device

    benchmark = Benchmark(libraries, plan)

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(benchmark.as_json(args), indent=1, default=str) + "\n")

    try:
        if pyjuice is not None:
            run_on_gpu(benchmark, pyjuice)
        else:
            benchmark.run(save)
    finally:
        print()
        print(benchmark.report())
        save()
        print(f"\nWrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
