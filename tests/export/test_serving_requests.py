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
        ("predict_image_bytes", {"image_bytes": np.array([png(), b"not an image"], object)},
         r"Unknown image file format"),
        ("predict_image_bytes", {"image_bytes": np.array([b""], object)}, r"Input is empty"),
        ("predict_image_bytes", {"image_bytes": np.array([png()[:40]], object)},
         r"(?i)png|invalid|corrupt|truncat"),
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


def test_empty_batch_is_fine(serving):
    out = serving.run("decide", images=np.zeros((0, 16, 16, 3), np.float32))
    assert out["decision"].shape == (0,) and out["expected_cost"].shape == (0, 5)


def test_unknown_signature_or_inputs_are_named(serving):
    with pytest.raises(KeyError, match=r"no signature 'predict'"):
        serving.run("predict", images=images())
    with pytest.raises(KeyError, match=r"takes inputs \['cost_matrix', 'images', 'log_prior'\]"):
        serving.run("decide_with_costs", images=images())
