"""`codegen`: an IR graph whose semiring has been lowered -> a `TorchCircuit`.

It maps each op to its kernel (the module that computes it: `kernels.annotated_layer_class`,
the kernel the op's `kernel` attribute names, which the `select-kernels` pass chose;
`kernels.parameter_node_class`) and writes the circuit's forward as straight-line Python in the
style of torch.fx: one statement per layer, each fold gather spelled out as the torch
expression that builds the layer's input, `del` of values after their last use, and no
interpreter loop. Values are named after their nodes (`h12` is the value `%12` of the IR
dump). In `parameter_stream`, a parameter value read once is written where it is read (see
`_Codegen._parameter_code`). Codegen rewrites nothing: a kernel may only ask for a parameter
in another form that computes the same value (`TorchLayer.log_params`, `softmax_params`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from cirkit_ir.backends.torch import layers as tl
from cirkit_ir.backends.torch.allocator import retain_freed_memory
from cirkit_ir.backends.torch.checks import InputSpec
from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.gather import GatherPlan, plan_gather, slot_entries
from cirkit_ir.backends.torch.kernels import (
    annotated_layer_class,
    layer_class,
    parameter_node_class,
)
from cirkit_ir.backends.torch.parameters import (
    NodeContext,
    TorchParameter,
    TorchParameterNode,
    TorchTensorParameter,
)
from cirkit_ir.backends.torch.semirings import Semiring, get_semiring
from cirkit_ir.errors import CompilationError, KernelError, OptionError
from cirkit_ir.gc_pause import gc_paused
from cirkit_ir.ir import ops, sign
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.verify import verify as verify_graph

Shape = tuple[int, ...]

MAX_NESTING = 32
"""The deepest call expression the generated code nests (Python refuses about 200)."""


def codegen(
    graph: Graph,
    *,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    verify: bool = True,
    contraction_dtype: str = "float32",
) -> TorchCircuit:
    """Compiles `graph` (every circuit op with a semiring) into a `TorchCircuit`.

    Tensors whose sources the graph holds values for (`graph.values`) start from them; the
    others are drawn: `seed=None` draws each parameter tensor at once from torch's global
    RNG; an int draws every fold from a generator seeded by (seed, source), so that one
    symbolic circuit compiled with any flags (folded or not, fused or not) computes the same
    function. The graph is verified first (`verify=False` skips that, for a graph that was
    just verified); the circuit keeps it (`circuit.graph`). Each circuit op runs the kernel
    its `kernel` attribute names (run `select-kernels{kernels=auto}` first for the native
    ones; unannotated ops are eager); `contraction_dtype` ('float32' or 'bfloat16') is what
    native Tucker layers multiply in without gradients.
    """
    if dtype not in (torch.float32, torch.float64):
        raise OptionError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if contraction_dtype not in ("float32", "bfloat16"):
        raise OptionError(
            f"contraction_dtype must be 'float32' or 'bfloat16', got {contraction_dtype!r}"
        )
    if not isinstance(graph, Graph):
        raise OptionError(f"codegen compiles a cirkit_ir.ir.Graph, got {type(graph).__name__}")
    if verify:
        verify_graph(graph)
    retain_freed_memory()
    # Codegen allocates many small objects (a module per op, plans, code lines) and frees
    # none: the cyclic garbage collector would rescan them over and over (a third of the time).
    with gc_paused():
        return _Codegen(graph, seed, dtype, device, contraction_dtype).run()


def make_layer(
    op: ops.CircuitOp,
    semiring: Semiring,
    params: dict[str, TorchParameter],
    *,
    proven: Collection[str] = (),
    label: str | None = None,
    kernel: str | None = None,
) -> tl.TorchLayer:
    """The module of circuit op `op`: the registered kernel (`kernels.register_layer`) that
    `kernel` names, by default the one the op's `kernel` attribute names.

    The layer checks at each forward the parameters whose values have a domain in
    `semiring` (`CircuitOp.slot_needs`: sum weights and probabilities that real logs need
    non-negative, a binomial's probs, a gaussian's stddev), all but the slots in `proven`:
    those that `cirkit_ir.ir.sign` proves in their domain, which so cost nothing. `label`
    names the layer in errors (by default, the op's name).
    """
    cls = annotated_layer_class(op) if kernel is None else layer_class(op, kernel)
    layer = cls.from_op(op, semiring, params)
    layer.label = label or f"{op.name} layer"
    needs = op.slot_needs(semiring.signed_parameters)
    layer.checked_params = tuple(
        (i, slot, needs[slot])
        for i, slot in enumerate(op.param_slots)
        if slot in needs and slot not in proven
    )
    return layer


def make_parameter_node(
    op: ops.ParamOp, input_shapes: Sequence[Shape], context: NodeContext | None = None
) -> TorchParameterNode:
    """The module of parameter op `op` reading operands of `input_shapes`: its registered
    kernel (`kernels.register_parameter_node`)."""
    return parameter_node_class(op).from_op(op, input_shapes, context or NodeContext())


class _Statement(NamedTuple):
    code: str
    uses: tuple[str, ...] = ()
    comment: str = ""


class _Forms(NamedTuple):
    """How the generated code hands parameters over, besides plainly (see `TorchLayer`)."""

    log: dict[int, int]  # parameter node -> layer node: the node's `log_forward` feeds it
    softmax: dict[int, int]  # softmax node -> layer node: the node's operand (logits) feeds it


class _Codegen:
    """The state of one compilation."""

    def __init__(
        self,
        graph: Graph,
        seed: int | None,
        dtype: torch.dtype,
        device: torch.device | str | None,
        contraction_dtype: str = "float32",
    ) -> None:
        self.graph = graph
        self.context = NodeContext(dtype=dtype, device=device, seed=seed, values=graph.values)
        self.device = device
        self.buffers: dict[str, Tensor] = {}
        self.param_shape: dict[int, Shape] = {}
        self.param_position: dict[int, int] = {}
        # Gathers by their shape with producers numbered 0, 1, ...: an unfolded graph asks
        # for the same few shapes thousands of times (see `_slot_plan` and `_plan`).
        self._plans: dict[tuple, GatherPlan] = {}
        self._identity_plans: dict[tuple, GatherPlan] = {}
        self.contraction_dtype = contraction_dtype

    # -- reading the graph ------------------------------------------------------------------------

    def _op(self, node: int) -> ops.Op:
        return self.graph.op(node)

    def _what(self, node: int) -> str:
        return self.graph.describe(node)

    def _slot_plan(
        self, node: int, slot: int | str, folds: int, stacked_slots: Sequence[int | str] = ()
    ) -> GatherPlan:
        """The gather feeding one slot of `node` (or, stacked, all its numbered slots)."""
        slots = list(stacked_slots) if stacked_slots else [slot]
        stacked = bool(stacked_slots)
        by_slot: dict[int | str, list[tuple[int, FoldMap]]] = {s: [] for s in slots}
        for producer, edge_slot, fold_map in self.graph.in_edges(node):
            edges = by_slot.get(edge_slot)
            if edges is not None:
                edges.append((producer, fold_map))
        for s in slots:
            if not by_slot[s]:
                raise CompilationError(f"{self._what(node)}: nothing feeds operand slot {s!r}")

        # The common case: every slot reads one producer through the shared identity map
        # (as lowering and most passes connect ops).
        identity = FoldMap.identity(folds)
        producers = []
        for edges in by_slot.values():
            if len(edges) != 1 or edges[0][1] is not identity:
                break
            producers.append(edges[0][0])
        else:
            return self._identity_plan(producers, folds, stacked)

        tables = []
        for s in slots:
            entries = [(p, m.consumer, m.producer) for p, m in by_slot[s]]
            tables.append(slot_entries(entries, folds, f"{self._what(node)} slot {s!r}"))
        return self._plan(tables, stacked)

    def _identity_plan(self, producers: list[int], folds: int, stacked: bool) -> GatherPlan:
        """The gather when slot i reads fold f of `producers[i]` into fold f, memoized: the
        plan depends only on which slots share a producer and on the producers' folds."""
        key = (
            stacked,
            folds,
            tuple(map(producers.index, producers)),
            tuple([self._op(p).num_folds for p in producers]),
        )
        plan = self._identity_plans.get(key)
        if plan is None:
            tables = [[(p, f) for f in range(folds)] for p in producers]
            plan = self._identity_plans[key] = self._plan(tables, stacked)
            return plan
        distinct = tuple(producers) if len(producers) == 1 else tuple(dict.fromkeys(producers))
        return _with_producers(plan, distinct)

    def _plan(self, tables: list[list[tuple[int, int]]], stacked: bool) -> GatherPlan:
        """`plan_gather`, memoized on the gather's shape.

        A plan depends on its producers only through their positions (in order of first
        appearance), which the template names `{p0}, {p1}, ...`: the plan of an equal shape
        is reused with this gather's producers.
        """
        producers = tuple(dict.fromkeys(p for table in tables for p, _ in table))
        position = {p: i for i, p in enumerate(producers)}
        key = (
            stacked,
            tuple(self._op(p).num_folds for p in producers),
            tuple(tuple((position[p], f) for p, f in table) for table in tables),
        )
        plan = self._plans.get(key)
        if plan is None:
            folds_of = {p: self._op(p).num_folds for p in producers}
            plan = self._plans[key] = plan_gather(tables, folds_of, stacked=stacked)
            return plan
        return _with_producers(plan, producers)

    def _gathered_shape(self, plan: GatherPlan, folds: int) -> Shape:
        shapes = {self.param_shape[p][1:] for p in plan.producers}
        if len(shapes) != 1:
            raise CompilationError(
                f"parameter producers {[f'%{p}' for p in plan.producers]} of one slot disagree"
                f" on their shapes {sorted(shapes)}"
            )
        return (folds, *shapes.pop())

    def _index_name(self, plan: GatherPlan, name: str) -> str:
        if plan.index is None:
            return "None"
        self.buffers[name] = plan.index
        return f"self.{name}"

    # -- compiling --------------------------------------------------------------------------------

    def run(self) -> TorchCircuit:
        order = self.graph.topological_order()  # the one sort: circuit ops, then parameter ops
        circuit_nodes = [n for n in order if isinstance(self._op(n), ops.CircuitOp)]
        semiring = self._semiring(circuit_nodes)
        param_nodes = self._parameter_ops(order, circuit_nodes, semiring)
        node_modules, node_plans = self._parameter_nodes(param_nodes)
        layers, layer_plans = self._layers(circuit_nodes, semiring, node_modules, node_plans)
        forms = self._forms(circuit_nodes, layers, node_modules, semiring)
        param_lines = self._parameter_code(
            param_nodes, node_plans, circuit_nodes, layers, layer_plans, forms
        )
        code = self._emit(circuit_nodes, layers, param_lines, layer_plans.keys())
        circuit = TorchCircuit(
            layers,
            [node_modules[n] for n in param_nodes],
            self.buffers,
            code,
            input_spec=self._input_spec(circuit_nodes),
            semiring=semiring,
            num_outputs=len(self.graph.outputs),
            device=self.device,
            graph=self.graph,
        )
        if self.device is not None:
            circuit.to(self.device)  # the index buffers of the TorchParameter views
        return circuit

    def _semiring(self, circuit_nodes: list[int]) -> Semiring:
        """The one semiring every circuit op computes in."""
        if not circuit_nodes:
            raise CompilationError("the graph has no circuit ops")
        if not self.graph.outputs:
            raise CompilationError("the graph has no outputs: set them with graph.set_outputs")
        names = {self._op(n).semiring for n in circuit_nodes}
        if None in names:
            bad = next(n for n in circuit_nodes if self._op(n).semiring is None)
            raise CompilationError(
                f"{self._what(bad)} has no semiring: run the"
                " 'lower-semiring{semiring=...}' pass before codegen"
            )
        if len(names) != 1:
            raise CompilationError(f"the circuit ops mix semirings {sorted(names)}; use one")
        return get_semiring(names.pop())

    def _parameter_ops(
        self, order: list[int], circuit_nodes: list[int], semiring: Semiring
    ) -> list[int]:
        """Every parameter op some circuit op reads, in topological order."""
        graph = self.graph
        stack = [
            p for n in circuit_nodes for p, slot, _ in graph.in_edges(n) if isinstance(slot, str)
        ]
        needed: set[int] = set()
        while stack:
            n = stack.pop()
            if n not in needed:
                needed.add(n)
                stack.extend(graph.producers(n))
        param_nodes = [n for n in order if n in needed]
        self.param_position = {n: i for i, n in enumerate(param_nodes)}
        for n in param_nodes:
            op = self._op(n)
            if not isinstance(op, ops.ParamOp):
                raise CompilationError(f"{self._what(n)} feeds a parameter but is a circuit op")
            if semiring.name != "complex-lse-sum" and op.dtype == "complex":
                raise CompilationError(
                    f"{self._what(n)} holds complex parameters, which semiring"
                    f" '{semiring.name}' cannot compute with: lower the circuit to"
                    " 'complex-lse-sum' instead"
                )
        return param_nodes

    def _parameter_nodes(
        self, param_nodes: list[int]
    ) -> tuple[dict[int, TorchParameterNode], dict[int, list[GatherPlan]]]:
        """The module of every parameter op, and the gathers feeding it."""
        node_modules: dict[int, TorchParameterNode] = {}
        node_plans: dict[int, list[GatherPlan]] = {}
        for n in param_nodes:
            op = self._op(n)
            folds = op.num_folds
            plans = [self._slot_plan(n, s, folds) for s in range(op.arity)]
            input_shapes = [self._gathered_shape(p, folds) for p in plans]
            node_modules[n] = make_parameter_node(op, input_shapes, self.context)
            node_plans[n] = plans
            self.param_shape[n] = op.shape
        _unify_sources(node_modules)
        return node_modules, node_plans

    def _layers(
        self,
        circuit_nodes: list[int],
        semiring: Semiring,
        node_modules: dict[int, TorchParameterNode],
        node_plans: dict[int, list[GatherPlan]],
    ) -> tuple[list[tl.TorchLayer], dict[int, list[tuple[str, GatherPlan]]]]:
        """The module of every circuit op, and the gathers feeding its parameters."""
        layers: list[tl.TorchLayer] = []
        layer_plans: dict[int, list[tuple[str, GatherPlan]]] = {}
        known: dict[int, sign.Bounds | None] = {}  # memoized across layers (`sign.bounds`)
        tiny = torch.finfo(self.context.dtype).tiny  # a positive parameter's least value
        for j, n in enumerate(circuit_nodes):
            op = self._op(n)
            assert isinstance(op, ops.CircuitOp)
            params: dict[str, TorchParameter] = {}
            needs = op.slot_needs(semiring.signed_parameters)
            proven: list[str] = []
            if op.param_slots:
                slot_plans = layer_plans[n] = []
                for name, expected in op.param_shapes().items():
                    plan = self._slot_plan(n, name, op.num_folds)
                    shape = self._gathered_shape(plan, op.num_folds)
                    if shape != expected:
                        raise CompilationError(
                            f"{self._what(n)}: parameter '{name}' has shape {shape}, expected"
                            f" {expected}"
                        )
                    params[name] = self._torch_parameter(plan, shape, node_modules, node_plans)
                    slot_plans.append((name, plan))
                    need = needs.get(name)
                    if need is not None and all(
                        need.proven(sign.bounds(self.graph, p, known), tiny) for p in plan.producers
                    ):
                        proven.append(name)
            label = f"{op.name} layer %{n} (circuit.layers[{j}])"
            try:
                layer = make_layer(op, semiring, params, proven=proven, label=label)
            except KernelError as error:
                raise KernelError(f"{self._what(n)}: {error}") from None
            if hasattr(layer, "contraction_dtype"):
                layer.contraction_dtype = self.contraction_dtype
            layers.append(layer)
        return layers, layer_plans

    def _private_producer(self, node: int, slot: str) -> int | None:
        """The parameter op that alone feeds `slot` of `node`, fold for fold, and feeds
        nothing else: the generated code may hand its value over in another form."""
        edges = self.graph.slot_edges(node, slot)
        if len(edges) != 1:
            return None
        producer, fold_map = edges[0]
        if fold_map.is_identity(self._op(node).num_folds) and self.graph.has_one_use(producer):
            return producer
        return None

    def _forms(
        self,
        circuit_nodes: list[int],
        layers: list[tl.TorchLayer],
        node_modules: dict[int, TorchParameterNode],
        semiring: Semiring,
    ) -> _Forms:
        """The parameters handed over as logs or as a softmax's logits (see `TorchLayer`):
        only for a layer's one parameter slot, whose value a private node computes."""
        forms = _Forms({}, {})
        for n, layer in zip(circuit_nodes, layers, strict=True):
            slots = self._op(n).param_slots
            if len(slots) != 1:
                continue
            producer = self._private_producer(n, slots[0])
            if producer is None:
                continue
            module = node_modules[producer]
            if semiring.log_space and slots[0] in layer.log_params and module.log_forward:
                forms.log[producer] = n
            elif slots[0] in layer.softmax_params and module.softmax_axis is not None:
                if module.softmax_axis != -len(module.shape):  # not over the folds
                    forms.softmax[producer] = n
        return forms

    def _parameter_code(
        self,
        param_nodes: list[int],
        node_plans: dict[int, list[GatherPlan]],
        circuit_nodes: list[int],
        layers: list[tl.TorchLayer],
        layer_plans: dict[int, list[tuple[str, GatherPlan]]],
        forms: _Forms,
    ) -> list[_Statement]:
        """The statements of `parameter_stream`: every parameter node once, then each
        layer's `prepare` (`prepare_checked` for layers with parameters to check), yielded
        in layer order.

        A value that one gather reads is written inside the expression that reads it rather
        than stored in `p{n}`: an unfolded circuit has thousands of tensor -> softmax ->
        layer chains, and one statement per chain instead of three is a third of the source
        for `compile`, and frees each value as soon as it is used. Inlining stops at
        `MAX_NESTING` calls deep (a chain of fused matmuls is as long as the circuit is
        deep), so that Python can always compile the code.
        """
        # How many times the code reads each value: a template may name a producer more than
        # once, so the templates are counted (once per distinct template).
        reads: dict[int, int] = dict.fromkeys(param_nodes, 0)
        template_reads: dict[str, list[int]] = {}
        all_plans = [plan for plans in node_plans.values() for plan in plans]
        all_plans += [plan for slot_plans in layer_plans.values() for _, plan in slot_plans]
        for plan in all_plans:
            counts = template_reads.get(plan.template)
            if counts is None:
                counts = [plan.template.count(f"{{p{i}}}") for i in range(len(plan.producers))]
                template_reads[plan.template] = counts
            for q, count in zip(plan.producers, counts, strict=True):
                reads[q] += count

        lines: list[_Statement] = []
        value: dict[int, str] = {}  # node -> how the code names its value
        depth: dict[int, int] = {}  # node -> how deeply its inlined expression nests
        notes: dict[int, str] = {}  # node -> its comment, while its value waits to be inlined

        def arguments(plans: list[GatherPlan], names: list[str]) -> tuple[str, str, int]:
            """The plans' expressions (`names`: their index buffers), the comments of the
            values they inline, and how deeply they nest."""
            exprs, inlined, nesting = [], "", 0
            for plan, name in zip(plans, names, strict=True):
                index = "None" if plan.index is None else self._index_name(plan, name)
                exprs.append(plan.expression(value.__getitem__, index))
                for q in plan.producers:
                    nesting = max(nesting, depth.get(q, 0) + 1)
                    if q in notes:
                        inlined += f" <- {notes.pop(q)}"
            return ", ".join(exprs), inlined, nesting

        for i, n in enumerate(param_nodes):
            op = self._op(n)
            plans = node_plans[n]
            args, inlined, nesting = arguments(plans, [f"_g{n}_{j}" for j in range(len(plans))])
            if n in forms.log:
                call = f"N[{i}].log_forward({args})"
                note = f"%{n} {op.name} (as its log: its user reads logs){inlined}"
            elif n in forms.softmax:  # the logits: the layer normalizes them
                call = args
                note = f"%{n} {op.name} (applied by the layer){inlined}"
            else:
                call = f"N[{i}].forward({args})"
                note = f"%{n} {op.name}{inlined}"
            if reads[n] == 1 and nesting < MAX_NESTING:
                value[n], notes[n], depth[n] = call, note, nesting
            else:
                value[n] = f"p{n}"
                lines.append(_Statement(f"p{n} = {call}", comment=note))

        log_readers = set(forms.log.values())
        softmax_readers = {n: node for node, n in forms.softmax.items()}
        for j, n in enumerate(circuit_nodes):
            slot_plans = layer_plans.get(n)
            if slot_plans is None:
                continue
            args, inlined, _ = arguments(
                [plan for _, plan in slot_plans], [f"_g{n}_{name}" for name, _ in slot_plans]
            )
            prepare = "prepare_checked" if layers[j].checked_params else "prepare"
            if n in log_readers:  # logs of a normalized value: nothing to check
                prepare = "prepare_log"
            if n in softmax_readers:
                axis = self.param_softmax_axis(softmax_readers[n])
                prepare, args = "prepare_softmax", f"{args}, {axis}"
            comment = f"%{n} {self._op(n).name}{inlined}"
            lines.append(_Statement(f"yield L[{j}].{prepare}({args})", comment=comment))
        return lines

    def param_softmax_axis(self, node: int) -> int:
        return self._op(node).axis  # type: ignore[attr-defined]

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
            return _with_producers(p, tuple(position[q] for q in p.producers))

        return TorchParameter(
            [node_modules[n] for n in order],
            [[renumber(p) for p in node_plans[n]] for n in order],
            renumber(plan),
            shape,
        )

    def _input_spec(self, circuit_nodes: list[int]) -> InputSpec:
        """What a batch must look like: the declared variables and channels, and the
        largest value each discrete variable takes."""
        num_variables, num_channels = self.graph.declared_variables()
        bounds: dict[int, int] = {}
        discrete = continuous = False
        for n in circuit_nodes:
            op = self._op(n)
            if not isinstance(op, ops.InputOp):
                continue
            if op.num_channels != num_channels:
                raise CompilationError(
                    f"{self._what(n)} reads {op.num_channels} channel(s), but the batch has"
                    f" {num_channels}: every input op reads the batch's channels"
                )
            top = op.max_value()
            if top is None:
                continuous = True
                continue
            discrete = True
            for v in op.variables:
                bounds[v] = min(top, bounds.get(v, top))
        return InputSpec(
            num_channels=num_channels,
            num_variables=num_variables,
            discrete=discrete,
            continuous=continuous,
            bounds=bounds,
        )

    def _emit(
        self,
        circuit_nodes: list[int],
        layers: list[tl.TorchLayer],
        param_lines: list[_Statement],
        layer_params: Collection[int],
    ) -> str:
        graph = self.graph
        body: list[_Statement] = []
        units: dict[int, int] = {}
        # In log semirings layers compute in a packed form (linear values and a log scale,
        # see `semirings`). Input layers whose values are outputs evaluate to exact logs.
        log_space = bool(layers) and layers[0].semiring.log_space
        exact = {n for n, _ in graph.outputs if log_space and self._op(n).arity == 0}
        for j, n in enumerate(circuit_nodes):
            op = self._op(n)
            assert isinstance(op, ops.CircuitOp)
            units[n] = op.num_output_units
            w = ", *next(P)" if n in layer_params else ""
            comment = f"%{n} {op.name}: {op.num_folds} fold(s) -> {op.num_output_units} unit(s)"
            kernel = getattr(layers[j], "kernel", "eager")
            if kernel != "eager":
                comment += f" [{kernel} kernel]"
            if op.arity == 0 and n in exact:
                layers[j].exact_values = True  # type: ignore[attr-defined]
                body.append(_Statement(f"o{n} = L[{j}].evaluate_values(x{w})", comment=comment))
                if graph.users(n):
                    body.append(_Statement(f"h{n} = self.semiring.pack(o{n}, 1)", (f"o{n}",)))
                continue
            if op.arity == 0:
                body.append(_Statement(f"h{n} = L[{j}].evaluate(x{w})", comment=comment))
                continue
            plan = self._slot_plan(n, 0, op.num_folds, stacked_slots=tuple(range(op.arity)))
            for p in plan.producers:
                if not isinstance(self._op(p), ops.CircuitOp):
                    raise CompilationError(
                        f"{self._what(n)} reads {self._what(p)} as a circuit input"
                    )
                if units[p] != op.num_input_units:
                    raise CompilationError(
                        f"{self._what(n)} expects {op.num_input_units} input units, but"
                        f" {self._what(p)} gives {units[p]}"
                    )
            expr = plan.expression(_value_name("h"), self._index_name(plan, f"_g{n}"))
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
        folds_of = {n: self._op(n).num_folds for n, _ in outputs}
        plan = plan_gather([outputs], folds_of, stacked=False)
        if exact:  # every output producer as semiring values, then the gather
            for q in plan.producers:
                if q not in exact:
                    body.append(_Statement(f"o{q} = self.semiring.unpack(h{q}, 1)", (f"h{q}",)))
            out = plan.expression(_value_name("o"), self._index_name(plan, "_g_outputs"))
            uses = tuple(f"o{q}" for q in plan.producers)
        else:
            out = plan.expression(_value_name("h"), self._index_name(plan, "_g_outputs"))
            uses = tuple(f"h{q}" for q in plan.producers)
            if log_space:  # packed values and scales -> logs
                out = f"self.semiring.unpack({out}, 1)"
        body.append(_Statement(f"return {out}.permute(2, 0, 1)", uses, "(batch, outputs, units)"))

        # Each layer's prepared parameters are made as the forward reaches the layer and freed
        # after it (`TorchCircuit.parameter_stream`), so that the largest of them, not all of
        # them, is alive at once; `evaluate_parameters` makes them all (the cache).
        lines = ["def parameter_stream(self):"]
        if param_lines:
            lines += ["    N = self._node_tuple", "    L = self._layer_tuple"]
            lines += [_format(s) for s in param_lines]
        else:
            lines.append("    yield from ()")
        lines += ["", "", "def evaluate_parameters(self):"]
        lines += ["    return tuple(parameter_stream(self))", "", ""]
        lines.append("def forward(self, x):")
        lines.append("    x = self.check_input(x)")
        if layer_params:
            lines.append("    P = self.parameter_stream()  # each layer's parameters, in order")
        lines.append("    L = self._layer_tuple")
        lines += _with_deletes(body)
        return "\n".join(lines) + "\n"


def _unify_sources(node_modules: dict[int, TorchParameterNode]) -> None:
    """A symbolic tensor that lives in several folds or leaves starts with one value."""
    leaves = [m for m in node_modules.values() if isinstance(m, TorchTensorParameter)]
    # Plain ints first: most circuits have no tensor in two places, and then no tensor
    # needs touching.
    seen: set[int] = set()
    repeated: set[int] = set()
    for leaf in leaves:
        for source in leaf.sources:
            if source in seen:
                repeated.add(source)
            seen.add(source)
    if not repeated:
        return
    first: dict[int, Tensor] = {}
    with torch.no_grad():
        for leaf in leaves:
            for fold, source in enumerate(leaf.sources):
                if source not in repeated:
                    continue
                value = leaf.value[fold]
                if source in first:
                    value.copy_(first[source])
                else:
                    first[source] = value


def _value_name(prefix: str) -> Callable[[int], str]:
    """How the generated code names the value of node n: `p12`, `h12`."""
    return lambda node: f"{prefix}{node}"


def _with_producers(plan: GatherPlan, producers: tuple) -> GatherPlan:
    """`plan` reading other producers, in the same positions (what `attrs.evolve` does, at a
    fraction of its cost: this runs for most gathers of an unfolded graph)."""
    return GatherPlan(plan.template, producers, plan.index, plan.copies)


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
