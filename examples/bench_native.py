"""The native kernels against the eager ones on the seed circuit with a chosen template.

The seed circuit (quad-graph over 28x28 images, categorical inputs, softmax sum weights) is
compiled twice, fold + optimize, with `kernels="eager"` and with `kernels="auto"` (the
native kernels where they measured faster), and both run the no-grad forward and the
forward + backward of the mean negative log-likelihood on one batch of 256 images. Runs
alternate between the two (eager, auto, eager, ...), every figure is a median, and the
thread count is fixed (``--threads``, default 1) so that figures are steady on a shared
machine.

    python examples/bench_native.py                       # cp template, 4 and 32 units
    python examples/bench_native.py --layer cp-t --units 4 --repeats 9
    python examples/bench_native.py --quick               # 4 units, 3 repeats: a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import circuit_templates

KERNELS = ("eager", "auto")


def build(units: int, layer: str):
    return circuit_templates.image_data(
        (1, 28, 28),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=units,
        sum_product_layer=layer,
        num_sum_units=units,
        sum_weight_param="softmax",
    )


def calls(circuit: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], None]]:
    def forward() -> None:
        with torch.no_grad():
            circuit(x)

    def forward_backward() -> None:
        (-circuit(x).mean()).backward()
        circuit.zero_grad(set_to_none=True)

    return {"forward": forward, "fwd+bwd": forward_backward}


def median_times(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs alternating (after one warm-up each)."""
    for run in runs.values():
        run()
    samples: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="cp", help="sum_product_layer template option")
    parser.add_argument("--units", default="4,32", help="comma-separated unit counts")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="4 units, 3 repeats")
    args = parser.parse_args(argv)
    units_list = [4] if args.quick else [int(u) for u in args.units.split(",")]
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    x = torch.randint(256, (256, 784), generator=torch.Generator().manual_seed(42))
    rows = []
    print(
        f"{args.layer} template, batch 256, float32, {args.threads} thread(s), medians of {repeats}"
    )
    print(f"{'units':>5} {'pass':>8} {'eager':>10} {'auto':>10} {'speedup':>8}")
    for units in units_list:
        symbolic = build(units, args.layer)
        circuits = {}
        for kernels in KERNELS:
            torch.manual_seed(0)
            ctx = PipelineContext(
                backend="torch", semiring="lse-sum", fold=True, optimize=True, kernels=kernels
            )
            circuits[kernels] = ctx.compile(symbolic)
        with torch.no_grad():
            torch.testing.assert_close(
                circuits["auto"](x), circuits["eager"](x), rtol=1e-4, atol=1e-3
            )
        for what in ("forward", "fwd+bwd"):
            runs = {k: calls(c, x)[what] for k, c in circuits.items()}
            t = median_times(runs, repeats)
            ratio = t["eager"] / t["auto"]
            rows.append((units, what, t["eager"], t["auto"], ratio))
            print(
                f"{units:>5} {what:>8} {t['eager'] * 1e3:>8.1f}ms {t['auto'] * 1e3:>8.1f}ms"
                f" {ratio:>7.2f}x"
            )
    return rows


if __name__ == "__main__":
    main()
