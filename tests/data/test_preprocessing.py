import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from calibkeras.data import decode_image, load_image
from calibkeras.data.preprocessing import decode_images, decode_rgb


def encode(pixels, image_format, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **kwargs)
    return buffer.getvalue()


def random_pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("image_format", ["PNG", "BMP"])
def test_lossless_formats_match_pil_exactly_at_native_size(image_format):
    pixels = random_pixels((5, 7, 3))
    data = encode(pixels, image_format)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    out = decode_image(data, (5, 7)).numpy()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_agrees_with_pil_decode(subsampling):
    # TensorFlow's default JPEG DCT is the fast integer one; PIL uses the
    # accurate one, so pixels differ by about one grey level.
    pixels = np.kron(random_pixels((4, 5, 3)), np.ones((8, 8, 1), np.uint8))
    data = encode(pixels, "JPEG", quality=90, subsampling=subsampling)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    out = decode_image(data, (32, 40)).numpy()
    assert np.abs(out - reference).mean() < 1.5
    assert np.abs(out - reference).max() <= 12
    np.testing.assert_array_equal(decode_rgb(data).numpy().astype(np.float32), out)


def test_same_pixels_as_keras_image_dataset_from_directory(tmp_path):
    sizes = [(20, 30), (16, 16), (40, 12)]
    blobs = []
    for i, size in enumerate(sizes):
        data = encode(random_pixels(size + (3,), seed=i), "JPEG", quality=85)
        (tmp_path / "c").mkdir(exist_ok=True)
        (tmp_path / "c" / f"{i}.jpg").write_bytes(data)
        blobs.append(data)
    reference = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(16, 16), batch_size=8, shuffle=False, verbose=False
    )
    ((images, _),) = list(reference)
    np.testing.assert_array_equal(decode_images(tf.constant(blobs), (16, 16)), images)


def test_gif_gives_first_frame_as_rgb():
    frames = [Image.fromarray(np.full((6, 6, 3), value, np.uint8)) for value in (0, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buffer.getvalue(), (6, 6)).numpy()
    assert out.shape == (6, 6, 3)
    np.testing.assert_array_equal(out, 0.0)


def test_grayscale_is_repeated_and_alpha_dropped():
    gray = random_pixels((4, 4))
    out = decode_image(encode(gray, "PNG"), (4, 4)).numpy()
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))
    rgba = random_pixels((4, 4, 4))
    out = decode_image(encode(rgba, "PNG"), (4, 4)).numpy()
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_resize_gives_shape_and_range():
    data = encode(random_pixels((30, 50, 3)), "PNG")
    out = decode_image(data, (7, 11)).numpy()
    assert out.shape == (7, 11, 3)
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_resize_matches_tf_image_resize_bilinear():
    pixels = random_pixels((30, 50, 3))
    out = decode_image(encode(pixels, "PNG"), (12, 20)).numpy()
    reference = tf.image.resize(pixels, (12, 20), method="bilinear").numpy()
    np.testing.assert_allclose(out, np.clip(reference, 0, 255), atol=1e-4)


def test_works_inside_tf_function_on_a_scalar_string():
    data = encode(random_pixels((9, 9, 3)), "PNG")

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def serve(image_bytes):
        return decode_image(image_bytes, (4, 4))

    np.testing.assert_array_equal(serve(tf.constant(data)), decode_image(data, (4, 4)))


def test_decode_images_equals_decode_image_per_element():
    blobs = [encode(random_pixels((10 + i, 12, 3), seed=i), "PNG") for i in range(3)]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(batch):
        return decode_images(batch, (6, 8))

    out = serve(tf.constant(blobs)).numpy()
    assert out.shape == (3, 6, 8, 3) and out.dtype == np.float32
    for i, data in enumerate(blobs):
        np.testing.assert_array_equal(out[i], decode_image(data, (6, 8)))


