"""The Triton Tucker layer against the eager one on a GPU, at the seed circuit's largest layer.

    python examples/bench_triton.py                    # 4, 32 and 64 units
    python examples/bench_triton.py --units 32 --sweep # and each launch configuration

One folded binary Tucker layer in lse-sum (784 folds, batch 256, float32, inputs laid out as
the fold gather leaves them): forward (no gradient) and forward + backward (gradients to the
inputs and the weights), median milliseconds from CUDA events (`triton.testing.do_bench`),
beside the floor that the bytes the layer must move and its multiply-adds set (the device's
copy bandwidth and float32 rate, measured here first). `--sweep` times the forward under every
(batch block, warps) pair, the table `tucker_jit.launch_config` is drawn from. Also the
forward with TF32 and with bfloat16 products, for their speed; their accuracy is in the README.
`--circuit` profiles the seed circuit's whole forward on the GPU: milliseconds with and
without the NaN check and the underflow watch, kernel launches per forward, and the kernels
that take the most GPU time.
"""

from __future__ import annotations

import argparse
import sys

import torch

from cirkit_ir.backends.torch.layers.sums import TorchTuckerLayer
from cirkit_ir.backends.torch.semirings import SEMIRINGS
from cirkit_ir.backends.torch.triton_kernels import load
from cirkit_ir.backends.torch.triton_kernels.tucker import TritonTuckerLayer

LSE = SEMIRINGS["lse-sum"]


def median_ms(call, repeats: int) -> float:
    from triton.testing import do_bench

    return do_bench(call, warmup=25, rep=repeats, return_mode="median")


def ceilings() -> tuple[float, float]:
    """(bytes per second of a device-to-device copy, read + written; float32 FLOP/s of a large
    matmul without TF32), measured now."""
    source = torch.empty(1 << 28, device="cuda")  # 1 GiB
    copy = median_ms(lambda: torch.empty_like(source).copy_(source), 200) / 1e3
    m = torch.randn(8192, 8192, device="cuda")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    mm = median_ms(lambda: m @ m, 400) / 1e3
    torch.set_float32_matmul_precision(before)
    return 2 * 4 * (1 << 28) / copy, 2 * 8192**3 / mm


def layer_inputs(folds: int, units: int, batch: int):
    g = torch.Generator().manual_seed(0)
    logs = torch.randn((2, folds, units, batch), generator=g) * 3
    x = LSE.pack_log(logs, 2).transpose(0, 1).cuda()  # (F, 2, K+1, B), fold gather's layout
    w = torch.softmax(torch.randn((folds, units, units * units), generator=g), -1).cuda()
    return x, w


def forward_call(layer, x: torch.Tensor, w: torch.Tensor):
    def run() -> None:
        with torch.no_grad():
            layer.evaluate(x, w)

    return run


def forward_backward_call(layer, x: torch.Tensor, w: torch.Tensor):
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

    def run() -> None:
        layer.evaluate(xg, wg).sum().backward()

    return run


