"""TemperatureCalibration: fits the model's temperature on validation data after training."""

import keras

from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.models.calibrated_classifier import check_calibrated_classifier


def calibrate_temperature(model, validation_data, prior=None, batch_size=32):
    """Fits the model's temperature on validation data; returns ``T``.

    :meth:`calibkeras.models.CalibratedClassifier.calibrate` with
    ``method="temperature"``: ``T`` is set to the exact minimiser of the NLL of
    ``softmax(f(x) / T + log(prior))`` (:func:`calibkeras.calibration.fit_temperature`)
    on the balanced logits ``f(x)`` of ``validation_data``, so the temperature is
    fitted under the prior of the validation data; the bias is written relative to
    the prior the calibrated model implies for those data, as in
    :class:`TemperatureCalibration`.

    Args:
        model: a :class:`calibkeras.models.CalibratedClassifier`.
        validation_data: labelled data, as for :class:`CalibrationMonitor`.
        prior: the class prior of the validation data. ``None`` (default) takes the
            model's training prior (validation data drawn like the training data), or
            its current prior if it has no class counts; ``"labels"`` (or
            ``"validation"``) the label frequencies of the validation data;
            ``"uniform"``; or any other :func:`calibkeras.priors.resolve_prior`
            specification.
        batch_size: batch size for array input.

    Returns:
        The fitted temperature (float), also written into the model.

    Raises:
        ValueError: if ``validation_data`` is a ``LabeledDataset`` whose class list
            is not the model's, in the same order.
    """
    model = check_calibrated_classifier(model)
    check_data_classes(model, validation_data, "validation_data")
    fit = model.calibrate(validation_data, method="temperature", prior=prior,
                          batch_size=batch_size)
    return fit.temperature


class TemperatureCalibration(keras.callbacks.Callback):
    """At the end of training, fits the model's temperature on validation data.

    Calls :func:`calibrate_temperature`: the exact NLL-optimal ``T`` for the balanced
    logits under the validation prior is written into the model's calibration (scale
    ``1 / T``, and the bias ``log(prior) - log(s)`` relative to the prior ``s`` that the
    calibrated model implies for the validation data, as
    :meth:`calibkeras.models.CalibratedClassifier.calibrate` writes it; the argmax
    under a fixed prior can therefore change where ``s`` differs from the validation
    prior), and ``T`` is kept in :attr:`temperature`. Put it last in the callbacks list
    if another callback (EarlyStopping with ``restore_best_weights``) changes the
    weights at the end of training.

    Args:
        validation_data: labelled data, as for :class:`CalibrationMonitor`.
        prior: the validation prior, as for :func:`calibrate_temperature`.
        batch_size: batch size for array input.
        verbose: 1 prints the fitted temperature.

    Example:
        >>> model.fit(train_ds, epochs=5, callbacks=[TemperatureCalibration(val_ds)])
        >>> model.temperature
    """

    def __init__(self, validation_data, prior=None, batch_size=32, verbose=0):
        super().__init__()
        self.validation_data = validation_data
        self.prior = prior
        self.batch_size = batch_size
        self.verbose = verbose
        self.temperature = None

    def on_train_begin(self, logs=None):
        check_calibrated_classifier(self.model)
        check_data_classes(self.model, self.validation_data, "validation_data")

    def on_train_end(self, logs=None):
        self.temperature = calibrate_temperature(
            self.model, self.validation_data, self.prior, self.batch_size
        )
        if self.verbose:
            print(f"TemperatureCalibration: T = {self.temperature:.4f}")
