"""The kernel choice in the IR: `select-kernels` records each circuit op's kernel as its
`kernel` attribute, which prints, parses back, and is what codegen builds (and nothing else);
an annotation naming a kernel the backend lacks, or one that cannot compute the op, is a
`KernelError`."""

from __future__ import annotations

import io

import pytest
import torch
from ir_cases import seed_like

from cirkit_ir.backends.torch import codegen, native, triton_kernels
from cirkit_ir.backends.torch.kernels import EAGER, NATIVE, TRITON, choose_layer_kernel
from cirkit_ir.errors import CompilationError, IRParseError, KernelError, OptionError, PipelineSyntaxError
from cirkit_ir.ir import parse_ir, print_ir
from cirkit_ir.ir.ops import CircuitOp, TuckerOp
from cirkit_ir.passes import PassManager, SelectKernels
from cirkit_ir.pipeline import PipelineContext


@pytest.fixture(scope="module")
def built():
    if native.load() is None:
        pytest.skip("the native extension cannot be built on this machine")


def _compile(circuit, **options):
    ctx = PipelineContext(
        "torch", "lse-sum", fold=options.pop("fold", True), optimize=True, **options
    )
    return ctx.compile(circuit, seed=0)


def _kernels(graph) -> dict[int, str]:
    """circuit op node -> the kernel its annotation names (eager when unannotated)."""
    return {n: op.kernel or EAGER for n, op in graph.ops() if isinstance(op, CircuitOp)}


def _x(circuit, batch: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (batch, circuit.num_channels, circuit.num_variables), generator=g)


@pytest.mark.parametrize("kernels", ["auto", "native", "eager"])
def test_the_ir_records_the_choice_and_codegen_builds_it(built, kernels):
    circuit = seed_like((1, 4, 4), num_input_units=3, num_sum_units=3)
    compiled = _compile(circuit, fold=False, kernels=kernels)
    graph = compiled.graph
    annotated = _kernels(graph)
    for node, op in graph.ops():
        if isinstance(op, CircuitOp):
            assert annotated[node] == choose_layer_kernel(op, op.semiring, kernels)
    # Codegen maps each op to the kernel its annotation names, and to nothing else.
    built_kernels = [getattr(layer, "kernel", EAGER) for layer in compiled.layers]
    assert sorted(built_kernels) == sorted(annotated.values())
    uses_native = kernels != "eager"  # unfolded: one-fold tucker layers, native under 'auto'
    assert (NATIVE in annotated.values()) == uses_native
    assert ("kernel=native" in print_ir(graph)) == uses_native
    assert ("[native kernel]" in compiled.code) == uses_native


def test_the_annotation_prints_and_parses_back(built):
    circuit = seed_like((1, 4, 4), num_input_units=3, num_sum_units=3)
    compiled = _compile(circuit, kernels="native")
    text = print_ir(compiled.graph)
    tucker = [line for line in text.splitlines() if " = tucker(" in line]
    assert tucker and all(
        line.split(" : ")[0].endswith("semiring=lse-sum, kernel=native}") for line in tucker
    )
    again = parse_ir(text)
    assert again == compiled.graph and print_ir(again) == text
    assert _kernels(again) == _kernels(compiled.graph)
    # The parsed graph (given the held values, which are not text) compiles to the same
    # kernels and the same function.
    again.values = dict(compiled.graph.values)
    recompiled = codegen(again)
    assert [getattr(m, "kernel", EAGER) for m in recompiled.layers] == [
        getattr(m, "kernel", EAGER) for m in compiled.layers
    ]
    x = _x(circuit)
    torch.testing.assert_close(recompiled(x), compiled(x))


def test_print_ir_after_shows_the_choice(built):
    circuit = seed_like((1, 4, 4), num_input_units=2, num_sum_units=2)
    dump = io.StringIO()
    _compile(circuit, kernels="native", print_ir_after="select-kernels", print_ir_to=dump)
    assert "select-kernels{kernels=native,device=cpu}" in dump.getvalue()
    assert "kernel=native" in dump.getvalue()


def test_select_kernels_reruns_on_a_compiled_graph(built):
    """`circuit.graph` keeps the choice; compiling it again chooses afresh (another semiring,
    other kernels), and `kernels=eager` clears every annotation."""
    circuit = seed_like((1, 4, 4), num_input_units=2, num_sum_units=2)
    graph = _compile(circuit, kernels="native").graph
    assert NATIVE in _kernels(graph).values()
    for semiring, kernels in (("sum-product", "auto"), ("lse-sum", "eager")):
        ctx = PipelineContext("torch", semiring, fold=True, optimize=True, kernels=kernels)
        assert set(_kernels(ctx.compile(graph).graph).values()) == {EAGER}
    assert SelectKernels(kernels="eager").apply(graph)
    assert "kernel=" not in print_ir(graph)
    assert not SelectKernels(kernels="eager").apply(graph)


