"""The EfficientNet-Lite networks for Keras 3, and loading a ``.weights.h5`` file into them.

One builder serves every variant: EfficientNet-B0's seven stages of MBConv blocks,
their filters scaled by the variant's width coefficient and their repeats by its depth
coefficient, as in the TensorFlow ``efficientnet_lite_builder`` with ``fix_head_stem``:
the stem (32 filters), the head (1280 filters) and the repeats of the first and the
last stage stay as they are in Lite0. The variants are named by :data:`VARIANTS`'s keys
(``"efficientnet_lite0"``, ...); every function here takes one as its first argument.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import keras
from keras import layers

from calibkeras.utils.checks import check_bool, check_positive_int


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: its scaling, default image size and dropout.

    Attributes:
        name: the variant's name, also the default model name (``"efficientnet_lite1"``).
        width_coefficient: factor on the block filters (the stem and head stay fixed).
        depth_coefficient: factor on the block repeats, rounded up (the first and last
            stage stay fixed).
        default_size: the ImageNet image size in pixels, height and width.
        dropout_rate: dropout before the classifier.
    """

    name: str
    width_coefficient: float
    depth_coefficient: float
    default_size: int
    dropout_rate: float

    @property
    def constructor_name(self) -> str:
        """The name of its constructor, e.g. ``"EfficientNetLite1"``."""
        return "EfficientNetLite" + self.name.removeprefix("efficientnet_lite")


#: Variant name -> :class:`LiteVariant`; the values of the TensorFlow
#: ``efficientnet_lite_builder`` (width, depth, resolution, dropout).
VARIANTS = {
    variant.name: variant
    for variant in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
    )
}

# (kernel_size, repeats, filters_in, filters_out, expand_ratio, strides) per stage:
# EfficientNet-B0's blocks, which Lite0 (width and depth 1.0) keeps unscaled.
BASE_BLOCKS_ARGS = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
STEM_FILTERS = 32
TOP_FILTERS = 1280
BN_EPSILON = 1e-3
DROP_CONNECT_RATE = 0.2
MIN_SIZE = 32
NUM_IMAGENET_CLASSES = 1000
_FILTER_DIVISOR = 8

