"""Tiny calibkeras classifiers and one shared export for the export tests."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
from empty_batch_guard import RefuseEmptyBatch

from calibkeras.export import ServingSession, export_saved_model
from calibkeras.layers.prior_shift import PriorShift
from calibkeras.layers.temperature_scaling import TemperatureScaling

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
    """Input -> RefuseEmptyBatch -> Rescaling -> Conv2D -> GAP -> Dense "logits" ->
    temperature -> prior shift.

    Seeded initialisers, so two calls with one seed give the same weights.
    """
    inputs = keras.Input((*image_size, 3))
    # Fails on an empty batch on every CPU, as oneDNN does on AVX-512 ones.
    x = RefuseEmptyBatch()(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(
        4, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
    )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(
        len(class_names), name="logits",
        kernel_initializer=keras.initializers.RandomNormal(stddev=4.0, seed=seed + 1),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=seed + 2),
    )(x)
    x = TemperatureScaling(initial_temperature=temperature, name="temperature")(x)
    outputs = PriorShift(
        prior="training", class_counts=class_counts, class_names=class_names,
        name="prior_shift",
    )(x)
    return keras.Model(inputs, outputs, name="tiny_classifier")


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
    )


@pytest.fixture(scope="session")
def sample_images():
    """16 images of varied colour and texture (float32, 0..255)."""
    rng = np.random.default_rng(7)
    colours = rng.uniform(0, 255, size=(16, 1, 1, 3))
    noise = rng.normal(0, 40, size=(16, *IMAGE_SIZE, 3))
    return np.clip(colours + noise, 0, 255).astype(np.float32)


@pytest.fixture(scope="session")
def classifier():
    """The classifier behind the shared export; tests must not change it."""
    return _build_classifier()


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
    scaled_model = keras.Model(classifier.input, classifier.get_layer("temperature").output)
    logits = np.asarray(classifier(sample_images, training=False), dtype=np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {
        "probs": probs / probs.sum(axis=1, keepdims=True),
        "scaled_logits": np.asarray(scaled_model(sample_images, training=False)),
        "log_prior": np.asarray(classifier.get_layer("prior_shift").log_prior),
    }