def profile_circuit(units: int, batch: int, repeats: int) -> None:
    """The seed circuit's forward on the GPU (kernels='auto': Triton where it applies)."""
    from torch.profiler import ProfilerActivity, profile

    from cirkit_ir.pipeline import PipelineContext
    from cirkit_ir.templates import circuit_templates

    symbolic = circuit_templates.image_data(
        (1, 28, 28),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=units,
        sum_product_layer="tucker",
        num_sum_units=units,
        sum_weight_param="softmax",
    )
    ctx = PipelineContext("torch", "lse-sum", fold=True, optimize=True, device="cuda")
    circuit = ctx.compile(symbolic, seed=0)
    x = torch.randint(256, (batch, 28 * 28), generator=torch.Generator().manual_seed(0)).cuda()

    def forward() -> None:
        with torch.no_grad():
            circuit(x)

    print(f"\nThe seed circuit at {units} units, batch {batch}, one forward (no gradient):")
    for label, check_nan, exact in (
        ("as compiled", True, True),
        ("check_nan=False", False, True),
        ("check_nan=False, exact=False", False, False),
    ):
        circuit.check_nan, circuit.exact = check_nan, exact
        print(f"  {label}: {median_ms(forward, repeats):.3f} ms")
    circuit.check_nan, circuit.exact = True, True
    forward()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            forward()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    print(f"  {len(kernels) / 10:.0f} GPU kernels per forward; the 12 with the most GPU time:")
    table = prof.key_averages().table(
        sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60
    )
    print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="4,32,64", help="units per layer (default 4,32,64)")
    parser.add_argument("--folds", type=int, default=784)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200, help="milliseconds of timed runs")
    parser.add_argument("--sweep", action="store_true", help="time every launch configuration")
    parser.add_argument("--circuit", action="store_true", help="profile the seed circuit too")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "error: this benchmark times GPU kernels, and torch sees no CUDA device",
            file=sys.stderr,
        )
        return 2
    jit = load("tucker_jit")
    bandwidth, rate = ceilings()
    print(f"{torch.cuda.get_device_name()}: copy {bandwidth / 1e12:.2f} TB/s, float32 matmul"
          f" {rate / 1e12:.1f} TFLOP/s")  # fmt: skip
    header = ("units", "floor", "eager fwd", "triton fwd", "speedup", "eager f+b", "triton f+b",
              "speedup", "tf32 fwd", "bf16 fwd")  # fmt: skip
    rows = []
    for units in [int(u) for u in args.units.split(",")]:
        f, b = args.folds, args.batch
        x, w = layer_inputs(f, units, b)
        layer_args = dict(num_folds=f, arity=2, num_input_units=units, num_output_units=units)
        eager = TorchTuckerLayer(**layer_args, semiring=LSE)
        fused = TritonTuckerLayer(**layer_args, semiring=LSE)
        moved = (x.numel() + w.numel() + f * (units + 1) * b) * 4
        flops = 2 * f * units * units**2 * b
        floor = max(moved / bandwidth, flops / rate) * 1e3

        times = {
            "eager fwd": median_ms(forward_call(eager, x, w), args.repeats),
            "triton fwd": median_ms(forward_call(fused, x, w), args.repeats),
            "eager f+b": median_ms(forward_backward_call(eager, x, w), args.repeats),
            "triton f+b": median_ms(forward_backward_call(fused, x, w), args.repeats),
        }
        torch.set_float32_matmul_precision("high")
        times["tf32 fwd"] = median_ms(forward_call(fused, x, w), args.repeats)
        torch.set_float32_matmul_precision("highest")
        fused.contraction_dtype = "bfloat16"
        times["bf16 fwd"] = median_ms(forward_call(fused, x, w), args.repeats)
        fused.contraction_dtype = "float32"
        rows.append(
            (
                str(units),
                f"{floor:.3f}",
                f"{times['eager fwd']:.3f}",
                f"{times['triton fwd']:.3f}",
                f"{times['eager fwd'] / times['triton fwd']:.2f}x",
                f"{times['eager f+b']:.3f}",
                f"{times['triton f+b']:.3f}",
                f"{times['eager f+b'] / times['triton f+b']:.2f}x",
                f"{times['tf32 fwd']:.3f}",
                f"{times['bf16 fwd']:.3f}",
            )
        )
        if args.sweep:
            chosen = jit.launch_config
            for block_b in (16, 32, 64, 128):
                for warps in (1, 2, 4, 8):
                    jit.launch_config = lambda o, k, _c=(block_b, warps): _c
                    try:
                        ms = median_ms(forward_call(fused, x, w), args.repeats)
                        print(f"  {units} units, batch block {block_b}, {warps} warps: {ms:.3f} ms")
                    except Exception as error:  # noqa: BLE001 - a configuration may not fit
                        print(
                            f"  {units} units, batch block {block_b}, {warps} warps: {error!s:.80}"
                        )
            jit.launch_config = chosen
    print(f"\nOne Tucker layer, {args.folds} folds, batch {args.batch}, float32, milliseconds:")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    if args.circuit:
        for units in [int(u) for u in args.units.split(",")]:
            profile_circuit(units, args.batch, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
