"""Losses: proper scoring rules, the logit-adjusted cross-entropy and the focal baseline."""

from calibkeras.losses.brier_score import BrierScore
from calibkeras.losses.focal_crossentropy import FocalCrossentropy
from calibkeras.losses.logit_adjusted_crossentropy import (
    LogitAdjustedCrossentropy,
    logit_adjusted_crossentropy,
)

__all__ = [
    "BrierScore",
    "FocalCrossentropy",
    "LogitAdjustedCrossentropy",
    "logit_adjusted_crossentropy",
]
