"""Side-by-side benchmark of the circuit algebra: cirkit-ir against libcirkit 0.3.1.

The circuit is the sum-of-squares tutorial's: complex embedding inputs (256 states), cp-t
layers over a quad-tree-4 region graph of a one-channel image, complex sum weights. Each
library builds it from its templates, writes its partition function with its algebra

    Z = SF.integrate(SF.multiply(c, SF.conjugate(c)))

compiles Z under 'complex-lse-sum' (folded, optimized) and evaluates it. Each library runs in
a fresh process of its own (so that peak memory, the kernel's VmHWM, is that library's alone),
on the CPU with one torch thread; figures are medians of `--repeats` runs.

    python examples/bench_algebra.py                 # 32 units over 28x28
    python examples/bench_algebra.py --quick         # 4 units over 8x8: a smoke test
    python examples/bench_algebra.py --units 16 --side 16

libcirkit (GPL-3.0) is an optional extra, called only through its public API
(``pip install -e ".[bench]"``); without it the table has cirkit-ir's column alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

LIBRARIES = ("cirkit_ir", "libcirkit")


def peak_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _build_ours(units: int, side: int):
    import cirkit_ir.symbolic.functional as SF
    from cirkit_ir.pipeline import PipelineContext
    from cirkit_ir.templates.circuit_templates import image_data
    from cirkit_ir.templates.parameterization import Parameterization

    def circuit():
        p = Parameterization(initialization="normal", dtype="complex")
        return image_data(
            (1, side, side),
            "quad-tree-4",
            input_layer="embedding",
            num_input_units=units,
            sum_product_layer="cp-t",
            num_sum_units=units,
            input_params={"weight": p},
            sum_weight_param=p,
        )

    def context():
        return PipelineContext(semiring="complex-lse-sum", fold=True, optimize=True, seed=0)

    return SF, circuit, context


def _build_theirs(units: int, side: int):
    import cirkit.symbolic.functional as SF
    from cirkit.pipeline import PipelineContext
    from cirkit.templates import data_modalities
    from cirkit.templates.utils import Parameterization

    def circuit():
        p = Parameterization(initialization="normal", dtype="complex")
        return data_modalities.image_data(
            (1, side, side),
            "quad-tree-4",
            input_layer="embedding",
            num_input_units=units,
            sum_product_layer="cp-t",
            num_sum_units=units,
            input_params={"weight": p},
            sum_weight_param=p,
        )

    def context():
        return PipelineContext(
            backend="torch", semiring="complex-lse-sum", fold=True, optimize=True
        )

    return SF, circuit, context


def worker(library: str, units: int, side: int, repeats: int) -> dict[str, float]:
    """Builds, compiles and evaluates Z in this process; the figures as a dict."""
    start = peak_mb()
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    SF, circuit, context = (_build_ours if library == "cirkit_ir" else _build_theirs)(units, side)
    report: dict[str, float] = {"import_mb": peak_mb() - start}

    t0 = time.perf_counter()
    c = circuit()
    t1 = time.perf_counter()
    z = SF.integrate(SF.multiply(c, SF.conjugate(c)))
    t2 = time.perf_counter()
    report["build_s"], report["algebra_s"] = t1 - t0, t2 - t1

    compile_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compiled = context().compile(z)
        compile_times.append(time.perf_counter() - t0)
    report["compile_s"] = statistics.median(compile_times)

    forward_times = []
    with torch.no_grad():
        compiled()  # warm-up
        for _ in range(max(repeats, 5)):
            t0 = time.perf_counter()
            log_z = compiled()
            forward_times.append(time.perf_counter() - t0)
    report["forward_s"] = statistics.median(forward_times)
    report["log_z_real"] = float(log_z.flatten()[0].real)
    report["peak_mb"] = peak_mb()
    return report


def run_worker(library: str, args: argparse.Namespace) -> dict[str, float] | str:
    command = [
        sys.executable,
        __file__,
        "--worker",
        library,
        "--units",
        str(args.units),
        "--side",
        str(args.side),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {last}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_table(results: dict[str, dict[str, float] | str], args: argparse.Namespace) -> str:
    rows = [
        ("build circuit (s)", "build_s", "{:.3f}"),
        ("multiply+conjugate+integrate (s)", "algebra_s", "{:.3f}"),
        ("compile Z (s)", "compile_s", "{:.3f}"),
        ("forward Z (ms)", "forward_s", "{:.2f}"),
        ("peak memory (MB)", "peak_mb", "{:.0f}"),
        ("Re log Z", "log_z_real", "{:.2f}"),
    ]
    head = f"sum-of-squares Z, {args.units} units, {args.side}x{args.side}, complex-lse-sum"
    lines = [head, f"{'':34}" + "".join(f"{lib:>14}" for lib in results) + f"{'ratio':>10}"]
    for label, key, fmt in rows:
        cells, numbers = [], []
        for result in results.values():
            if isinstance(result, str):
                cells.append(f"{'-':>14}")
                continue
            value = result[key] * (1000 if key == "forward_s" else 1)
            numbers.append(value)
            cells.append(f"{fmt.format(value):>14}")
        ratio = ""
        if len(numbers) == 2 and key != "log_z_real" and numbers[0] > 0:
            ratio = f"{numbers[1] / numbers[0]:>9.1f}x"
        lines.append(f"{label:34}" + "".join(cells) + f"{ratio:>10}")
    for library, result in results.items():
        if isinstance(result, str):
            lines.append(f"{library}: {result}")
    lines.append("ratio: libcirkit / cirkit-ir (above 1: cirkit-ir is faster or smaller)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float] | str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 units over 8x8, 1 repeat")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-libcirkit", action="store_true")
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.side, args.repeats = 4, 8, 1
    if args.worker:
        print(json.dumps(worker(args.worker, args.units, args.side, args.repeats)))
        return {}
    libraries = LIBRARIES[:1] if args.skip_libcirkit else LIBRARIES
    results = {library: run_worker(library, args) for library in libraries}
    print(format_table(results, args))
    return results


if __name__ == "__main__":
    main()
