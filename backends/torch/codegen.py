"""`codegen`: an IR graph whose semiring has been lowered -> a `TorchCircuit`.

It builds one module per op (layers for circuit ops, nodes for parameter ops) and writes the
circuit's forward as straight-line Python in the style of torch.fx: one statement per layer,
each fold gather spelled out as the torch expression that builds the layer's input, `del` of
values after their last use, and no interpreter loop.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from backends.torch.allocator import retain_freed_memory
from backends.torch.checks import InputSpec
from backends.torch.circuit import TorchCircuit
from backends.torch.gather import GatherPlan, plan_gather, slot_entries
from backends.torch.layers import (
    TorchBinomialLayer,
    TorchCategoricalLayer,
    TorchConstantLayer,
    TorchCPLayer,
    TorchCPTLayer,
    TorchDenseLayer,
    TorchEmbeddingLayer,
    TorchEvidenceLayer,
    TorchGaussianLayer,
    TorchHadamardLayer,
    TorchInputLayer,
    TorchKroneckerLayer,
    TorchLayer,
    TorchMixingLayer,
    TorchTuckerLayer,
)
from backends.torch.parameters import TorchParameter, TorchParameterNode, node_from_op
from backends.torch.semirings import Semiring, get_semiring
from cirkit_ir.errors import CompilationError
from cirkit_ir.ir import ops
from cirkit_ir.ir.graph import Graph

Shape = tuple[int, ...]


def codegen(
    graph: Graph,
    *,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> TorchCircuit:
    """Compiles `graph` (every circuit op with a semiring) into a `TorchCircuit`.

    `seed=None` draws each parameter tensor at once from torch's global RNG; an int draws
    every fold from a generator seeded by (seed, source), so that one symbolic circuit
    compiled with any flags (folded or not, fused or not) computes the same function.
    """
    if dtype not in (torch.float32, torch.float64):
        raise CompilationError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    retain_freed_memory()
    # Codegen allocates many small objects (a module per op, plans, code lines) and frees
    # none: the cyclic garbage collector would rescan them over and over (a third of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Codegen(graph, seed, dtype, device).run()
    finally:
        if collecting:
            gc.enable()


def make_layer(
    op: ops.CircuitOp, semiring: Semiring, params: dict[str, TorchParameter]
) -> TorchLayer:
    """The module of circuit op `op` (one per op type)."""
    common = {"semiring": semiring, "params": params}
    if isinstance(op, ops.InputOp):
        inputs = {
            "variables": op.variables,
            "num_channels": op.num_channels,
            "num_output_units": op.num_units,
            **common,
        }
        if isinstance(op, ops.CategoricalOp):
            return TorchCategoricalLayer(num_categories=op.num_categories, param=op.param, **inputs)
        if isinstance(op, ops.BinomialOp):
            return TorchBinomialLayer(total_count=op.total_count, param=op.param, **inputs)
        if isinstance(op, ops.GaussianOp):
            return TorchGaussianLayer(**inputs)
        if isinstance(op, ops.EmbeddingOp):
            return TorchEmbeddingLayer(num_states=op.num_states, **inputs)
    if isinstance(op, ops.ConstantOp):
        return TorchConstantLayer(num_folds=op.num_folds, num_output_units=op.num_units, **common)
    if isinstance(op, ops.EvidenceOp):
        folds = op.num_folds
        inner = op.distribution.replace(variables=tuple(range(folds)))
        distribution = make_layer(inner, semiring, {})  # type: ignore[arg-type]
        assert isinstance(distribution, TorchInputLayer)
        return TorchEvidenceLayer(distribution=distribution, **common)
    inner_kwargs = {
        "num_folds": op.num_folds,
        "arity": op.arity,
        "num_input_units": op.num_input_units,
        "num_output_units": op.num_output_units,
        **common,
    }
    classes: dict[type[ops.CircuitOp], type[TorchLayer]] = {
        ops.DenseOp: TorchDenseLayer,
        ops.MixingOp: TorchMixingLayer,
        ops.HadamardOp: TorchHadamardLayer,
        ops.KroneckerOp: TorchKroneckerLayer,
        ops.TuckerOp: TorchTuckerLayer,
        ops.CPTOp: TorchCPTLayer,
        ops.CPOp: TorchCPLayer,
    }
    if type(op) in classes:
        return classes[type(op)](**inner_kwargs)
    raise CompilationError(
        f"the torch backend has no layer for circuit op {type(op).__name__} ('{op.name}')"
    )


@attrs.define
class _Statement:
    code: str
    uses: tuple[str, ...] = ()
    comment: str = ""


class _Codegen:
    """The state of one compilation."""

    def __init__(
        self, graph: Graph, seed: int | None, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        self.graph = graph
        self.seed = seed
        self.dtype = dtype
        self.device = device
        self.buffers: dict[str, Tensor] = {}
        self.param_shape: dict[int, Shape] = {}
        self.param_position: dict[int, int] = {}

    # -- reading the graph ------------------------------------------------------------------------

    def _what(self, node: int) -> str:
        return f"%{node} ({self.graph.op(node).name})"

    def _slot_plan(
        self, node: int, slot: int | str, folds: int, stacked_slots: Sequence[int | str] = ()
    ) -> GatherPlan:
        """The gather feeding one slot of `node` (or, stacked, all its numbered slots)."""
        slots = list(stacked_slots) if stacked_slots else [slot]
        by_slot: dict[int | str, list] = {s: [] for s in slots}
        # The edges straight from networkx: `Graph.operands` sorts them, which we do not need.
        for producer, _, data in self.graph.nx.in_edges(node, data=True):
            if data["slot"] in by_slot:
                fold_map = data["fold_map"]
                by_slot[data["slot"]].append((producer, fold_map.consumer, fold_map.producer))
        tables = []
        for s in slots:
            if not by_slot[s]:
                raise CompilationError(f"{self._what(node)}: nothing feeds operand slot {s!r}")
            tables.append(slot_entries(by_slot[s], folds, f"{self._what(node)} slot {s!r}"))
        folds_of = {p: self.graph.op(p).num_folds for table in tables for p, _ in table}
        return plan_gather(tables, folds_of, stacked=bool(stacked_slots))

    def _gathered_shape(self, plan: GatherPlan, folds: int) -> Shape:
        for p in plan.producers:
            if p not in self.param_shape:
                raise CompilationError(
                    f"{self._what(p)} feeds a parameter slot but is not a"
                    " parameter op (or comes after its user)"
                )
        shapes = {self.param_shape[p][1:] for p in plan.producers}
        if len(shapes) != 1:
            raise CompilationError(
                f"parameter producers {[f'%{p}' for p in plan.producers]} of one slot disagree"
                f" on their shapes {sorted(shapes)}"
            )
        return (folds, *shapes.pop())

    def _log_softmax_peepholes(
        self, circuit_nodes: list[int], semiring: Semiring
    ) -> dict[int, int]:
        """Softmax parameter ops whose one user is a categorical computing in log space:
        softmax node -> categorical node. The generated code evaluates those as log-softmax
        and hands the logs over (`prepare_log`), instead of taking the log of a softmax."""
        if not semiring.log_space:
            return {}
        found: dict[int, int] = {}
        graph = self.graph
        for n in circuit_nodes:
            op = graph.op(n)
            if not (isinstance(op, ops.CategoricalOp) and op.param == "probs"):
                continue
            edges = list(graph.nx.in_edges(n, data=True))
            if len(edges) != 1:
                continue
            producer, _, data = edges[0]
            softmax = graph.op(producer)
            if (
                isinstance(softmax, ops.SoftmaxOp)
                and softmax.axis == -1
                and data["fold_map"].is_identity(op.num_folds)
                and graph.nx.out_degree(producer) == 1
                and not graph.is_output(producer)
            ):
                found[producer] = n
        return found

    def _index_name(self, plan: GatherPlan, name: str) -> str:
        if plan.index is None:
            return "None"
        self.buffers[name] = plan.index
        return f"self.{name}"

    # -- compiling --------------------------------------------------------------------------------

    def run(self) -> TorchCircuit:
        graph = self.graph
        circuit_nodes = graph.circuit_ops()
        if not circuit_nodes:
            raise CompilationError("the graph has no circuit ops")
        if not graph.outputs:
            raise CompilationError("the graph has no outputs: set them with graph.set_outputs")
        names = {graph.op(n).semiring for n in circuit_nodes}
        if None in names:
            bad = next(n for n in circuit_nodes if graph.op(n).semiring is None)
            raise CompilationError(
                f"{self._what(bad)} has no semiring: run the"
                " 'lower-semiring{semiring=...}' pass before codegen"
            )
        if len(names) != 1:
            raise CompilationError(f"the circuit ops mix semirings {sorted(names)}; use one")
        semiring = get_semiring(names.pop())

        # Every parameter op some circuit op reads, in topological order (one sort in all).
        needed: set[int] = set()
        stack = [
            p
            for n in circuit_nodes
            for p, _, slot in graph.nx.in_edges(n, data="slot")
            if isinstance(slot, str)
        ]
        while stack:
            n = stack.pop()
            if n not in needed:
                needed.add(n)
                stack.extend(graph.nx.predecessors(n))
        param_nodes = [n for n in graph.topological_order() if n in needed]
        self.param_position = {n: i for i, n in enumerate(param_nodes)}
        for n in param_nodes:
            op = graph.op(n)
            complex_leaf = isinstance(op, ops.TensorOp) and op.tensor_dtype == "complex"
            if complex_leaf and semiring.name != "complex-lse-sum":
                raise CompilationError(
                    f"{self._what(n)} holds complex parameters, which semiring"
                    f" '{semiring.name}' cannot compute with: lower the circuit to"
                    " 'complex-lse-sum' instead"
                )

        log_softmax = self._log_softmax_peepholes(circuit_nodes, semiring)

        # Parameter nodes.
        node_modules: dict[int, TorchParameterNode] = {}
        node_plans: dict[int, list[GatherPlan]] = {}
        param_lines: list[_Statement] = []
        for i, n in enumerate(param_nodes):
            op = graph.op(n)
            if not isinstance(op, ops.ParamOp):
                raise CompilationError(f"{self._what(n)} feeds a parameter but is a circuit op")
            plans = [self._slot_plan(n, s, op.num_folds) for s in range(op.arity)]
            input_shapes = [self._gathered_shape(p, op.num_folds) for p in plans]
            expected = op.infer_shape(list(input_shapes)) if plans else tuple(op.shape)
            if tuple(expected) != tuple(op.shape):
                raise CompilationError(
                    f"{self._what(n)} has shape {op.shape} but its operands give {expected}"
                )
            module = node_from_op(
                op, input_shapes, dtype=self.dtype, device=self.device, seed=self.seed
            )
            node_modules[n], node_plans[n] = module, plans
            self.param_shape[n] = tuple(op.shape)
            args = ", ".join(
                p.expression(lambda q: f"p{q}", self._index_name(p, f"_g{n}_{j}"))
                for j, p in enumerate(plans)
            )
            if n in log_softmax:
                statement = _Statement(
                    f"p{n} = N[{i}].log_forward({args})",
                    comment=f"%{n} {op.name}, as log-softmax: its one user reads logs",
                )
            else:
                statement = _Statement(f"p{n} = N[{i}].forward({args})", comment=f"%{n} {op.name}")
            param_lines.append(statement)
        self._unify_sources(node_modules)

        # Layers.
        layers: list[TorchLayer] = []
        layer_params: dict[int, list[str]] = {}
        for j, n in enumerate(circuit_nodes):
            op = graph.op(n)
            assert isinstance(op, ops.CircuitOp)
            expected_shapes = op.param_shapes()
            params: dict[str, TorchParameter] = {}
            exprs = []
            for name in op.param_slots:
                plan = self._slot_plan(n, name, op.num_folds)
                shape = self._gathered_shape(plan, op.num_folds)
                if shape != tuple(expected_shapes[name]):
                    raise CompilationError(
                        f"{self._what(n)}: parameter '{name}' has shape {shape}, expected"
                        f" {tuple(expected_shapes[name])}"
                    )
                params[name] = self._torch_parameter(plan, shape, node_modules, node_plans)
                exprs.append(
                    plan.expression(lambda q: f"p{q}", self._index_name(plan, f"_g{n}_{name}"))
                )
            layers.append(make_layer(op, semiring, params))
            if params:
                layer_params[n] = exprs
                prepare = "prepare_log" if n in log_softmax.values() else "prepare"
                param_lines.append(
                    _Statement(
                        f"w{n} = L[{j}].{prepare}({', '.join(exprs)})", comment=f"%{n} {op.name}"
                    )
                )

        code = self._emit(circuit_nodes, layers, param_lines, layer_params)
        circuit = TorchCircuit(
            layers,
            [node_modules[n] for n in param_nodes],
            self.buffers,
            code,
            input_spec=self._input_spec(circuit_nodes),
            semiring=semiring,
            num_outputs=len(graph.outputs),
            device=self.device,
        )
        if self.device is not None:
            circuit.to(self.device)  # the index buffers of the TorchParameter views
        return circuit

    def _torch_parameter(
        self,
        plan: GatherPlan,
        shape: Shape,
        node_modules: dict[int, TorchParameterNode],
        node_plans: dict[int, list[GatherPlan]],
    ) -> TorchParameter:
        """A layer's view of the nodes that compute one of its parameters."""
        seen: set[int] = set()
        stack = list(plan.producers)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(q for p in node_plans[n] for q in p.producers)
        order = sorted(seen, key=self.param_position.__getitem__)
        position = {n: i for i, n in enumerate(order)}

        def renumber(p: GatherPlan) -> GatherPlan:
            return attrs.evolve(p, producers=tuple(position[q] for q in p.producers))

        return TorchParameter(
            [node_modules[n] for n in order],
            [[renumber(p) for p in node_plans[n]] for n in order],
            renumber(plan),
            shape,
        )

    def _unify_sources(self, node_modules: dict[int, TorchParameterNode]) -> None:
        """A symbolic tensor that lives in several folds or leaves starts with one value."""
        first: dict[int, Tensor] = {}
        with torch.no_grad():
            for module in node_modules.values():
                if not hasattr(module, "sources"):
                    continue
                for fold, source in enumerate(module.sources):  # type: ignore[attr-defined]
                    value = module.value[fold]  # type: ignore[index]
                    if source in first:
                        value.copy_(first[source])
                    else:
                        first[source] = value

    def _input_spec(self, circuit_nodes: list[int]) -> InputSpec:
        channels: set[int] = set()
        variables = -1
        bounds: dict[int, int] = {}
        discrete = continuous = False
        for n in circuit_nodes:
            op = self.graph.op(n)
            if not isinstance(op, ops.InputOp):
                continue
            channels.add(op.num_channels)
            variables = max(variables, *op.variables)
            if isinstance(op, ops.GaussianOp):
                continuous = True
                continue
            discrete = True
            bound = {
                ops.CategoricalOp: lambda o: o.num_categories - 1,
                ops.BinomialOp: lambda o: o.total_count,
                ops.EmbeddingOp: lambda o: o.num_states - 1,
            }[type(op)](op)
            for v in op.variables:
                bounds[v] = min(bound, bounds.get(v, bound))
        if len(channels) > 1:
            raise CompilationError(f"input layers disagree on the number of channels: {channels}")
        return InputSpec(
            num_channels=channels.pop() if channels else 1,
            num_variables=variables + 1,
            discrete=discrete,
            continuous=continuous,
            bounds=bounds,
        )

    # -- writing the code ---------------------------------------------------------------------

    def _emit(
        self,
        circuit_nodes: list[int],
        layers: list[TorchLayer],
        param_lines: list[_Statement],
        layer_params: dict[int, list[str]],
    ) -> str:
        graph = self.graph
        body: list[_Statement] = []
        units: dict[int, int] = {}
        for j, n in enumerate(circuit_nodes):
            op = graph.op(n)
            assert isinstance(op, ops.CircuitOp)
            units[n] = op.num_output_units
            w = f", *w{n}" if n in layer_params else ""
            comment = f"%{n} {op.name}: {op.num_folds} fold(s) -> {op.num_output_units} unit(s)"
            if op.arity == 0:
                body.append(_Statement(f"h{n} = L[{j}].evaluate(x{w})", comment=comment))
                continue
            plan = self._slot_plan(n, 0, op.num_folds, stacked_slots=tuple(range(op.arity)))
            for p in plan.producers:
                if not isinstance(graph.op(p), ops.CircuitOp):
                    raise CompilationError(
                        f"{self._what(n)} reads {self._what(p)} as a circuit input"
                    )
                if units[p] != op.num_input_units:
                    raise CompilationError(
                        f"{self._what(n)} expects {op.num_input_units} input units, but"
                        f" {self._what(p)} gives {units[p]}"
                    )
            expr = plan.expression(lambda q: f"h{q}", self._index_name(plan, f"_g{n}"))
            uses = tuple(f"h{q}" for q in plan.producers)
            if plan.copies:
                body.append(_Statement(f"x{n} = {expr}", uses, f"gather the inputs of %{n}"))
                body.append(_Statement(f"h{n} = L[{j}].evaluate(x{n}{w})", (f"x{n}",), comment))
            else:
                body.append(_Statement(f"h{n} = L[{j}].evaluate({expr}{w})", uses, comment))

        outputs = [(n, f) for n, f in graph.outputs]
        for n, _ in outputs:
            if n not in units:
                raise CompilationError(f"output %{n} is not a circuit op")
        out_units = sorted({units[n] for n, _ in outputs})
        if len(out_units) != 1:
            raise CompilationError(
                f"the outputs have different numbers of units {out_units}; a batch of outputs"
                " needs one"
            )
        folds_of = {n: graph.op(n).num_folds for n, _ in outputs}
        plan = plan_gather([outputs], folds_of, stacked=False)
        out = plan.expression(lambda q: f"h{q}", self._index_name(plan, "_g_outputs"))
        uses = tuple(f"h{q}" for q in plan.producers)
        body.append(_Statement(f"return {out}.permute(2, 0, 1)", uses, "(batch, outputs, units)"))

        lines = ["def evaluate_parameters(self):"]
        if param_lines:
            lines += ["    N = self._node_tuple", "    L = self._layer_tuple"]
            lines += [_format(s) for s in param_lines]
        weights = [f"w{n}" for n in layer_params]
        packed = f"({', '.join(weights)}{',' if len(weights) == 1 else ''})"
        lines.append(f"    return {packed}")
        lines.append("")
        lines.append("")
        lines.append("def forward(self, x):")
        lines.append("    x = self.check_input(x)")
        if weights:
            lines.append(f"    {packed} = self.parameter_values()")
        lines.append("    L = self._layer_tuple")
        lines += _with_deletes(body)
        return "\n".join(lines) + "\n"


def _format(statement: _Statement) -> str:
    line = f"    {statement.code}"
    return f"{line}  # {statement.comment}" if statement.comment else line


def _with_deletes(body: list[_Statement]) -> list[str]:
    """The statements, each value deleted after its last use (frees memory early); the last
    statement is the return."""
    last: dict[str, int] = {}
    for i, s in enumerate(body):
        for name in s.uses:
            last[name] = i
    lines = []
    for i, s in enumerate(body):
        lines.append(_format(s))
        dead = [name for name in dict.fromkeys(s.uses) if last[name] == i]
        if dead and i < len(body) - 1:
            lines.append(f"    del {', '.join(dead)}")
    return lines
