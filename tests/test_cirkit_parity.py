"""The same script against libcirkit 0.3.1 and cirkit-ir: the same values.

`_script` is written once, against a namespace of modules, and run with libcirkit's modules
(``cirkit...``) and ours (``cirkit_ir...``): what a user porting code by renaming imports
runs. Both libraries draw initial parameters differently, so the script overwrites every
learnable tensor of each compiled circuit with the same pattern of values (a function of the
position in the tensor, whose layout both libraries share when circuits are unfolded); the
outputs then agree only if the defaults (compilation flags, parameterizations, layer
parameters) and the templates' structures agree.

Skipped unless libcirkit is installed (``pip install -c constraints.txt -e ".[bench]"``).
"""

from __future__ import annotations

import importlib
import itertools
from types import SimpleNamespace

import pytest
import torch

MODULES = {
    "pipeline": "pipeline",
    "pgms": "templates.pgms",
    "factorizations": "templates.tensor_factorizations",
    "data_modalities": "templates.data_modalities",
    "utils": "templates.utils",
    "region_graph": "templates.region_graph",
}


def _library(package: str) -> SimpleNamespace:
    return SimpleNamespace(
        **{name: importlib.import_module(f"{package}.{path}") for name, path in MODULES.items()}
    )


def _fill(circuit: torch.nn.Module) -> None:
    """Every learnable tensor gets values that depend only on the position in it."""
    with torch.no_grad():
        for parameter in circuit.parameters():
            if parameter.requires_grad:
                position = torch.arange(parameter.numel(), dtype=parameter.dtype)
                values = 0.25 * ((position * 7) % 11) - 1.1
                parameter.copy_(values.reshape(parameter.shape))


def _grid(*sizes: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*(range(s) for s in sizes))))


def _script(lib: SimpleNamespace) -> dict[str, object]:
    """A porting user's script: templates and defaults, compiled without flags."""
    parameterization = lib.utils.Parameterization
    circuits = {
        "hmm": (
            lib.pgms.hmm([2, 0, 1], input_layer_kwargs={"num_categories": 3}, num_latent_states=2),
            _grid(3, 3, 3),
        ),
        "fully-factorized": (
            lib.pgms.fully_factorized(3, input_layer_kwargs={"num_categories": 3}),
            _grid(3, 3, 3),
        ),
        "gaussians": (
            lib.pgms.fully_factorized(2, input_layer="gaussian"),
            torch.tensor([[0.1, -0.3], [1.5, 0.2], [-2.0, 0.7]]),
        ),
        "binomials": (
            lib.pgms.fully_factorized(2, input_layer="binomial"),
            _grid(3, 3),
        ),
        "cp": (lib.factorizations.cp((3, 2, 3), 2), _grid(3, 2, 3)),
        "cp-weighted": (
            lib.factorizations.cp((3, 2, 3), 2, weight_param=parameterization()),
            _grid(3, 2, 3),
        ),
        "tucker": (lib.factorizations.tucker((3, 2, 3), 2), _grid(3, 2, 3)),
        "tensor-train": (lib.factorizations.tensor_train((3, 2, 3), 2), _grid(3, 2, 3)),
        "image": (
            lib.data_modalities.image_data(
                (1, 2, 2),
                region_graph="quad-graph",
                input_layer="categorical",
                num_input_units=2,
                sum_product_layer="cp",
                num_sum_units=2,
            ),
            torch.tensor([[0, 255, 3, 17], [128, 64, 32, 16]]),
        ),
        "image-embedding": (
            lib.data_modalities.image_data(
                (1, 2, 2),
                region_graph="quad-tree-2",
                input_layer="embedding",
                num_input_units=2,
                sum_product_layer="tucker",
                num_sum_units=2,
                sum_weight_param=parameterization(activation="softmax"),
            ),
            torch.tensor([[0, 255, 3, 17], [128, 64, 32, 16]]),
        ),
    }
    ctx = lib.pipeline.PipelineContext(backend="torch")  # libcirkit's default flags
    outputs = {}
    for name, (circuit, x) in circuits.items():
        compiled = ctx.compile(circuit)
        _fill(compiled)
        outputs[name] = compiled(x).detach()
    # region graphs take (C, H, W)
    for name in ("QuadTree", "QuadGraph"):
        graph = getattr(lib.region_graph, name)((2, 2, 3))
        outputs[name] = sorted(tuple(sorted(node.scope)) for node in graph.nodes)
    # Outside any context, `compile` uses the default backend's flags: 'lse-sum', folded
    # (whose parameter layouts differ between the libraries), so compare what space the
    # values are in: the log-probabilities of all assignments add up to 1.
    hmm, x = circuits["hmm"]
    log_probabilities = lib.pipeline.compile(hmm)(x).detach()
    outputs["compile-logsumexp"] = torch.logsumexp(log_probabilities.flatten(), dim=0)
    return outputs


def test_the_same_script_computes_the_same_values():
    pytest.importorskip("cirkit", reason="libcirkit is the bench extra")
    torch.manual_seed(0)
    theirs = _script(_library("cirkit"))
    ours = _script(_library("cirkit_ir"))
    assert theirs.keys() == ours.keys()
    for name, value in theirs.items():
        if not isinstance(value, torch.Tensor):
            assert ours[name] == value, name
            continue
        assert ours[name].shape == value.shape, name
        assert torch.allclose(ours[name], value, rtol=1e-5, atol=1e-6), (
            name,
            ours[name].flatten(),
            value.flatten(),
        )
