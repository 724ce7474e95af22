"""build_classifier and load_classifier: the ways to a CalibratedClassifier."""

import warnings

import keras

from calibkeras.data.preprocessing import check_image_size
from calibkeras.models.backbones import build_backbone, native_image_size
from calibkeras.models.calibrated_classifier import (
    CalibratedClassifier,
    check_calibrated_classifier,
    check_num_classes,
)


def build_classifier(
    num_classes,
    backbone="efficientnet_lite0",
    weights="imagenet",
    image_size=None,
    dropout=0.2,
    class_counts=None,
    class_names=None,
    prior="uniform",
    name="calibkeras_classifier",
):
    """Builds a calibrated image classifier with an explicit, adjustable class prior.

    A :class:`CalibratedClassifier` (see there for the architecture) around
    :func:`calibkeras.models.build_backbone` ``(backbone, weights, (H, W, 3))``.
    Train it with :class:`calibkeras.losses.LogitAdjustedCrossentropy` while the prior
    is uniform, fit the calibration with ``model.calibrate(val_data)`` and set the deployment
    prior with ``model.set_prior(...)``.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        backbone: ``"efficientnet_lite0"`` (default; offline ImageNet weights), a
            keras.applications EfficientNet: ``"efficientnet_b0"`` ... ``"_b7"``,
            ``"efficientnet_v2_b0"`` ... ``"_b3"``, ``"_s"``, ``"_m"``, ``"_l"``, or a
            ``keras.Model`` to a 4-D feature map.
        weights: ``"imagenet"`` (default; keras.applications backbones download them
            with Keras, which needs the network), None (random), or the path of a
            ``.weights.h5`` file of the headless backbone.
        image_size: ``(height, width)`` or an int for square images; default None:
            the backbone's ImageNet size (:func:`~calibkeras.models.backbones.native_image_size`:
            224 for EfficientNet-Lite0 and -B0, 240 for Lite1 and -B1, 260 for Lite2 and
            -B2, ...; a model backbone's own fixed input size).
        dropout: dropout rate before the head, in [0, 1).
        class_counts: optional ``K`` training class counts, kept in the PriorShift
            layer so ``set_prior("training")`` works.
        class_names: optional ``K`` class names, kept in the PriorShift layer config
            (they travel with the model and its SavedModel export).
        prior: the starting deployment prior: ``"uniform"`` (default; right for
            training with the logit-adjusted loss), ``"training"``,
            ``{class name: probability}`` or ``K`` probabilities.
        name: the model name.

    Returns:
        A :class:`CalibratedClassifier` (not compiled).

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
    num_classes = check_num_classes(num_classes)
    if image_size is None:
        image_size = native_image_size(backbone)
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    height, width = check_image_size(image_size)
    return CalibratedClassifier(
        build_backbone(backbone, weights, (height, width, 3)),
        num_classes,
        dropout=dropout,
        class_counts=class_counts,
        class_names=class_names,
        prior=prior,
        name=name,
    )


def load_classifier(path):
    """Loads a ``.keras`` file of a calibkeras classifier as a :class:`CalibratedClassifier`.

    Files written by calibkeras 0.1 (a plain functional model) load too: the model is
    rebuilt around the same backbone, with the same weights, temperature and prior.
    """
    import calibkeras.layers  # noqa: F401  (registers the custom layers for loading)

    model = keras.models.load_model(path)
    if isinstance(model, CalibratedClassifier):
        return model
    return CalibratedClassifier.from_functional(model)


def logits_model(model):
    """Deprecated: use ``model.balanced_logits_model()``."""
    warnings.warn(
        "calibkeras.models.logits_model is deprecated; use model.balanced_logits_model()",
        DeprecationWarning, stacklevel=2,
    )
    return check_calibrated_classifier(model).balanced_logits_model()


def probabilities_model(model):
    """A model sharing ``model``'s weights that outputs calibrated probabilities.

    The probabilities are ``softmax(a * f(x) + b + log(prior))`` with the calibration
    and prior the model holds when it is called (a later ``set_prior`` applies).
    """
    probabilities = keras.layers.Softmax(name="probabilities")(model.outputs[0])
    return keras.Model(model.inputs, probabilities)
