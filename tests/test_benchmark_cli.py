"""`examples/benchmark.py --device cuda`: a clear message where it cannot run (no CUDA device,
no pyjuice), and pyjuice given the seed circuit's structure (when pyjuice is installed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", EXAMPLES / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("benchmark", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_mode_without_a_gpu_says_so(benchmark, capsys):
    assert benchmark.main(["--device", "cuda", "--quick"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_cuda_mode_without_pyjuice_says_how_to_install_it(benchmark, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyjuice", None)  # `import pyjuice` raises ImportError
    with pytest.raises(benchmark.LibraryMissing, match=r'pip install -e "\.\[pyjuice\]"'):
        benchmark.PyJuice("cuda")


def test_pyjuice_gets_the_seed_circuit(benchmark):
    pytest.importorskip("pyjuice")
    from cirkit_ir.templates import circuit_templates

    symbolic = circuit_templates.image_data(
        (1, 4, 4), region_graph="quad-graph", input_layer="categorical", num_input_units=4,
        sum_product_layer="tucker", num_sum_units=4, sum_weight_param="softmax",
    )  # fmt: skip
    root = benchmark.pyjuice_nodes(symbolic)
    assert root.num_nodes == 1 and len(root.scope) == 16
