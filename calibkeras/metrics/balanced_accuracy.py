"""BalancedAccuracy metric: streaming mean per-class recall."""

import keras
from keras import ops

from calibkeras.metrics import functional
from calibkeras.utils.checks import check_positive_int


@keras.saving.register_keras_serializable(package="calibkeras")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean per-class recall of the argmax prediction (higher is better).

    Classes absent from ``y_true`` so far are excluded from the mean (as
    ``sklearn.metrics.balanced_accuracy_score``). The state is the per-class
    (weighted) support and number of correct predictions, fixed shape ``(K,)``, so the
    result is exact across batches and sums across replicas under ``tf.distribute``.
    On imbalanced data it is the accuracy a classifier would have if every class were
    equally frequent, so it does not reward favouring the majority classes.

    Args:
        num_classes: number of classes ``K``, a positive integer.
        name: metric name (default ``"balanced_accuracy"``).
        dtype: metric dtype.

    Example:
        >>> model.compile(..., metrics=[BalancedAccuracy(num_classes=10)])
    """

    def __init__(self, num_classes, name="balanced_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.support = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", name="support", dtype=self.dtype
        )
        self.correct = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", name="correct", dtype=self.dtype
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(
                f"{self.name} was built for {self.num_classes} classes but predictions have "
                f"shape {y_pred.shape}"
            )
        support, correct = functional.class_recall_counts(
            y_true, ops.cast(y_pred, self.dtype), sample_weight
        )
        self.support.assign_add(support)
        self.correct.assign_add(correct)

    def result(self):
        return functional.balanced_accuracy_from_counts(self.support, self.correct)

    def reset_state(self):
        for variable in (self.support, self.correct):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_classes": self.num_classes}
