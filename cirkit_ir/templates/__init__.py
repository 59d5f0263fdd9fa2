"""Circuit templates: symbolic circuits built from a region graph and a few named options.

``from cirkit_ir.templates import circuit_templates`` gives `image_data` and `tabular_data`
(also under libcirkit 0.3.1's name, `data_modalities`); `pgms` gives graphical models (fully
factorized, HMM), `tensor_factorizations` CP, Tucker and tensor trains, `logic` logic circuits
and SDDs. `Parameterization` says how a template parameterizes a tensor.
"""

from cirkit_ir.templates import (
    circuit_templates,
    data_modalities,
    logic,
    pgms,
    region_graph,
    tensor_factorizations,
    utils,
)
from cirkit_ir.templates.from_region_graph import circuit_from_region_graph
from cirkit_ir.templates.parameterization import Parameterization, build_parameter

__all__ = [
    "Parameterization",
    "build_parameter",
    "circuit_from_region_graph",
    "circuit_templates",
    "data_modalities",
    "logic",
    "pgms",
    "region_graph",
    "tensor_factorizations",
    "utils",
]
