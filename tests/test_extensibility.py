"""The extensible IR: ops and kernels from outside the package, one name per value, values held
in the graph, declared variables, and no hand-written lists of ops or kernels."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

import cirkit_ir
from cirkit_ir import reference
from cirkit_ir.backends.torch import codegen, kernels
from cirkit_ir.backends.torch.layers.base import TorchLayer
from cirkit_ir.backends.torch.parameters import TorchParameterNode
from cirkit_ir.errors import InputError, VerificationError
from cirkit_ir.ir import lower, parse_ir, print_ir, verify
from cirkit_ir.ir.op_def import registered_ops
from cirkit_ir.ir.ops import Op
from cirkit_ir.passes import PassManager
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import Parameterization, circuit_templates

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_example(name: str) -> dict:
    """Runs examples/<name>.py as a script would, once per session (its ops register)."""
    module = f"_example_{name}"
    if module not in sys.modules:
        namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=module)
        sys.modules[module] = type(sys)(module)
        sys.modules[module].__dict__.update(namespace)
    return sys.modules[module].__dict__


# -- ops from outside the package -----------------------------------------------------------------


def test_custom_op_example_runs_every_stage(capsys):
    example = _run_example("custom_op")
    example["main"]()
    out = capsys.readouterr().out
    assert "max |log p - reference|" in out
    assert {"poisson", "normalized-dense"} <= set(registered_ops())
    # the ops are known by name to the parser, and compile under every flag
    circuit = example["poisson_circuit"](4, 2)
    graph = lower(circuit)
    assert parse_ir(print_ir(graph)) == graph
    x = torch.randint(0, 6, (5, 1, 4))
    for fold in (False, True):
        ctx = PipelineContext(semiring="lse-sum", fold=fold, optimize=fold, seed=3)
        compiled = ctx.compile(circuit)
        expected = reference.evaluate(circuit, x, compiled.symbolic_state())
        torch.testing.assert_close(compiled(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_a_custom_op_is_checked_like_a_built_in_one():
    """The Poisson op declares its rate positive: a negative rate is an InputError."""
    example = _run_example("custom_op")
    circuit = example["poisson_circuit"](2, 2)
    ctx = PipelineContext(semiring="lse-sum", seed=0)
    graph = ctx.compile(circuit).graph
    poisson = next(n for n, op in graph.ops() if op.name == "poisson")
    (leaf,) = graph.producers(graph.params(poisson)["rate"])
    graph.set_tensor_value(leaf, torch.full(graph.op(leaf).shape, -1000.0))  # exp() == 0
    broken = ctx.compile(graph)
    with pytest.raises(InputError, match=rf"poisson layer %{poisson} .*rate"):
        broken(torch.zeros(1, 1, 2, dtype=torch.long))


def _library_sources():
    yield Path(cirkit_ir.__file__)
    for info in pkgutil.walk_packages(cirkit_ir.__path__, "cirkit_ir."):
        module = importlib.import_module(info.name)
        yield Path(module.__file__)


def _resolve(module, node: ast.expr) -> object:
    """The object a module-level name or dotted name refers to, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    value = vars(module).get(node.id)
    for attribute in reversed(parts):
        value = getattr(value, attribute, None)
    return value


def _registered(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Op | TorchLayer | TorchParameterNode)


def test_no_library_module_lists_ops_or_kernels_by_hand():
    """Ops and kernels are found through their registries (filled by decorators), never
    through a literal list, tuple, set or dict of classes that a new op would have to join."""
    offenders = []
    for path in _library_sources():
        module = next(m for m in sys.modules.values() if getattr(m, "__file__", None) == str(path))
        name = module.__name__
        for statement in ast.walk(ast.parse(path.read_text())):
            if not isinstance(statement, ast.Assign | ast.AnnAssign) or statement.value is None:
                continue
            literal = statement.value
            if isinstance(literal, ast.Dict):
                elements = [*literal.keys, *literal.values]
            elif isinstance(literal, ast.Tuple | ast.List | ast.Set):
                elements = list(literal.elts)
            else:
                continue
            classes = [e for e in elements if e is not None and _registered(_resolve(module, e))]
            if len(classes) >= 2:
                offenders.append(f"{name}:{statement.lineno}")
    assert offenders == [], "use the op / kernel registries instead of these lists"


def test_every_registered_op_has_a_kernel():
    """Every op registered by the package compiles: kernels are found through the registry."""
    for name, cls in registered_ops().items():
        if cls.__module__.startswith("cirkit_ir"):
            table = kernels.registered_kernels()
            assert any(issubclass(cls, op) for op in table), name


# -- one name per value ---------------------------------------------------------------------------


def _names(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"%(\d+)", text)}


def _values_of(graph) -> set[int]:
    return {int(n) for n in re.findall(r"^%(\d+) = ", print_ir(graph), re.M)}


@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, True)])
def test_code_comments_and_generated_names_are_the_dump_names(seed_circuit, fold, optimize):
    compiled = PipelineContext(semiring="lse-sum", fold=fold, optimize=optimize).compile(
        seed_circuit
    )
    values = _values_of(compiled.graph)
    code = compiled.code
    assert _names(code) <= values
    generated = {int(n) for n in re.findall(r"\b[hxp](\d+)\b", code)}
    assert generated and generated <= values
    # every layer's label names its value
    labels = {int(re.search(r"%(\d+)", layer.label).group(1)) for layer in compiled.layers}
    assert labels <= values


