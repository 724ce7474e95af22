"""The named choices of calibkeras' options, importable without TensorFlow.

The ``calibkeras`` command builds its ``--help`` and checks its flags from these
tuples before any command runs, so that ``--version``, ``--help`` and usage errors
never pay for importing TensorFlow. The modules that act on a choice re-export it
under the name they always had (``calibkeras.calibration.CALIBRATION_METHODS``,
``calibkeras.data.SAMPLING_MODES``, ``calibkeras.distribute.STRATEGIES``,
``calibkeras.models.LOSSES`` and ``CALIBRATIONS``). This module imports nothing.
"""

#: The calibration maps, simplest first (the order ``method="auto"`` prefers).
CALIBRATION_METHODS = ("temperature", "bias_corrected", "vector")

#: The calibrations the training recipe fits: chosen by cross-validation, or one method.
CALIBRATIONS = ("auto", *CALIBRATION_METHODS)

#: The training losses the recipe knows (``calibkeras.models.training.LOSSES``).
LOSSES = ("logit_adjusted", "crossentropy", "focal")

#: The fine-tuning learning-rate schedules (``calibkeras.models.fine_tune``).
SCHEDULES = ("constant", "cosine")

#: Batch sampling of the data loaders: the data's own class frequencies, or balanced.
SAMPLING_MODES = ("natural", "balanced")

#: The tf.distribute strategies ``calibkeras.distribute.make_strategy`` builds.
STRATEGIES = ("default", "mirrored", "multi_worker")

#: The conformity scores of prediction sets (``calibkeras.conformal``): least ambiguous
#: set-valued classifier, adaptive prediction sets, regularised adaptive sets.
CONFORMITY_SCORES = ("lac", "aps", "raps")

#: How prediction-set thresholds are fitted: one per class from that class's
#: calibration scores (label-conditional), or one quantile over all (marginal).
CONFORMAL_MODES = ("by_class", "marginal")

__all__ = [
    "CALIBRATIONS",
    "CALIBRATION_METHODS",
    "CONFORMAL_MODES",
    "CONFORMITY_SCORES",
    "LOSSES",
    "SAMPLING_MODES",
    "SCHEDULES",
    "STRATEGIES",
]
