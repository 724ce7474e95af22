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

from calibkeras._checks import check_positive_int

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


#: The largest image, in pixels (height x width, each frame of an animated GIF), that
#: the image-bytes serving signature decodes by default: 50 megapixels (an 8660 x 5773
#: photo). Decoding takes 3 bytes a pixel before the resize.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

#: Formats whose declared size :func:`declared_image_shape` reads from the header.
HEADER_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")

#: Markers a JPEG may hold before its frame header: at most this many are walked.
_MAX_JPEG_SEGMENTS = 10_000
_HEADER_PADDING = 32  # zero bytes appended so fixed-offset header reads stay in range

# Status codes of declared_image_shape, and the message of each (after "image_bytes[i] ").
_OK, _EMPTY, _UNKNOWN, _TRUNCATED, _ZERO = 0, 1, 2, 3, 4
_STATUS_MESSAGES = (
    "",
    "is empty (0 bytes)",
    "is not a JPEG, PNG, GIF, BMP or WebP file (unknown format)",
    "could not be decoded: it is truncated or its header is corrupt",
    "could not be decoded: its header declares a size of 0 pixels",
)


def _unsigned(data, offset, length, big_endian):
    """The unsigned integer in bytes ``offset .. offset + length`` of ``data`` (int64)."""
    values = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8),
                     tf.int64)
    weights = tf.bitwise.left_shift(tf.constant(1, tf.int64), 8 * tf.range(length, dtype=tf.int64))
    if big_endian:
        weights = tf.reverse(weights, [0])
    return tf.reduce_sum(values * weights)


def _jpeg_shape(data, size):
    """``(height, width, found)`` from the first frame header (SOFn) of a JPEG."""

    def byte(offset):
        return _unsigned(data, offset, 1, big_endian=True)

    def keep_going(offset, height, width, done):
        return tf.logical_and(tf.logical_not(done), offset + 9 <= size)

    def step(offset, height, width, done):
        marker = byte(offset + 1)
        is_marker = tf.equal(byte(offset), 0xFF)
        fill = tf.logical_and(is_marker, tf.equal(marker, 0xFF))
        standalone = tf.logical_and(
            is_marker,
            tf.logical_or(tf.equal(marker, 0x01), tf.logical_and(marker >= 0xD0, marker <= 0xD7)),
        )
        frame = tf.logical_and(
            is_marker,
            tf.logical_and(
                tf.logical_and(marker >= 0xC0, marker <= 0xCF),
                tf.logical_not(tf.reduce_any(tf.equal(marker, [0xC4, 0xC8, 0xCC]))),
            ),
        )
        length = _unsigned(data, offset + 2, 2, big_endian=True)
        height = tf.where(frame, _unsigned(data, offset + 5, 2, big_endian=True), height)
        width = tf.where(frame, _unsigned(data, offset + 7, 2, big_endian=True), width)
        # No frame header before the scan data or the end of the image: give up.
        lost = tf.logical_or(
            tf.logical_not(is_marker), tf.reduce_any(tf.equal(marker, [0xD9, 0xDA]))
        )
        skip = tf.where(fill, tf.constant(1, tf.int64),
                        tf.where(standalone, tf.constant(2, tf.int64), 2 + length))
        done = tf.logical_or(frame, lost)
        return offset + skip, height, width, done

    minus_one = tf.constant(-1, tf.int64)
    _, height, width, _ = tf.while_loop(
        keep_going,
        step,
        (tf.constant(2, tf.int64), minus_one, minus_one, tf.constant(False)),
        maximum_iterations=_MAX_JPEG_SEGMENTS,
    )
    return height, width


