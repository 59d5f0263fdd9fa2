"""Training side by side: cirkit-ir against libcirkit 0.3.1 on the digits.

The same symbolic circuit (each library's `image_data` template: 8x8 quad graph, categorical
inputs, softmax sum weights), compiled folded and optimized in 'lse-sum' from the same torch
seed, trained by the same Adam loop (same learning rate, batch size, batch order and epochs).
Prints test bits per dimension and seconds per epoch for each, and cirkit-ir's EM on the
same circuit. libcirkit (GPL-3.0, the `bench` extra) is only called through its public API.

    python examples/bench_learning.py [--quick] [--layer tucker|cp] [--units N] [--epochs N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from learning_a_circuit import digits  # noqa: E402


def build(library: str, layer: str, units: int) -> torch.nn.Module:
    if library == "cirkit-ir":
        from cirkit_ir.pipeline import PipelineContext
        from cirkit_ir.templates import circuit_templates as templates
        from cirkit_ir.templates.utils import Parameterization
    else:
        from cirkit.pipeline import PipelineContext
        from cirkit.templates import data_modalities as templates
        from cirkit.templates.utils import Parameterization
    symbolic = templates.image_data(
        (1, 8, 8), region_graph="quad-graph", input_layer="categorical",
        num_input_units=units, sum_product_layer=layer, num_sum_units=units,
        sum_weight_param=Parameterization(activation="softmax", initialization="normal"),
    )  # fmt: skip
    torch.manual_seed(0)
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=True)
    return ctx.compile(symbolic)


def test_bpd(circuit: torch.nn.Module, test: torch.Tensor) -> float:
    with torch.no_grad():
        nll = -torch.cat([circuit(b).reshape(-1) for b in test.split(512)]).mean()
    return float(nll) / (test.shape[1] * math.log(2))


def adam(circuit, train, test, epochs: int, batch_size: int, lr: float) -> tuple[float, float]:
    """The plain loop of cirkit's tutorials: (test bpd, seconds per epoch)."""
    optimizer = torch.optim.Adam(circuit.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    seconds = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        for index in torch.randperm(len(train), generator=generator).split(batch_size):
            loss = -circuit(train[index]).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds += time.perf_counter() - start
    return test_bpd(circuit, test), seconds / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--layer", choices=("tucker", "cp"), default="cp")
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    units = args.units or (8 if args.quick else 16)
    epochs = args.epochs or (3 if args.quick else 10)
    train, test = (t.squeeze(1) for t in digits())  # (N, 64): both libraries read it
    print(
        f"digits, {args.layer} quad-graph circuit, {units} units, {epochs} epochs, batch"
        f" {args.batch_size}, Adam lr {args.lr}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'':24s} {'test bpd':>9s} {'s/epoch':>8s}")
    for library in ("cirkit-ir", "libcirkit"):
        try:
            circuit = build(library, args.layer, units)
        except ImportError:
            print(f"{library + ' Adam':24s} (not installed: pip install -e '.[bench]')")
            continue
        bpd, seconds = adam(circuit, train, test, epochs, args.batch_size, args.lr)
        print(f"{library + ' Adam':24s} {bpd:9.4f} {seconds:8.3f}")
    from cirkit_ir.learning import fit

    circuit = build("cirkit-ir", args.layer, units)
    history = fit(
        circuit, train, "em", epochs=epochs, batch_size=args.batch_size, step_size=0.8,
        pseudocount=0.001, progress=False,
    )  # fmt: skip
    seconds = sum(e.seconds for e in history.epochs) / epochs
    print(f"{'cirkit-ir EM':24s} {test_bpd(circuit, test):9.4f} {seconds:8.3f}")


if __name__ == "__main__":
    main()
