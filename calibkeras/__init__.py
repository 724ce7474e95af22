"""calibkeras: calibrated, prior-aware, cost-sensitive image classifiers for Keras 3.

Subpackages: ``calibration`` (NumPy scores, temperature fitting, calibration test,
prior estimation, decisions), ``layers``, ``losses``, ``metrics``, ``callbacks``,
``data`` (tf.data loaders), ``datasets`` (the bundled food10 data), ``distribute``
(tf.distribute strategies), ``models``
(EfficientNet classifiers and the training recipe), ``export`` (SavedModel for TF
Serving) and ``reports`` (plots and HTML reports).
"""

__version__ = "0.1.0"

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
    reports,
)

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
    "reports",
]
