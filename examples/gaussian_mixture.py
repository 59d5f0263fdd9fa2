"""A gaussian mixture model built layer by layer, trained by EM, plotted.

The digits are projected on their first two principal components (scikit-learn's PCA), and
a mixture of K axis-aligned gaussians over the two coordinates is written with the symbolic
API: one gaussian layer per coordinate (K units each), a Hadamard product (component k's
density is the product of its two coordinates' densities) and a dense sum layer (the mixing
weights). EM fits it; Adam on the same circuit is shown for comparison. The plot (a PNG)
shows the data, the density's contours and the components' means.

    python examples/gaussian_mixture.py [--quick] [--components K] [--out gmm.png]
"""

from __future__ import annotations

import argparse
import copy

import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from cirkit_ir.learning import fit
from cirkit_ir.learning.fit import evaluate_nll
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.layers import DenseLayer, GaussianLayer, HadamardLayer


def gmm(components: int) -> Circuit:
    """sum_k w_k N(x0; mean_0k, std_0k) N(x1; mean_1k, std_1k), layer by layer."""
    coordinates = [GaussianLayer([v], components) for v in range(2)]
    product = HadamardLayer(components, arity=2)
    mixture = DenseLayer(components, 1)
    layers = [*coordinates, product, mixture]
    return Circuit(layers, {product: coordinates, mixture: [product]}, [mixture])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--out", default="gaussian_mixture.png")
    args = parser.parse_args()
    epochs = 10 if args.quick else 50
    digits = load_digits().data
    points = PCA(2, random_state=0).fit_transform(digits)
    points = points / points.std()  # about unit scale: the default stddevs lie in (0, 1)
    x = torch.tensor(points, dtype=torch.float32).unsqueeze(1)  # (N, 1, 2)
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=True, seed=0)
    circuit = ctx.compile(gmm(args.components))
    with torch.no_grad():  # start the means at data points, as k-means++ would roughly do
        first = [m for m in circuit.layers if type(m).__name__ == "TorchGaussianLayer"][0]
        picks = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        first.mean.nodes[0].value.copy_(x[picks[: args.components], 0].T.unsqueeze(-1))
    start = copy.deepcopy(circuit.state_dict())
    results = {}
    for name, options in {"EM": dict(method="em"), "Adam": dict(method="sgd", lr=0.05)}.items():
        circuit.load_state_dict(start)
        fit(circuit, x, epochs=epochs, batch_size=len(x), full_batch=True, progress=False,
            **options)  # fmt: skip
        results[name] = copy.deepcopy(circuit.state_dict())
        print(f"{name:5s} NLL per point after {epochs} epochs: {evaluate_nll(circuit, x):.4f}")
    circuit.load_state_dict(results["EM"])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    lo, hi = x.min(0).values[0] - 0.5, x.max(0).values[0] + 0.5
    g0, g1 = torch.meshgrid(
        torch.linspace(float(lo[0]), float(hi[0]), 200),
        torch.linspace(float(lo[1]), float(hi[1]), 200),
        indexing="ij",
    )
    grid = torch.stack([g0.flatten(), g1.flatten()], 1).unsqueeze(1)
    with torch.no_grad():
        density = circuit(grid).reshape(200, 200).exp()
        means = first.mean().detach()[:, :, 0]  # (2 coordinates, K)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(x[:, 0, 0], x[:, 0, 1], s=2, c="0.6")
    ax.contour(g0, g1, density, levels=12)
    ax.scatter(means[0], means[1], marker="x", c="red", label="component means")
    ax.set_title(f"digits (2 PCA components): {args.components}-component GMM, EM")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot saved to {args.out}")


if __name__ == "__main__":
    main()
