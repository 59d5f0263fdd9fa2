"""`cirkit_ir.save` / `load`: round trips that compute bit-identical outputs and print the same
IR, for every template option, semiring, dtype, folded and fused; and the refusals (newer
format, truncated or changed files, a missing blob), with nothing ever unpickled."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

import cirkit_ir
from cirkit_ir.errors import SerializationError
from cirkit_ir.ir import Graph, lower, print_ir
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.serialization import FORMAT_VERSION, read_manifest
from cirkit_ir.templates import circuit_templates
from cirkit_ir.templates.from_region_graph import SUM_PRODUCT_LAYERS

SHAPE = (1, 4, 4)
BASE = {
    "region_graph": "quad-tree-4",
    "input_layer": "categorical",
    "num_input_units": 2,
    "sum_product_layer": "cp",
    "num_sum_units": 2,
    "sum_weight_param": "softmax",
}


def _template(**changes: object):
    options = {**BASE, **changes}
    if options["region_graph"] == "chow-liu-tree":
        options["data"] = torch.randint(
            0, 256, (20, *SHAPE), generator=torch.Generator().manual_seed(0)
        )
    return circuit_templates.image_data(SHAPE, **options)


def _batch(input_layer: str = "categorical") -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if input_layer == "gaussian":
        return torch.randn(6, *SHAPE[:1], SHAPE[1] * SHAPE[2], generator=g)
    top = 255 if input_layer == "binomial" else 256
    return torch.randint(0, top, (6, SHAPE[0], SHAPE[1] * SHAPE[2]), generator=g)


def _round_trip(circuit, path: Path, x: torch.Tensor):
    cirkit_ir.save(circuit, path)
    loaded = cirkit_ir.load(path)
    assert torch.equal(circuit(x), loaded(x))
    assert print_ir(loaded.graph, locations=True) == print_ir(circuit.graph, locations=True)
    assert loaded.semiring.name == circuit.semiring.name
    return loaded


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("folded", [False, True], ids=["plain", "folded-fused"])
def test_round_trip_every_semiring_dtype_and_flag(tmp_path, semiring, dtype, folded):
    ctx = PipelineContext("torch", semiring, folded, folded, dtype=dtype, seed=3)
    circuit = ctx.compile(_template())
    suffix = ".cirkit" if folded else ""
    _round_trip(circuit, tmp_path / f"model{suffix}", _batch())


_OPTIONS = (
    [{"region_graph": rg} for rg in circuit_templates.IMAGE_REGION_GRAPHS]
    + [{"input_layer": layer} for layer in circuit_templates.IMAGE_INPUT_LAYERS]
    + [{"sum_product_layer": layer} for layer in SUM_PRODUCT_LAYERS]
    + [{"sum_weight_param": p} for p in circuit_templates.SUM_WEIGHT_ACTIVATIONS]
    + [{"num_classes": 2}, {"use_mixing_weights": False}]
)


@pytest.mark.parametrize("changes", _OPTIONS, ids=lambda c: "-".join(map(str, c.values())))
def test_round_trip_every_template_option(tmp_path, changes):
    circuit_ = _template(**changes)
    x = _batch(str(changes.get("input_layer", "categorical")))
    # Alternate the other flags with the option, so every option meets both layouts.
    folded = len(tmp_path.name) % 2 == 0
    signed = changes.get("sum_weight_param") == "none" or changes.get("input_layer") == "embedding"
    semiring = "complex-lse-sum" if signed else "lse-sum"
    for fold in (folded, not folded):
        ctx = PipelineContext("torch", semiring, fold, fold, dtype=torch.float64, seed=0)
        _round_trip(ctx.compile(circuit_), tmp_path / f"fold{fold}", x)


def test_trained_values_survive(tmp_path):
    circuit = PipelineContext.from_default_backend(seed=0).compile(_template())
    with torch.no_grad():
        for p in circuit.parameters():
            p.add_(0.25)
    loaded = _round_trip(circuit, tmp_path / "trained", _batch())
    for a, b in zip(circuit.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


def test_load_onto_a_device(tmp_path):
    circuit = PipelineContext.from_default_backend(seed=0).compile(_template())
    cirkit_ir.save(circuit, tmp_path / "m")
    loaded = cirkit_ir.load(tmp_path / "m", device="cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_graph_round_trip_keeps_held_values(tmp_path):
    graph = lower(_template())
    circuit = PipelineContext("torch", "lse-sum", seed=0).compile(graph)
    held = circuit.graph
    cirkit_ir.save(held, tmp_path / "g.cirkit")
    loaded = cirkit_ir.load(tmp_path / "g.cirkit")
    assert isinstance(loaded, Graph)
    assert print_ir(loaded) == print_ir(held)
    assert loaded.values.keys() == held.values.keys()
    assert all(torch.equal(loaded.values[s], v) for s, v in held.values.items())
    # A graph without held values saves too, and loads without any.
    cirkit_ir.save(graph, tmp_path / "bare")
    assert cirkit_ir.load(tmp_path / "bare").values == {}
    assert read_manifest(tmp_path / "bare")["kind"] == "graph"


# -- never unpickle ------------------------------------------------------------------------------


class _Boobytrap:
    """Unpickling this calls `_sprung`, which records that the pickle was executed."""

    def __reduce__(self):
        return (_sprung, ())


SPRUNG: list[bool] = []


def _sprung():
    SPRUNG.append(True)
    return None


def test_loading_never_unpickles(tmp_path, monkeypatch):
    circuit = PipelineContext.from_default_backend(seed=0).compile(_template())
    path = tmp_path / "m"
    cirkit_ir.save(circuit, path)
    trap = pickle.dumps(_Boobytrap())
    for name in ("model.pt", "model.pkl", "data.pkl", "pytorch_model.bin"):
        (path / name).write_bytes(trap)

    def refuse(*args, **kwargs):
        raise AssertionError("load unpickled something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    loaded = cirkit_ir.load(path)
    assert torch.equal(loaded(_batch()), circuit(_batch()))
    assert SPRUNG == []


# -- refusals ------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    circuit = PipelineContext.from_default_backend(seed=0).compile(_template())
    return cirkit_ir.save(circuit, tmp_path / "m")


def _rewrite_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _replace_tensors(path: Path, edit) -> None:
    """Rewrites the blob through `edit` and records its new hash: a consistent forgery, which
    only the check against the IR can catch."""
    import hashlib

    tensors = edit(load_tensors((path / "tensors.safetensors").read_bytes()))
    blob = save_tensors(tensors)
    (path / "tensors.safetensors").write_bytes(blob)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["tensors.safetensors"] = {
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_newer_format_version_is_refused(saved):
    _rewrite_manifest(saved, format_version=FORMAT_VERSION + 1)
    with pytest.raises(SerializationError, match="newer than this library reads"):
        cirkit_ir.load(saved)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": "something-else"}, "does not describe"),
        ({"format_version": "1"}, "no integer format_version"),
        ({"kind": "spaceship"}, "unknown kind 'spaceship'"),
        ({"semiring": "max-product"}, "unknown semiring"),
        ({"dtype": "float16"}, "unknown dtype"),
    ],
)
def test_unknown_manifest_entries_are_refused(saved, changes, message):
    _rewrite_manifest(saved, **changes)
    with pytest.raises(SerializationError, match=message):
        cirkit_ir.load(saved)


def test_manifest_that_is_not_json(saved):
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(SerializationError, match="not valid JSON"):
        cirkit_ir.load(saved)


@pytest.mark.parametrize("member", ["manifest.json", "graph.ir", "tensors.safetensors"])
def test_missing_member(saved, member):
    (saved / member).unlink()
    with pytest.raises(SerializationError, match=f"'{member}' is missing"):
        cirkit_ir.load(saved)


@pytest.mark.parametrize("member", ["graph.ir", "tensors.safetensors"])
def test_truncated_member(saved, member):
    data = (saved / member).read_bytes()
    (saved / member).write_bytes(data[: len(data) // 2])
    with pytest.raises(SerializationError, match="truncated or changed"):
        cirkit_ir.load(saved)


def test_changed_member(saved):
    text = (saved / "graph.ir").read_text()
    (saved / "graph.ir").write_text(text.replace("semiring=lse-sum", "semiring=lse-mul"))
    with pytest.raises(SerializationError, match="SHA-256"):
        cirkit_ir.load(saved)


def test_missing_blob(saved):
    _replace_tensors(saved, lambda t: dict(list(t.items())[1:]))
    with pytest.raises(
        SerializationError, match=r"has no tensor 'source\.\d+' for %\d+ \(tensor\)"
    ):
        cirkit_ir.load(saved)


def test_blob_of_the_wrong_shape(saved):
    _replace_tensors(
        saved,
        lambda t: {k: v[..., :1].contiguous() if k == "source.0" else v for k, v in t.items()},
    )
    with pytest.raises(SerializationError, match="has shape .* reads"):
        cirkit_ir.load(saved)


def test_blob_of_the_wrong_dtype(saved):
    _replace_tensors(saved, lambda t: {k: v.double() for k, v in t.items()})
    with pytest.raises(SerializationError, match="saved as torch.float32"):
        cirkit_ir.load(saved)


def test_stray_blob(saved):
    _replace_tensors(saved, lambda t: {**t, "source.999": torch.zeros(1)})
    with pytest.raises(SerializationError, match="no op reads"):
        cirkit_ir.load(saved)


def test_archive_and_bad_paths(tmp_path, saved):
    with pytest.raises(SerializationError, match="does not exist"):
        cirkit_ir.load(tmp_path / "nowhere.cirkit")
    (tmp_path / "junk.cirkit").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SerializationError, match="neither a saved directory"):
        cirkit_ir.load(tmp_path / "junk.cirkit")
    whole = cirkit_ir.save(cirkit_ir.load(saved), tmp_path / "whole.cirkit").read_bytes()
    (tmp_path / "cut.cirkit").write_bytes(whole[: len(whole) - 10])
    with pytest.raises(SerializationError, match="truncated"):
        cirkit_ir.load(tmp_path / "cut.cirkit")
    with zipfile.ZipFile(tmp_path / "partial.cirkit", "w") as archive:
        archive.write(saved / "manifest.json", "manifest.json")
    with pytest.raises(SerializationError, match="the archive has no 'graph.ir'"):
        cirkit_ir.load(tmp_path / "partial.cirkit")
    with pytest.raises(SerializationError, match="save takes a compiled circuit"):
        cirkit_ir.save(object(), tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(SerializationError, match="is a file"):
        cirkit_ir.save(lower(_template()), tmp_path / "file")
    shutil.rmtree(saved)


# -- symbolic circuits as JSON -------------------------------------------------------------------


def _symbolic_cases():
    from cirkit_ir.templates import pgms, tensor_factorizations

    cases = {
        f"image-{'-'.join(map(str, c.values()))}": lambda c=c: _template(**c) for c in _OPTIONS
    }
    cases["hmm"] = lambda: pgms.hmm(
        [0, 2, 1], num_latent_states=2, input_layer_kwargs={"num_categories": 3}
    )
    cases["fully-factorized"] = lambda: pgms.fully_factorized(3, "gaussian")
    cases["cp"] = lambda: tensor_factorizations.cp((2, 3), 2)
    cases["tucker"] = lambda: tensor_factorizations.tucker((2, 3), 2)
    cases["tensor-train"] = lambda: tensor_factorizations.tensor_train((2, 3, 2), 2)
    return cases


SYMBOLIC = _symbolic_cases()


@pytest.mark.parametrize("name", list(SYMBOLIC))
def test_symbolic_round_trip(tmp_path, name):
    """Same layers, wiring, scopes and parameter graphs: the loaded circuit lowers to the same
    IR (locations included) and compiles, with a seed, to the same function."""
    from cirkit_ir.symbolic import lowerable

    circuit = SYMBOLIC[name]()
    path = cirkit_ir.save(circuit, tmp_path / "circuit.json")
    loaded = cirkit_ir.load(path)
    assert [type(a) for a in loaded.layers] == [type(a) for a in circuit.layers]
    assert [loaded.layer_scope(a) for a in loaded.layers] == [
        circuit.layer_scope(a) for a in circuit.layers
    ]
    assert print_ir(lower(lowerable(loaded)), locations=True) == print_ir(
        lower(lowerable(circuit)), locations=True
    )
    assert len(loaded.tensor_parameters()) == len(circuit.tensor_parameters())  # still shared


def test_symbolic_function_is_the_same(tmp_path):
    circuit = _template(sum_weight_param="sigmoid")
    loaded = cirkit_ir.load(cirkit_ir.save(circuit, tmp_path / "c.json"))
    ctx = PipelineContext("torch", "lse-sum", True, True, seed=5)
    x = _batch()
    assert torch.equal(ctx.compile(circuit)(x), ctx.compile(loaded)(x))


def test_symbolic_refusals(tmp_path):
    path = cirkit_ir.save(_template(), tmp_path / "c.json")
    document = json.loads(path.read_text())
    document["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(document))
    with pytest.raises(SerializationError, match="newer than this library reads"):
        cirkit_ir.load(path)
    document["format_version"] = FORMAT_VERSION
    document["circuit"]["layers"][0]["type"] = "os.system"
    path.write_text(json.dumps(document))
    with pytest.raises(SerializationError, match="unknown Layer type 'os.system'"):
        cirkit_ir.load(path)
    del document["circuit"]
    path.write_text(json.dumps(document))
    with pytest.raises(SerializationError, match="no 'circuit' entry"):
        cirkit_ir.load(path)
    with pytest.raises(SerializationError, match="saves to a '.json' file"):
        cirkit_ir.save(_template(), tmp_path / "dir")
