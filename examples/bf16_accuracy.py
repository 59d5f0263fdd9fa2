"""How accurate `PipelineContext(contraction_dtype="bfloat16")` is: per layer and on the
log-likelihood, against the float32 contraction of the same circuit and parameters.

Per layer, two figures for every Tucker layer where bfloat16 acts (the native kernel's GEMM
tiles, O K^2 > 4096):

- own error: the layer fed the float32 run's inputs, contracting once in float32 and once in
  bfloat16; the relative error of its output values, |y_bf16 / y_f32 - 1| (= the difference
  of their logs);
- carried error: the same in the bfloat16 run, whose inputs already carry the layers below.

Then the relative error of the circuit's log-likelihoods (after the float32 circuit's exact
recomputation of underflowed entries, as a user gets them). Usage:

    python examples/bf16_accuracy.py              # the seed circuit (28x28) at 32 units
    python examples/bf16_accuracy.py --quick      # 8x8 images at 17 units (seconds)
"""

from __future__ import annotations

import argparse

import torch

from cirkit_ir.backends.torch import native
from cirkit_ir.backends.torch.native.tucker import SMALL_WORK, NativeTuckerLayer
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.templates import circuit_templates


def seed_circuit(side: int, units: int):
    return circuit_templates.image_data(
        (1, side, side), region_graph="quad-graph", input_layer="categorical",
        num_input_units=units, sum_product_layer="tucker", num_sum_units=units,
        sum_weight_param="softmax",
    )  # fmt: skip


def _relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|b / a - 1| of values given as logs (finite entries only)."""
    keep = torch.isfinite(a) & torch.isfinite(b)
    return torch.expm1((b[keep] - a[keep]).abs())


def _observed(circuit) -> dict[int, list[torch.Tensor]]:
    """Wraps every bfloat16-eligible Tucker layer of `circuit` so that each call also runs in
    the other contraction dtype; returns layer index -> [own, other] log outputs."""
    seen: dict[int, list[torch.Tensor]] = {}
    for j, layer in enumerate(circuit.layers):
        if not isinstance(layer, NativeTuckerLayer):
            continue
        if layer.num_output_units * layer.num_input_units**2 <= SMALL_WORK:
            continue
        inner = type(layer).evaluate

        def evaluate(x, *prepared, _layer=layer, _j=j, _inner=inner):
            out = _inner(_layer, x, *prepared)
            mine = _layer.contraction_dtype
            _layer.contraction_dtype = "bfloat16" if mine == "float32" else "float32"
            try:
                other = _inner(_layer, x, *prepared)
            finally:
                _layer.contraction_dtype = mine
            # The first call is the forward proper; a float32 circuit may call the layer again
            # on the batch entries whose sums underflowed, in float64 (`backends.torch.exact`).
            unpack = _layer.semiring.unpack
            seen.setdefault(_j, [unpack(out, 1), unpack(other, 1)])
            return out

        object.__setattr__(layer, "evaluate", evaluate)
    return seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images at 17 units")
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--side", type=int, default=None)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    side = args.side or (8 if args.quick else 28)
    units = args.units or (17 if args.quick else 32)
    if native.load() is None:
        raise SystemExit("the native extension cannot be built here: bfloat16 mode needs it")
    symbolic = seed_circuit(side, units)
    compiled = {
        dtype: PipelineContext.from_default_backend(
            seed=0, kernels="native", contraction_dtype=dtype
        ).compile(symbolic)
        for dtype in ("float32", "bfloat16")
    }
    x = torch.randint(256, (args.batch, 1, side * side), generator=torch.Generator().manual_seed(0))
    seen = {dtype: _observed(c) for dtype, c in compiled.items()}
    with torch.no_grad():
        ll = {dtype: c(x).flatten() for dtype, c in compiled.items()}
    print(f"seed circuit {side}x{side}, {units} units, batch {args.batch}, random pixels")
    print("layer  folds  units     own error: median / max    carried error: median / max")
    exact, low = seen["float32"], seen["bfloat16"]
    for j in sorted(exact):
        own = _relative(*exact[j])  # the float32 run's inputs, both dtypes
        carried = _relative(exact[j][0], low[j][0])  # float32 run vs bfloat16 run
        layer = compiled["float32"].layers[j]
        print(
            f"{j:5d}  {layer.num_folds:5d}  {layer.num_output_units:5d}"
            f"     {own.median():.1e} / {own.max():.1e}"
            f"               {carried.median():.1e} / {carried.max():.1e}"
        )
    rel = ((ll["bfloat16"] - ll["float32"]).abs() / ll["float32"].abs()).max()
    nats = (ll["bfloat16"] - ll["float32"]).abs().max()
    print(
        f"log-likelihood: max relative error {rel:.1e} ({nats:.2e} nats of"
        f" {ll['float32'].abs().mean():.0f})"
    )


if __name__ == "__main__":
    main()
