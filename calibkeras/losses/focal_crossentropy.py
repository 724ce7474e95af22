"""FocalCrossentropy: the focal loss (Lin et al. 2017) for sparse or one-hot labels."""

import keras

from calibkeras.metrics import functional


@keras.saving.register_keras_serializable(package="calibkeras")
class FocalCrossentropy(keras.losses.Loss):
    """Multiclass focal loss ``-(1 - p_y)**gamma * log p_y`` on sparse or one-hot labels.

    Included as the baseline many users try for imbalanced data. It is *not* a proper
    scoring rule: its probabilities are systematically under-confident or distorted,
    so a model trained with it needs temperature scaling before its probabilities mean
    anything, and (like plain cross-entropy) it learns the training prior, which
    calibkeras removes afterwards (:func:`calibkeras.models.remove_training_prior`).

    Args:
        gamma: focusing parameter >= 0 (default 2.0; 0 is cross-entropy).
        from_logits: whether predictions are logits (default True).
        reduction: Keras loss reduction.
        name: loss name.

    References:
        Lin et al. (2017), Focal Loss for Dense Object Detection.
        Mukhoti et al. (2020), Calibrating Deep Neural Networks using Focal Loss.
    """

    def __init__(
        self, gamma=2.0, from_logits=True, reduction="sum_over_batch_size",
        name="focal_crossentropy", dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(gamma, bool) or not float(gamma) >= 0:
            raise ValueError(f"`gamma` must be a number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        one_hot = functional.labels_to_one_hot(y_true, y_pred)
        return keras.losses.categorical_focal_crossentropy(
            one_hot, y_pred, alpha=1.0, gamma=self.gamma, from_logits=self.from_logits
        )

    def get_config(self):
        config = super().get_config()
        config.update({"gamma": self.gamma, "from_logits": self.from_logits})
        return config
