"""CalibrationMonitor: adds calibration scores on validation data to the epoch logs."""

import os
import warnings

import keras
import numpy as np
from keras import ops

from calibkeras import metrics
from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.metrics import functional
from calibkeras.utils.batches import iterate_batches, label_ids
from calibkeras.utils.checks import check_positive_int


class CalibrationMonitor(keras.callbacks.Callback):
    """Adds ``val_ece``, ``val_brier``, ``val_nll`` and ``val_balanced_accuracy`` to the
    epoch logs.

    At the end of every epoch the model is run on ``validation_data`` (in inference
    mode) and the streaming calibkeras metrics accumulate over all of it, so the values
    are exact for the whole set. Because they are written into ``logs``, callbacks
    placed *after* this one in the ``callbacks`` list (EarlyStopping, CSVLogger,
    TensorBoard, ModelCheckpoint) and the History see them.

    With ``log_dir`` set, every epoch also writes these scores as TensorBoard scalars
    and the top-label reliability diagram
    (:func:`calibkeras.reports.plot_reliability_diagram`) as a TensorBoard image, at
    step ``epoch``. The probabilities and labels for the diagram are gathered in the
    same pass over the validation data that updates the metrics (the model runs once
    per epoch); the diagram ignores sample weights. The summaries are written with the
    low-level ``tf.summary.write`` op and the scalar/image plugin metadata, which is
    what ``tf.summary.scalar``/``tf.summary.image`` write, so the event files read the
    same in TensorBoard but need no ``tensorboard`` package to be written.

    Args:
        validation_data: a ``tf.data.Dataset`` of ``(x, y)`` batches, a tuple
            ``(x, y)`` of arrays, or a calibkeras ``LabeledDataset`` (whose class
            list must be the model's, in its order: checked when training begins).
        num_bins: bins of the top-label ECE (default 15).
        from_logits: whether the model outputs logits (default True, as calibkeras'
            models do); set False for a model that ends in a softmax.
        prefix: prefix of the log keys (default ``"val_"``).
        batch_size: batch size used for array input (default 32).
        log_dir: optional folder of TensorBoard event files (default None: no
            summaries). Tags: ``{prefix}ece``, ``{prefix}brier``, ``{prefix}nll``,
            ``{prefix}balanced_accuracy`` and ``{prefix}reliability_diagram``.

    Example:
        >>> model.fit(
        ...     train_ds, epochs=10,
        ...     callbacks=[CalibrationMonitor(val_ds),
        ...                keras.callbacks.EarlyStopping("val_nll", mode="min",
        ...                                              restore_best_weights=True)],
        ... )
    """

    def __init__(
        self,
        validation_data,
        num_bins=15,
        from_logits=True,
        prefix="val_",
        batch_size=32,
        log_dir=None,
    ):
        super().__init__()
        self.validation_data = validation_data
        self.num_bins = check_positive_int(num_bins, "num_bins")
        self.from_logits = bool(from_logits)
        self.prefix = prefix
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise ValueError(f"`log_dir` must be None or a folder path, got {log_dir!r}")
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._metrics = None
        self._update_metrics = None
        self._predictor = None
        self._writer = None

    def _build_metrics(self, num_classes):
        return {
            "ece": metrics.ExpectedCalibrationError(self.num_bins, from_logits=self.from_logits),
            "brier": metrics.BrierScore(from_logits=self.from_logits),
            "nll": metrics.NegativeLogLikelihood(from_logits=self.from_logits),
            "balanced_accuracy": metrics.BalancedAccuracy(num_classes),
        }

    def on_train_begin(self, logs=None):
        check_data_classes(self.model, self.validation_data, "validation_data")
        self._metrics = None
        self._update_metrics = None

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
        check_data_classes(self.model, self.validation_data, "validation_data")
        return self._evaluate(collect=False)[0]

    def _evaluate(self, collect):
        """One pass over the validation data: updates the metrics and, when ``collect``,
        gathers the probabilities and labels. Returns ``(scores, probs, labels)``, the
        last two None unless ``collect``.

        Under a tf.distribute strategy each batch is split across the replicas: every
        replica runs the model on its piece and updates the metrics with it (their
        state is summed across replicas when read), and the outputs are gathered back
        in order (:func:`calibkeras.distribute.batch_predictor`)."""
        from calibkeras.distribute import (
            batch_predictor,
            pad_weighted_rows,
            split_across_replicas,
        )

        strategy = self.model.distribute_strategy
        if self._predictor is None or self._predictor[0] is not self.model:
            self._predictor = (self.model, batch_predictor(self.model))
        predict = self._predictor[1]
        first = True
        outputs_seen, labels_seen = [], []
        for x, y, sample_weight in iterate_batches(self.validation_data, self.batch_size):
            outputs = predict(x)
            if first:
                self._check_outputs(outputs)
                if self._metrics is None:
                    self._build_metric_updater(strategy, outputs.shape[-1])
                for metric in self._metrics.values():
                    metric.reset_state()
                first = False
            # A batch smaller than the number of replicas is padded with rows of weight
            # zero: no replica gets an empty piece.
            arguments = pad_weighted_rows(
                strategy.num_replicas_in_sync, y, outputs, sample_weight
            )
            self._update_metrics(
                tuple(split_across_replicas(strategy, value) for value in arguments)
            )
            if collect:
                outputs_seen.append(np.asarray(outputs, dtype=np.float64))
                labels_seen.append(label_ids(y))
        if first:
            raise ValueError("CalibrationMonitor: `validation_data` yielded no batches")
        scores = {name: float(metric.result()) for name, metric in self._metrics.items()}
        if not collect:
            return scores, None, None
        probs = ops.convert_to_numpy(
            functional.to_probabilities(np.concatenate(outputs_seen), self.from_logits)
        ).astype(np.float64)
        probs /= probs.sum(axis=1, keepdims=True)
        return scores, probs, np.concatenate(labels_seen)

    def _build_metric_updater(self, strategy, num_classes):
        """Creates the metrics in the strategy's scope and the function that updates
        them on every replica with that replica's piece of a batch."""
        import tensorflow as tf

        with strategy.scope():
            self._metrics = self._build_metrics(num_classes)
        metrics_list = list(self._metrics.values())

        def update(*arguments):
            for metric in metrics_list:
                metric.update_state(*arguments)

        @tf.function(reduce_retracing=True)
        def update_on_replicas(pieces):
            strategy.run(update, args=pieces)

        self._update_metrics = update_on_replicas

    def on_epoch_end(self, epoch, logs=None):
        scores, probs, labels = self._evaluate(collect=self.log_dir is not None)
        if logs is not None:
            logs.update({self.prefix + name: value for name, value in scores.items()})
        if self.log_dir is not None:
            self._write_summaries(epoch, scores, probs, labels)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write_summaries(self, epoch, scores, probs, labels):
        """Writes the epoch's scalars and reliability diagram to ``log_dir``."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        from calibkeras.reports._figures import figure_to_png
        from calibkeras.reports.reliability_diagram import plot_reliability_diagram

        def metadata(plugin_name, data_class):
            plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name)
            return summary_pb2.SummaryMetadata(plugin_data=plugin, data_class=data_class)

        png = figure_to_png(
            plot_reliability_diagram(
                labels, probs, num_bins=self.num_bins, title=f"epoch {epoch + 1}"
            )
        )
        height, width = tf.image.decode_png(png, channels=4).shape[:2]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            for name, value in scores.items():
                tf.summary.write(
                    self.prefix + name,
                    tf.constant(value, dtype=tf.float32),
                    metadata=metadata("scalars", summary_pb2.DATA_CLASS_SCALAR),
                )
            tf.summary.write(
                self.prefix + "reliability_diagram",
                tf.constant([str(width), str(height), png], dtype=tf.string),
                metadata=metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
            )
        self._writer.flush()
