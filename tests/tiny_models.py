"""Tiny, seeded CalibratedClassifiers for the tests (one factory, used everywhere).

``tiny_classifier()`` builds a :class:`calibkeras.models.CalibratedClassifier` around a
backbone of a few weights: for images, ``[RefuseEmptyBatch] -> Rescaling(1/255) ->
Conv2D(4, 3)`` (pooled by the model); for 1-D features such as ``input_shape=(6,)``, the
identity (the head is then a linear model of the features, no pooling). Every weight
comes from the seed, so two calls with one seed give the same model.
"""

import keras
import numpy as np
from empty_batch_guard import RefuseEmptyBatch

from calibkeras.models import CalibratedClassifier


def tiny_backbone(input_shape=(16, 16, 3), *, seed=0, guard=False, name="backbone"):
    """The backbone of :func:`tiny_classifier` (a functional ``keras.Model``)."""
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    if guard:  # fails on an empty batch on every CPU, as oneDNN does on AVX-512 ones
        x = RefuseEmptyBatch()(x)
    if len(input_shape) == 1:
        x = keras.layers.Identity()(x)
    else:
        x = keras.layers.Rescaling(1 / 255)(x)
        x = keras.layers.Conv2D(
            4, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
        )(x)
    return keras.Model(inputs, x, name=name)


def _values(initializer, shape):
    return np.asarray(keras.ops.convert_to_numpy(initializer(shape)), dtype="float32")


def tiny_classifier(
    *,
    input_shape=(16, 16, 3),
    num_classes=3,
    class_counts=None,
    class_names=None,
    prior="uniform",
    seed=0,
    guard=False,
    head_kernel_stddev=None,
    head_bias_stddev=None,
    temperature=None,
    **kwargs,
):
    """A seeded :class:`CalibratedClassifier` on a tiny backbone.

    Args:
        input_shape: ``(H, W, 3)`` images (default ``(16, 16, 3)``) or ``(F,)`` features.
        num_classes, class_counts, class_names, prior: as for CalibratedClassifier.
        seed: seeds the backbone and the head.
        guard: put :class:`empty_batch_guard.RefuseEmptyBatch` first in the backbone.
        head_kernel_stddev: None (default) a seeded Glorot-uniform head kernel, else a
            seeded normal kernel of this spread (large logits: confident classes).
        head_bias_stddev: None (default) a zero bias, else a seeded normal bias.
        temperature: optional temperature to set after construction.
        **kwargs: more CalibratedClassifier arguments (``name``; ``dropout`` defaults
            to 0 here, so that a few training steps are deterministic).
    """
    kwargs.setdefault("dropout", 0.0)
    model = CalibratedClassifier(
        tiny_backbone(input_shape, seed=seed, guard=guard),
        num_classes,
        class_counts=class_counts,
        class_names=class_names,
        prior=prior,
        **kwargs,
    )
    kernel_shape = tuple(model.head.kernel.shape)
    if head_kernel_stddev is None:
        kernel = keras.initializers.GlorotUniform(seed=seed + 1)
    else:
        kernel = keras.initializers.RandomNormal(stddev=head_kernel_stddev, seed=seed + 1)
    if head_bias_stddev is None:
        bias = np.zeros(num_classes, "float32")
    else:
        bias = _values(
            keras.initializers.RandomNormal(stddev=head_bias_stddev, seed=seed + 2),
            (num_classes,),
        )
    model.head.set_weights([_values(kernel, kernel_shape), bias])
    if temperature is not None:
        model.calibration.set_temperature(temperature)
    return model
