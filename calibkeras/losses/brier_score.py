"""BrierScore loss: the multiclass Brier score, a proper scoring rule, as a training loss."""

import keras

from calibkeras.metrics import functional


@keras.saving.register_keras_serializable(package="calibkeras")
class BrierScore(keras.losses.Loss):
    """Mean over samples of ``sum_k (p_k - 1[y = k])**2`` (range [0, 2]).

    A strictly proper scoring rule like cross-entropy, but bounded, so single
    confidently wrong examples weigh less. Sparse integer and one-hot labels both work.

    Args:
        from_logits: whether predictions are logits (softmax is applied first).
            Default False.
        reduction: Keras loss reduction (default ``"sum_over_batch_size"``).
        name: loss name.

    Example:
        >>> model.compile(optimizer="adam", loss=BrierScore(from_logits=True))

    References:
        Brier (1950), Verification of forecasts expressed in terms of probability.
    """

    def __init__(
        self, from_logits=False, reduction="sum_over_batch_size", name="brier_score", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return functional.brier_score(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config
