"""NumPy functions for calibration: scores, calibration fits, tests, prior estimation."""

from calibkeras.calibration.calibration_fit import (
    CALIBRATION_METHODS,
    CalibrationFit,
    fit_calibration,
)
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
from calibkeras.priors import (
    PriorEstimate,
    PriorShiftTest,
    adjust_to_prior,
    estimate_prior,
    prior_shift_test,
)

__all__ = [
    "CALIBRATION_METHODS",
    "SCORE_NAMES",
    "CalibrationFit",
    "PriorEstimate",
    "PriorShiftTest",
    "action_expected_costs",
    "adjust_to_prior",
    "bayes_decisions",
    "calibration_errors",
    "calibration_test",
    "classwise_reliability_curve",
    "estimate_prior",
    "expected_cost",
    "fit_calibration",
    "fit_temperature",
    "prior_shift_test",
    "realized_cost",
    "reliability_curve",
]