def test_load_image_reads_the_file(tmp_path):
    pixels = random_pixels((5, 5, 3))
    path = tmp_path / "a.png"
    path.write_bytes(encode(pixels, "PNG"))
    np.testing.assert_array_equal(load_image(str(path), (5, 5)), pixels.astype(np.float32))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"this is not an image", "Unknown image file format"),
        (b"", "Input is empty"),
        (b"\xff\xd8\xff\xe0 truncated jpeg", "jpeg"),
    ],
)
def test_undecodable_bytes_raise_invalid_argument(data, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        decode_image(data, (4, 4))


def test_undecodable_bytes_raise_in_graph_too():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(batch):
        return decode_images(batch, (4, 4))

    # Without a pixel limit nothing is checked before decoding (JPEG XL decodes that way);
    # the element that fails to decode is named.
    for batch, index in (([encode(random_pixels((3, 3, 3)), "PNG"), b"garbage"], 1),
                         ([b""], 0)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"image_bytes\[{index}\] could not be decoded: its data are "
                                 r"truncated or corrupt, or it is not a JPEG, PNG, GIF, BMP or "
                                 r"WebP file"):
            serve(tf.constant(batch))


@pytest.mark.parametrize("image_size", [(0, 4), (4,), "4x4", (4.0, 4), None, (True, 4)])
def test_bad_image_size_is_rejected(image_size):
    with pytest.raises(ValueError, match="`image_size` must be a pair of positive integers"):
        decode_image(b"", image_size)


# --- declared sizes and the pixel limit (read before decoding) ---


@pytest.mark.parametrize(
    ("image_format", "options"),
    [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("GIF", {}), ("BMP", {}),
     ("WEBP", {}), ("WEBP", {"lossless": True})],
)
def test_declared_shape_is_the_size_pil_reads(image_format, options):
    from calibkeras.data.preprocessing import declared_image_shape

    data = encode(random_pixels((37, 23, 3)), image_format, **options)
    width, height = Image.open(io.BytesIO(data)).size
    status, h, w, pixels = (int(v) for v in declared_image_shape(data))
    assert (status, h, w, pixels) == (0, height, width, height * width)


def animated_gif(frame_size, frames, screen=None):
    """A GIF of ``frames`` frames of ``frame_size`` (w, h); ``screen`` rewrites the
    logical screen size in the header."""
    import struct

    images = [Image.new("RGB", frame_size, (40 * i % 256, 90, 200)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50)
    data = bytearray(buffer.getvalue())
    if screen is not None:
        data[6:10] = struct.pack("<HH", *screen)
    return bytes(data)


def test_gif_frames_all_count_toward_the_pixel_limit():
    from calibkeras.data.preprocessing import declared_image_shape

    data = animated_gif((30, 20), 7)
    assert Image.open(io.BytesIO(data)).n_frames == 7
    assert [int(v) for v in declared_image_shape(data)] == [0, 20, 30, 7 * 600]
    assert decode_images(tf.constant([data]), (4, 4), max_pixels=7 * 600).shape == (1, 4, 4, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[0\] is too large: it declares 20 x 30 pixels "
                             r"\(4200 pixels decoded in all its frames\), more than the limit "
                             r"of 4199"):
        decode_images(tf.constant([data]), (4, 4), max_pixels=4199)


def test_gif_frame_larger_than_its_screen_is_counted():
    # TensorFlow decodes the frame at its own size (4000 x 3000 here) whatever the
    # screen says: a 1 x 1 screen must not get it past the limit.
    data = animated_gif((4000, 3000), 1, screen=(1, 1))
    assert len(data) < 20_000
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is too large"):
        decode_images(tf.constant([data]), (4, 4), max_pixels=10_000_000)


def test_truncated_gif_structure_is_refused_naming_the_element():
    data = animated_gif((30, 20), 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] could not be decoded: it is truncated"):
        decode_images(tf.constant([data, data[: len(data) // 2]]), (4, 4), max_pixels=10**6)


def test_decode_images_checks_max_pixels_and_allows_an_empty_batch():
    assert decode_images(tf.constant([], tf.string), (4, 5), max_pixels=9).shape == (0, 4, 5, 3)
    assert decode_images(tf.constant([], tf.string), (4, 5)).shape == (0, 4, 5, 3)
    with pytest.raises(ValueError, match=r"`max_pixels` must be a positive integer, got 0"):
        decode_images(tf.constant([b""]), (4, 5), max_pixels=0)


def gif_of_frames(screen, frames):
    """A GIF with a 4-colour table whose frames (w, h) are all colour 1, LZW-coded with a
    clear code every 2 pixels (so the code width stays 3 bits)."""
    import struct

    def lzw(count):
        codes, bits, width, out = [4], 0, 3, bytearray()
        for index in range(count):
            codes.append(1)
            if index % 2:
                codes.append(4)
        codes.append(5)
        filled = 0
        for code in codes:
            bits |= code << filled
            filled += width
            while filled >= 8:
                out.append(bits & 0xFF)
                bits >>= 8
                filled -= 8
        if filled:
            out.append(bits & 0xFF)
        blocks = b"".join(bytes([len(out[i:i + 255])]) + out[i:i + 255]
                          for i in range(0, len(out), 255))
        return b"\x02" + blocks + b"\x00"

    data = b"GIF89a" + struct.pack("<HH", *screen) + bytes([0x81, 0, 0]) + bytes(12)
    for width, height in frames:
        data += b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + lzw(width * height)
    return data + b"\x3b"


def test_gif_canvas_of_the_widest_and_tallest_frames_is_counted():
    # A 1 x 1 screen with frames of 3000 x 1 and 1 x 3000: TensorFlow decodes a
    # 3000 x 3000 canvas (found in review: the largest frame area, 3000, let it pass).
    data = gif_of_frames((1, 1), [(3000, 1), (1, 3000)])
    assert decode_rgb(data).shape == (3000, 3000, 3)
    from calibkeras.data.preprocessing import declared_image_shape

    status, _, _, pixels = (int(v) for v in declared_image_shape(data))
    assert (status, pixels) == (0, 2 * 3000 * 3000)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is too large"):
        decode_images(tf.constant([data]), (4, 4), max_pixels=10_000_000)


def test_jpeg_size_is_libjpegs_whatever_precedes_the_frame_header():
    import struct

    # A fake 16 x 16 frame header inside an APP1 segment, reached by a hand-written
    # walker that reads "FF 00" as a marker (found in review); libjpeg resyncs instead
    # and decodes the real 2000 x 3000 image.
    real = tf.io.encode_jpeg(tf.zeros([2000, 3000, 3], tf.uint8)).numpy()
    fake = b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    app = b"\xff\xe1" + struct.pack(">H", 10 + len(fake) + 2) + b"A" * 10 + fake
    evil = b"\xff\xd8\xff\x00" + struct.pack(">H", 16) + app + real[2:]
    assert decode_rgb(evil).shape == (2000, 3000, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[0\] is too large: it declares 2000 x 3000 pixels"):
        decode_images(tf.constant([evil]), (4, 4), max_pixels=1000)


def test_corrupt_headers_are_reported_as_corrupt():
    import struct

    from calibkeras.data.preprocessing import declared_image_shape

    png = encode(random_pixels((5, 7, 3)), "PNG")
    text_first = png[:8] + struct.pack(">I", 4) + b"tEXt" + b"a\0bc" + png[8:]
    bmp = bytearray(encode(random_pixels((5, 7, 3)), "BMP"))
    bmp[18:22] = struct.pack("<i", -20)
    for data in (text_first, bytes(bmp)):
        assert int(declared_image_shape(data)[0]) == 3
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"image_bytes\[0\] could not be decoded: it is truncated or its "
                                 r"header is corrupt"):
            decode_images(tf.constant([data]), (4, 4), max_pixels=10**6)


def test_a_gif_too_long_to_walk_is_refused_unread(monkeypatch):
    from calibkeras.data import preprocessing

    monkeypatch.setattr(preprocessing, "MAX_GIF_BYTES", 1000)
    data = gif_of_frames((30, 20), [(30, 20)] * 4)
    assert len(data) > 1000
    assert int(preprocessing.declared_image_shape(data)[0]) == 5
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[0\] is a GIF of more than"):
        decode_images(tf.constant([data]), (4, 4), max_pixels=10**6)
