"""The one image preprocessing function: training, evaluation and serving all call it.

Encoded bytes (JPEG, PNG, GIF, BMP; also whatever else `tf.io.decode_image` knows)
become float32 RGB pixels in [0, 255] at a fixed size. There is no normalisation
here: it belongs to the model (keras.applications EfficientNet rescales 0..255
inputs itself). Because the data loaders and the SavedModel signatures use these
same functions, the pixels a model is trained on and the pixels it is served are
computed by the same ops: no train/serve skew.
"""

import numbers

import tensorflow as tf

RESIZE_METHOD = "bilinear"
"""Interpolation used by `decode_image` (no antialiasing, like Keras' own loaders)."""


def check_image_size(image_size):
    """Checks an `image_size` argument and returns it as a `(height, width)` tuple.

    Args:
        image_size: a pair of positive ints `(height, width)`.

    Returns:
        `tuple(int, int)`.

    Raises:
        ValueError: if `image_size` is not a pair of positive integers.
    """
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(
            f"`image_size` must be a pair of positive integers (height, width), got {image_size!r}"
        ) from None
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"`image_size` must be a pair of positive integers (height, width), "
                f"got {image_size!r}"
            )
    return int(height), int(width)


def decode_rgb(image_bytes):
    """Decodes one encoded image into uint8 RGB pixels at its own size.

    `tf.io.decode_image(channels=3, dtype=uint8, expand_animations=False)`:
    grayscale is repeated to RGB, an alpha channel is dropped, an animated GIF
    gives its first frame. JPEGs use TensorFlow's default (fast integer) DCT,
    as `keras.utils.image_dataset_from_directory` does, so both give the same
    pixels; PIL's decoder (accurate DCT) differs by about one grey level on
    average. Graph-safe.

    Args:
        image_bytes: scalar `tf.string` tensor (or Python bytes), the content of
            a JPEG, PNG, GIF or BMP file (WebP and JPEG XL also decode).

    Returns:
        uint8 tensor of shape `[height, width, 3]`.

    Raises:
        tf.errors.InvalidArgumentError: when the bytes do not decode (see
            `decode_image`).
    """
    return tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)


def decode_image(image_bytes, image_size):
    """Decodes one encoded image into float32 RGB pixels of a fixed size.

    Steps: `decode_rgb` (uint8 RGB at the image's own size; grayscale is
    repeated to RGB, an alpha channel is dropped, an animated GIF gives its
    first frame), then `tf.image.resize` to `image_size` with bilinear
    interpolation and no antialiasing (aspect ratio is not kept). Bilinear
    interpolation is a convex combination computed as two monotone lerps, so
    the float32 result stays within [0, 255] without clipping. The pixels are
    those of `keras.utils.image_dataset_from_directory` with the same
    `image_size`.
    Graph-safe: works eagerly, inside `tf.function` and inside `tf.data` maps.

    Args:
        image_bytes: scalar `tf.string` tensor (or Python bytes), the content of
            a JPEG, PNG, GIF or BMP file (WebP and JPEG XL also decode).
        image_size: `(height, width)`, positive ints.

    Returns:
        float32 tensor of shape `[height, width, 3]`, values in [0, 255].

    Raises:
        tf.errors.InvalidArgumentError: when the bytes do not decode, with
            TensorFlow's message, e.g. "Unknown image file format. One of JPEG,
            JPEG XL, PNG, GIF, BMP, WebP required.", "Input is empty." or
            "jpeg::Uncompress failed. Invalid JPEG data or crop window.". Inside
            `tf.data` this surfaces when the bad element is reached.
        ValueError: if `image_size` is not a pair of positive integers.

    Example:
    >>> data = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
    >>> decode_image(data, (2, 3)).shape
    TensorShape([2, 3, 3])
    """
    height, width = check_image_size(image_size)
    image = tf.image.resize(decode_rgb(image_bytes), (height, width), method=RESIZE_METHOD)
    image = tf.cast(image, tf.float32)  # already float32 for bilinear: no op is added
    image.set_shape((height, width, 3))
    return image


def decode_images(image_bytes_batch, image_size):
    """Decodes a batch of encoded images with `decode_image` (the serving path).

    Args:
        image_bytes_batch: `tf.string` tensor of shape `[B]`, each element the
            content of one image file (raw bytes, not base64).
        image_size: `(height, width)`, positive ints.

    Returns:
        float32 tensor of shape `[B, height, width, 3]`, values in [0, 255].

    Raises:
        tf.errors.InvalidArgumentError: if any element does not decode.
        ValueError: if `image_size` is not a pair of positive integers.

    Example:
    >>> data = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
    >>> decode_images(tf.stack([data, data]), (2, 3)).shape
    TensorShape([2, 2, 3, 3])
    """
    height, width = check_image_size(image_size)
    return tf.map_fn(
        lambda image_bytes: decode_image(image_bytes, (height, width)),
        image_bytes_batch,
        fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32),
    )


def load_image(path, image_size):
    """Reads one image file and decodes it with `decode_image`.

    Args:
        path: scalar `tf.string` tensor or str, the file to read.
        image_size: `(height, width)`, positive ints.

    Returns:
        float32 tensor of shape `[height, width, 3]`, values in [0, 255].

    Raises:
        tf.errors.NotFoundError: if the file does not exist.
        tf.errors.InvalidArgumentError: if its bytes do not decode.
    """
    return decode_image(tf.io.read_file(path), image_size)
