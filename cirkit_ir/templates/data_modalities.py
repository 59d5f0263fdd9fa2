"""libcirkit 0.3.1's name for the image and table templates (`circuit_templates`)."""

from cirkit_ir.templates.circuit_templates import image_data, tabular_data

__all__ = ["image_data", "tabular_data"]
