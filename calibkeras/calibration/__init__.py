"""NumPy functions for calibration: scores, temperature fitting, tests, prior estimation."""

from calibkeras.calibration.consistency import calibration_test
from calibkeras.calibration.errors import SCORE_NAMES, calibration_errors
from calibkeras.calibration.prior import PriorEstimate, adjust_to_prior, estimate_prior
from calibkeras.calibration.reliability import reliability_curve
from calibkeras.calibration.temperature import fit_temperature

__all__ = [
    "SCORE_NAMES",
    "PriorEstimate",
    "adjust_to_prior",
    "calibration_errors",
    "calibration_test",
    "estimate_prior",
    "fit_temperature",
    "reliability_curve",
]
