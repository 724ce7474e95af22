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

from calibkeras.utils.checks import check_positive_int

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


#: The largest image, in decoded pixels, that the image-bytes serving signature decodes
#: by default: 50 megapixels (an 8660 x 5773 photo, 150 MB of RGB before the resize).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

#: The longest GIF file, in bytes, whose frames are counted; a longer one is refused
#: when a pixel limit applies. Counting walks the whole file: on 2 cores a crafted GIF
#: of 4 MiB took 1.8 s and 460 MB, one of 2 MiB 0.8 s and 250 MB (BENCHMARKS.md).
MAX_GIF_BYTES = 2 * 2**20

_HEADER_PADDING = 32  # zero bytes appended so fixed-offset header reads stay in range

# Status codes of declared_image_shape, and the message of each (after "image_bytes[i] ").
_OK, _EMPTY, _UNKNOWN, _CORRUPT, _ZERO, _LONG_GIF = 0, 1, 2, 3, 4, 5
_TOO_LARGE = -1  # set by decode_images
_STATUS_MESSAGES = (
    "",
    "is empty (0 bytes)",
    "is not a JPEG, PNG, GIF, BMP or WebP file (unknown format)",
    "could not be decoded: it is truncated or its header is corrupt",
    "could not be decoded: its header declares a size of 0 pixels",
    f"is a GIF of more than {MAX_GIF_BYTES} bytes, too long to check its frames",
)


def _unsigned(data, offset, length, big_endian):
    """The unsigned integer in bytes ``offset .. offset + length`` of ``data`` (int64)."""
    values = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8),
                     tf.int64)
    weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), 8 * tf.range(length, dtype=tf.int64))
    if big_endian:
        weights = tf.reverse(weights, [0])
    return tf.reduce_sum(values * weights)


def _gif_decoded_pixels(data, size):
    """``(pixels, complete)``: what TensorFlow decodes a GIF to, from its block chain.

    TensorFlow decodes every frame onto one canvas as wide as the widest frame and as
    tall as the tallest (the logical screen is not what it uses), so the decoded pixels
    are ``frames x max(widths) x max(heights)``, taken here at least as large as the
    logical screen. A GIF is a chain of blocks (extensions ``0x21`` and images
    ``0x2C``, each followed by a chain of data sub-blocks) up to the trailer ``0x3B``;
    the chains are followed for every byte position at once by pointer doubling
    (``log2(size)`` rounds of gathers), so the cost is a few vector passes over the
    bytes whatever the file holds. ``complete`` is False when the chain does not end at
    a trailer, or exactly at the end of the data (some encoders omit the trailer).
    """
    values = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    length = tf.shape(values)[0]  # the data and its zero padding
    positions = tf.range(length)
    last = length - 1  # a padding zero byte: the end of every chain that runs off the data
    rounds = tf.cast(tf.math.ceil(tf.math.log(tf.cast(length, tf.float32)) / tf.math.log(2.0)),
                     tf.int32) + 1

    def at(offsets):
        return tf.gather(values, tf.minimum(offsets, last))

    def follow(pointers, total=None, maxima=()):
        """Pointer doubling: where each chain ends, with the sum of ``total`` and the
        maximum of each of ``maxima`` along it."""

        def step(i, pointers, *carried):
            doubled = [tf.gather(pointers, pointers)]
            if carried:
                doubled.append(carried[0] + tf.gather(carried[0], pointers))
                doubled += [tf.maximum(m, tf.gather(m, pointers)) for m in carried[1:]]
            return (i + 1, *doubled)

        carried = () if total is None else (total, *maxima)
        return tf.while_loop(lambda i, *_: i < rounds, step, (0, pointers, *carried))[1:]

    # Data sub-blocks: a size byte n > 0 and n bytes, until a size byte 0 (the fixed point).
    zeros = tf.zeros_like(positions)
    sub_block_next = tf.where(tf.equal(values, 0), positions,
                              tf.minimum(positions + 1 + values, last))
    (run_end,) = follow(sub_block_next)

    def after_run(start):  # the position after the sub-block run starting at `start`
        return tf.minimum(tf.gather(run_end, tf.minimum(start, last)) + 1, last)

    def table_bytes(packed):  # a colour table of 2^(n+1) RGB entries, when flagged
        flagged = tf.not_equal(tf.bitwise.bitwise_and(packed, 0x80), 0)
        return tf.where(flagged, 3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(packed, 7)),
                        tf.zeros_like(packed))

    image = tf.equal(values, 0x2C)
    block_next = tf.where(
        image, after_run(positions + 11 + table_bytes(at(positions + 9))),
        tf.where(tf.equal(values, 0x21), after_run(positions + 2), positions),
    )
    widths = tf.where(image, at(positions + 5) + 256 * at(positions + 6), zeros)
    heights = tf.where(image, at(positions + 7) + 256 * at(positions + 8), zeros)
    end, frames, widest, tallest = follow(block_next, tf.cast(image, tf.int32), (widths, heights))
    start = tf.minimum(13 + table_bytes(values[10]), last)
    stop = end[start]
    complete = tf.logical_or(
        tf.logical_and(tf.equal(values[stop], 0x3B), tf.cast(stop, tf.int64) < size),
        tf.equal(tf.cast(stop, tf.int64), size),
    )
    width = tf.maximum(tf.cast(widest[start], tf.int64), _unsigned(data, 6, 2, False))
    height = tf.maximum(tf.cast(tallest[start], tf.int64), _unsigned(data, 8, 2, False))
    pixels = tf.cast(frames[start], tf.int64) * width * height
    return pixels, tf.logical_and(complete, frames[start] > 0)


