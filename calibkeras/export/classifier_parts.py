"""Splits a calibkeras classifier into the pieces the serving signatures need."""

from typing import NamedTuple

import keras

from calibkeras.layers.prior_shift import PriorShift
from calibkeras.layers.temperature_scaling import TemperatureScaling


class ClassifierParts(NamedTuple):
    """The parts of a calibkeras classifier that export and verification use.

    Attributes:
        image_size: ``(height, width)`` of the model's input images.
        scaled_logits_model: ``keras.Model`` from the model's input to the output of
            its ``TemperatureScaling`` layer: temperature-scaled balanced logits
            ``f(x) / T``, shape ``(batch, K)`` (the input of ``PriorShift``). It shares
            the model's layers and weights.
        temperature_layer: the model's ``TemperatureScaling`` layer.
        prior_shift: the model's ``PriorShift`` layer (deployment prior, class names).
        class_names: ``K`` class names (``"0"`` .. ``"K-1"`` when the layer has none).
    """

    image_size: tuple
    scaled_logits_model: keras.Model
    temperature_layer: TemperatureScaling
    prior_shift: PriorShift
    class_names: list


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def split_classifier(model):
    """Checks the calibkeras model contract and returns the model's parts.

    The contract: a Keras functional model with one input, float32 images
    ``(batch, H, W, 3)`` in 0..255 with static ``H`` and ``W``, and one output, the
    logits under the deployment prior, produced by a top-level ``PriorShift`` layer
    whose input is the output of a top-level ``TemperatureScaling`` layer
    (``f(x) -> f / T -> f / T + log(prior)``). ``calibkeras.models.build_classifier``
    builds such models.

    Args:
        model: the classifier.

    Returns:
        A :class:`ClassifierParts`.

    Raises:
        ValueError: when the model does not follow the contract; the message says what
            is missing.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model, got {type(model).__name__}")
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            "`model` must be a built functional keras.Model (keras.Model(inputs, outputs)); "
            f"got a {type(model).__name__} without symbolic inputs/outputs"
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"`model` must have one input (images) and one output (logits), got "
            f"{len(inputs)} inputs and {len(outputs)} outputs"
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or not all(
        isinstance(d, int) and d > 0 for d in shape[1:3]
    ):
        raise ValueError(
            "`model` input must be images of shape (batch, height, width, 3) with a "
            f"fixed height and width, got {shape}"
        )
    prior_shift = _producer(outputs[0])
    if not isinstance(prior_shift, PriorShift):
        raise ValueError(
            "`model` output must be the output of a calibkeras PriorShift layer (the "
            "logits under the deployment prior), but it comes from "
            f"{type(prior_shift).__name__} {getattr(prior_shift, 'name', '')!r}; build the "
            "model with calibkeras.models.build_classifier"
        )
    temperature_layer = _producer(prior_shift.input)
    if not isinstance(temperature_layer, TemperatureScaling):
        raise ValueError(
            f"the input of PriorShift '{prior_shift.name}' must be the output of a "
            "calibkeras TemperatureScaling layer (f(x) / T), but it comes from "
            f"{type(temperature_layer).__name__} {getattr(temperature_layer, 'name', '')!r}"
        )
    scaled_logits_model = keras.Model(
        inputs[0], prior_shift.input, name=f"{model.name}_scaled_logits"
    )
    class_names = prior_shift.class_names or [str(k) for k in range(prior_shift.num_classes)]
    return ClassifierParts(
        image_size=(int(shape[1]), int(shape[2])),
        scaled_logits_model=scaled_logits_model,
        temperature_layer=temperature_layer,
        prior_shift=prior_shift,
        class_names=list(class_names),
    )
