"""CalibrationMonitor: adds calibration scores on validation data to the epoch logs."""

import warnings

import keras
import numpy as np
from keras import ops

from calibkeras import metrics
from calibkeras._batches import iterate_batches
from calibkeras._checks import check_positive_int


class CalibrationMonitor(keras.callbacks.Callback):
    """Adds ``val_ece``, ``val_brier``, ``val_nll`` and ``val_balanced_accuracy`` to the
    epoch logs.

    At the end of every epoch the model is run on ``validation_data`` (in inference
    mode) and the streaming calibkeras metrics accumulate over all of it, so the values
    are exact for the whole set. Because they are written into ``logs``, callbacks
    placed *after* this one in the ``callbacks`` list (EarlyStopping, CSVLogger,
    TensorBoard, ModelCheckpoint) and the History see them.

    Args:
        validation_data: a ``tf.data.Dataset`` of ``(x, y)`` batches, a tuple
            ``(x, y)`` of arrays, or a calibkeras ``LabeledDataset``.
        num_bins: bins of the top-label ECE (default 15).
        from_logits: whether the model outputs logits (default True, as calibkeras'
            models do); set False for a model that ends in a softmax.
        prefix: prefix of the log keys (default ``"val_"``).
        batch_size: batch size used for array input (default 32).

    Example:
        >>> model.fit(
        ...     train_ds, epochs=10,
        ...     callbacks=[CalibrationMonitor(val_ds),
        ...                keras.callbacks.EarlyStopping("val_nll", restore_best_weights=True)],
        ... )
    """

    def __init__(
        self, validation_data, num_bins=15, from_logits=True, prefix="val_", batch_size=32
    ):
        super().__init__()
        self.validation_data = validation_data
        self.num_bins = check_positive_int(num_bins, "num_bins")
        self.from_logits = bool(from_logits)
        self.prefix = prefix
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self._metrics = None

    def _build_metrics(self, num_classes):
        return {
            "ece": metrics.ExpectedCalibrationError(self.num_bins, from_logits=self.from_logits),
            "brier": metrics.BrierScore(from_logits=self.from_logits),
            "nll": metrics.NegativeLogLikelihood(from_logits=self.from_logits),
            "balanced_accuracy": metrics.BalancedAccuracy(num_classes),
        }

    def on_train_begin(self, logs=None):
        self._metrics = None

    def _check_outputs(self, outputs):
        values = np.asarray(ops.convert_to_numpy(outputs))
        looks_like_probs = (
            values.min() >= 0 and np.allclose(values.sum(axis=-1), 1.0, atol=1e-3)
        )
        if self.from_logits and looks_like_probs:
            warnings.warn(
                "CalibrationMonitor: the model's outputs look like probabilities (rows in "
                "[0, 1] summing to 1) but `from_logits=True`; pass from_logits=False for a "
                "model that ends in a softmax",
                stacklevel=3,
            )

    def compute(self):
        """Runs the model on the validation data; returns the scores as a dict of floats."""
        first = True
        for x, y, sample_weight in iterate_batches(self.validation_data, self.batch_size):
            outputs = self.model.predict_on_batch(x)
            if first:
                self._check_outputs(outputs)
                if self._metrics is None:
                    self._metrics = self._build_metrics(outputs.shape[-1])
                for metric in self._metrics.values():
                    metric.reset_state()
                first = False
            for metric in self._metrics.values():
                metric.update_state(y, outputs, sample_weight)
        if first:
            raise ValueError("CalibrationMonitor: `validation_data` yielded no batches")
        return {name: float(metric.result()) for name, metric in self._metrics.items()}

    def on_epoch_end(self, epoch, logs=None):
        scores = self.compute()
        if logs is not None:
            logs.update({self.prefix + name: value for name, value in scores.items()})
