"""Queries, cirkit-ir against libcirkit 0.3.1 side by side: time and peak memory.

    python examples/bench_queries.py            # the seed circuit at K=32, batch 256
    python examples/bench_queries.py --quick    # K=8, batch 64, 1,000 samples

Lines:
* marginal: `IntegrateQuery(circuit)(x, integrate_vars=mask)`, a random half of the pixels
  integrated out per sample, on the seed circuit (quad graph, tucker, 28x28 categorical 256,
  folded and fused, lse-sum);
* sample: `SamplingQuery(circuit)(num_samples=10,000)` from the seed circuit built with cp
  layers (libcirkit cannot sample tucker layers);
* MAP vs forward, at each K of --map-units (4 and 32; 4 with --quick): our `MAPQuery`
  (max-sum up, argmax down: value and decoded assignment) with the same half of the pixels
  observed, against a no-grad forward of the same compiled circuit and batch, side by side
  (libcirkit has no MAP query, so no counterpart).

Each (library, query) runs in a fresh process, so that its peak resident memory (VmHWM) is
its own; the time is the median of a few runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _bench_memory import peak_mb  # noqa: E402
from benchmark import IMAGE_SHAPE, NUM_VARIABLES, SEED, LibraryMissing, load_library  # noqa: E402


def build(library, layer: str, units: int):
    return library._templates.image_data(
        IMAGE_SHAPE,
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=units,
        sum_product_layer=layer,
        num_sum_units=units,
        sum_weight_param=library._sum_weights,
    )


def query_call(key: str, task: str, circuit, batch: int, samples: int):
    """The no-argument callable that runs `task` once."""
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randint(256, (batch, NUM_VARIABLES), generator=generator)
    mask = torch.rand(batch, NUM_VARIABLES, generator=generator) < 0.5
    if key == "cirkit_ir":
        from cirkit_ir.backends.torch.queries import IntegrateQuery, MAPQuery, SamplingQuery
    else:
        from cirkit.backend.torch.queries import IntegrateQuery, SamplingQuery
    if task == "marginal":
        return lambda: IntegrateQuery(circuit)(x, integrate_vars=mask)
    if task == "sample":
        return lambda: SamplingQuery(circuit)(num_samples=samples)
    if task == "map":
        return lambda: MAPQuery(circuit)(x, evidence_mask=~mask)
    return lambda: circuit(x)  # forward


def child(key: str, task: str, units: int, batch: int, samples: int, repeats: int) -> None:
    library = load_library(key)
    torch.manual_seed(SEED)
    circuit = library.compile(
        build(library, "cp" if task == "sample" else "tucker", units), True, True
    )
    call = query_call(key, task, circuit, batch, samples)
    base = peak_mb()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    print(
        json.dumps({"seconds": statistics.median(times[1:]), "peak_mb": peak_mb(), "base_mb": base})
    )


def run(key: str, task: str, args, units: int | None = None) -> dict | str:
    units = args.units if units is None else units
    command = [sys.executable, __file__, "--child", key, task, str(units), str(args.batch)]
    command += [str(args.samples), str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr else "failed"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="K=8, batch 64, 1,000 samples")
    parser.add_argument("--skip-libcirkit", action="store_true")
    parser.add_argument("--units", type=int, help="K (default 32; 8 with --quick)")
    parser.add_argument("--batch", type=int, help="batch size (default 256; 64 with --quick)")
    parser.add_argument("--samples", type=int, help="samples (default 10,000; 1,000 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed runs after the warm-up (3; 1)")
    parser.add_argument(
        "--tasks", default="marginal,sample", help="comma-separated queries (also: map, forward)"
    )
    parser.add_argument(
        "--map-units", help="comma-separated K for MAP vs forward (default 4,32; 4 with --quick)"
    )
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        key, task, *numbers = args.child
        child(key, task, *map(int, numbers))
        return
    defaults = (8, 64, 1000, 1) if args.quick else (32, 256, 10000, 3)
    if args.map_units is None:
        args.map_units = "4" if args.quick else "4,32"
    for name, default in zip(("units", "batch", "samples", "repeats"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    libraries = ["cirkit_ir"] + ([] if args.skip_libcirkit else ["libcirkit"])
    print(
        f"seed circuit, K={args.units}, batch {args.batch}, {args.samples} samples,"
        f" torch {torch.__version__}"
    )
    print(f"{'query':<10}{'library':<12}{'time':>10}{'peak MB':>10}{'+MB':>8}")
    results = {}
    for task in filter(None, args.tasks.split(",")):
        for key in libraries if task in ("marginal", "sample") else ["cirkit_ir"]:
            try:
                load_library(key)
            except LibraryMissing as error:
                print(f"{task:<10}{key:<12}{error}")
                continue
            got = results[task, key] = run(key, task, args)
            if isinstance(got, str):
                print(f"{task:<10}{key:<12}failed: {got}")
            else:
                extra = got["peak_mb"] - got["base_mb"]
                print(
                    f"{task:<10}{key:<12}{got['seconds']:>9.3f}s{got['peak_mb']:>10.0f}{extra:>8.0f}"
                )
    m, f = results.get(("map", "cirkit_ir")), results.get(("forward", "cirkit_ir"))
    if isinstance(m, dict) and isinstance(f, dict):
        print(f"MAP / forward: {m['seconds'] / f['seconds']:.2f}x")
    map_vs_forward(args)


def map_vs_forward(args) -> None:
    """MAPQuery (value and assignment) beside a no-grad forward of the same compiled circuit."""
    units = [int(k) for k in args.map_units.split(",") if k]
    if not units:
        return
    print(f"\nMAP vs forward, cirkit_ir, batch {args.batch}, half observed (libcirkit: no MAP)")
    print(f"{'K':<6}{'forward':>10}{'MAP':>10}{'MAP/forward':>13}")
    for k in units:
        got = {task: run("cirkit_ir", task, args, k) for task in ("forward", "map")}
        bad = [f"{task} failed: {v}" for task, v in got.items() if isinstance(v, str)]
        if bad:
            print(f"{k:<6}{'; '.join(bad)}")
            continue
        f, m = got["forward"]["seconds"], got["map"]["seconds"]
        print(f"{k:<6}{f:>9.3f}s{m:>9.3f}s{m / f:>12.2f}x")


if __name__ == "__main__":
    main()
