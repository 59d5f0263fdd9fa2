"""`save` / `load`: compiled circuits and IR graphs on disk, without pickle.

A saved object is three members, in a directory or (for a path ending in `.cirkit`) in one
uncompressed zip archive holding the same three names:

- `manifest.json`: the format name and version, the library version, what was saved
  (`kind`: 'torch-circuit' or 'graph'), the semiring and dtype of a circuit, and the size and
  SHA-256 of the other two members (so a truncated or edited file is caught before parsing);
- `graph.ir`: the final IR as text (`print_ir` with locations), node ids kept, so the loaded
  circuit's `circuit.graph` prints the same text;
- `tensors.safetensors`: the held tensor values, one tensor per source, named `source.<id>`.

A symbolic circuit saves to one JSON file instead (`path` ending in `.json`): the same
manifest entries and the circuit (see `cirkit_ir.symbolic.serialization`).

Loading parses the IR, checks every blob against the tensor op that reads it (shape, dtype),
and, for a circuit, rebuilds the module with `codegen` from those values: the loaded circuit
computes bit-identical outputs, and needs neither the symbolic circuit nor the compile flags.
Nothing is ever unpickled (no `torch.load`): a model file from a stranger can describe a
circuit, never run code. Any problem with a file raises `SerializationError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirkit_ir.errors import SerializationError

FORMAT = "cirkit-ir"
FORMAT_VERSION = 1
"""Bumped whenever a reader of the previous version could misread a new file."""

MANIFEST = "manifest.json"
IR_FILE = "graph.ir"
TENSORS_FILE = "tensors.safetensors"
ARCHIVE_SUFFIX = ".cirkit"

KINDS = ("torch-circuit", "graph", "symbolic-circuit")
JSON_SUFFIX = ".json"
_DTYPES = ("float32", "float64")
_TENSOR_PREFIX = "source."


# -- saving --------------------------------------------------------------------------------------


def save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Writes a compiled `TorchCircuit` or an IR `Graph` (with its held values) to `path`:
    a directory, or a single archive if `path` ends in `.cirkit`; or a symbolic `Circuit` to
    a JSON file (`path` ending in `.json`). Returns the path."""
    from cirkit_ir.backends.torch.circuit import TorchCircuit
    from cirkit_ir.ir.graph import Graph
    from cirkit_ir.symbolic.circuit import Circuit

    if isinstance(obj, Circuit):
        return _save_symbolic(obj, Path(path))
    if isinstance(obj, TorchCircuit):
        graph, kind = obj.graph, "torch-circuit"
        semiring, dtype = obj.semiring.name, _circuit_dtype(obj)
    elif isinstance(obj, Graph):
        graph, kind, semiring, dtype = obj, "graph", None, None
    else:
        raise SerializationError(
            "save takes a compiled circuit (TorchCircuit), an IR Graph or a symbolic Circuit,"
            f" got {type(obj).__name__}"
        )
    members = _members(graph, kind, semiring, dtype)
    path = Path(path)
    if path.suffix == ARCHIVE_SUFFIX:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    else:
        if path.exists() and not path.is_dir():
            raise SerializationError(
                f"{path} is a file; save writes a directory (or a '{ARCHIVE_SUFFIX}' archive)"
            )
        path.mkdir(parents=True, exist_ok=True)
        for name, data in members.items():
            (path / name).write_bytes(data)
    return path


def _header(kind: str) -> dict[str, Any]:
    from cirkit_ir import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": kind,
    }


def _save_symbolic(circuit: Any, path: Path) -> Path:
    from cirkit_ir.symbolic.serialization import circuit_to_json

    if path.suffix != JSON_SUFFIX:
        raise SerializationError(
            f"a symbolic circuit saves to a '{JSON_SUFFIX}' file, got {path}; compile it first"
            " to save the compiled circuit"
        )
    document = {**_header("symbolic-circuit"), "circuit": circuit_to_json(circuit)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, sort_keys=True) + "\n")
    return path


def _circuit_dtype(circuit: Any) -> str:
    """The real dtype the circuit was compiled with (complex leaves are promoted from it)."""
    for leaf in circuit._leaves:
        return str(leaf.value.real.dtype).removeprefix("torch.")
    return "float32"