def _annotated_tucker(semiring: str, kernel: str):
    """A small compiled graph in `semiring` whose tucker ops are annotated `kernel=`."""
    circuit = seed_like((1, 2, 2), region_graph="quad-tree-2", num_input_units=2, num_sum_units=2)
    text = print_ir(_compile(circuit, kernels="eager").graph)
    lines = []
    for line in text.replace("semiring=lse-sum", f"semiring={semiring}").splitlines():
        if " = tucker(" in line:
            line = line.replace("} : ", f", kernel={kernel}}} : ")
        lines.append(line)
    graph = parse_ir("\n".join(lines))
    assert any(isinstance(op, TuckerOp) and op.kernel == kernel for _, op in graph.ops())
    return graph


def test_an_unknown_kernel_is_a_kernel_error():
    graph = _annotated_tucker("lse-sum", "bogus")
    with pytest.raises(KernelError, match=r"%\d+ \(tucker\): kernel=bogus: .* it has eager"):
        codegen(graph)


def test_a_kernel_that_cannot_compute_the_op_is_a_kernel_error():
    graph = _annotated_tucker("sum-product", "native")
    with pytest.raises(KernelError, match=r"kernel=native does not compute this tucker op"):
        codegen(graph)


def test_bad_kernel_options_and_names():
    with pytest.raises(OptionError, match="kernels"):
        SelectKernels(kernels="fast")
    with pytest.raises(PipelineSyntaxError):
        PassManager.parse("select-kernels{kernels=fast}")
    op = TuckerOp(in_units=2, out_units=2, num_inputs=2)
    with pytest.raises(OptionError, match="kernel name"):
        op.replace(kernel="two words")
    graph = _annotated_tucker("lse-sum", "native")
    with pytest.raises(IRParseError, match="kernel"):
        parse_ir(print_ir(graph).replace("kernel=native", 'kernel="two words"'))


def test_a_native_annotation_computes_eagerly_where_the_extension_cannot_build(monkeypatch):
    """A graph annotated on a machine with a compiler (a saved circuit, say) still compiles
    on one without: one warning, then the eager kernel."""
    graph = _annotated_tucker("lse-sum", "native")

    def broken_build():
        raise OSError("no C++ compiler")

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", broken_build)
    with pytest.warns(RuntimeWarning, match="eager kernels"):
        compiled = codegen(graph)
    assert all(getattr(m, "kernel", EAGER) == EAGER for m in compiled.layers)


def test_kernels_stay_off_devices_they_do_not_compute_on(monkeypatch):
    """The C++ kernels are CPU-only and the Triton ones GPU-only: 'auto' takes each on its own
    device only (the IR must not promise a kernel the circuit will not run), and naming one
    for the other device is a `KernelError`."""
    graph = _annotated_tucker("lse-sum", "native")
    op = next(op for _, op in graph.ops() if isinstance(op, TuckerOp)).replace(kernel=None)
    on_gpu = TRITON if triton_kernels.available() else EAGER
    assert choose_layer_kernel(op, "lse-sum", "auto", device="cuda") == on_gpu
    with pytest.raises(KernelError, match="native tucker kernel computes on cpu, not on cuda"):
        choose_layer_kernel(op, "lse-sum", "native", device="cuda")
    with pytest.raises(KernelError, match="triton tucker kernel computes on cuda, not on cpu"):
        choose_layer_kernel(op, "lse-sum", "triton", device="cpu")
    monkeypatch.setattr(triton_kernels, "available", lambda: False)  # a CPU-only torch
    assert choose_layer_kernel(op, "lse-sum", "auto", device="cuda") == EAGER
    with pytest.raises(CompilationError, match="kernels='triton': Triton is not installed"):
        choose_layer_kernel(op, "lse-sum", "triton", device="cuda")
    PassManager.parse("select-kernels{kernels=auto,device=cuda}").run(graph)
    assert _kernels(graph) == dict.fromkeys(_kernels(graph), EAGER)
    with pytest.raises(OptionError, match="device type"):
        SelectKernels(device="cuda:0")


def test_the_pipeline_tells_select_kernels_its_device():
    assert PipelineContext().pipeline_string.endswith("select-kernels{kernels=auto}")
    gpu = PipelineContext(kernels="auto")
    object.__setattr__(gpu, "device", "cuda:1")  # as on a GPU machine (this one has none)
    assert gpu.pipeline_string.endswith("select-kernels{kernels=auto,device=cuda}")
