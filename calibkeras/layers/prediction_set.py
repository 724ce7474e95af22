"""PredictionSet: conformal prediction sets from calibrated logits, thresholds as weights."""

import keras
import numpy as np
from keras import ops

from calibkeras.choices import CONFORMAL_MODES, CONFORMITY_SCORES
from calibkeras.conformal.scores import conformity_scores
from calibkeras.utils.checks import (
    _show,
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_int,
)

#: ``mode`` of a layer whose thresholds were never fitted (every class in every set).
UNFITTED = "none"


@keras.saving.register_keras_serializable(package="calibkeras")
class PredictionSet(keras.layers.Layer):
    """Conformal prediction sets: ``outputs[i, k]`` is True when class ``k`` is in row
    ``i``'s set, i.e. when its conformity score is at most ``thresholds[k]``.

    The input is the calibrated logits before any prior (``a * f(x) + b``, the output
    of :class:`LogitCalibration`); the scores are computed from their softmax, the
    calibrated balanced posteriors, by
    :func:`calibkeras.conformal.conformity_scores` (never randomised), so the sets do
    not depend on the deployment prior. The ``K`` thresholds are non-trainable
    weights, set from :func:`calibkeras.conformal.fit_conformal` with
    :meth:`set_thresholds` (or
    :meth:`calibkeras.models.CalibratedClassifier.fit_prediction_sets`); an infinite
    threshold keeps its class in every set. Until fitted, every class is in every set.

    Args:
        num_classes: ``K``.
        score: ``"lac"``, ``"aps"`` or ``"raps"``.
        alpha: the miscoverage level the thresholds were fitted for (kept in the
            config; None until fitted).
        mode: ``"by_class"``, ``"marginal"`` or ``"none"`` (not fitted).
        penalty: RAPS penalty per rank beyond ``k_reg``.
        k_reg: ranks RAPS leaves unpenalised.
        initial_thresholds: optional ``K`` starting thresholds (numbers, or None or
            ``inf`` for a class always in the set); default all ``inf``.
        **kwargs: base layer arguments (``name``; ``dtype`` defaults to
            ``"float32"``).

    Input shape:
        ``(batch, K)`` calibrated logits.

    Output shape:
        ``(batch, K)`` booleans.

    Example:
    >>> layer = PredictionSet(3)
    >>> layer.set_thresholds([0.5, 0.5, 0.9], alpha=0.1, mode="by_class", score="lac")
    >>> np.asarray(layer(np.log([[0.7, 0.2, 0.1]]))).tolist()
    [[True, False, True]]
    """

    def __init__(self, num_classes, score="lac", alpha=None, mode=UNFITTED, penalty=0.0,
                 k_reg=1, initial_thresholds=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self._configure(score, alpha, mode, penalty, k_reg)
        thresholds = np.full(self.num_classes, np.inf)
        if initial_thresholds is not None:
            thresholds = self._checked([np.inf if t is None else t for t in initial_thresholds],
                                       "initial_thresholds")
        self.initial_thresholds = None if initial_thresholds is None else [
            None if np.isinf(t) else float(t) for t in thresholds
        ]
        self.thresholds = self.add_weight(
            name="thresholds", shape=(self.num_classes,), trainable=False,
            initializer=keras.initializers.Constant(thresholds),
        )
        self.built = True

    def _checked(self, thresholds, name):
        array = np.asarray(thresholds, dtype=np.float64)
        if array.shape != (self.num_classes,) or np.isnan(array).any():
            raise ValueError(
                f"`{name}` must be {self.num_classes} numbers or inf (one per class), "
                f"got {_show(array.tolist())}"
            )
        return array

    def _configure(self, score, alpha, mode, penalty, k_reg):
        self.score = check_choice(score, "score", CONFORMITY_SCORES)
        self.mode = check_choice(mode, "mode", (*CONFORMAL_MODES, UNFITTED))
        if alpha is not None and not 0 < float(alpha) < 1:
            raise ValueError(f"`alpha` must be a number in (0, 1) or None, got {_show(alpha)}")
        self.alpha = None if alpha is None else float(alpha)
        self.penalty = check_nonnegative_float(penalty, "penalty")
        self.k_reg = check_nonnegative_int(k_reg, "k_reg")

    @property
    def fitted(self):
        """Whether thresholds were set (``mode`` is not ``"none"``)."""
        return self.mode != UNFITTED

    def set_thresholds(self, thresholds, *, alpha, mode, score, penalty=0.0, k_reg=1):
        """Sets ``K`` thresholds (numbers or ``inf``) and the settings they go with."""
        array = self._checked(thresholds, "thresholds")
        self._configure(score, alpha, mode, penalty, k_reg)
        self.thresholds.assign(array.astype(self.thresholds.dtype))

    def reset(self):
        """Back to not fitted: every class in every set."""
        self.set_thresholds(np.full(self.num_classes, np.inf), alpha=None, mode=UNFITTED,
                            score=self.score, penalty=self.penalty, k_reg=self.k_reg)

    def set_fit(self, fit):
        """Sets the thresholds of a :class:`calibkeras.conformal.ConformalFit`.

        Raises:
            ValueError: for randomised sets, which a model does not serve.
        """
        if fit.randomized:
            raise ValueError(
                "randomised prediction sets (`randomized=True`) differ from call to call "
                "and are not served; fit them with randomized=False"
            )
        self.set_thresholds(fit.thresholds, alpha=fit.alpha, mode=fit.mode,
                            score=fit.score, penalty=fit.penalty, k_reg=fit.k_reg)

    def call(self, inputs):
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.num_classes:
            raise ValueError(
                f"PredictionSet '{self.name}' has {self.num_classes} classes but its input "
                f"has {inputs.shape[-1]} logits (shape {inputs.shape})"
            )
        probs = ops.softmax(inputs, axis=-1)
        scores = conformity_scores(probs, score=self.score, u=0.0, penalty=self.penalty,
                                   k_reg=self.k_reg)
        return ops.less_equal(scores, ops.cast(self.thresholds, scores.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype="bool")

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "score": self.score,
            "alpha": self.alpha,
            "mode": self.mode,
            "penalty": self.penalty,
            "k_reg": self.k_reg,
            "initial_thresholds": self.initial_thresholds,
        })
        return config
