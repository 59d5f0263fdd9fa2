"""Learning a circuit on scikit-learn's digits (8x8, values 0..16): EM against Adam.

Both methods train the same compiled circuit from the same initial parameters for the same
number of epochs (keeping the state of their best epoch on a validation tenth of the training
set); the script prints test bits per dimension and saves both training curves as a PNG.
Run `python examples/learning_a_circuit.py` (or `--quick` for a short run).
"""

from __future__ import annotations

import argparse
import copy

import torch
from sklearn.datasets import load_digits

from cirkit_ir.learning import fit
from cirkit_ir.learning.fit import bits_per_dimension, evaluate_nll
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import circuit_templates


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) digits as (N, 1, 64) long tensors, a seeded 80/20 split."""
    x = torch.tensor(load_digits().data, dtype=torch.long).unsqueeze(1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return x[order[:cut]], x[order[cut:]]


def digits_circuit(units: int, layer: str = "cp", seed: int = 0):
    """A quad-graph circuit over the 8x8 image, categorical inputs, softmax sum weights."""
    symbolic = circuit_templates.image_data(
        (1, 8, 8), region_graph="quad-graph", input_layer="categorical",
        num_input_units=units, sum_product_layer=layer, num_sum_units=units,
        sum_weight_param="softmax",
    )  # fmt: skip
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=True, seed=seed)
    return ctx.compile(symbolic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small circuit, few epochs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--out", default="learning_curves.png")
    args = parser.parse_args()
    epochs = args.epochs or (5 if args.quick else 20)
    units = args.units or (8 if args.quick else 16)
    torch.manual_seed(0)
    train, test = digits()
    circuit = digits_circuit(units)
    start = copy.deepcopy(circuit.state_dict())
    runs = {
        "EM": dict(method="em", step_size=0.8, pseudocount=0.001),
        "Adam": dict(method="sgd", optimizer=torch.optim.Adam, lr=0.1),
    }
    histories = {}
    for name, options in runs.items():
        circuit.load_state_dict(start)
        histories[name] = fit(
            circuit, train, epochs=epochs, batch_size=256, validation=0.1, progress=True,
            **options,
        )  # fmt: skip
        test_bpd = bits_per_dimension(evaluate_nll(circuit, test), 64)
        seconds = sum(e.seconds for e in histories[name].epochs) / epochs
        print(f"{name:5s} test bpd {test_bpd:.4f}  ({epochs} epochs, {seconds:.3f} s/epoch)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, history in histories.items():
        (line,) = ax.plot([e.val_bpd for e in history.epochs], marker="o", label=f"{name} (val)")
        ax.plot(history.train_bpd, linestyle="--", color=line.get_color(),
                label=f"{name} (train, during the epoch)")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per dimension")
    ax.set_title(f"digits, quad-graph CP circuit, {units} units")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"curves saved to {args.out}")


if __name__ == "__main__":
    main()
