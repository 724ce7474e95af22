"""ExpectedCalibrationError metric: streaming binned ECE with fixed-shape state."""

import keras
from keras import ops

from calibkeras.metrics import functional
from calibkeras.utils.checks import check_positive_int


@keras.saving.register_keras_serializable(package="calibkeras")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Expected calibration error over equal-width bins on (0, 1] (lower is better).

    Top-label (default): ``sum_b (n_b / N) |acc_b - conf_b|`` over the bins of the
    maximum probability, with ``acc_b`` the share of argmax predictions that are right
    (Guo et al. 2017). Classwise: the same for each class's probability ``p_k``
    against ``1[y = k]``, averaged over classes. A confidence of exactly 1.0 belongs to
    the last bin.

    The state is per-bin sums (counts, confidences, outcomes) of fixed shape, so the
    result over a dataset is exact however it is batched (the mean of per-batch ECEs
    is not the ECE), and under ``tf.distribute`` the sums add across replicas.

    Args:
        num_bins: number of bins, a positive integer (default 15).
        classwise: False for top-label ECE (default), True for classwise ECE.
        num_classes: number of classes; required when ``classwise=True`` (the state
            has one row of bins per class).
        from_logits: whether predictions are logits. Default False.
        name: metric name (default ``"ece"`` or ``"classwise_ece"``).
        dtype: metric dtype.

    Example:
        >>> model.compile(..., metrics=[ExpectedCalibrationError(from_logits=True)])

    References:
        Guo et al. (2017), On Calibration of Modern Neural Networks.
        Kull et al. (2019), Beyond temperature scaling (classwise ECE).
    """

    def __init__(
        self, num_bins=15, classwise=False, num_classes=None, from_logits=False, name=None,
        dtype=None,
    ):
        super().__init__(name=name or ("classwise_ece" if classwise else "ece"), dtype=dtype)
        self.num_bins = check_positive_int(num_bins, "num_bins")
        self.classwise = bool(classwise)
        if self.classwise:
            if num_classes is None:
                raise ValueError(
                    "`num_classes` is required with `classwise=True`, got None"
                )
            num_classes = check_positive_int(num_classes, "num_classes")
        self.num_classes = num_classes
        self.from_logits = bool(from_logits)
        self._direction = "down"
        groups = num_classes if self.classwise else 1
        self.counts, self.confidence_sums, self.outcome_sums = (
            self.add_variable(
                shape=(groups, self.num_bins), initializer="zeros", name=state, dtype=self.dtype
            )
            for state in ("counts", "confidence_sums", "outcome_sums")
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        probs = ops.cast(functional.to_probabilities(y_pred, self.from_logits), self.dtype)
        if self.classwise:
            if probs.shape[-1] is not None and probs.shape[-1] != self.num_classes:
                raise ValueError(
                    f"{self.name} was built for {self.num_classes} classes but predictions "
                    f"have shape {probs.shape}"
                )
            confidences, outcomes = probs, functional.labels_to_one_hot(y_true, probs)
        else:
            confidences, outcomes = functional.top_label_outcomes(y_true, probs)
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
        counts, confidence_sums, outcome_sums = functional.bin_statistics(
            confidences, outcomes, self.num_bins, sample_weight
        )
        self.counts.assign_add(counts)
        self.confidence_sums.assign_add(confidence_sums)
        self.outcome_sums.assign_add(outcome_sums)

    def result(self):
        errors = functional.calibration_error_from_bins(
            self.counts, self.confidence_sums, self.outcome_sums
        )
        return ops.mean(errors)

    def reset_state(self):
        for variable in (self.counts, self.confidence_sums, self.outcome_sums):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "num_bins": self.num_bins,
            "classwise": self.classwise,
            "num_classes": self.num_classes,
            "from_logits": self.from_logits,
        }
