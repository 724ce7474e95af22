"""Keras callbacks that monitor calibration and fit the temperature."""

from calibkeras.callbacks.calibration_monitor import CalibrationMonitor
from calibkeras.callbacks.temperature_calibration import (
    TemperatureCalibration,
    calibrate_temperature,
)

__all__ = ["CalibrationMonitor", "TemperatureCalibration", "calibrate_temperature"]
