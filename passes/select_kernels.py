"""`select-kernels`: choose the backend kernel of every circuit op and record it in the IR.

The choice is an attribute of each op, `kernel=native` or `kernel=triton` (none for the eager
kernel), so a dump shows which kernel computes every op, and codegen only reads it. `kernels`
is `PipelineContext(kernels=...)`: 'auto' takes a registered fused kernel where it computes
the op on `device`, can run here (the C++ extension builds, Triton is installed) and measured
faster than eager; 'native' or 'triton' that family wherever it computes the op (a
`CompilationError` when it cannot run here); 'eager' clears every annotation. `device` (a
device type; `PipelineContext` passes its own) keeps kernels off devices they do not compute
on: the C++ kernels are CPU-only and the Triton ones GPU-only, so 'auto' picks each on its own
device, and naming one for the other device is a `KernelError`. Run it last: ops that later
passes create carry no annotation. The kernels are the torch backend's
(`backends.torch.kernels`, the only backend), read when the pass runs.
"""

from __future__ import annotations

from typing import Literal, get_args

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import CircuitOp
from cirkit_ir.passes.pass_base import Pass
from cirkit_ir.passes.registry import register_pass

Kernels = Literal["auto", "native", "triton", "eager"]
"""The values of `kernels` (`backends.torch.kernels.KERNEL_CHOICES`)."""


def _kernels(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in get_args(Kernels):
        raise OptionError.choose("kernels", value, get_args(Kernels))


DeviceType = Literal[
    "cpu",
    "cuda",
    "mps",
    "xpu",
    "hip",
    "hpu",
    "mtia",
    "maia",
    "ipu",
    "xla",
    "lazy",
    "ve",
    "fpga",
    "vulkan",
    "opengl",
    "opencl",
    "ideep",
    "meta",
    "privateuseone",
]
"""The device types torch names (`torch.device(...).type`): where the circuit will run."""


def _device_type(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in get_args(DeviceType):
        raise OptionError(
            f"device must be a torch device type such as cpu or cuda (no index), got {value!r}"
        )


@register_pass("select-kernels")
@attrs.frozen
class SelectKernels(Pass):
    """Sets `kernel` on every circuit op: the torch kernel that computes it (none: eager) on
    `device`, the type of the device the circuit will run on (fused kernels declare theirs:
    the C++ ones compute on CPU, the Triton ones on CUDA GPUs)."""

    kernels: Kernels = attrs.field(default="auto", validator=_kernels)
    device: DeviceType = attrs.field(default="cpu", validator=_device_type)

    def apply(self, graph: Graph) -> bool:
        from cirkit_ir.backends.torch.kernels import EAGER, choose_layer_kernel

        chosen: dict[CircuitOp, CircuitOp] = {}  # equal ops get one choice and one new op
        changed = False
        for node, op in list(graph.ops()):
            if not isinstance(op, CircuitOp):
                continue
            new = chosen.get(op)
            if new is None:
                kernel = choose_layer_kernel(op, op.semiring, self.kernels, self.device)
                new = chosen[op] = op.replace(kernel=None if kernel == EAGER else kernel)
            if new != op:
                graph.replace_op(node, new)
                changed = True
        return changed
