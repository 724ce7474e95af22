"""The estimate_prior signatures: EM in the served graph equals the NumPy estimate."""

import numpy as np
import pytest
import tensorflow as tf

from calibkeras.data.preprocessing import decode_images
from calibkeras.export import read_export_metadata
from calibkeras.export.saved_model import EM_MAX_ITER, EM_TOL
from calibkeras.priors import DEFAULT_DIRICHLET, estimate_prior


def softmax(scores):
    scores = np.asarray(scores, np.float64)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def numpy_estimate(classifier, images, dirichlet=DEFAULT_DIRICHLET):
    """The reference: calibrated posteriors under the training prior, then NumPy EM."""
    scaled = np.asarray(classifier.calibration(classifier.balanced_logits(images)), np.float64)
    training = classifier.prior_shift.training_prior
    estimate = estimate_prior(softmax(scaled + np.log(training)), training, dirichlet=dirichlet,
                              tol=EM_TOL, max_iter=EM_MAX_ITER)
    return estimate.prior, softmax(scaled + np.log(estimate.prior))


@pytest.fixture(scope="module")
def window():
    """A window of traffic: 40 seeded random images."""
    return np.random.default_rng(3).uniform(0, 255, (40, 16, 16, 3)).astype(np.float32)


def test_estimate_equals_numpy_em_and_feeds_decide_with_costs(serving, classifier, window):
    out = serving.run("estimate_prior", images=window)
    prior, probabilities = numpy_estimate(classifier, window)
    np.testing.assert_allclose(out["prior"], prior, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], probabilities, atol=1e-5)
    assert out["converged"] and 0 < out["iterations"] < EM_MAX_ITER
    assert out["prior"].sum() == pytest.approx(1.0, abs=1e-6)
    decided = serving.run("decide_with_costs", images=window,
                          cost_matrix=(1 - np.eye(3)).astype(np.float32),
                          log_prior=out["log_prior"])
    np.testing.assert_allclose(decided["probabilities"], out["probabilities"], atol=1e-5)


def test_image_bytes_estimate_uses_the_served_decoding(serving, classifier, window):
    encoded = np.array([tf.io.encode_png(image.astype(np.uint8)).numpy()
                        for image in window[:12]], object)
    out = serving.run("estimate_prior_image_bytes", image_bytes=encoded)
    decoded = decode_images(tf.constant(encoded), (16, 16)).numpy()
    np.testing.assert_allclose(out["prior"], numpy_estimate(classifier, decoded)[0], atol=1e-5)


def test_dirichlet_is_stored_and_used(classifier, window, tmp_path):
    from calibkeras.export import ServingSession, export_saved_model

    export_saved_model(classifier, tmp_path / "m", estimate_dirichlet=1.0)
    assert read_export_metadata(tmp_path / "m")["estimate_dirichlet"] == 1.0
    with ServingSession(tmp_path / "m") as session:
        out = session.run("estimate_prior", images=window)
    np.testing.assert_allclose(out["prior"], numpy_estimate(classifier, window, 1.0)[0],
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"`estimate_dirichlet` must be a finite number >= 1"):
        export_saved_model(classifier, tmp_path / "n", estimate_dirichlet=0.5)


def test_bad_requests_are_refused_without_running_the_network(serving):
    # The shared classifier starts with RefuseEmptyBatch: an empty window is refused
    # by the signature's own check, before the network could see it.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`images` must hold at least one image to estimate the prior"):
        serving.run("estimate_prior", images=np.zeros((0, 16, 16, 3), np.float32))
    bad = np.full((2, 16, 16, 3), 128.0, np.float32)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`images` must be finite"):
        serving.run("estimate_prior", images=bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is empty"):
        serving.run("estimate_prior_image_bytes", image_bytes=np.array([b""], object))
