import keras
import numpy as np
import pytest
from scipy.special import log_softmax

from calibkeras.losses import LogitAdjustedCrossentropy

COUNTS = [60, 30, 10]


def numpy_reference(labels, logits, counts, tau):
    log_prior = np.log(np.asarray(counts) / np.sum(counts))
    log_probs = log_softmax(logits + tau * log_prior, axis=1)
    return -log_probs[np.arange(len(labels)), labels].mean()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 3, 16), rng.normal(size=(16, 3)).astype("float32")


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_matches_numpy_for_sparse_and_one_hot_labels(batch, tau):
    labels, logits = batch
    loss = LogitAdjustedCrossentropy(class_counts=COUNTS, tau=tau)
    expected = numpy_reference(labels, logits, COUNTS, tau)
    for y in (labels, labels[:, None], np.eye(3)[labels]):
        assert float(loss(y, logits)) == pytest.approx(expected, rel=1e-5)


def test_tau_zero_is_plain_crossentropy(batch):
    labels, logits = batch
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    adjusted = LogitAdjustedCrossentropy(COUNTS, tau=0.0)(labels, logits)
    assert float(adjusted) == pytest.approx(float(plain), rel=1e-6)


def test_probabilities_input(batch):
    labels, logits = batch
    probs = np.exp(log_softmax(logits, axis=1)).astype("float32")
    expected = numpy_reference(labels, logits, COUNTS, 1.0)
    loss = LogitAdjustedCrossentropy(COUNTS, from_logits=False)
    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-5)


def test_config_round_trip_and_compile(tmp_path, batch):
    labels, logits = batch
    loss = LogitAdjustedCrossentropy(COUNTS, tau=0.7, name="la")
    clone = LogitAdjustedCrossentropy.from_config(loss.get_config())
    assert float(clone(labels, logits)) == float(loss(labels, logits))
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss=loss)
    model.fit(logits, labels, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.loss.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"class_counts": [5, 0, 2]}, r"every entry of `class_counts` must be a positive count"),
        ({"class_counts": [5]}, r"`class_counts` must be a 1-D vector"),
        ({"class_counts": [5, 2], "tau": -1}, r"`tau` must be a finite number >= 0, got -1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogitAdjustedCrossentropy(**kwargs)


def test_wrong_number_of_classes(batch):
    labels, logits = batch
    with pytest.raises(ValueError, match=r"has 2 `class_counts` but the predictions have 3"):
        LogitAdjustedCrossentropy([5, 2])(labels, logits)
