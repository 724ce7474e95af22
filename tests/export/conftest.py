"""Tiny calibkeras classifiers and one shared export for the export tests."""

from types import SimpleNamespace

import numpy as np
import pytest
from tiny_models import tiny_classifier

from calibkeras.export import ServingSession, export_saved_model

CLASS_NAMES = ["food", "drink", "dessert"]
CLASS_COUNTS = [60, 30, 10]
IMAGE_SIZE = (16, 16)
#: 4 actions for 3 classes (A != K): serve, re-check, discard, ask a human.
COST_MATRIX = np.array(
    [[0.0, 2.0, 3.0], [1.0, 0.0, 4.0], [2.0, 1.5, 0.0], [0.6, 0.6, 0.9]], dtype=np.float64
)
ABSTAIN_COST = 0.7


def _build_classifier(seed=0, temperature=1.7, image_size=IMAGE_SIZE,
                      class_names=CLASS_NAMES, class_counts=CLASS_COUNTS):
    """A CalibratedClassifier: RefuseEmptyBatch -> Rescaling -> Conv2D -> pooling ->
    head "logits" (normal kernel of spread 4: confident, varied classes) -> temperature
    -> training prior.

    Seeded, so two calls with one seed give the same weights.
    """
    # RefuseEmptyBatch fails on an empty batch on every CPU, as oneDNN does on AVX-512.
    return tiny_classifier(
        input_shape=(*image_size, 3), num_classes=len(class_names),
        class_counts=class_counts, class_names=class_names, prior="training", seed=seed,
        guard=True, head_kernel_stddev=4.0, head_bias_stddev=0.5, temperature=temperature,
        name="tiny_classifier",
    )


@pytest.fixture(scope="session")
def tiny():
    """The test set-up as a namespace (test modules cannot import this conftest)."""
    return SimpleNamespace(
        class_names=CLASS_NAMES,
        class_counts=CLASS_COUNTS,
        image_size=IMAGE_SIZE,
        cost_matrix=COST_MATRIX,
        abstain_cost=ABSTAIN_COST,
        build_classifier=_build_classifier,
        calibration_images=calibration_images,
    )


@pytest.fixture(scope="session")
def sample_images():
    """16 images of varied colour and texture (float32, 0..255)."""
    rng = np.random.default_rng(7)
    colours = rng.uniform(0, 255, size=(16, 1, 1, 3))
    noise = rng.normal(0, 40, size=(16, *IMAGE_SIZE, 3))
    return np.clip(colours + noise, 0, 255).astype(np.float32)


def calibration_images(model=None, num_images=48, seed=11):
    """Labelled images for the shared classifier's prediction sets: the model's own
    top class, a tenth of them replaced by a seeded random class."""
    model = model or _build_classifier()
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 255, size=(num_images, 1, 1, 3))
    noise = rng.normal(0, 40, size=(num_images, *IMAGE_SIZE, 3))
    images = np.clip(colours + noise, 0, 255).astype(np.float32)
    labels = np.asarray(model.balanced_logits(images)).argmax(axis=1)
    noisy = rng.random(num_images) < 0.1
    labels[noisy] = rng.integers(0, len(CLASS_NAMES), size=noisy.sum())
    return images, labels


@pytest.fixture(scope="session")
def classifier():
    """The classifier behind the shared export, with class-conditional prediction sets
    (alpha 0.25: 3 calibration images per class give a finite threshold); tests must
    not change it."""
    model = _build_classifier()
    model.fit_prediction_sets(calibration_images(model), alpha=0.25, score="raps", penalty=0.05)
    return model


@pytest.fixture(scope="session")
def exported(classifier, tmp_path_factory):
    """Base folder of one export (COST_MATRIX, ABSTAIN_COST, the model's prior)."""
    base = tmp_path_factory.mktemp("saved_models") / "food10"
    export_saved_model(classifier, base, cost_matrix=COST_MATRIX, abstain_cost=ABSTAIN_COST)
    return base


@pytest.fixture(scope="session")
def serving(exported):
    """The shared export loaded with TF Serving's TF1 loader."""
    with ServingSession(exported) as session:
        yield session


@pytest.fixture(scope="session")
def references(classifier, sample_images):
    """Keras outputs on the sample images: probabilities and temperature-scaled logits."""
    logits = np.asarray(classifier(sample_images, training=False), dtype=np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    scaled = classifier.calibration(classifier.balanced_logits(sample_images))
    return {
        "probs": probs / probs.sum(axis=1, keepdims=True),
        "scaled_logits": np.asarray(scaled),
        "log_prior": np.asarray(classifier.prior_shift.log_prior),
    }