def declared_image_shape(image_bytes):
    """Reads the size an encoded image decodes to, without decoding it.

    JPEG (libjpeg's own header read, ``tf.image.extract_jpeg_shape``), PNG (IHDR),
    BMP and WebP (VP8, VP8L and VP8X) headers are read. For a GIF the frames are
    counted and sized by following its block structure to the trailer, since
    TensorFlow decodes all of them onto a canvas as large as the largest (about 0.4 s
    and 120 MB per MiB on 2 cores; a GIF longer than ``MAX_GIF_BYTES``, 2 MiB, is not
    walked: status 5).
    Animated WebP files are refused by TensorFlow's decoder for RGB output. Other
    formats are reported as unknown. Graph-safe.

    Args:
        image_bytes: scalar `tf.string` tensor, the content of one image file.

    Returns:
        `(status, height, width, pixels)` int64 scalars: status 0 when the size was
        read, else 1 (empty), 2 (unknown format), 3 (header truncated or corrupt),
        4 (a size of 0) or 5 (a GIF longer than ``MAX_GIF_BYTES``); `height` and
        `width` as the header declares them (a GIF's logical screen), `pixels` what
        decoding produces (`height * width` but for a GIF: all frames).

    Raises:
        tf.errors.InvalidArgumentError: a JPEG whose header libjpeg cannot read
            (:func:`decode_images` reports it as corrupt, naming the element).

    Example:
    >>> data = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
    >>> [int(v) for v in declared_image_shape(data)]
    [0, 4, 6, 24]
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    size = tf.cast(tf.strings.length(image_bytes), tf.int64)
    data = tf.strings.join([image_bytes, tf.constant(b"\0" * _HEADER_PADDING)])
    head = tf.strings.substr(data, 0, 16)
    ok, corrupt = tf.constant(_OK, tf.int64), tf.constant(_CORRUPT, tf.int64)

    def starts(prefix):
        return tf.equal(tf.strings.substr(head, 0, len(prefix)), prefix)

    def result(height, width, readable, pixels=None):
        pixels = height * width if pixels is None else pixels
        return tf.where(readable, ok, corrupt), height, width, pixels

    def jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes, output_type=tf.int32)
        return result(tf.cast(shape[0], tf.int64), tf.cast(shape[1], tf.int64),
                      tf.constant(True))

    def png():  # the IHDR chunk first, its sizes below 2^31 (the PNG specification)
        height, width = _unsigned(data, 20, 4, True), _unsigned(data, 16, 4, True)
        readable = tf.logical_and(size >= 24, tf.equal(tf.strings.substr(head, 12, 4), "IHDR"))
        return result(height, width, tf.logical_and(readable, tf.maximum(height, width) < 2**31))

    def gif():
        height, width = _unsigned(data, 8, 2, False), _unsigned(data, 6, 2, False)

        def walk():
            return _gif_decoded_pixels(data, size)

        def too_long():
            return tf.constant(0, tf.int64), tf.constant(False)

        pixels, complete = tf.cond(size <= MAX_GIF_BYTES, walk, too_long)
        status = tf.where(size > MAX_GIF_BYTES, tf.constant(_LONG_GIF, tf.int64),
                          tf.where(complete, ok, corrupt))
        return status, height, width, pixels

    def bmp():  # a negative width is corrupt; a negative height means top-down rows
        height = _unsigned(data, 22, 4, False)
        height = tf.where(height >= 2**31, 2**32 - height, height)
        width = _unsigned(data, 18, 4, False)
        return result(height, width, tf.logical_and(size >= 26, width < 2**31))

    def webp():
        chunk = tf.strings.substr(head, 12, 4)
        lossy = (_unsigned(data, 28, 2, False) % 16384, _unsigned(data, 26, 2, False) % 16384)
        bits = _unsigned(data, 21, 4, False)
        lossless = (tf.bitwise.right_shift(bits, 14) % 16384 + 1, bits % 16384 + 1)
        extended = (_unsigned(data, 27, 3, False) + 1, _unsigned(data, 24, 3, False) + 1)
        height = tf.where(tf.equal(chunk, "VP8 "), lossy[0],
                          tf.where(tf.equal(chunk, "VP8L"), lossless[0], extended[0]))
        width = tf.where(tf.equal(chunk, "VP8 "), lossy[1],
                         tf.where(tf.equal(chunk, "VP8L"), lossless[1], extended[1]))
        known = tf.reduce_any(tf.equal(chunk, ["VP8 ", "VP8L", "VP8X"]))
        return result(height, width, tf.logical_and(known, size >= 30))

    branches = [
        (starts(b"\xff\xd8\xff"), jpeg),
        (starts(b"\x89PNG\r\n\x1a\n"), png),
        (tf.logical_or(starts(b"GIF87a"), starts(b"GIF89a")), gif),
        (starts(b"BM"), bmp),
        (tf.logical_and(starts(b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), "WEBP")), webp),
    ]
    minus_one = tf.constant(-1, tf.int64)
    status, height, width, pixels = tf.case(
        branches,
        default=lambda: (tf.constant(_UNKNOWN, tf.int64), minus_one, minus_one, minus_one),
        exclusive=False,
    )
    status = tf.where(
        tf.equal(size, 0), tf.constant(_EMPTY, tf.int64),
        tf.where(tf.logical_and(tf.equal(status, _OK), tf.equal(pixels, 0)),
                 tf.constant(_ZERO, tf.int64), status),
    )
    return status, height, width, pixels


def _element_message(index, text):
    return tf.strings.join(["image_bytes[", tf.strings.as_string(index), "] ", text])


def _each_or_missing(function, indices, elements, signature):
    """``function(element)`` of every element through tf.data, errors dropped.

    The decoders' own errors cannot say which element failed: through tf.data a failing
    element is dropped instead, and the caller names the first one missing. A sentinel
    row keeps the one batch non-empty whatever fails.

    Returns:
        ``(present, done, outputs)``: int32 ``(N,)``, 1 where the element succeeded;
        the indices of the elements that succeeded, in order; and the list of their
        outputs.
    """
    count = tf.shape(indices, out_type=tf.int64)[0]
    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), *(tf.zeros(spec.shape, spec.dtype) for spec in signature))
    )
    done, *outputs = (
        tf.data.Dataset.from_tensor_slices((indices, elements))
        .map(lambda index, element: (index, *function(element)))
        .ignore_errors()
        .concatenate(sentinel)
        .batch(count + 1)
        .get_single_element()
    )
    done, outputs = done[:-1], [output[:-1] for output in outputs]
    present = tf.math.unsorted_segment_sum(tf.ones_like(done, tf.int32), done, count)
    return present, done, outputs


def _first(flags):
    """Index of the first True of ``flags`` (``len(flags)`` when none is)."""
    return tf.argmax(tf.cast(tf.concat([flags, [True]], 0), tf.int32), output_type=tf.int64)


def _check_headers(image_bytes_batch, indices, max_pixels):
    """The assert that refuses the first element that is not a readable image of at
    most ``max_pixels`` decoded pixels (:func:`declared_image_shape`)."""
    count = tf.shape(indices, out_type=tf.int64)[0]
    scalar = tf.TensorSpec([], tf.int64)
    present, done, (status, heights, widths, pixels) = _each_or_missing(
        declared_image_shape, indices, image_bytes_batch, (scalar,) * 4
    )

    def scattered(values, missing):  # one entry per element; `missing` where it failed
        return tf.tensor_scatter_nd_update(tf.fill([count], tf.constant(missing, tf.int64)),
                                           done[:, None], values)

    status = tf.where(tf.equal(present, 1), scattered(status, _CORRUPT), _CORRUPT)
    pixels, heights, widths = (scattered(v, 0) for v in (pixels, heights, widths))
    status = tf.where(tf.logical_and(tf.equal(status, _OK), pixels > max_pixels),
                      tf.constant(_TOO_LARGE, tf.int64), status)
    first = _first(tf.not_equal(status, _OK))
    status, heights, widths, pixels = (
        tf.concat([values, tf.zeros([1], tf.int64)], 0)[first]
        for values in (status, heights, widths, pixels)
    )
    declared = tf.strings.join([tf.strings.as_string(heights), " x ",
                                tf.strings.as_string(widths), " pixels"])
    # A GIF's frames all count: say how many pixels they decode to.
    declared = tf.where(tf.equal(pixels, heights * widths), declared,
                        tf.strings.join([declared, " (", tf.strings.as_string(pixels),
                                         " pixels decoded in all its frames)"]))
    text = tf.where(
        tf.equal(status, _TOO_LARGE),
        tf.strings.join(["is too large: it declares ", declared,
                         f", more than the limit of {max_pixels}"]),
        tf.gather(_STATUS_MESSAGES, tf.maximum(status, 0)),
    )
    return tf.debugging.Assert(tf.equal(status, _OK), [_element_message(first, text)])


def decode_images(image_bytes_batch, image_size, max_pixels=None):
    """Decodes a batch of encoded images with `decode_image` (the serving path).

    With ``max_pixels``, every element is checked before anything is decoded: it must
    be a JPEG, PNG, GIF, BMP or WebP file that decodes to at most ``max_pixels``
    pixels (all frames of a GIF; :func:`declared_image_shape`), so an image that would
    decode to gigabytes is refused in milliseconds. A bad element fails the whole batch
    with an ``InvalidArgumentError`` that names it: "image_bytes[2] could not be
    decoded: ...". An empty batch gives an empty result.

    Args:
        image_bytes_batch: `tf.string` tensor of shape `[B]`, each element the
            content of one image file (raw bytes, not base64).
        image_size: `(height, width)`, positive ints.
        max_pixels: the largest number of decoded pixels accepted; None (default) for
            no limit and no header checks (then every format TensorFlow decodes, JPEG
            XL too, is accepted).

    Returns:
        float32 tensor of shape `[B, height, width, 3]`, values in [0, 255].

    Raises:
        tf.errors.InvalidArgumentError: if any element is refused or does not decode.
        ValueError: if `image_size` is not a pair of positive integers or
            `max_pixels` is not a positive integer.

    Example:
    >>> data = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
    >>> decode_images(tf.stack([data, data]), (2, 3)).shape
    TensorShape([2, 2, 3, 3])
    """
    height, width = check_image_size(image_size)
    image_bytes_batch = tf.convert_to_tensor(image_bytes_batch, tf.string)
    indices = tf.range(tf.shape(image_bytes_batch, out_type=tf.int64)[0])
    checks = []
    if max_pixels is not None:
        max_pixels = check_positive_int(max_pixels, "max_pixels")
        checks.append(_check_headers(image_bytes_batch, indices, max_pixels))
    with tf.control_dependencies(checks):
        indices = tf.identity(indices)
    present, _, (images,) = _each_or_missing(
        lambda element: (decode_image(element, (height, width)),), indices, image_bytes_batch,
        (tf.TensorSpec([height, width, 3], tf.float32),),
    )
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(present, 1)),
        [_element_message(_first(tf.not_equal(present, 1)),
                          "could not be decoded: its data are truncated or corrupt, or it is "
                          "not a JPEG, PNG, GIF, BMP or WebP file")],
    )
    with tf.control_dependencies([check]):
        images = tf.identity(images)
    images.set_shape((None, height, width, 3))
    return images


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
