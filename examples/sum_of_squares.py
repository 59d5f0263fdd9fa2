"""Squared (sum-of-squares) circuits on scikit-learn's 8x8 digits, with the circuit algebra.

A circuit c with complex (or signed) parameters is not a distribution, but |c|^2 is one up to
its integral Z, which the algebra writes as a circuit:

    Z = SF.integrate(SF.multiply(c, SF.conjugate(c)))

`SF.concatenate([c, Z])` compiles c and Z into one module that shares c's tensors, so that
training ``log p = 2 log|c| - log Z`` trains c. Three models, each printing its test
bits-per-dimension:

- complex: embedding inputs, cp-t layers over a quad-tree-4 region graph, complex weights,
  under 'complex-lse-sum';
- real: the same circuit with signed real weights, squared the same way;
- mixture: ``a c1 + b |c2|^2`` of a monotonic circuit c1 (softmax weights, categorical
  inputs) and the complex c2, normalized by ``a Z1 + b Z2`` (a mixing layer with learnable
  positive weights a, b over them).

Run: python examples/sum_of_squares.py [--quick]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from sklearn.datasets import load_digits
from tqdm import tqdm

import cirkit_ir.symbolic.functional as SF
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph.algorithms.quad_tree import quad_tree
from cirkit_ir.symbolic import (
    CircuitBuilder,
    ConstantInitializer,
    ExpParameter,
    MixingLayer,
    TensorParameter,
)
from cirkit_ir.templates.from_region_graph import circuit_from_region_graph
from cirkit_ir.templates.parameterization import Parameterization
from cirkit_ir.templates.utils import name_to_input_layer_factory

SIDE, STATES = 8, 17  # 8x8 images with values 0..16


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images as (N, 1, 64) integer tensors (a fixed 80/20 split)."""
    images = load_digits().images.astype(np.int64).reshape(-1, 1, SIDE * SIDE)
    order = np.random.default_rng(seed).permutation(len(images))
    split = int(0.8 * len(images))
    data = torch.from_numpy(images[order])
    return data[:split], data[split:]


def circuit(units: int, dtype: str, *, monotonic: bool = False):
    """cp-t over a quad-tree-4 of the 8x8 pixels: complex/signed embeddings and weights, or
    (monotonic) categorical inputs and softmax weights."""
    if monotonic:
        inputs = name_to_input_layer_factory("categorical", num_categories=STATES)
        weights = Parameterization(activation="softmax")
    else:
        # Scaled so that |c|^2 integrates to about 1 at the start: E|w|^2 = 1 / (the number
        # of terms summed), both parts drawn for complex parameters.
        parts = 2 if dtype == "complex" else 1
        table = Parameterization(
            dtype=dtype, initialization_kwargs={"stddev": (parts * STATES) ** -0.5}
        )
        inputs = name_to_input_layer_factory(
            "embedding", num_states=STATES, weight_factory=table.build
        )
        weights = Parameterization(
            dtype=dtype, initialization_kwargs={"stddev": (parts * units) ** -0.5}
        )
    return circuit_from_region_graph(
        quad_tree((SIDE, SIDE), num_patch_splits=4),
        input_factory=inputs,
        sum_product="cp-t",
        num_input_units=units,
        num_sum_units=units,
        sum_weight_factory=weights.build,
    )


def squared_model(c):
    """One circuit with outputs (c, Z): log p = 2 Re log c - Re log Z."""
    return SF.concatenate([c, SF.integrate(SF.multiply(c, SF.conjugate(c)))])


def mixture_model(c1, c2):
    """One circuit with outputs (c1 + |c2|^2, Z1 + Z2): log p = log out0 - log out1."""
    squared = SF.multiply(c2, SF.conjugate(c2))
    both = SF.concatenate([c1, squared])
    b = CircuitBuilder()
    for layer in both.layers:
        b.add(layer, both.layer_inputs(layer))
    # Positive, learnable mixing weights: p = (a c1 + b |c2|^2) / (a Z1 + b Z2).
    weight = ExpParameter(TensorParameter((1, 2), ConstantInitializer(0.0)))
    total = b.add(MixingLayer(1, 2, weight=weight), both.outputs)
    density = b.build([total])
    return SF.concatenate([density, SF.integrate(density)])


def log_likelihood(out: torch.Tensor, squared: bool) -> torch.Tensor:
    """log p of each row from the (B, 2, 1) output (log c or log of the density, log Z)."""
    log_c, log_z = out[:, 0, 0].real, out[:, 1, 0].real
    return (2 * log_c if squared else log_c) - log_z


def train(name: str, model, squared: bool, data, args) -> float:
    train_x, test_x = data
    ctx = PipelineContext(semiring="complex-lse-sum", fold=True, optimize=True, seed=args.seed)
    compiled = ctx.compile(model)
    optimizer = torch.optim.Adam(compiled.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(len(train_x) / args.batch)
    progress = tqdm(total=steps, desc=name, disable=args.no_progress)
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        for batch in torch.randperm(len(train_x), generator=generator).split(args.batch):
            loss = -log_likelihood(compiled(train_x[batch]), squared).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            progress.update()
            progress.set_postfix(nll=f"{loss.item():.2f}")
    progress.close()
    with torch.no_grad():
        nll = -log_likelihood(compiled(test_x), squared).mean().item()
    bpd = nll / (SIDE * SIDE * math.log(2))
    print(f"{name}: test bits per dimension {bpd:.3f}")
    return bpd


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps of small circuits")
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.epochs = 2, 1
    torch.manual_seed(args.seed)
    data = digits(args.seed)
    if args.quick:
        data = (data[0][:256], data[1][:128])
    complex_c = circuit(args.units, "complex")
    results = {
        "complex": train("complex |c|^2", squared_model(complex_c), True, data, args),
        "real": train("real c^2", squared_model(circuit(args.units, "real")), True, data, args),
        "mixture": train(
            "c1 + |c2|^2",
            mixture_model(circuit(args.units, "real", monotonic=True), complex_c),
            False,
            data,
            args,
        ),
    }
    return results


if __name__ == "__main__":
    main()
