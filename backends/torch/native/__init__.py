"""Fused C++ kernels for the torch backend's contraction layers, built on first use.

The extension is compiled by `torch.utils.cpp_extension.load` with the machine's C++
compiler the first time a circuit asks for it, and cached under
`~/.cache/cirkit_ir/torch_extensions/<torch version>-<source hash>` (or
`$CIRKIT_IR_EXTENSIONS_DIR`): no build step at install time, so a plain or editable
install works the same, and the build matches the torch it runs with. When it cannot be
built (no compiler, a build error) `load()` warns once and returns None, and the layers
compute with the eager kernels instead.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from types import ModuleType

import torch

SOURCES = ("tucker.cpp", "maxsum.cpp", "cp.cpp", "cpt.cpp", "mixing.cpp")
HEADERS = ("rows.h",)
NAME = "cirkit_ir_native"

_state: dict[str, object] = {}


def _sources() -> list[Path]:
    here = Path(__file__).parent
    return [here / name for name in SOURCES]


def cache_dir() -> Path:
    """Where the build lives: keyed by the torch version and the sources, so that a new
    torch or a changed kernel rebuilds and an unchanged one loads in a second."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in [*_sources(), *(here / name for name in HEADERS)]:  # a changed header rebuilds
        digest.update(path.read_bytes())
    root = os.environ.get("CIRKIT_IR_EXTENSIONS_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "cirkit_ir" / "torch_extensions"
    version = torch.__version__.replace("+", "_")
    return base / f"{version}-{digest.hexdigest()[:16]}"


def _build() -> ModuleType:
    from torch.utils.cpp_extension import load as load_extension

    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return load_extension(
        NAME,
        [str(p) for p in _sources()],
        build_directory=str(directory),
        extra_cflags=["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only"],
        verbose=False,
    )


def load() -> ModuleType | None:
    """The compiled extension, or None when it cannot be built (warned about once)."""
    if "module" not in _state:
        try:
            _state["module"] = _build()
        except Exception as error:  # noqa: BLE001 - any build failure means: use eager
            _state["module"] = None
            warnings.warn(
                f"cirkit_ir: the native torch kernels could not be built ({error!s:.300});"
                " computing with the eager kernels instead",
                RuntimeWarning,
                stacklevel=2,
            )
    return _state["module"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the native kernels are built (building them now if need be)."""
    return load() is not None


def reset() -> None:
    """Forgets the loaded extension (tests force a failed build with it)."""
    _state.clear()
