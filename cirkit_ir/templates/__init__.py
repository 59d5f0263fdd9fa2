"""Circuit templates: symbolic circuits built from a region graph and a few named options.

``from cirkit_ir.templates import circuit_templates`` gives `image_data` and `tabular_data`;
`Parameterization` says how a template parameterizes a tensor.
"""

from cirkit_ir.templates import circuit_templates
from cirkit_ir.templates.from_region_graph import circuit_from_region_graph
from cirkit_ir.templates.parameterization import Parameterization, build_parameter

__all__ = [
    "Parameterization",
    "build_parameter",
    "circuit_from_region_graph",
    "circuit_templates",
]
