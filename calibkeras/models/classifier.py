"""build_classifier: backbone -> balanced logits -> temperature -> prior shift."""

import keras

from calibkeras._checks import check_positive_int
from calibkeras.data.preprocessing import check_image_size
from calibkeras.layers import PriorShift, TemperatureScaling
from calibkeras.models.backbones import build_backbone

#: Names of the layers every calibkeras classifier has at its top level.
BACKBONE_LAYER = "backbone"
LOGITS_LAYER = "logits"
TEMPERATURE_LAYER = "temperature"
PRIOR_SHIFT_LAYER = "prior_shift"


def build_classifier(
    num_classes,
    backbone="efficientnet_lite0",
    weights="imagenet",
    image_size=(224, 224),
    dropout=0.2,
    class_counts=None,
    class_names=None,
    prior="uniform",
    name="calibkeras_classifier",
):
    """Builds a calibrated image classifier with an explicit, adjustable class prior.

    Architecture (layer names in quotes)::

        images [B, H, W, 3], float32 RGB in 0..255 ("images")
          -> backbone ("backbone"; normalises its input itself; BatchNorm always in
             inference mode, also when fine-tuned)
          -> global average pooling ("avg_pool") -> dropout ("dropout")
          -> Dense: balanced logits f(x) ("logits")
          -> TemperatureScaling: f(x) / T ("temperature"; T = 1 until fitted, not
             trained by model.fit)
          -> PriorShift: + log(prior) ("prior_shift")

    The model's output is the logits under the deployment prior; ``softmax`` of it
    are the calibrated probabilities. Train it with
    :class:`calibkeras.losses.LogitAdjustedCrossentropy` (``from_logits=True``)
    while the prior is uniform, so the head learns balanced logits; fit ``T`` with
    :func:`calibkeras.callbacks.calibrate_temperature`; set the prior with
    ``model.get_layer("prior_shift").set_prior(...)``. :func:`probabilities_model`
    and :func:`logits_model` give the probabilities and the balanced logits.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        backbone: ``"efficientnet_lite0"`` (default; offline ImageNet weights) or a
            keras.applications EfficientNet: ``"efficientnet_b0"`` ... ``"_b7"``,
            ``"efficientnet_v2_b0"`` ... ``"_b3"``, ``"_s"``, ``"_m"``, ``"_l"``.
        weights: ``"imagenet"`` (default; keras.applications backbones download them
            with Keras, which needs the network), None (random), or the path of a
            ``.weights.h5`` file of the headless backbone.
        image_size: ``(height, width)`` or an int for square images (default 224).
        dropout: dropout rate before the head, in [0, 1).
        class_counts: optional ``K`` training class counts, kept in the PriorShift
            layer so ``set_prior("training")`` works.
        class_names: optional ``K`` class names, kept in the PriorShift layer config
            (they travel with the model and its SavedModel export).
        prior: the starting deployment prior: ``"uniform"`` (default; right for
            training with the logit-adjusted loss), ``"training"`` or ``K``
            probabilities.
        name: the model name.

    Returns:
        A ``keras.Model`` (not compiled).

    Example:
        >>> info = calibkeras.datasets.load_food10("train", image_size=(160, 160))
        >>> model = build_classifier(
        ...     len(info.class_names), image_size=160,
        ...     class_counts=info.class_counts, class_names=info.class_names)
        >>> model.compile("adam", loss=LogitAdjustedCrossentropy(info.class_counts))

    References:
        Tan & Le (2019), EfficientNet. Menon et al. (2021), Long-tail learning via
        logit adjustment. Guo et al. (2017), On Calibration of Modern Neural Networks.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be at least 2, got {num_classes}")
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    height, width = check_image_size(image_size)
    if isinstance(dropout, bool) or not 0 <= float(dropout) < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1), got {dropout!r}")
    shift = PriorShift(
        prior=prior,
        class_counts=class_counts,
        num_classes=num_classes,
        class_names=class_names,
        name=PRIOR_SHIFT_LAYER,
    )
    features = build_backbone(backbone, weights, (height, width, 3))
    inputs = keras.Input((height, width, 3), name="images")
    x = features(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(float(dropout), name="dropout")(x)
    # float32 whatever the dtype policy: the balanced logits feed the calibration.
    logits = keras.layers.Dense(num_classes, name=LOGITS_LAYER, dtype="float32")(x)
    temperature = TemperatureScaling(name=TEMPERATURE_LAYER, trainable=False)
    outputs = shift(temperature(logits))
    return keras.Model(inputs, outputs, name=name)


def logits_model(model):
    """A model sharing ``model``'s weights that outputs the balanced logits ``f(x)``."""
    return keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)


def probabilities_model(model):
    """A model sharing ``model``'s weights that outputs calibrated probabilities.

    The probabilities are ``softmax(f(x) / T + log(prior))`` with the temperature and
    prior the model holds when it is called (a later ``set_prior`` applies).
    """
    probabilities = keras.layers.Softmax(name="probabilities")(model.outputs[0])
    return keras.Model(model.inputs, probabilities)
