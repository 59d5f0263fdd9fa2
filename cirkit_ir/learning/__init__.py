"""Training compiled circuits: EM from circuit flows (`em`) and a small `fit` helper."""

from cirkit_ir.learning.em import (
    EM,
    em_targets,
    log_likelihoods,
    register_inverse,
    register_linear_node,
)
from cirkit_ir.learning.fit import Epoch, History, bits_per_dimension, evaluate_nll, fit

__all__ = [
    "EM",
    "Epoch",
    "History",
    "bits_per_dimension",
    "em_targets",
    "evaluate_nll",
    "fit",
    "log_likelihoods",
    "register_inverse",
    "register_linear_node",
]
