"""Keras layers: calibration (temperature, per-class affine), prior shift, decisions,
conformal prediction sets."""

from calibkeras.layers.cost_sensitive_decision import CostSensitiveDecision
from calibkeras.layers.logit_calibration import LogitCalibration
from calibkeras.layers.prediction_set import PredictionSet
from calibkeras.layers.prior_shift import PriorShift
from calibkeras.layers.temperature_scaling import TemperatureScaling

__all__ = [
    "CostSensitiveDecision",
    "LogitCalibration",
    "PredictionSet",
    "PriorShift",
    "TemperatureScaling",
]
