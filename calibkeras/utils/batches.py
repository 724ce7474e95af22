"""Iterating (labelled) data in batches, whatever form the user passed it in."""

import sys

import keras
import numpy as np
from keras import ops


def iterate_batches(data, batch_size=32):
    """Yields ``(x, y, sample_weight_or_None)`` batches from labelled data.

    Args:
        data: a ``tf.data.Dataset`` (or any iterable) of ``(x, y)`` or
            ``(x, y, sample_weight)`` batches; a tuple ``(x, y)`` /
            ``(x, y, sample_weight)`` of arrays, batched here by ``batch_size``; or an
            object with a ``dataset`` attribute holding such a dataset (what the
            calibkeras data loaders return).
        batch_size: batch size for array input.
    """
    data = getattr(data, "dataset", data)
    if isinstance(data, (tuple, list)):
        if len(data) not in (2, 3):
            raise ValueError(
                "array data must be a tuple (x, y) or (x, y, sample_weight), got a "
                f"{type(data).__name__} of length {len(data)}"
            )
        arrays = [np.asarray(a) for a in data]
        for start in range(0, len(arrays[0]), batch_size):
            chunk = [a[start : start + batch_size] for a in arrays]
            yield chunk[0], chunk[1], (chunk[2] if len(chunk) == 3 else None)
        return
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(
                "each batch of the data must be (x, y) or (x, y, sample_weight); got "
                f"{type(batch).__name__}"
            )
        yield batch[0], batch[1], (batch[2] if len(batch) == 3 else None)


def label_ids(y):
    """Integer class ids ``(N,)`` from sparse ``(N,)``/``(N, 1)`` or one-hot ``(N, K)`` labels."""
    y = np.asarray(ops.convert_to_numpy(y))
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(-1).astype(np.int64)


def iterate_inputs(data, batch_size=32):
    """Yields input batches ``x`` from data with or without labels.

    Args:
        data: an array (batched here by ``batch_size``), a tuple whose first entry is
            one, a ``tf.data.Dataset`` (or iterable) of ``x`` or ``(x, ...)`` batches,
            or an object with a ``dataset`` attribute holding such a dataset.
        batch_size: batch size for array input.
    """
    data = getattr(data, "dataset", data)
    if isinstance(data, (tuple, list)):
        data = data[0]
    if isinstance(data, np.ndarray) or ops.is_tensor(data):
        array = np.asarray(ops.convert_to_numpy(data))
        for start in range(0, len(array), batch_size):
            yield array[start : start + batch_size]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def labels_of(data, batch_size=32):
    """Integer class ids ``(N,)`` of labelled data, read without running any model."""
    labels = [label_ids(y) for _, y, _ in iterate_batches(data, batch_size)]
    if not labels:
        raise ValueError("the data yielded no batches; pass a non-empty dataset")
    return np.concatenate(labels)


def predict_inputs(predict_on_batch, data, batch_size=32, progress=False):
    """Runs a model over data with or without labels; returns the outputs, in order.

    As :func:`predict_with_labels`, for :func:`iterate_inputs` data.
    """
    batches = ((x, None) for x in iterate_inputs(data, batch_size))
    return _predict(predict_on_batch, batches, data, progress)[0]


def predict_with_labels(predict_on_batch, data, batch_size=32, progress=False):
    """Runs a model over labelled data; returns ``(outputs, labels)`` arrays.

    ``predict_on_batch`` is a Keras model, run on each batch with
    :func:`calibkeras.distribute.batch_predictor` (correct under a tf.distribute
    strategy: the batch is split across the replicas and gathered back in order), or
    any function from a batch of inputs to outputs. Labels are returned as integer
    class ids. The order is the data's order, so outputs and labels stay aligned even
    for a shuffled dataset. With ``progress=True`` a Keras progress bar counts the
    samples.
    """
    batches = ((x, y) for x, y, _ in iterate_batches(data, batch_size))
    return _predict(predict_on_batch, batches, data, progress)


def _predict(predict_on_batch, batches, data, progress):
    """``(outputs, labels or None)`` of ``(x, y or None)`` batches, in order."""
    if isinstance(predict_on_batch, keras.Model):
        from calibkeras.distribute import batch_predictor

        predict_on_batch = batch_predictor(predict_on_batch)
    bar = _progress_bar(getattr(data, "num_examples", None)) if progress else None
    outputs, labels = [], []
    for x, y in batches:
        outputs.append(np.asarray(ops.convert_to_numpy(predict_on_batch(x))))
        if y is not None:
            labels.append(label_ids(y))
        if bar is not None:
            bar.add(len(outputs[-1]))
    if not outputs:
        raise ValueError("the data yielded no batches; pass a non-empty dataset")
    return np.concatenate(outputs), (np.concatenate(labels) if labels else None)


def _progress_bar(num_images):
    """A Keras progress bar counting images: redrawn in place on a terminal; elsewhere
    (a pipe, a log file) one plain line at the end, without ANSI codes or ``\\r``.

    (Keras' own choice takes any POSIX system for a terminal.)
    """
    on_terminal = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return keras.utils.Progbar(num_images, unit_name="image", verbose=1 if on_terminal else 2)
