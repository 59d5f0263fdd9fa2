"""Training compiled circuits: EM from circuit flows (`em`) and a small `fit` helper."""

from cirkit_ir.learning.em import EM, em_targets, log_likelihoods
from cirkit_ir.learning.fit import History, fit

__all__ = ["EM", "History", "em_targets", "fit", "log_likelihoods"]
