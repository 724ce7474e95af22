"""Streaming Keras metrics for calibration and balanced accuracy."""

from calibkeras.metrics.balanced_accuracy import BalancedAccuracy
from calibkeras.metrics.brier_score import BrierScore
from calibkeras.metrics.expected_calibration_error import ExpectedCalibrationError
from calibkeras.metrics.negative_log_likelihood import NegativeLogLikelihood

__all__ = [
    "BalancedAccuracy",
    "BrierScore",
    "ExpectedCalibrationError",
    "NegativeLogLikelihood",
]
