"""LogitCalibration: per-class affine calibration of balanced logits, a * f + b."""

import keras
import numpy as np
from keras import ops

from calibkeras.utils.checks import (
    _show,
    check_positive_float,
    check_positive_int,
    check_prior,
)


@keras.saving.register_keras_serializable(package="calibkeras")
class LogitCalibration(keras.layers.Layer):
    """Calibrates logits by class: ``outputs = scale * logits + bias``.

    Temperature scaling is ``scale = 1 / T`` in every class and ``bias = 0``;
    bias-corrected temperature scaling (BCTS) adds a bias per class; vector scaling also
    scales each class. The scale and bias are non-trainable weights, set from a fit on
    validation data (:func:`calibkeras.calibration.fit_calibration`, or
    :meth:`calibkeras.models.CalibratedClassifier.calibrate`), so they travel with the
    model and its SavedModel. A bias sums to 0 (a constant shift changes no
    probability). Until it is fitted the layer is the identity.

    ``source_prior`` is the class prior that the calibrated model implies for the data
    it was calibrated on: the mean calibrated posterior there (Alexandari et al. 2020,
    section 3.2). :meth:`calibkeras.models.CalibratedClassifier.calibrate` sets it and
    makes the bias relative to it; label-shift estimation (EM) finds it again on data
    like the calibration data, and the shift test takes it as the prior of "no shift".

    Args:
        num_classes: ``K``.
        method: the name of the fit the weights came from (``"none"`` until fitted,
            ``"temperature"``, ``"bias_corrected"``, ``"vector"``); kept in the config.
        initial_scale: optional ``K`` positive starting scales (default all 1).
        initial_bias: optional ``K`` starting biases (default all 0; centred to sum 0).
        source_prior: optional ``K`` positive probabilities summing to 1, or None
            (default: unknown; the model's training prior stands in for it).
        **kwargs: base layer arguments (``name``; ``dtype`` defaults to ``"float32"``
            whatever the global dtype policy).

    Input shape:
        ``(..., K)`` logits.

    Output shape:
        Same as the input.

    Example:
    >>> layer = LogitCalibration(3)
    >>> layer.set_calibration([0.5, 0.5, 0.5], [0.2, -0.1, -0.1], method="bias_corrected")
    >>> [round(float(v), 6) for v in layer(np.array([[2.0, 0.0, -2.0]]))[0]]
    [1.2, -0.1, -1.1]

    References:
        Guo et al. (2017), On Calibration of Modern Neural Networks. Alexandari,
        Kundaje & Shrikumar (2020), Maximum Likelihood with Bias-Corrected Calibration
        is Hard-To-Beat at Label Shift Adaptation.
    """

    def __init__(self, num_classes, method="none", initial_scale=None, initial_bias=None,
                 source_prior=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.method = str(method)
        scale, bias = self._checked(
            np.ones(self.num_classes) if initial_scale is None else initial_scale,
            np.zeros(self.num_classes) if initial_bias is None else initial_bias,
            "initial_",
        )
        self.initial_scale = None if initial_scale is None else scale.tolist()
        self.initial_bias = None if initial_bias is None else bias.tolist()
        self.source_prior = self._checked_source_prior(source_prior)
        self.scale = self.add_weight(
            name="scale", shape=(self.num_classes,), trainable=False,
            initializer=keras.initializers.Constant(scale),
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.num_classes,), trainable=False,
            initializer=keras.initializers.Constant(bias),
        )
        self.built = True

    @property
    def temperature(self):
        """``1 / mean(scale)``: the temperature of a temperature fit (float)."""
        return float(1.0 / np.mean(self.scale.numpy()))

    def set_calibration(self, scale, bias, method, *, source_prior=None):
        """Sets the per-class ``scale`` and ``bias`` (``K`` finite numbers each; scale > 0)
        and the ``source_prior`` they were fitted for (``K`` positive probabilities, or
        None: unknown)."""
        scale, bias = self._checked(scale, bias)
        source_prior = self._checked_source_prior(source_prior)
        self.scale.assign(scale.astype(self.scale.dtype))
        self.bias.assign(bias.astype(self.bias.dtype))
        self.method = str(method)
        self.source_prior = source_prior

    def _checked_source_prior(self, source_prior):
        """``source_prior`` as a list of ``K`` floats summing to 1, or None."""
        if source_prior is None:
            return None
        array = check_prior(source_prior, self.num_classes, name="source_prior")
        return (array / array.sum()).tolist()

    def _checked(self, scale, bias, prefix=""):
        """``(scale, centred bias)`` as float64 ``(K,)`` arrays, else a ValueError naming
        ``{prefix}scale`` or ``{prefix}bias``."""
        arrays = []
        for name, values in ((f"{prefix}scale", scale), (f"{prefix}bias", bias)):
            array = np.asarray(values, dtype=np.float64)
            if array.shape != (self.num_classes,) or not np.all(np.isfinite(array)):
                raise ValueError(
                    f"`{name}` must be {self.num_classes} finite numbers (one per class), "
                    f"got {_show(array.tolist())}"
                )
            arrays.append(array)
        scale, bias = arrays
        if np.any(scale <= 0):
            raise ValueError(
                f"`{prefix}scale` must be positive in every class, got {_show(scale.tolist())}"
            )
        return scale, bias - bias.mean()

    def set_temperature(self, temperature):
        """Temperature scaling: ``scale = 1 / T`` in every class, no bias."""
        temperature = check_positive_float(temperature, "temperature")
        self.set_calibration(np.full(self.num_classes, 1.0 / temperature),
                             np.zeros(self.num_classes), "temperature")

    def call(self, inputs):
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.num_classes:
            raise ValueError(
                f"LogitCalibration '{self.name}' calibrates {self.num_classes} classes but "
                f"its input has {inputs.shape[-1]} logits (shape {inputs.shape})"
            )
        return inputs * ops.cast(self.scale, inputs.dtype) + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "method": self.method,
            "initial_scale": self.initial_scale,
            "initial_bias": self.initial_bias,
            "source_prior": self.source_prior,
        })
        return config
