"""LogitAdjustedCrossentropy: cross-entropy that learns balanced logits (Menon et al. 2021)."""

import keras
import numpy as np
from keras import ops

from calibkeras.metrics import functional
from calibkeras.priors import prior_from_counts
from calibkeras.utils.checks import check_class_counts, check_nonnegative_float


def logit_adjusted_crossentropy(y_true, y_pred, log_prior, tau=1.0, from_logits=True):
    """Per-sample logit-adjusted cross-entropy ``-log softmax(f + tau * log pi)_y``.

    Args:
        y_true: class ids ``(N,)`` / ``(N, 1)`` or one-hot labels ``(N, K)``.
        y_pred: balanced logits ``f`` ``(N, K)``; with ``from_logits=False``,
            probabilities whose log is used as ``f``.
        log_prior: ``(K,)`` log of the training class prior ``pi``.
        tau: strength of the adjustment; 0 is plain cross-entropy.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Tensor ``(N,)``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    if not from_logits:
        y_pred = ops.log(ops.maximum(y_pred, ops.cast(functional.LOG_CLIP, y_pred.dtype)))
    adjusted = y_pred + ops.cast(tau * log_prior, y_pred.dtype)
    return functional.negative_log_likelihood(y_true, adjusted, from_logits=True)


@keras.saving.register_keras_serializable(package="calibkeras")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy on ``f(x) + tau * log(pi_train)``: the model learns balanced logits.

    Training ``f`` with this loss makes ``softmax(f(x) + log(pi))`` the posterior under
    any prior ``pi``: ``f`` itself is the balanced (uniform-prior) classifier, and the
    training prior is an explicit number instead of an accident of sampling. At
    ``tau = 1`` it is the Balanced Softmax loss. Feed it the model's balanced logits
    (calibkeras' models keep their PriorShift layer at the uniform prior while
    training, so their output is ``f`` up to a constant).

    Args:
        class_counts: sequence of ``K`` positive training class counts (the prior the
            batches are drawn from; with balanced sampling pass equal counts).
        tau: adjustment strength, a finite number >= 0 (default 1.0).
        from_logits: whether predictions are logits (default True); with False, the
            log of the probabilities is used as logits.
        reduction: Keras loss reduction (default ``"sum_over_batch_size"``).
        name: loss name.

    Example:
        >>> model.compile(
        ...     optimizer="adam",
        ...     loss=LogitAdjustedCrossentropy(class_counts=info.class_counts),
        ... )

    References:
        Menon et al. (2021), Long-tail learning via logit adjustment. ICLR.
        Ren et al. (2020), Balanced Meta-Softmax for Long-Tailed Visual Recognition.
    """

    def __init__(
        self,
        class_counts,
        tau=1.0,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="logit_adjusted_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        counts = check_class_counts(class_counts)
        self.class_counts = counts.tolist()
        self.tau = check_nonnegative_float(tau, "tau")
        self.from_logits = bool(from_logits)
        self.log_prior = np.log(prior_from_counts(counts))

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        if num_classes is not None and num_classes != len(self.class_counts):
            raise ValueError(
                f"LogitAdjustedCrossentropy has {len(self.class_counts)} `class_counts` but "
                f"the predictions have {num_classes} classes (shape {y_pred.shape})"
            )
        return logit_adjusted_crossentropy(
            y_true, y_pred, self.log_prior, self.tau, self.from_logits
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {"class_counts": self.class_counts, "tau": self.tau, "from_logits": self.from_logits}
        )
        return config