def test_errors_name_the_values_of_the_dump():
    weights = Parameterization(initialization="uniform", activation="none")
    circuit = circuit_templates.image_data(
        (1, 4, 4),
        region_graph="quad-tree-4",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
        sum_weight_param=weights,
    )
    ctx = PipelineContext(semiring="lse-sum", fold=True, optimize=True)
    graph = ctx.compile(circuit).graph
    tucker = next(n for n, op in graph.ops() if op.name == "tucker")
    leaf = graph.params(tucker)["weight"]  # activation 'none': the tensor itself
    graph.set_tensor_value(leaf, -graph.tensor_value(leaf))  # negative sum weights
    compiled = ctx.compile(graph)
    values = _values_of(compiled.graph)
    with pytest.raises(InputError, match=rf"tucker layer %{tucker} ") as caught:
        compiled(torch.zeros(2, 1, 16, dtype=torch.long))
    assert _names(str(caught.value)) <= values
    # a verification error on the dump's graph names its nodes the same way
    broken = parse_ir(print_ir(graph))
    tucker = next(n for n, op in broken.ops() if op.name == "tucker")
    producer, slot, _ = next(e for e in broken.in_edges(tucker) if isinstance(e[1], int))
    broken.disconnect(producer, tucker, slot)
    with pytest.raises(VerificationError) as caught:
        verify(broken)
    assert _names(str(caught.value)) <= values and _names(str(caught.value))


# -- values held in the graph ---------------------------------------------------------------------


def _small():
    return circuit_templates.image_data(
        (1, 4, 4),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=3,
        sum_product_layer="cp",
        num_sum_units=3,
    )


def test_a_trained_circuit_recompiles_from_its_graph_with_other_flags():
    circuit = _small()
    compiled = PipelineContext(semiring="lse-sum", fold=True, optimize=True, seed=0).compile(
        circuit
    )
    with torch.no_grad():  # "training": new values in every leaf
        for p in compiled.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randint(0, 256, (7, 1, 16))
    expected = compiled(x)
    graph = compiled.graph
    assert graph.values  # the trained values, by source
    for semiring in ("lse-sum", "sum-product", "complex-lse-sum"):
        # (float64: likelihoods of ~e^-100 are below float32's normal range in sum-product)
        ctx = PipelineContext(semiring=semiring, fold=False, optimize=False, dtype=torch.float64)
        again = ctx.compile(graph)
        out = again(x)
        log = out.log() if semiring == "sum-product" else out.real
        torch.testing.assert_close(log.float(), expected, rtol=1e-4, atol=1e-4)
    # and the symbolic reference agrees on the same values
    torch.testing.assert_close(
        expected.double(), reference.evaluate(circuit, x, graph.values), rtol=1e-4, atol=1e-4
    )
    # the circuit's own graph is untouched: `circuit.graph` is a copy
    assert compiled.graph is not compiled.graph


def test_graph_hands_out_fresh_sources_and_refuses_reused_ones():
    graph = lower(_small())
    tensors = [op for _, op in graph.ops() if op.name == "tensor"]
    used = {s for op in tensors for s in op.sources}
    fresh = graph.new_source()
    assert fresh not in used and graph.new_source() == fresh + 1
    text = print_ir(graph)
    # a second tensor claiming source 0 with another shape fails verification
    clash = text.replace(
        "return", "%9999 = tensor() {initializer=normal(), sources=[0]} : 1x5\nreturn"
    )
    with pytest.raises(VerificationError, match="source 0 is a 5 real tensor here"):
        verify(parse_ir(clash))


def test_held_values_are_used_by_codegen_and_checked_by_the_verifier():
    graph = lower(_small())
    PassManager.parse("fold,lower-semiring{semiring=lse-sum}").run(graph)
    leaf = next(n for n, op in graph.ops() if op.name == "tensor")
    shape = graph.op(leaf).shape
    graph.set_tensor_value(leaf, torch.arange(float(torch.Size(shape).numel())).reshape(shape))
    compiled = codegen(graph)
    module = next(
        m for m in compiled.modules() if getattr(m, "sources", None) == graph.op(leaf).sources
    )
    torch.testing.assert_close(module.value.detach().double(), graph.tensor_value(leaf).double())
    graph.values[graph.op(leaf).sources[0]] = torch.zeros(2)
    with pytest.raises(VerificationError, match="the value held for source"):
        verify(graph)


# -- declared variables ---------------------------------------------------------------------------


def test_declared_variables_set_the_batch_layout():
    graph = lower(_small())
    text = print_ir(graph).replace("num_variables=16", "num_variables=20")
    widened = parse_ir(text)
    assert widened.num_variables == 20
    PassManager.parse("lower-semiring{semiring=lse-sum}").run(widened)
    compiled = codegen(widened)
    out = compiled(torch.randint(0, 256, (3, 1, 20)))  # four variables no op reads
    assert out.shape == (3, 1, 1)
    with pytest.raises(InputError, match="expects 20"):
        compiled(torch.randint(0, 256, (3, 1, 16)))
    narrow = parse_ir(print_ir(graph).replace("num_variables=16", "num_variables=8"))
    with pytest.raises(VerificationError, match="declares 8 variables"):
        verify(narrow)
