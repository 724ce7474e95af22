"""NumPy functions for calibration: scores, temperature fitting, tests, prior estimation."""

from calibkeras.calibration.consistency import calibration_test
from calibkeras.calibration.decisions import (
    action_expected_costs,
    bayes_decisions,
    expected_cost,
    realized_cost,
)
from calibkeras.calibration.errors import SCORE_NAMES, calibration_errors
from calibkeras.calibration.reliability import classwise_reliability_curve, reliability_curve
from calibkeras.calibration.temperature import fit_temperature
from calibkeras.priors import PriorEstimate, adjust_to_prior, estimate_prior

__all__ = [
    "SCORE_NAMES",
    "PriorEstimate",
    "action_expected_costs",
    "adjust_to_prior",
    "bayes_decisions",
    "calibration_errors",
    "calibration_test",
    "classwise_reliability_curve",
    "estimate_prior",
    "expected_cost",
    "fit_temperature",
    "realized_cost",
    "reliability_curve",
]
