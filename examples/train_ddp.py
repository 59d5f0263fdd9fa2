"""Data-parallel training of a compiled circuit on the digits, one process per shard.

    torchrun --nproc-per-node 2 examples/train_ddp.py [--quick] [--method em|sgd]

Each process reads its shard of the training set. With `--method sgd` the circuit is wrapped
in `DistributedDataParallel` (which averages the gradients); with EM, `fit` all-reduces the
expected counts before each M-step. gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(__file__))
from learning_a_circuit import digits, digits_circuit  # noqa: E402

from cirkit_ir.learning import fit  # noqa: E402
from cirkit_ir.learning.fit import bits_per_dimension, evaluate_nll  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--method", choices=("em", "sgd"), default="em")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else None
    train, test = digits()
    shard, test_shard = train.chunk(world)[rank], test.chunk(world)[rank]
    circuit = digits_circuit(8 if args.quick else 16)  # the same seed: the same start everywhere
    if device is not None:
        circuit, shard, test_shard = circuit.to(device), shard.to(device), test_shard.to(device)
    model = None
    if args.method == "sgd":
        model = DistributedDataParallel(circuit, device_ids=None if device is None else [device])
    history = fit(
        circuit, shard, args.method, epochs=3 if args.quick else 20, batch_size=128,
        step_size=0.8, pseudocount=0.001, lr=0.1, model=model, progress=rank == 0,
    )  # fmt: skip
    test_bpd = bits_per_dimension(evaluate_nll(circuit, test_shard), 64)  # all-reduced
    if rank == 0:
        seconds = sum(e.seconds for e in history.epochs) / len(history.epochs)
        print(f"{world} processes, {args.method}: test bpd {test_bpd:.4f}, {seconds:.3f} s/epoch")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
