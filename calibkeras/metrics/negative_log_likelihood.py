"""NegativeLogLikelihood metric: streaming mean of -ln p_y."""

import keras

from calibkeras.metrics import functional


@keras.saving.register_keras_serializable(package="calibkeras")
class NegativeLogLikelihood(keras.metrics.MeanMetricWrapper):
    """Mean negative log-likelihood ``-ln p_y`` (natural log; lower is better).

    With probabilities, ``p_y`` is clipped at 1e-12 inside the log only (Keras'
    crossentropy metrics clip at 1e-7, which caps the loss of confidently wrong
    predictions); with logits the exact ``log_softmax`` is used.

    Args:
        from_logits: whether predictions are logits. Default False.
        name: metric name (default ``"nll"``).
        dtype: metric dtype.
    """

    def __init__(self, from_logits=False, name="nll", dtype=None):
        super().__init__(
            functional.negative_log_likelihood, name=name, dtype=dtype, from_logits=from_logits
        )
        self.from_logits = from_logits
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_logits": self.from_logits}
