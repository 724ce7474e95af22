"""Streaming Keras metrics for calibration and balanced accuracy.

``calibkeras.metrics.functional`` holds the stateless functions behind them (and behind
the losses and :mod:`calibkeras.calibration`): each quantity written once.
"""

from calibkeras.metrics import functional
from calibkeras.metrics.balanced_accuracy import BalancedAccuracy
from calibkeras.metrics.brier_score import BrierScore
from calibkeras.metrics.expected_calibration_error import ExpectedCalibrationError
from calibkeras.metrics.negative_log_likelihood import NegativeLogLikelihood

__all__ = [
    "BalancedAccuracy",
    "BrierScore",
    "ExpectedCalibrationError",
    "NegativeLogLikelihood",
    "functional",
]