def _members(graph: Any, kind: str, semiring: str | None, dtype: str | None) -> dict[str, bytes]:
    from safetensors.torch import save as save_tensors

    from cirkit_ir.ir.printer import print_ir

    ir = print_ir(graph, locations=True).encode()
    tensors = {
        f"{_TENSOR_PREFIX}{source}": value.detach().cpu().contiguous()
        for source, value in sorted(graph.values.items())
    }
    blob = save_tensors(tensors, metadata={"format": FORMAT})
    manifest = {
        **_header(kind),
        "semiring": semiring,
        "dtype": dtype,
        "files": {IR_FILE: _fingerprint(ir), TENSORS_FILE: _fingerprint(blob)},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return {MANIFEST: text.encode(), IR_FILE: ir, TENSORS_FILE: blob}


def _fingerprint(data: bytes) -> dict[str, object]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# -- loading -------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], device: Any = None) -> Any:
    """What `save` wrote at `path`: a `TorchCircuit` (rebuilt by codegen on `device`) or a
    `Graph` holding the saved values. Raises `SerializationError` for a file of a newer or
    unknown format, a missing member or tensor, or one that was truncated or changed."""
    path = Path(path)
    if path.suffix == JSON_SUFFIX and path.is_file():
        return _load_symbolic(path)
    read = _reader(path)
    manifest = _manifest(read(MANIFEST), path)
    if manifest["kind"] == "symbolic-circuit":
        raise SerializationError(f"{path}: a symbolic circuit is one '{JSON_SUFFIX}' file")
    ir = _checked(read, IR_FILE, manifest, path)
    blob = _checked(read, TENSORS_FILE, manifest, path)
    graph = _graph(ir, path)
    values = _tensors(blob, path)
    _hold(graph, values, manifest, path)
    if manifest["kind"] == "graph":
        return graph
    return _circuit(graph, manifest, device, path)


def _load_symbolic(path: Path):
    from cirkit_ir.symbolic.serialization import circuit_from_json

    document = _manifest(path.read_bytes(), path, needs_files=False)
    if document["kind"] != "symbolic-circuit":
        raise SerializationError(f"{path} holds a {document['kind']}, not a symbolic circuit")
    try:
        return circuit_from_json(document["circuit"])
    except KeyError:
        raise SerializationError(f"{path} has no 'circuit' entry") from None
    except SerializationError as error:
        raise SerializationError(f"{path}: {error}") from None


def _reader(path: Path):
    """A function member name -> bytes for a directory or an archive."""
    if path.is_dir():

        def read_file(name: str) -> bytes:
            try:
                return (path / name).read_bytes()
            except FileNotFoundError:
                raise SerializationError(
                    f"{path}: '{name}' is missing; a saved circuit holds {MANIFEST}, {IR_FILE}"
                    f" and {TENSORS_FILE}"
                ) from None

        return read_file
    if not path.exists():
        raise SerializationError(f"{path} does not exist")
    try:
        archive = zipfile.ZipFile(path)
        names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        raise SerializationError(
            f"{path} is neither a saved directory nor a whole '{ARCHIVE_SUFFIX}' archive (a"
            f" truncated one is not): {error}"
        ) from None

    def read_member(name: str) -> bytes:
        if name not in names:
            raise SerializationError(f"{path}: the archive has no '{name}'")
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise SerializationError(f"{path}: '{name}' cannot be read ({error})") from None

    return read_member


def _manifest(data: bytes, path: Path, needs_files: bool = True) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SerializationError(f"{path}: {MANIFEST} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SerializationError(f"{path}: {MANIFEST} does not describe a {FORMAT} file")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SerializationError(f"{path}: {MANIFEST} has no integer format_version")
    if version > FORMAT_VERSION:
        raise SerializationError(
            f"{path} has format version {version}, newer than this library reads"
            f" ({FORMAT_VERSION}; written by cirkit-ir {manifest.get('library_version')}):"
            " upgrade cirkit-ir to load it"
        )
    if version < 1:
        raise SerializationError(f"{path}: unknown format version {version}")
    if manifest.get("kind") not in KINDS:
        raise SerializationError.unknown("kind", manifest.get("kind"), KINDS, path)
    if manifest["kind"] == "torch-circuit":
        from cirkit_ir.ir.types import SEMIRINGS

        if manifest.get("semiring") not in SEMIRINGS:
            raise SerializationError.unknown("semiring", manifest.get("semiring"), SEMIRINGS, path)
        if manifest.get("dtype") not in _DTYPES:
            raise SerializationError.unknown("dtype", manifest.get("dtype"), _DTYPES, path)
    if needs_files and not isinstance(manifest.get("files"), dict):
        raise SerializationError(f"{path}: {MANIFEST} lists no files")
    return manifest


def _checked(read, name: str, manifest: Mapping[str, Any], path: Path) -> bytes:
    """The member's bytes, checked against the size and hash the manifest recorded."""
    data = read(name)
    expected = manifest["files"].get(name)
    if not isinstance(expected, dict):
        raise SerializationError(f"{path}: {MANIFEST} does not list '{name}'")
    if len(data) != expected.get("bytes"):
        raise SerializationError(
            f"{path}: '{name}' has {len(data)} bytes, the manifest says {expected.get('bytes')}:"
            " the file was truncated or changed"
        )
    if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise SerializationError(
            f"{path}: '{name}' does not match the manifest's SHA-256: the file was changed"
        )
    return data


def _graph(ir: bytes, path: Path):
    from cirkit_ir.errors import IRParseError
    from cirkit_ir.ir.parser import parse_ir

    try:
        return parse_ir(ir.decode())
    except (UnicodeDecodeError, IRParseError) as error:
        raise SerializationError(f"{path}: {IR_FILE} does not parse: {error}") from None


def _tensors(blob: bytes, path: Path) -> dict[int, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    try:
        named = load_tensors(blob)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise SerializationError(
            f"{path}: {TENSORS_FILE} is not a safetensors file ({error})"
        ) from None
    values: dict[int, Any] = {}
    for name, tensor in named.items():
        number = name.removeprefix(_TENSOR_PREFIX)
        if not name.startswith(_TENSOR_PREFIX) or not number.isdigit():
            raise SerializationError(
                f"{path}: {TENSORS_FILE} holds '{name}'; tensors are named '{_TENSOR_PREFIX}<id>'"
            )
        values[int(number)] = tensor
    return values


def _hold(graph: Any, values: dict[int, Any], manifest: Mapping[str, Any], path: Path) -> None:
    """Puts the blobs into `graph.values`, each checked against the tensor op reading it."""
    import torch

    from cirkit_ir.ir.ops import TensorOp

    real = getattr(torch, manifest["dtype"]) if manifest.get("dtype") else None
    needed: set[int] = set()
    for node, op in graph.ops():
        if not isinstance(op, TensorOp):
            continue
        if real is not None:
            expected = real
            if op.tensor_dtype == "complex":
                expected = torch.promote_types(real, torch.complex64)
        for source in op.sources:
            needed.add(source)
            if source not in values:
                if manifest["kind"] == "torch-circuit":
                    raise SerializationError(
                        f"{path}: {TENSORS_FILE} has no tensor '{_TENSOR_PREFIX}{source}' for"
                        f" {graph.describe(node)}"
                    )
                continue
            value = values[source]
            if tuple(value.shape) != op.shape[1:]:
                raise SerializationError(
                    f"{path}: tensor '{_TENSOR_PREFIX}{source}' has shape"
                    f" {tuple(value.shape)}, but {graph.describe(node)} reads"
                    f" {op.shape[1:]} per fold: the files do not belong together"
                )
            if real is not None and value.dtype != expected:
                raise SerializationError(
                    f"{path}: tensor '{_TENSOR_PREFIX}{source}' is {value.dtype}, but the"
                    f" circuit was saved as {expected}: the files do not belong together"
                )
    stray = sorted(set(values) - needed)
    if stray:
        raise SerializationError(
            f"{path}: {TENSORS_FILE} holds tensors no op reads (sources {stray[:8]}): the"
            " files do not belong together"
        )
    graph.values.update(values)


def _circuit(graph: Any, manifest: Mapping[str, Any], device: Any, path: Path):
    import torch

    from cirkit_ir.backends.torch import codegen
    from cirkit_ir.errors import CirkitIRError

    try:
        circuit = codegen(graph, dtype=getattr(torch, manifest["dtype"]), device=device)
    except CirkitIRError as error:
        raise SerializationError(f"{path}: the saved IR does not compile: {error}") from None
    if circuit.semiring.name != manifest["semiring"]:
        raise SerializationError(
            f"{path}: the IR computes in '{circuit.semiring.name}', the manifest says"
            f" '{manifest['semiring']}': the files do not belong together"
        )
    return circuit


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved object, checked (to see what a file holds without loading)."""
    path = Path(path)
    return _manifest(_reader(path)(MANIFEST), path)


__all__ = ["FORMAT_VERSION", "load", "read_manifest", "save"]
