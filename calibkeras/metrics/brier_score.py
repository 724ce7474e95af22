"""BrierScore metric: streaming mean of the multiclass Brier score."""

import keras

from calibkeras.metrics import functional


# Registered under its own name: the loss of the same class name is "calibkeras>BrierScore".
@keras.saving.register_keras_serializable(package="calibkeras", name="BrierScoreMetric")
class BrierScore(keras.metrics.MeanMetricWrapper):
    """Mean multiclass Brier score ``sum_k (p_k - 1[y = k])**2`` (range [0, 2]; lower is
    better), accumulated as a (weighted) running sum and count.

    Args:
        from_logits: whether predictions are logits. Default False.
        name: metric name (default ``"brier_score"``).
        dtype: metric dtype.

    Example:
        >>> model.compile(..., metrics=[BrierScore(from_logits=True)])
    """

    def __init__(self, from_logits=False, name="brier_score", dtype=None):
        super().__init__(functional.brier_score, name=name, dtype=dtype, from_logits=from_logits)
        self.from_logits = from_logits
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_logits": self.from_logits}
