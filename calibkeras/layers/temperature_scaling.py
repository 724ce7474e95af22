"""TemperatureScaling: divides logits by a positive, trainable temperature."""

import math

import keras
from keras import ops

from calibkeras.utils.checks import check_positive_float


@keras.saving.register_keras_serializable(package="calibkeras")
class TemperatureScaling(keras.layers.Layer):
    """Divides logits by a temperature ``T > 0``: ``outputs = logits / T``.

    ``T`` is stored as the trainable weight ``log_temperature`` (so any real value it
    takes in training maps to a positive temperature). ``T > 1`` softens overconfident
    probabilities and ``T < 1`` sharpens them; the argmax never changes. Fit ``T``
    exactly with :func:`calibkeras.calibration.fit_temperature` or the
    :class:`calibkeras.callbacks.TemperatureCalibration` callback, or train it with
    ``model.fit`` (freeze the other layers) on validation data.

    Temperature divides logits, never probabilities.

    Args:
        initial_temperature: starting value of ``T``, a positive finite number
            (default 1.0, the identity).
        **kwargs: base layer arguments (``name``, ``trainable``, ``dtype``: default
            ``"float32"`` whatever the global dtype policy).

    Input shape:
        ``(..., K)`` logits.

    Output shape:
        Same as the input.

    Example:
        >>> logits = keras.layers.Dense(10)(features)
        >>> scaled = calibkeras.layers.TemperatureScaling(name="temperature")(logits)

    References:
        Guo et al. (2017), On Calibration of Modern Neural Networks.
    """

    def __init__(self, initial_temperature=1.0, **kwargs):
        # Calibration, priors and decisions compute in float32 whatever the dtype
        # policy: under mixed_float16 a 1e-12 clip is 0 and logits lose digits.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_temperature = check_positive_float(
            initial_temperature, "initial_temperature"
        )
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.initial_temperature)),
            trainable=True,
        )
        self.built = True

    @property
    def temperature(self):
        """The current temperature ``T`` as a Python float."""
        return float(ops.convert_to_numpy(ops.exp(self.log_temperature)))

    def set_temperature(self, temperature):
        """Sets ``T`` (a positive finite number), e.g. from ``fit_temperature``."""
        temperature = check_positive_float(temperature, "temperature")
        self.log_temperature.assign(math.log(temperature))

    def call(self, inputs):
        scale = ops.cast(ops.exp(-self.log_temperature), inputs.dtype)
        return inputs * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"initial_temperature": self.initial_temperature})
        return config
