"""Losses: proper scoring rules and the logit-adjusted cross-entropy."""

from calibkeras.losses.brier_score import BrierScore
from calibkeras.losses.logit_adjusted_crossentropy import (
    LogitAdjustedCrossentropy,
    logit_adjusted_crossentropy,
)

__all__ = ["BrierScore", "LogitAdjustedCrossentropy", "logit_adjusted_crossentropy"]
