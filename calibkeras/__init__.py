"""calibkeras: calibrated, prior-aware, cost-sensitive image classifiers for Keras 3."""

__version__ = "0.1.0"
