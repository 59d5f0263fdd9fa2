"""Querying a circuit trained on scikit-learn's digits: marginals, inpainting, samples.

    python examples/queries.py [--quick] [--out DIR]

Trains a small circuit (quad graph, tucker layers) on the 8x8 digits that scikit-learn ships
(`load_digits`: 1,797 images, pixel values 0..16), then
* marginals: the test log-likelihood with a random half of the pixels integrated out;
* inpainting: observes the upper half of test images and fills in the lower half with the
  MAP completion (`MAPQuery`), with samples of p(lower | upper) (`SamplingQuery`) and
  with the conditional mean E[lower | upper] (`MomentsQuery`);
* draws unconditional samples.
The image grids go to DIR (default `bench-results/queries`) as PNG files (matplotlib, the
`examples` extra: `pip install -e ".[examples]"`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cirkit_ir.backends.torch.queries import (
    IntegrateQuery,
    MAPQuery,
    MomentsQuery,
    SamplingQuery,
)
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import circuit_templates


def load(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().images, dtype=torch.long).reshape(-1, 1, 64)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    images = images[order]
    return images[:1500], images[1500:]


def train(train_x: torch.Tensor, steps: int, units: int):
    symbolic = circuit_templates.image_data(
        (1, 8, 8),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=units,
        sum_product_layer="tucker",
        num_sum_units=units,
        sum_weight_param="softmax",
    )
    ctx = PipelineContext(backend="torch", semiring="lse-sum", fold=True, optimize=True)
    circuit = ctx.compile(symbolic, seed=0)
    optimizer = torch.optim.Adam(circuit.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        batch = train_x[torch.randint(len(train_x), (128,), generator=generator)]
        loss = -circuit(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(f"  step {step:4d}  train nll {loss.item():8.2f} nats")
    return circuit.eval()


def save_grid(images: torch.Tensor, path: Path, title: str, columns: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = images.reshape(-1, 8, 8).float()
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows + 0.4))
    padded = list(images) + [None] * (rows * columns - len(images))
    for ax, image in zip(axes.flat, padded, strict=True):
        ax.axis("off")
        if image is not None:
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=16)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"  wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="train for a few steps only")
    parser.add_argument("--out", type=Path, default=Path("bench-results") / "queries")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    train_x, test_x = load()
    steps, units = (30, 4) if args.quick else (400, 8)
    print(f"training on {len(train_x)} digits, {steps} steps, {units} units")
    circuit = train(train_x, steps, units)

    with torch.no_grad():
        print(f"test log-likelihood: {circuit(test_x).mean().item():.2f} nats")
        half = torch.rand(len(test_x), 64, generator=torch.Generator().manual_seed(1)) < 0.5
        marginal = IntegrateQuery(circuit)(test_x, integrate_vars=half)
        print(f"  with half the pixels integrated out: {marginal.mean().item():.2f} nats")

        shown = test_x[:10]
        upper = torch.zeros(64, dtype=torch.bool)
        upper[:32] = True  # rows 0..3 observed
        start = time.perf_counter()
        best, completion = MAPQuery(circuit)(shown, evidence_mask=upper)
        print(f"MAP inpainting of 10 lower halves: {time.perf_counter() - start:.3f} s")
        generator = torch.Generator().manual_seed(2)
        repeated = shown.repeat_interleave(3, 0)
        start = time.perf_counter()
        conditional, _ = SamplingQuery(circuit)(
            len(repeated), x=repeated, evidence_mask=upper, generator=generator
        )
        print(f"30 conditional samples: {time.perf_counter() - start:.3f} s")
        start = time.perf_counter()
        samples, _ = SamplingQuery(circuit)(num_samples=30, generator=generator)
        print(f"30 unconditional samples: {time.perf_counter() - start:.3f} s")
        start = time.perf_counter()
        mean = MomentsQuery(circuit).mean(shown, evidence_mask=upper)  # (10, 1, 64)
        print(f"conditional means of 10 lower halves: {time.perf_counter() - start:.3f} s")

    masked = shown.clone()
    masked[:, :, 32:] = 0
    rows = torch.cat(
        [
            shown,
            masked,
            completion,
            conditional.view(10, 3, 1, 64).transpose(0, 1).reshape(30, 1, 64),
            mean,
        ]
    )
    title = "originals / upper halves / MAP / 3 conditional samples / conditional mean"
    save_grid(rows, args.out / "inpainting.png", title)
    save_grid(samples, args.out / "samples.png", "unconditional samples")


if __name__ == "__main__":
    main()
