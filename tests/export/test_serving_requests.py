"""Bad requests through the loaded SavedModel give a readable InvalidArgumentError."""

import numpy as np
import pytest
import tensorflow as tf


def images(shape=(2, 16, 16, 3)):
    return np.full(shape, 128.0, dtype=np.float32)


def png(height=16, width=16):
    return tf.io.encode_png(tf.zeros([height, width, 3], tf.uint8)).numpy()


ZERO_ONE = (1 - np.eye(3)).astype(np.float32)
LOG_PRIOR = np.log(np.full(3, 1 / 3, dtype=np.float32))


@pytest.mark.parametrize(
    "signature, inputs, message",
    [
        ("serving_default", {"images": images((2, 16, 16))},
         r"`images` must have rank 4: shape \[batch, 16, 16, 3\].*got shape\] \[2 16 16\]"),
        ("serving_default", {"images": images((16, 16, 3))},
         r"`images` must have rank 4"),
        ("serving_default", {"images": images((2, 16, 16, 4))},
         r"`images` must have 3 channels \(RGB\).*got shape\] \[2 16 16 4\]"),
        ("serving_default", {"images": images((2, 16, 16, 1))},
         r"`images` must have 3 channels"),
        ("serving_default", {"images": images((2, 32, 16, 3))},
         r"`images` must be 16x16 pixels \(the input size of the model\).*predict_image_bytes"),
        ("decide", {"images": images((2, 16, 16, 4))}, r"`images` must have 3 channels"),
        ("predict_set", {"images": images() + 200}, r"`images` must hold RGB pixels in 0..255"),
        ("predict_set_image_bytes", {"image_bytes": np.array([png(), b"not an image"], object)},
         r"image_bytes\[1\] is not a JPEG, PNG, GIF, BMP or WebP file"),
        ("predict_image_bytes", {"image_bytes": np.array([png(), b"not an image"], object)},
         r"image_bytes\[1\] is not a JPEG, PNG, GIF, BMP or WebP file"),
        ("predict_image_bytes", {"image_bytes": np.array([b""], object)},
         r"image_bytes\[0\] is empty"),
        ("predict_image_bytes", {"image_bytes": np.array([png(), png(), png()[:40]], object)},
         r"image_bytes\[2\] could not be decoded: its data are truncated or corrupt"),
        ("predict_image_bytes", {"image_bytes": np.array([png(), png()[:20]], object)},
         r"image_bytes\[1\] could not be decoded: it is truncated or its header is corrupt"),
        ("serving_default", {"images": np.where(images() > 0, np.nan, 0).astype(np.float32)},
         r"`images` must be finite \(no NaN or inf pixels\)"),
        ("decide", {"images": np.full((1, 16, 16, 3), np.inf, np.float32)},
         r"`images` must be finite"),
        ("serving_default", {"images": images() + 200},
         r"`images` must hold RGB pixels in 0..255"),
        ("decide", {"images": images() - 129}, r"`images` must hold RGB pixels in 0..255"),
        ("decide_with_costs",
         {"images": np.full((2, 16, 16, 3), -np.inf, np.float32), "cost_matrix": ZERO_ONE,
          "log_prior": LOG_PRIOR},
         r"`images` must be finite"),
        ("predict_image_bytes", {"image_bytes": np.array(png(), object)},
         r"`image_bytes` must have rank 1: a 1-D batch \[batch\] of encoded"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": np.ones((2, 4), np.float32), "log_prior": LOG_PRIOR},
         r"`cost_matrix` must have 3 columns.*got shape\] \[2 4\]"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": np.ones(3, np.float32), "log_prior": LOG_PRIOR},
         r"`cost_matrix` must have rank 2"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": np.ones((1, 3), np.float32), "log_prior": LOG_PRIOR},
         r"`cost_matrix` must have at least 2 rows"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": np.where(ZERO_ONE > 0, np.nan, 0).astype(np.float32),
          "log_prior": LOG_PRIOR},
         r"`cost_matrix` must be finite"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": ZERO_ONE - 0.5, "log_prior": LOG_PRIOR},
         r"`cost_matrix` must be non-negative"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": ZERO_ONE, "log_prior": np.zeros(4, np.float32)},
         r"`log_prior` must have 3 entries.*got shape\] \[4\]"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": ZERO_ONE, "log_prior": np.zeros((1, 3), np.float32)},
         r"`log_prior` must have rank 1"),
        ("decide_with_costs",
         {"images": images(), "cost_matrix": ZERO_ONE,
          "log_prior": np.array([0.0, -np.inf, 0.0], np.float32)},
         r"`log_prior` must be finite"),
        ("decide_with_costs",
         {"images": images((2, 16, 16)), "cost_matrix": ZERO_ONE, "log_prior": LOG_PRIOR},
         r"`images` must have rank 4"),
    ],
)
def test_bad_request_is_invalid_argument(serving, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serving.run(signature, **inputs)


def test_session_still_serves_after_bad_requests(serving):
    with pytest.raises(tf.errors.InvalidArgumentError):
        serving.run("serving_default", images=images((1, 16, 16, 4)))
    out = serving.run("serving_default", images=images())
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-6)
    grey = serving.run("predict_image_bytes", image_bytes=np.array([png(), png(40, 30)], object))
    assert grey["probabilities"].shape == (2, 3)