# Same initialisers as keras.applications.EfficientNet (used when weights=None).
_CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
_DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def get_variant(variant: str) -> LiteVariant:
    """Return the :class:`LiteVariant` named ``variant``.

    Raises:
        ValueError: ``variant`` is not a key of :data:`VARIANTS` (the message lists them).
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"`variant` must be one of {', '.join(VARIANTS)}, got {variant!r}"
        )
    return VARIANTS[variant]


def round_filters(filters: int, width_coefficient: float) -> int:
    """Scale ``filters`` by the width coefficient, to a multiple of 8 (as EfficientNet).

    The result is the nearest multiple of 8, at least 8, and at least 90% of the scaled
    number (else 8 more).
    """
    scaled = filters * width_coefficient
    rounded = max(_FILTER_DIVISOR,
                  int(scaled + _FILTER_DIVISOR / 2) // _FILTER_DIVISOR * _FILTER_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += _FILTER_DIVISOR
    return int(rounded)


@functools.cache
def blocks_args(variant: str) -> tuple[tuple[int, ...], ...]:
    """Return the variant's stages, scaled, in the layout of :data:`BASE_BLOCKS_ARGS`.

    Args:
        variant: a key of :data:`VARIANTS`.

    Returns:
        One tuple ``(kernel_size, repeats, filters_in, filters_out, expand_ratio,
        strides)`` per stage. Repeats are ``ceil(depth * repeats)`` except in the first
        and last stage; filters are :func:`round_filters`; the first stage takes the
        (fixed) stem's 32 filters.
    """
    spec = get_variant(variant)
    stages = []
    filters_in = STEM_FILTERS
    last = len(BASE_BLOCKS_ARGS) - 1
    for index, (kernel, repeats, _, filters_out, expand, strides) in enumerate(
            BASE_BLOCKS_ARGS):
        if 0 < index < last:
            repeats = int(math.ceil(spec.depth_coefficient * repeats))
        filters_out = round_filters(filters_out, spec.width_coefficient)
        stages.append((kernel, repeats, filters_in, filters_out, expand, strides))
        filters_in = filters_out
    return tuple(stages)


def block_names(variant: str) -> list[str]:
    """Return the variant's MBConv block name prefixes, in order: 'block1a', 'block2a', ....

    Args:
        variant: a key of :data:`VARIANTS`.

    Returns:
        A list of strings (16 for Lite0, 21 for Lite1 and Lite2); block ``i`` of the
        list is ``_blocks.i`` in the PyTorch (efficientnet_pytorch) weight layout.
    """
    names = []
    for stage, (_, repeats, *_rest) in enumerate(blocks_args(variant)):
        names.extend(f"block{stage + 1}{chr(ord('a') + j)}" for j in range(repeats))
    return names


def _relu6(name):
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv_block(x, filters_in, filters_out, kernel_size, strides, expand_ratio,
                  drop_rate, name):
    """Inverted-residual block without squeeze-excitation (EfficientNet-Lite)."""
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False,
                          kernel_initializer=_CONV_KERNEL_INITIALIZER,
                          name=f"{name}_expand_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_expand_bn")(x)
        x = _relu6(f"{name}_expand_activation")(x)
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False,
                               depthwise_initializer=_CONV_KERNEL_INITIALIZER,
                               name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = _relu6(f"{name}_activation")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                      kernel_initializer=_CONV_KERNEL_INITIALIZER,
                      name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth: drops the whole residual branch per sample in training.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.add([x, inputs], name=f"{name}_add")
    return x


def _check_arguments(spec, include_top, weights, pooling, classes, classifier_activation):
    check_bool(include_top, "include_top")
    if not (weights is None or weights == "imagenet" or isinstance(weights, (str, os.PathLike))):
        raise ValueError(
            "`weights` must be 'imagenet', None or a path to a .weights.h5 file, "
            f"got {weights!r}"
        )
    if weights is not None and weights != "imagenet":
        path = os.fspath(weights)
        if not path.endswith(".weights.h5"):
            raise ValueError(
                "`weights` must be 'imagenet', None or a path to a .weights.h5 file, "
                f"got {weights!r}"
            )
        if not os.path.isfile(path):
            raise ValueError(
                f"`weights` file {path!r} does not exist; pass 'imagenet', None or the "
                "path of an existing .weights.h5 file"
            )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max', got {pooling!r}")
    check_positive_int(classes, "classes")
    if weights == "imagenet" and include_top and classes != NUM_IMAGENET_CLASSES:
        raise ValueError(
            f"`classes` must be {NUM_IMAGENET_CLASSES} with weights='imagenet' and "
            f"include_top=True, got {classes}; use include_top=False with your own head, "
            "or weights=None"
        )
    if weights is not None and include_top:
        if classifier_activation not in (None, "softmax", keras.activations.softmax):
            raise ValueError(
                "`classifier_activation` must be None or 'softmax' with pretrained "
                f"weights and include_top=True, got {classifier_activation!r}"
            )
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            f"{spec.constructor_name} supports only keras.config.image_data_format() == "
            f"'channels_last', got {keras.config.image_data_format()!r}"
        )


def _resolve_input_shape(spec, input_shape, include_top, weights, input_tensor):
    """Mirror keras.applications' input-shape rules for a channels-last RGB model."""
    size = spec.default_size
    if input_shape is None:
        if input_tensor is not None and keras.backend.is_keras_tensor(input_tensor):
            return None  # taken from the tensor
        if include_top:
            return (size, size, 3)
        return (None, None, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
        raise ValueError(
            "`input_shape` must be a tuple (height, width, channels) of positive integers "
            f"or None, got {input_shape!r}"
        )
    if weights == "imagenet":
        if shape[2] != 3:
            raise ValueError(f"`input_shape` must have 3 (RGB) channels with "
                             f"weights='imagenet', got {input_shape!r}")
        if include_top and shape != (size, size, 3):
            raise ValueError(
                f"`input_shape` must be ({size}, {size}, 3) with weights='imagenet' and "
                f"include_top=True, got {input_shape!r}; use include_top=False for other "
                "image sizes"
            )
    if any(d is not None and d < MIN_SIZE for d in shape[:2]):
        raise ValueError(
            f"`input_shape` height and width must be at least {MIN_SIZE}, got {input_shape!r}"
        )
    return shape


def build_network(
    variant,
    include_top=True,
    weights=None,
    input_shape=None,
    pooling=None,
    classes=NUM_IMAGENET_CLASSES,
    input_tensor=None,
    classifier_activation="softmax",
    name=None,
):
    """Build an EfficientNet-Lite network, randomly initialised; load no weights.

    The arguments after ``variant`` are those of the variant's constructor
    (:func:`~calibkeras.models.efficientnet_lite.EfficientNetLite0`, ...) and are checked
    the same way; ``weights`` names the weights the caller will load (it decides which
    input shapes and classes are allowed) and is not loaded here.

    Args:
        variant: a key of :data:`VARIANTS`.
        name: the model's name; default the variant's name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: an argument is invalid (the message names it and the bad value).
    """
    spec = get_variant(variant)
    _check_arguments(spec, include_top, weights, pooling, classes, classifier_activation)
    shape = _resolve_input_shape(spec, input_shape, include_top, weights, input_tensor)
    if input_tensor is None:
        img_input = layers.Input(shape=shape)
    elif not keras.backend.is_keras_tensor(input_tensor):
        img_input = layers.Input(tensor=input_tensor, shape=shape)
    else:
        img_input = input_tensor

    x = layers.Rescaling(scale=1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")(img_input)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
                      kernel_initializer=_CONV_KERNEL_INITIALIZER, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = _relu6("stem_activation")(x)

    stages = blocks_args(variant)
    names = iter(block_names(variant))
    total_blocks = float(sum(args[1] for args in stages))
    index = 0
    for kernel_size, repeats, filters_in, filters_out, expand_ratio, strides in stages:
        for j in range(repeats):
            x = _mbconv_block(
                x,
                filters_in=filters_in if j == 0 else filters_out,
                filters_out=filters_out,
                kernel_size=kernel_size,
                strides=strides if j == 0 else 1,
                expand_ratio=expand_ratio,
                drop_rate=DROP_CONNECT_RATE * index / total_blocks,
                name=next(names),
            )
            index += 1

    x = layers.Conv2D(TOP_FILTERS, 1, padding="same", use_bias=False,
                      kernel_initializer=_CONV_KERNEL_INITIALIZER, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    x = _relu6("top_activation")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(spec.dropout_rate, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation,
                         kernel_initializer=_DENSE_KERNEL_INITIALIZER,
                         name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        inputs = img_input
    return keras.Model(inputs, x, name=spec.name if name is None else name)


def load_weights_by_name(variant, model, path, *, include_top,
                         classes=NUM_IMAGENET_CLASSES):
    """Load a ``.weights.h5`` file saved from a bare model of ``variant`` into ``model``.

    Keras ``.weights.h5`` files are matched by structure. When ``model`` holds only the
    layers of the variant's network (the usual case) the file is loaded directly; when
    it also holds layers of its own (an ``input_tensor`` computed by other layers), the
    file is loaded into a bare twin and copied into ``model`` layer by layer, by name.

    Args:
        variant: a key of :data:`VARIANTS`.
        model: a model built by :func:`build_network` for ``variant``.
        path: the ``.weights.h5`` file.
        include_top: whether the file (and ``model``) include the classifier.
        classes: the classifier's number of classes, with ``include_top=True``.

    Returns:
        ``model``, with the weights loaded.

    Raises:
        ValueError: the file does not fit the model (the message names both).
    """
    twin = None
    if not has_only_own_weighted_layers(variant, model):
        twin = build_network(variant, include_top=include_top, classes=classes)
    target = twin if twin is not None else model
    try:
        target.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"could not load weights from {path!r} into {get_variant(variant).constructor_name}("
            f"include_top={include_top}, classes={classes}): {error}"
        ) from error
    if twin is not None:
        for layer in twin.layers:
            if layer.weights:
                model.get_layer(layer.name).set_weights(layer.get_weights())
    return model


def has_only_own_weighted_layers(variant, model) -> bool:
    """Whether every layer of ``model`` that has weights is a layer of ``variant``'s network.

    True unless the model was built on an ``input_tensor`` computed by other weighted
    layers; only then does a ``.weights.h5`` file not match the model by structure.

    Args:
        variant: a key of :data:`VARIANTS`.
        model: a model built by :func:`build_network` for ``variant``.

    Returns:
        A bool.
    """
    own = weighted_layer_names(variant)
    return all(layer.name in own for layer in model.layers if layer.weights)


@functools.cache
def weighted_layer_names(variant) -> frozenset[str]:
    """Return the names of all layers with weights that ``variant``'s network can create.

    Args:
        variant: a key of :data:`VARIANTS`.

    Returns:
        A frozenset of layer names (``"stem_conv"``, ``"block2a_expand_bn"``, ...,
        ``"predictions"``).
    """
    names = {"stem_conv", "stem_bn", "top_conv", "top_bn", "predictions"}
    for block in block_names(variant):
        for suffix in ("expand_conv", "expand_bn", "dwconv", "bn", "project_conv",
                       "project_bn"):
            names.add(f"{block}_{suffix}")
    return frozenset(names)
