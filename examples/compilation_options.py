"""Setting the options of the compilation backend: the seed notebook, cell by cell.

Builds the notebook's symbolic circuit, compiles it with folding and layer optimizations off
and on, and prints what the notebook prints: compile times, layer counts, layer names, the
first layer's folds, forward timings and the speedups the notebook leaves as "~xx.x".

    python examples/compilation_options.py [--repeats N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch

from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import circuit_templates


def timeit(fn, repeats: int) -> float:
    """Median wall time of `fn()` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per forward timing")
    args = parser.parse_args()

    # In [80]: the symbolic circuit
    symbolic_circuit = circuit_templates.image_data(
        (1, 28, 28),  # the image shape (channels, height, width)
        region_graph="quad-graph",  # follow the QuadGraph region graph
        input_layer="categorical",  # categorical distributions over pixel values 0-255
        num_input_units=4,  # each input layer has 4 categorical units
        sum_product_layer="tucker",  # dense sum layers alternating with kronecker products
        num_sum_units=4,  # each dense sum layer has 4 units
        sum_weight_param="softmax",  # dense weights parameterized with a softmax
    )
    print(f"Symbolic circuit: {symbolic_circuit}")

    # In [81]: seeds and the device
    random.seed(42)
    np.random.seed(42)
    torch.manual_seed(42)
    device = torch.device("cpu")

    def batch() -> torch.Tensor:
        return torch.randint(256, size=(256, 1, 784), device=device)

    def benchmark(circuit) -> float:
        def run() -> None:
            with torch.no_grad():
                circuit(batch())

        return timeit(run, args.repeats)

    def compile_timed(ctx: PipelineContext):
        start = time.perf_counter()
        circuit = ctx.compile(symbolic_circuit)
        return circuit, time.perf_counter() - start

    # In [82]-[83]: no folding, no optimizations
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=False, optimize=False)
    circuit, seconds = compile_timed(ctx)
    print(f"\n[fold=False, optimize=False] compile time: {seconds * 1e3:.0f} ms")

    # In [84]: benchmark the unoptimized circuit
    unfolded = benchmark(circuit)
    print(f"forward (batch 256), median of {args.repeats}: {unfolded * 1e3:.1f} ms")

    # In [100]: one-to-one correspondence with the symbolic circuit
    text = str(circuit).splitlines()
    print("\n".join(text[:45]))
    print(f"    ... ({len(text) - 45} more lines)")
    print(f"Number of layers: {len(circuit.layers)}")

    # In [86]-[88]: folding
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=False)
    circuit, seconds = compile_timed(ctx)
    print(f"\n[fold=True, optimize=False] compile time: {seconds * 1e3:.0f} ms")
    print(f"Number of layers: {len(circuit.layers)}")

    # In [89]
    first_folded_layer = next(circuit.topological_ordering())
    print(f"Type of the first layer: {first_folded_layer.__class__.__name__}")
    print(f"Number of folded layer within the first layer: {first_folded_layer.num_folds}")

    # In [90]: benchmark the folded circuit
    folded = benchmark(circuit)
    print(f"forward (batch 256), median of {args.repeats}: {folded * 1e3:.1f} ms")
    print(f"We have achieved a ~{unfolded / folded:.1f}x speedup by folding")

    # In [91]
    print([layer.__class__.__name__ for layer in circuit.layers])

    # In [95]-[97]: layer optimizations
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=True)
    circuit, seconds = compile_timed(ctx)
    print(f"\n[fold=True, optimize=True] compile time: {seconds * 1e3:.0f} ms")
    print([layer.__class__.__name__ for layer in circuit.layers])

    # In [99]: benchmark the optimized circuit
    optimized = benchmark(circuit)
    print(f"forward (batch 256), median of {args.repeats}: {optimized * 1e3:.1f} ms")
    print(f"We have achieved a ~{folded / optimized:.2f}x speedup over the folded circuit")
    print(f"(and ~{unfolded / optimized:.1f}x over the unfolded one)")

    with torch.no_grad():
        log_likelihood = circuit(batch())
    print(
        f"\noutput shape: {tuple(log_likelihood.shape)};"
        f" mean log-likelihood: {log_likelihood.mean().item():.1f}"
    )


if __name__ == "__main__":
    main()
