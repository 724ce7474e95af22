"""calibkeras: calibrated, prior-aware, cost-sensitive image classifiers for Keras 3.

Subpackages: ``models`` (``CalibratedClassifier``, EfficientNet backbones, the training
recipe), ``priors`` (the prior vocabulary, EM estimation), ``calibration`` (NumPy
scores, temperature fitting, calibration test, decisions), ``conformal``
(prediction sets with per-class coverage), ``layers``, ``losses``,
``metrics`` (and ``metrics.functional``), ``callbacks``, ``data`` (tf.data loaders),
``datasets`` (the bundled food10 data), ``distribute`` (tf.distribute strategies),
``export`` (SavedModel for TF Serving), ``reports`` (plots and HTML reports) and
``workflow`` (the whole job from Python; the ``calibkeras`` command calls it) and
``choices`` (the names of the options, without TensorFlow).
See docs/architecture.md.
"""

import importlib

from calibkeras._version import __version__

#: The subpackages, each imported on first use (``calibkeras.models`` or ``from
#: calibkeras import models``), so that ``import calibkeras`` and the ``calibkeras``
#: command's ``--help`` do not import TensorFlow. Keras finds calibkeras' layers in a
#: ``.keras`` file once ``calibkeras.models`` (or ``calibkeras.layers``) is imported;
#: ``calibkeras.models.load_classifier`` does that itself.
_SUBPACKAGES = (
    "calibration",
    "callbacks",
    "choices",
    "conformal",
    "data",
    "datasets",
    "distribute",
    "export",
    "layers",
    "losses",
    "metrics",
    "models",
    "priors",
    "reports",
    "workflow",
)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_SUBPACKAGES})


__all__ = ["__version__", *_SUBPACKAGES]
