"""Conformal prediction sets: sets of classes that hold the true one with a guaranteed
probability, for every class (label-conditional) or overall under a deployment prior
(weighted marginal).

:func:`fit_conformal` fits the thresholds on calibrated balanced posteriors of
labelled calibration data; :class:`ConformalFit` predicts sets and measures their
coverage (:class:`SetCoverage`); :class:`calibkeras.layers.PredictionSet` serves the
same sets inside a model, and
:meth:`calibkeras.models.CalibratedClassifier.fit_prediction_sets` fits them for one.
"""

from calibkeras.choices import CONFORMAL_MODES, CONFORMITY_SCORES
from calibkeras.conformal.conformal_fit import (
    ConformalFit,
    conformal_quantile,
    fit_conformal,
    min_calibration_count,
)
from calibkeras.conformal.coverage import SetCoverage, set_coverage
from calibkeras.conformal.scores import conformity_scores

__all__ = [
    "CONFORMAL_MODES",
    "CONFORMITY_SCORES",
    "ConformalFit",
    "SetCoverage",
    "conformal_quantile",
    "conformity_scores",
    "fit_conformal",
    "min_calibration_count",
    "set_coverage",
]
