"""TemperatureCalibration: fits the model's temperature on validation data after training."""

import keras
import numpy as np

from calibkeras._batches import predict_with_labels
from calibkeras.calibration import fit_temperature
from calibkeras.layers import PriorShift, TemperatureScaling
from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.priors import prior_from_counts


def _single_layer(model, layer_class, required):
    found = [layer for layer in model.layers if isinstance(layer, layer_class)]
    if len(found) > 1 or (required and not found):
        raise ValueError(
            f"the model must have exactly one {layer_class.__name__} layer at its top "
            f"level, found {len(found)}: {[layer.name for layer in found]}"
        )
    return found[0] if found else None


def _fitting_prior(model, prior, labels, num_classes):
    shift = _single_layer(model, PriorShift, required=False)
    if prior is None:
        if shift is None:
            return None
        return shift.training_prior if shift.class_counts is not None else shift.prior
    if isinstance(prior, str) and prior == "validation":
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        if np.any(counts == 0):
            raise ValueError(
                "`prior` 'validation' needs every class in the validation data; classes "
                f"{np.flatnonzero(counts == 0).tolist()} have no examples. Pass "
                "prior=None to use the training prior"
            )
        return prior_from_counts(counts)
    if isinstance(prior, str) and prior == "uniform":
        return np.full(num_classes, 1.0 / num_classes)
    if isinstance(prior, str):
        raise ValueError(
            f"`prior` must be None, 'validation', 'uniform' or a probability vector, got {prior!r}"
        )
    return np.asarray(prior, dtype=np.float64)


def calibrate_temperature(model, validation_data, prior=None, batch_size=32):
    """Fits the model's TemperatureScaling layer on validation data; returns ``T``.

    The balanced logits ``f(x)`` (the input of the TemperatureScaling layer) are
    computed on ``validation_data`` and ``T`` is set to the exact minimiser of the NLL
    of ``softmax(f(x) / T + log(prior))`` (:func:`calibkeras.calibration.fit_temperature`),
    so the temperature is fitted under the prior of the validation data.

    Args:
        model: a Keras model with exactly one top-level TemperatureScaling layer (and at
            most one PriorShift layer after it).
        validation_data: labelled data, as for :class:`CalibrationMonitor`.
        prior: the class prior of the validation data. ``None`` (default) takes the
            training prior of the model's PriorShift layer (validation data drawn like
            the training data), its current prior if it has no class counts, and no
            prior for a model without PriorShift; ``"validation"`` takes the label
            frequencies of the validation data; ``"uniform"``; or a probability vector.
        batch_size: batch size for array input.

    Returns:
        The fitted temperature (float), also written into the layer.

    Raises:
        ValueError: if ``validation_data`` is a ``LabeledDataset`` whose class list
            is not the model's (PriorShift ``class_names``), in the same order.
    """
    layer = _single_layer(model, TemperatureScaling, required=True)
    check_data_classes(model, validation_data, "validation_data")
    logits_model = keras.Model(model.inputs, layer.input)
    logits, labels = predict_with_labels(logits_model, validation_data, batch_size)
    fitting_prior = _fitting_prior(model, prior, labels, logits.shape[1])
    temperature = fit_temperature(logits, labels, prior=fitting_prior)
    layer.set_temperature(temperature)
    return temperature


class TemperatureCalibration(keras.callbacks.Callback):
    """At the end of training, fits the model's temperature on validation data.

    Calls :func:`calibrate_temperature`: the exact NLL-optimal ``T`` for the balanced
    logits under the validation prior is written into the model's TemperatureScaling
    layer, and ``T`` is kept in :attr:`temperature`. Put it last in the callbacks list
    if another callback (EarlyStopping with ``restore_best_weights``) changes the
    weights at the end of training.

    Args:
        validation_data: labelled data, as for :class:`CalibrationMonitor`.
        prior: the validation prior, as for :func:`calibrate_temperature`.
        batch_size: batch size for array input.
        verbose: 1 prints the fitted temperature.

    Example:
        >>> model.fit(train_ds, epochs=5, callbacks=[TemperatureCalibration(val_ds)])
        >>> model.get_layer("temperature").temperature
    """

    def __init__(self, validation_data, prior=None, batch_size=32, verbose=0):
        super().__init__()
        self.validation_data = validation_data
        self.prior = prior
        self.batch_size = batch_size
        self.verbose = verbose
        self.temperature = None

    def on_train_begin(self, logs=None):
        check_data_classes(self.model, self.validation_data, "validation_data")

    def on_train_end(self, logs=None):
        self.temperature = calibrate_temperature(
            self.model, self.validation_data, self.prior, self.batch_size
        )
        if self.verbose:
            print(f"TemperatureCalibration: T = {self.temperature:.4f}")
