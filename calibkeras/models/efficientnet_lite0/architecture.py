"""The EfficientNet-Lite0 network for Keras 3, and loading a ``.weights.h5`` file into it."""

from __future__ import annotations

import functools
import os

import keras
from keras import layers

from calibkeras.utils.checks import check_bool, check_positive_int

# (kernel_size, repeats, filters_in, filters_out, expand_ratio, strides) per stage:
# EfficientNet-B0's blocks, which Lite0 (width and depth 1.0) keeps unscaled.
BLOCKS_ARGS = (
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
DROPOUT_RATE = 0.2
DROP_CONNECT_RATE = 0.2
DEFAULT_SIZE = 224
MIN_SIZE = 32
NUM_IMAGENET_CLASSES = 1000

# Same initialisers as keras.applications.EfficientNet (used when weights=None).
_CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
_DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def block_names() -> list[str]:
    """Return the 16 MBConv block name prefixes, in order: 'block1a', 'block2a', ....

    Returns:
        A list of 16 strings; block ``i`` of the list is ``_blocks.i`` in the PyTorch
        (efficientnet_pytorch) weight layout.
    """
    names = []
    for stage, (_, repeats, *_rest) in enumerate(BLOCKS_ARGS):
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


def _check_arguments(include_top, weights, input_shape, pooling, classes,
                     classifier_activation):
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
            "EfficientNetLite0 supports only keras.config.image_data_format() == "
            f"'channels_last', got {keras.config.image_data_format()!r}"
        )


def _resolve_input_shape(input_shape, include_top, weights, input_tensor):
    """Mirror keras.applications' input-shape rules for a channels-last RGB model."""
    if input_shape is None:
        if input_tensor is not None and keras.backend.is_keras_tensor(input_tensor):
            return None  # taken from the tensor
        if include_top:
            return (DEFAULT_SIZE, DEFAULT_SIZE, 3)
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
        if include_top and shape != (DEFAULT_SIZE, DEFAULT_SIZE, 3):
            raise ValueError(
                f"`input_shape` must be ({DEFAULT_SIZE}, {DEFAULT_SIZE}, 3) with "
                f"weights='imagenet' and include_top=True, got {input_shape!r}; use "
                "include_top=False for other image sizes"
            )
    if any(d is not None and d < MIN_SIZE for d in shape[:2]):
        raise ValueError(
            f"`input_shape` height and width must be at least {MIN_SIZE}, got {input_shape!r}"
        )
    return shape


def build_network(
    include_top=True,
    weights=None,
    input_shape=None,
    pooling=None,
    classes=NUM_IMAGENET_CLASSES,
    input_tensor=None,
    classifier_activation="softmax",
    name="efficientnet_lite0",
):
    """Build the EfficientNet-Lite0 network, randomly initialised; load no weights.

    The arguments are those of :func:`calibkeras.models.efficientnet_lite0.EfficientNetLite0`
    and are checked the same way; ``weights`` names the weights the caller will load
    (it decides which input shapes and classes are allowed) and is not loaded here.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: an argument is invalid (the message names it and the bad value).
    """
    _check_arguments(include_top, weights, input_shape, pooling, classes,
                     classifier_activation)
    shape = _resolve_input_shape(input_shape, include_top, weights, input_tensor)
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

    names = iter(block_names())
    total_blocks = float(sum(args[1] for args in BLOCKS_ARGS))
    index = 0
    for kernel_size, repeats, filters_in, filters_out, expand_ratio, strides in BLOCKS_ARGS:
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
        x = layers.Dropout(DROPOUT_RATE, name="top_dropout")(x)
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
    return keras.Model(inputs, x, name=name)


def load_weights_by_name(model, path, *, include_top, classes=NUM_IMAGENET_CLASSES):
    """Load a ``.weights.h5`` file saved from a bare EfficientNetLite0 into ``model``.

    Keras ``.weights.h5`` files are matched by structure. When ``model`` holds only the
    layers of EfficientNetLite0 (the usual case) the file is loaded directly; when it
    also holds layers of its own (an ``input_tensor`` computed by other layers), the
    file is loaded into a bare twin and copied into ``model`` layer by layer, by name.

    Args:
        model: a model built by :func:`build_network` (or ``EfficientNetLite0``).
        path: the ``.weights.h5`` file.
        include_top: whether the file (and ``model``) include the classifier.
        classes: the classifier's number of classes, with ``include_top=True``.

    Returns:
        ``model``, with the weights loaded.
    """
    twin = None
    if not has_only_own_weighted_layers(model):
        twin = build_network(include_top=include_top, classes=classes)
    target = twin if twin is not None else model
    try:
        target.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"could not load weights from {path!r} into EfficientNetLite0("
            f"include_top={include_top}, classes={classes}): {error}"
        ) from error
    if twin is not None:
        for layer in twin.layers:
            if layer.weights:
                model.get_layer(layer.name).set_weights(layer.get_weights())
    return model


def has_only_own_weighted_layers(model) -> bool:
    """Whether every layer of ``model`` that has weights is an EfficientNetLite0 layer.

    True unless the model was built on an ``input_tensor`` computed by other weighted
    layers; only then does a ``.weights.h5`` file not match the model by structure.

    Args:
        model: a model built by :func:`build_network` (or ``EfficientNetLite0``).

    Returns:
        A bool.
    """
    own = weighted_layer_names()
    return all(layer.name in own for layer in model.layers if layer.weights)


@functools.lru_cache(maxsize=1)
def weighted_layer_names() -> frozenset[str]:
    """Return the names of all layers with weights that EfficientNetLite0 can create.

    Returns:
        A frozenset of layer names (``"stem_conv"``, ``"block2a_expand_bn"``, ...,
        ``"predictions"``).
    """
    names = {"stem_conv", "stem_bn", "top_conv", "top_bn", "predictions"}
    for block in block_names():
        for suffix in ("expand_conv", "expand_bn", "dwconv", "bn", "project_conv",
                       "project_bn"):
            names.add(f"{block}_{suffix}")
    return frozenset(names)
