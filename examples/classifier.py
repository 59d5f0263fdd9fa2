"""A class-conditional circuit on the digits: generative against discriminative training.

One circuit with ten root units, unit c the density p(x | c) (the `image_data` template with
`num_classes=10`). Both runs are plain PyTorch loops over the same compiled circuit from the
same start, and classify by Bayes' rule, argmax_c log p(x | c) + log p(c):

* generative: maximize log p(x | y) of each image under its own class's unit;
* discriminative: minimize the cross-entropy of those class scores (log p(y | x)).

    python examples/classifier.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from sklearn.datasets import load_digits

from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import circuit_templates


def split(seed: int = 0):
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.long).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def scores(circuit, x: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """(B, 10) log p(x | c) + log p(c)."""
    return circuit(x)[:, 0, :] + log_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    epochs, units = (3, 4) if args.quick else (15, 8)
    (x, y), (x_test, y_test) = split()
    log_prior = torch.log(torch.bincount(y, minlength=10).float() / len(y))
    symbolic = circuit_templates.image_data(
        (1, 8, 8), region_graph="quad-graph", input_layer="categorical",
        num_input_units=units, sum_product_layer="cp", num_sum_units=units,
        sum_weight_param="softmax", num_classes=10,
    )  # fmt: skip
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=True, seed=0)
    circuit = ctx.compile(symbolic)
    start = copy.deepcopy(circuit.state_dict())
    for mode in ("generative", "discriminative"):
        circuit.load_state_dict(start)
        optimizer = torch.optim.Adam(circuit.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(0)
        began = time.perf_counter()
        for _ in range(epochs):
            for index in torch.randperm(len(x), generator=generator).split(128):
                s = scores(circuit, x[index], log_prior)
                if mode == "generative":  # log p(x | y): the image's own class unit
                    loss = -(s.gather(1, y[index, None]) - log_prior[y[index, None]]).mean()
                else:  # log p(y | x)
                    loss = torch.nn.functional.cross_entropy(s, y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        seconds = (time.perf_counter() - began) / epochs
        with torch.no_grad():
            s = scores(circuit, x_test, log_prior)
            accuracy = float((s.argmax(1) == y_test).float().mean())
            nll = float(-(s.gather(1, y_test[:, None]) - log_prior[y_test, None]).mean())
        print(
            f"{mode:15s} test accuracy {accuracy:.3f}  test -log p(x|y) {nll:8.2f}"
            f"  ({epochs} epochs, {seconds:.2f} s/epoch)"
        )


if __name__ == "__main__":
    main()
