"""Probabilistic integral circuits on scikit-learn's digits: train a QPC, report bits per dimension.

A PIC integrates over continuous latent variables with functions given by small MLPs;
`pc2qpc` materializes it with a quadrature rule, one unit per integration point, as an
ordinary circuit whose parameters are the MLPs evaluated at the points (libcirkit's PIC
recipe: a quad-tree region graph, Tucker layers, Gauss-Legendre points). The nets' tensors do
not depend on the number of points, so a QPC trained with K points can also be evaluated with
more: the same PIC, integrated more accurately.

    python examples/pic.py            # K = 8 and 16 points, a few epochs each
    python examples/pic.py --quick    # K = 4 and 8, one short epoch: a smoke test

Needs the `examples` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph import quad_tree
from cirkit_ir.symbolic import CategoricalLayer
from cirkit_ir.symbolic.pic import net_state, pc2qpc
from cirkit_ir.templates import circuit_from_region_graph

NUM_CATEGORIES = 17  # digits' pixels are integers 0..16


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) batches (B, 1, 64) of 8x8 digit images, a shuffled 80/20 split."""
    images = load_digits().data.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    images = torch.from_numpy(images[order]).unsqueeze(1)
    split = int(0.8 * len(images))
    return images[:split], images[split:]


def qpc(num_points: int, integration_method: str, net_dim: int):
    """The QPC with `num_points` points of a quad-tree Tucker PIC over the 8x8 pixels."""
    pc = circuit_from_region_graph(
        quad_tree((1, 8, 8), num_patch_splits=2),
        input_factory=lambda scope, units: CategoricalLayer(
            scope, units, num_categories=NUM_CATEGORIES
        ),
        sum_product="tucker",
        num_input_units=num_points,
        num_sum_units=num_points,
    )
    return pc2qpc(pc, integration_method, net_dim=net_dim)


def bits_per_dim(circuit, data: torch.Tensor) -> float:
    with torch.no_grad():
        log_likelihood = torch.cat([circuit(batch) for batch in data.split(512)]).mean()
    return -log_likelihood.item() / (data.shape[-1] * math.log(2))


def train(circuit, data: torch.Tensor, epochs: int, steps: int | None, seed: int = 0) -> None:
    optimizer = torch.optim.Adam(circuit.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        batches = data[torch.randperm(len(data), generator=generator)].split(64)
        for batch in batches[:steps]:
            optimizer.zero_grad()
            loss = -circuit(batch).mean()
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 4, 8 and a short epoch")
    parser.add_argument("--method", default="leggauss", help="'leggauss' or 'trapezoidal'")
    args = parser.parse_args()
    points, epochs, steps, net_dim = ((4, 8), 1, 8, 16) if args.quick else ((8, 16), 5, None, 64)
    torch.manual_seed(0)
    train_data, test_data = digits()
    context = PipelineContext(semiring="lse-sum", fold=True, optimize=True, seed=0)
    print(f"digits: {len(train_data)} train, {len(test_data)} test images; {args.method} points")
    trained = {}
    for k in points:
        symbolic = qpc(k, args.method, net_dim)
        circuit = context.compile(symbolic)
        before = bits_per_dim(circuit, test_data)
        start = time.perf_counter()
        train(circuit, train_data, epochs, steps)
        seconds = time.perf_counter() - start
        after = bits_per_dim(circuit, test_data)
        print(
            f"K={k:3d}: test bpd {before:.3f} at initialization -> {after:.3f} after"
            f" {epochs} epoch(s) ({seconds:.1f} s)"
        )
        trained[k] = (symbolic, circuit)
    # The PIC trained with the fewest points, integrated with the most.
    small, large = points[0], points[-1]
    small_qpc, small_circuit = trained[small]
    bigger = context.compile(qpc(large, args.method, net_dim))
    bigger.load_symbolic_state(net_state(small_qpc, small_circuit.symbolic_state()), strict=False)
    print(
        f"the K={small} PIC evaluated with K={large} points: test bpd"
        f" {bits_per_dim(bigger, test_data):.3f}"
    )


if __name__ == "__main__":
    main()
