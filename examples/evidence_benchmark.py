"""A fully observed image circuit, three ways: on data, with every input an `EvidenceLayer`,
and through the `evidence` IR pass. Prints compile and forward times and the ops compiled.

Evidence ops over different variables fold into one op, and their observations (fixed
constants, one per variable) stack into one tensor, so the observed circuit runs as fast as
the circuit on data.

    python examples/evidence_benchmark.py            # 28x28, 1 unit
    python examples/evidence_benchmark.py --quick    # 8x8
"""

from __future__ import annotations

import argparse
import time

import torch

from cirkit_ir.passes import Evidence, Fold
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import Circuit, ConstantInitializer, EvidenceLayer, TensorParameter
from cirkit_ir.templates import circuit_templates


def observed(circuit: Circuit, x: torch.Tensor) -> Circuit:
    """Every input layer of `circuit` replaced by its evidence at `x` (C = 1)."""
    sub = {
        layer: EvidenceLayer(
            layer,
            TensorParameter(
                (1,), ConstantInitializer(float(x[next(iter(layer.scope))])), learnable=False
            ),
        )
        for layer in circuit.input_layers
    }
    return Circuit(
        [sub.get(a, a) for a in circuit.layers],
        {sub.get(a, a): [sub.get(b, b) for b in circuit.layer_inputs(a)] for a in circuit.layers},
        [sub.get(o, o) for o in circuit.outputs],
    )


def forward_ms(compiled, batch: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        compiled(batch)
        start = time.perf_counter()
        for _ in range(repeats):
            compiled(batch)
    return 1e3 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images, few repeats")
    parser.add_argument("--units", type=int, default=1)
    args = parser.parse_args()
    side, repeats = (8, 3) if args.quick else (28, 20)
    torch.manual_seed(0)
    circuit = circuit_templates.image_data(
        (1, side, side),
        region_graph="quad-tree-4",
        input_layer="categorical",
        num_input_units=args.units,
        sum_product_layer="cp",
        num_sum_units=args.units,
    )
    x = torch.randint(0, 256, (1, 1, side * side))
    context = PipelineContext(semiring="lse-sum", fold=True, optimize=True, seed=0)

    def report(name: str, compile_s: float, compiled, batch: torch.Tensor) -> None:
        counts = compiled.graph.op_counts()
        ms = forward_ms(compiled, batch, repeats)
        tensors, evidence = counts["tensor"], counts.get("evidence", 0)
        print(
            f"{name:<22} compile {compile_s:5.2f} s  forward {ms:7.2f} ms  tensors {tensors:4d}"
            f"  evidence ops {evidence}"
        )

    start = time.perf_counter()
    on_data = context.compile(circuit)
    report("on data", time.perf_counter() - start, on_data, x)

    start = time.perf_counter()
    with_layers = context.compile(observed(circuit, x[0, 0]))
    report("EvidenceLayer inputs", time.perf_counter() - start, with_layers, x[:, :, :0])

    start = time.perf_counter()
    graph = on_data.graph
    Evidence(variables=tuple(range(side * side)), values=tuple(map(float, x.flatten()))).apply(
        graph
    )
    Fold().apply(graph)
    through_pass = PipelineContext(semiring="lse-sum", pipeline="fold").compile(graph)
    report("evidence pass", time.perf_counter() - start, through_pass, x)
    same = torch.allclose(through_pass(x), on_data(x))
    print(f"the evidence pass computes the data circuit's value at x: {same}")


if __name__ == "__main__":
    main()
