"""calibkeras: calibrated, prior-aware, cost-sensitive image classifiers for Keras 3.

Subpackages: ``models`` (``CalibratedClassifier``, EfficientNet backbones, the training
recipe), ``priors`` (the prior vocabulary, EM estimation), ``calibration`` (NumPy
scores, temperature fitting, calibration test, decisions), ``layers``, ``losses``,
``metrics`` (and ``metrics.functional``), ``callbacks``, ``data`` (tf.data loaders),
``datasets`` (the bundled food10 data), ``distribute`` (tf.distribute strategies),
``export`` (SavedModel for TF Serving), ``reports`` (plots and HTML reports) and
``workflow`` (the whole job from Python; the ``calibkeras`` command calls it).
See docs/architecture.md.
"""

from calibkeras import (  # noqa: E402
    calibration,
    callbacks,
    data,
    datasets,
    distribute,
    export,
    layers,
    losses,
    metrics,
    models,
    priors,
    reports,
    workflow,
)
from calibkeras._version import __version__  # noqa: E402

__all__ = [
    "__version__",
    "calibration",
    "callbacks",
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
]