def _gif_frames(data, size):
    """``(frames, largest frame area, complete)`` of a GIF, from its block structure.

    TensorFlow decodes every frame of a GIF, each at the size its image descriptor
    declares (which may exceed the logical screen), so both count. A GIF is a chain of
    blocks (extensions ``0x21`` and images ``0x2C``, each followed by a chain of data
    sub-blocks, up to the trailer ``0x3B``); the chains are followed for every byte
    position at once by pointer doubling (``log2(size)`` rounds of gathers), so the cost
    is a few vector passes over the bytes, whatever the file holds. ``complete`` is
    False when the chain does not end at a trailer inside the data (truncated or not a
    GIF).
    """
    values = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    length = tf.shape(values)[0]  # the data and its zero padding
    positions = tf.range(length)
    last = length - 1  # a padding zero byte: the end of every chain that runs off the data
    rounds = tf.cast(tf.math.ceil(tf.math.log(tf.cast(length, tf.float32)) / tf.math.log(2.0)),
                     tf.int32) + 1

    def at(offsets):
        return tf.gather(values, tf.minimum(offsets, last))

    def follow(pointers, *sums_and_maxima):
        """Pointer doubling: where each chain ends, and (optionally) the sum and the
        maximum of two per-position values along it."""

        def step(i, pointers, *values):
            doubled = [tf.gather(pointers, pointers)]
            if values:
                total, largest = values
                doubled += [total + tf.gather(total, pointers),
                            tf.maximum(largest, tf.gather(largest, pointers))]
            return (i + 1, *doubled)

        return tf.while_loop(lambda i, *_: i < rounds, step, (0, pointers, *sums_and_maxima))[1:]

    # Data sub-blocks: a size byte n > 0 and n bytes, until a size byte 0 (the fixed point).
    zeros = tf.zeros_like(positions)
    sub_block_next = tf.where(tf.equal(values, 0), positions,
                              tf.minimum(positions + 1 + values, last))
    (run_end,) = follow(sub_block_next)

    def after_run(start):  # the position after the sub-block run starting at `start`
        return tf.minimum(tf.gather(run_end, tf.minimum(start, last)) + 1, last)

    image = tf.equal(values, 0x2C)
    packed = at(positions + 9)
    local_table = tf.where(tf.not_equal(tf.bitwise.bitwise_and(packed, 0x80), 0),
                           3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(packed, 7)), 0)
    block_next = tf.where(
        image, after_run(positions + 11 + local_table),
        tf.where(tf.equal(values, 0x21), after_run(positions + 2), positions),
    )
    width = at(positions + 5) + 256 * at(positions + 6)
    height = at(positions + 7) + 256 * at(positions + 8)
    # int32 throughout (speed): an area is at most 65535^2, clipped to int32's range.
    area = tf.where(image, tf.cast(tf.minimum(tf.cast(width, tf.int64) * tf.cast(height, tf.int64),
                                              2**31 - 1), tf.int32), zeros)
    end, frames, largest = follow(block_next, tf.cast(image, tf.int32), area)
    header = _unsigned(data, 10, 1, big_endian=True)
    global_table = tf.where(tf.not_equal(tf.bitwise.bitwise_and(header, 0x80), 0),
                            3 * tf.bitwise.left_shift(tf.constant(2, tf.int64),
                                                      tf.bitwise.bitwise_and(header, 7)), 0)
    start = tf.cast(tf.minimum(13 + global_table, tf.cast(last, tf.int64)), tf.int32)
    stop = end[start]
    # Ends at the trailer, or exactly at the end of the data (some encoders omit it).
    complete = tf.logical_or(
        tf.logical_and(tf.equal(values[stop], 0x3B), tf.cast(stop, tf.int64) < size),
        tf.equal(tf.cast(stop, tf.int64), size),
    )
    return (tf.cast(frames[start], tf.int64), tf.cast(largest[start], tf.int64),
            tf.logical_and(complete, frames[start] > 0))


