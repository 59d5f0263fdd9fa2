"""Peak memory of one library and configuration, in a fresh process (a helper of benchmark.py).

    python examples/_bench_memory.py {cirkit_ir,libcirkit} UNITS FOLD OPTIMIZE

Imports the library, builds the seed circuit with UNITS units, compiles it with the flags FOLD
and OPTIMIZE (0 or 1), runs one no-grad forward on the benchmark batch and prints one JSON line
with the process's peak resident memory after each step, in MB (2**20 bytes).

The peak is the kernel's high-water mark `VmHWM` from /proc/self/status. On Linux
`resource.getrusage(RUSAGE_SELF).ru_maxrss` is carried over fork + exec, so a child of a large
benchmark process would report its parent's peak; VmHWM belongs to this process alone.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    # Not Linux: ru_maxrss (kB on Linux, bytes on macOS), which may include the parent's peak.
    scale = 2**20 if sys.platform == "darwin" else 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def main(argv: list[str]) -> None:
    if len(argv) != 5:
        sys.exit(__doc__)
    key, units, fold, optimize = argv[1], int(argv[2]), bool(int(argv[3])), bool(int(argv[4]))
    start = peak_mb()

    import torch
    from benchmark import load_library, make_batch, seeded_compile  # this folder is on sys.path

    library = load_library(key)
    after_import = peak_mb()
    circuit = seeded_compile(library, library.build(units), fold, optimize)
    after_compile = peak_mb()
    with torch.no_grad():
        output = circuit(make_batch())
    report = {
        "library": key,
        "units": units,
        "fold": fold,
        "optimize": optimize,
        "start_mb": start,
        "after_import_mb": after_import,
        "after_compile_mb": after_compile,
        "peak_mb": peak_mb(),
        "mean_log_likelihood": output.double().mean().item(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv)
