"""Keras layers: temperature, prior shift and cost-sensitive decisions."""

from calibkeras.layers.cost_sensitive_decision import CostSensitiveDecision
from calibkeras.layers.prior_shift import PriorShift
from calibkeras.layers.temperature_scaling import TemperatureScaling

__all__ = ["CostSensitiveDecision", "PriorShift", "TemperatureScaling"]