def declared_image_shape(image_bytes):
    """Reads the pixel size an encoded image declares, without decoding it.

    JPEG (the first frame header), PNG (IHDR), BMP and WebP (VP8, VP8L and VP8X)
    headers are read. For a GIF, the logical screen is the size, and the decoded
    pixels are counted over every frame (TensorFlow decodes them all, each at the size
    its image descriptor declares, which may exceed the screen): the block structure
    is followed to the trailer, about 0.3 s per MB of GIF on 2 cores. (Animated WebP
    files are refused by TensorFlow's decoder for RGB output.) Other formats are
    reported as unknown. Graph-safe; JPEG walks at most 10,000 markers.

    Args:
        image_bytes: scalar `tf.string` tensor, the content of one image file.

    Returns:
        `(status, height, width, pixels)` int64 scalars: status 0 when the size was
        read, else 1 (empty), 2 (unknown format), 3 (header truncated or corrupt) or
        4 (a size of 0); `pixels` is what decoding produces, `height * width` but for
        a GIF (all frames).

    Example:
    >>> data = tf.io.encode_png(tf.zeros([4, 6, 3], tf.uint8))
    >>> [int(v) for v in declared_image_shape(data)]
    [0, 4, 6, 24]
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    size = tf.cast(tf.strings.length(image_bytes), tf.int64)
    data = tf.strings.join([image_bytes, tf.constant(b"\0" * _HEADER_PADDING)])
    head = tf.strings.substr(data, 0, 16)

    def starts(prefix):
        return tf.equal(tf.strings.substr(head, 0, len(prefix)), prefix)

    def fixed(height, width, header_bytes):
        return height, width, height * width, size >= header_bytes

    def gif():
        height, width = _unsigned(data, 8, 2, False), _unsigned(data, 6, 2, False)
        frames, largest, complete = _gif_frames(data, size)
        return height, width, frames * tf.maximum(largest, height * width), complete

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
        return height, width, height * width, tf.logical_and(known, size >= 30)

    def jpeg():
        height, width = _jpeg_shape(data, size + _HEADER_PADDING)
        return height, width, height * width, height >= 0

    def bmp():
        height = _unsigned(data, 22, 4, False)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down rows
        width = _unsigned(data, 18, 4, False)
        return height, width, height * width, size >= 26

    branches = [
        (starts(b"\xff\xd8\xff"), jpeg),
        (starts(b"\x89PNG\r\n\x1a\n"),
         lambda: fixed(_unsigned(data, 20, 4, True), _unsigned(data, 16, 4, True), 24)),
        (tf.logical_or(starts(b"GIF87a"), starts(b"GIF89a")), gif),
        (starts(b"BM"), bmp),
        (tf.logical_and(starts(b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), "WEBP")), webp),
    ]
    minus_one = tf.constant(-1, tf.int64)
    height, width, pixels, readable = tf.case(
        branches, default=lambda: (minus_one, minus_one, minus_one, tf.constant(False)),
        exclusive=False,
    )
    known = tf.reduce_any(tf.stack([condition for condition, _ in branches]))
    status = tf.where(
        tf.equal(size, 0), _EMPTY,
        tf.where(tf.logical_not(known), _UNKNOWN,
                 tf.where(tf.logical_not(readable), _TRUNCATED,
                          tf.where(tf.equal(pixels, 0), _ZERO, _OK))),
    )
    return tf.cast(status, tf.int64), height, width, pixels


def _element_message(index, text):
    return tf.strings.join(["image_bytes[", tf.strings.as_string(index), "] ", text])


def decode_images(image_bytes_batch, image_size, max_pixels=None):
    """Decodes a batch of encoded images with `decode_image` (the serving path).

    Every element is checked before anything is decoded: it must be a JPEG, PNG,
    GIF, BMP or WebP file that declares at most ``max_pixels`` pixels (all frames of
    a GIF together; :func:`declared_image_shape`), so an image that would decode to
    gigabytes is refused in milliseconds. A bad element fails the whole batch with an
    ``InvalidArgumentError`` that names it: "image_bytes[2] could not be decoded:
    ...". An empty batch gives an empty result.

    Args:
        image_bytes_batch: `tf.string` tensor of shape `[B]`, each element the
            content of one image file (raw bytes, not base64).
        image_size: `(height, width)`, positive ints.
        max_pixels: the largest declared height x width accepted; None (default)
            for no limit (then formats without a readable header, e.g. JPEG XL,
            still decode).

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
    if max_pixels is not None:
        max_pixels = check_positive_int(max_pixels, "max_pixels")
    image_bytes_batch = tf.convert_to_tensor(image_bytes_batch, tf.string)
    count = tf.shape(image_bytes_batch, out_type=tf.int64)[0]
    indices = tf.range(count, dtype=tf.int64)
    status, heights, widths, pixels = tf.map_fn(
        declared_image_shape, image_bytes_batch,
        fn_output_signature=(tf.int64, tf.int64, tf.int64, tf.int64),
    )
    if max_pixels is None:  # no limit: formats without a readable header may decode
        status = tf.where(tf.equal(status, _UNKNOWN), tf.constant(_OK, tf.int64), status)
    else:
        too_large = tf.logical_and(tf.equal(status, _OK), pixels > max_pixels)
        status = tf.where(too_large, tf.constant(-1, tf.int64), status)
    # The first refused element (index `count`, a padding entry, when none is).
    status, heights, widths, pixels = (
        tf.concat([values, tf.zeros([1], tf.int64)], 0)
        for values in (status, heights, widths, pixels)
    )
    first = tf.argmax(tf.cast(tf.not_equal(status, _OK), tf.int32), output_type=tf.int64)
    code, pixels = status[first], pixels[first]
    size = tf.strings.join([tf.strings.as_string(heights[first]), " x ",
                            tf.strings.as_string(widths[first]), " pixels"])
    # A GIF's frames all count: say how many pixels they decode to.
    size = tf.where(tf.equal(pixels, heights[first] * widths[first]), size,
                    tf.strings.join([size, " (", tf.strings.as_string(pixels),
                                     " pixels in all frames)"]))
    text = tf.where(
        tf.equal(code, -1),
        tf.strings.join([
            "is too large: it declares ", size, f", more than the limit of {max_pixels}",
        ]),
        tf.gather(_STATUS_MESSAGES, tf.maximum(code, 0)),
    )
    checks = [tf.debugging.Assert(tf.equal(code, 0), [_element_message(first, text)])]

    def decode(index, image_bytes):
        return index, decode_image(image_bytes, (height, width))

    # Through tf.data, so that an element whose data do not decode can be named (the
    # decoder's own error cannot say which element it was): failed elements are
    # dropped, and the first index missing from the result is the bad one. A sentinel
    # row keeps the one batch non-empty whatever fails.
    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.zeros([height, width, 3], tf.float32))
    )
    with tf.control_dependencies(checks):
        indices = tf.identity(indices)
    decoded_indices, images = (
        tf.data.Dataset.from_tensor_slices((indices, image_bytes_batch))
        .map(decode)
        .ignore_errors()
        .concatenate(sentinel)
        .batch(count + 1)
        .get_single_element()
    )
    decoded_indices, images = decoded_indices[:-1], images[:-1]
    present = tf.math.unsorted_segment_sum(
        tf.ones_like(decoded_indices, tf.int32), decoded_indices, count
    )
    bad = tf.argmin(tf.concat([present, [0]], 0), output_type=tf.int64)  # the first missing
    ok = tf.equal(tf.shape(decoded_indices, out_type=tf.int64)[0], count)
    check = tf.debugging.Assert(
        ok, [_element_message(bad, "could not be decoded: its data are truncated or corrupt, "
                                   "or it is not a JPEG, PNG, GIF, BMP or WebP file")]
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