def test_empty_batch_answers_with_empty_outputs_in_every_signature(serving):
    # The shared classifier starts with RefuseEmptyBatch: these pass only if the
    # network is never run on the empty batch (oneDNN refuses that on AVX-512 CPUs).
    empty = np.zeros((0, 16, 16, 3), np.float32)
    out = serving.run("decide", images=empty)
    assert out["decision"].shape == (0,) and out["expected_cost"].shape == (0, 5)
    assert out["probabilities"].shape == (0, 3) and out["decision_names"].shape == (0,)
    for signature, inputs in (("serving_default", {"images": empty}),
                              ("predict_image_bytes", {"image_bytes": np.array([], object)})):
        out = serving.run(signature, **inputs)
        assert out["probabilities"].shape == (0, 3), signature
        assert out["classes"].shape == out["class_names"].shape == out["confidence"].shape == (0,)
    out = serving.run("decide_with_costs", images=empty, cost_matrix=ZERO_ONE, log_prior=LOG_PRIOR)
    assert out["decision"].shape == (0,) and out["expected_cost"].shape == (0, 3)
    assert out["probabilities"].shape == (0, 3)
    for signature, inputs in (("predict_set", {"images": empty}),
                              ("predict_set_image_bytes", {"image_bytes": np.array([], object)})):
        out = serving.run(signature, **inputs)
        assert out["in_set"].shape == (0, 3), signature
        assert out["set_size"].shape == out["set_names"].shape == (0,)


def png_declaring(height, width):
    """A small PNG whose header declares ``height`` x ``width`` pixels (a decompression
    bomb once decoded: its data are a few hundred bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def test_image_declaring_more_pixels_than_the_limit_is_refused_before_decoding(serving):
    import time

    bomb = png_declaring(20000, 20000)  # would decode to 1.2 GB
    assert len(bomb) < 1000
    start = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is too large: it declares 20000 x 20000 pixels, "
                             r"more than the limit of 50000000"):
        serving.run("predict_image_bytes", image_bytes=np.array([png(), bomb], object))
    assert time.perf_counter() - start < 5  # refused from the header, not decoded


def test_pixel_limit_is_set_at_export_and_stored(classifier, tmp_path):
    from calibkeras.export import ServingSession, export_saved_model, read_export_metadata

    export_saved_model(classifier, tmp_path / "m", max_image_pixels=40 * 30)
    assert read_export_metadata(tmp_path / "m")["max_image_pixels"] == 1200
    with ServingSession(tmp_path / "m") as session:
        out = session.run("predict_image_bytes", image_bytes=np.array([png(40, 30)], object))
        assert out["probabilities"].shape == (1, 3)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is too large"):
            session.run("predict_image_bytes", image_bytes=np.array([png(41, 30)], object))
    with pytest.raises(ValueError, match=r"`max_image_pixels` must be a positive integer, got 0"):
        export_saved_model(classifier, tmp_path / "n", max_image_pixels=0)


def test_unknown_signature_or_inputs_are_named(serving):
    with pytest.raises(KeyError, match=r"no signature 'predict'"):
        serving.run("predict", images=images())
    with pytest.raises(KeyError, match=r"takes inputs \['cost_matrix', 'images', 'log_prior'\]"):
        serving.run("decide_with_costs", images=images())
