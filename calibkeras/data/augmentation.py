"""Training-time augmentation built from Keras preprocessing layers."""

import keras

from calibkeras.utils.checks import check_zoom


def build_augmentation(seed=None, name="augmentation", zoom=0.0):
    """Builds the light augmentation the loaders apply when `augment=True`.

    Layers, in order: `RandomFlip("horizontal")`;
    `RandomTranslation(0.1, 0.1, fill_mode="reflect", interpolation="nearest")`,
    which shifts each image by a whole number of pixels (up to 10% of its
    height and width) with mirrored borders, i.e. a random crop after
    reflection padding, drawn per image (Keras' `RandomCrop` draws one window
    per batch); and `RandomContrast(0.1, value_range=(0, 255))`. Each example
    in a batch gets its own random transformation. Inputs and outputs are
    float32 images in [0, 255] of shape `[B, H, W, 3]` (or `[H, W, 3]`); the
    shape is kept, and with `training=False` the layers are the identity.

    Cost: about 2.5 ms of CPU per 160x160 image on the 2-core benchmark
    machine, five times the decoding cost; bilinear translation or an extra
    `RandomZoom` (projective transforms) would double it.

    Use it only on training data. Validation, calibration and test data must go
    through the plain preprocessing, exactly as served (`augment=False`, the
    loaders' default). The layers are only active with `training=True`; in a
    `tf.data` pipeline call `augmentation(images, training=True)`.

    Args:
        seed: optional int. When given, the random transformations are
            reproducible: a fresh `build_augmentation(seed)` applied to the same
            stream of batches gives the same outputs. Default None (random).
        name: name of the returned `keras.Sequential`. Default "augmentation".
        zoom: number in [0, 1). When positive, a fourth layer after the flip,
            `RandomZoom((-zoom, 0.0), fill_mode="reflect", interpolation="bilinear")`,
            zooms each image in by a random factor up to `zoom`, i.e. shows a
            central crop of `1 - zoom` to all of its height and width (0.4: 36% to
            100% of the area), resized back; the translation then moves it. A
            stronger augmentation for fine-tuning on few images (BENCHMARKS.md);
            bilinear resampling costs more CPU. Default 0.0 (no zoom; the loaders'
            `augment=True`).

    Returns:
        `keras.Sequential` of the layers above. It can also be put in front of a
        model.

    Example:
    >>> augmentation = build_augmentation(seed=0)
    >>> tuple(augmentation(keras.ops.zeros((2, 32, 32, 3)), training=True).shape)
    (2, 32, 32, 3)
    """

    zoom = check_zoom(zoom)

    def layer_seed(offset):
        return None if seed is None else int(seed) + offset

    zoom_layers = [
        keras.layers.RandomZoom(
            (-zoom, 0.0), fill_mode="reflect", interpolation="bilinear",
            seed=layer_seed(3),
        )
    ] if zoom else []
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=layer_seed(0)),
            *zoom_layers,
            keras.layers.RandomTranslation(
                0.1, 0.1, fill_mode="reflect", interpolation="nearest", seed=layer_seed(1)
            ),
            keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=layer_seed(2)),
        ],
        name=name,
    )
