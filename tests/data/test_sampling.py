import numpy as np
import pytest
import tensorflow as tf

from calibkeras.data import dataset_from_csv
from calibkeras.data.sampling import sample_balanced, sampling_prior


@pytest.fixture
def long_tail_csv(tmp_path, write_image, write_csv):
    """Three classes with 24, 6 and 2 tiny images."""
    rows = []
    for label, count in (("a", 24), ("b", 6), ("c", 2)):
        for i in range(count):
            write_image(tmp_path / label / f"{i}.png", size=(2, 2), color=(i, 0, 0))
            rows.append([f"{label}/{i}.png", label])
    return write_csv(tmp_path / "t.csv", ["filepath", "label"], rows)


def test_balanced_batches_are_near_uniform_and_prior_is_uniform(long_tail_csv):
    data = dataset_from_csv(
        long_tail_csv, image_size=(2, 2), batch_size=64, sampling="balanced", seed=0
    )
    np.testing.assert_allclose(data.prior, [1 / 3] * 3)
    np.testing.assert_array_equal(data.class_counts, [24, 6, 2])
    np.testing.assert_allclose(data.natural_prior, np.array([24, 6, 2]) / 32)
    assert data.dataset.cardinality() == tf.data.INFINITE_CARDINALITY
    assert data.steps_per_epoch == 1
    labels = np.concatenate([y.numpy() for _, y in data.dataset.take(100)])
    frequencies = np.bincount(labels, minlength=3) / labels.size
    # 6,400 draws: the standard error of each frequency is about 0.006.
    np.testing.assert_allclose(frequencies, [1 / 3] * 3, atol=0.025)


def test_balanced_draws_every_example_of_a_class(long_tail_csv):
    data = dataset_from_csv(
        long_tail_csv, image_size=(2, 2), batch_size=64, sampling="balanced", seed=1
    )
    seen = set()
    for images, labels in data.dataset.take(20):
        for image, label in zip(images.numpy(), labels.numpy(), strict=True):
            seen.add((int(label), int(image[0, 0, 0])))
    assert seen == {(0, i) for i in range(24)} | {(1, i) for i in range(6)} | {(2, 0), (2, 1)}


def test_balanced_with_seed_is_reproducible(long_tail_csv):
    def draw():
        data = dataset_from_csv(
            long_tail_csv,
            image_size=(2, 2),
            batch_size=16,
            sampling="balanced",
            seed=5,
            augment=True,
        )
        return [(x.numpy(), y.numpy()) for x, y in data.dataset.take(3)]

    for (x1, y1), (x2, y2) in zip(draw(), draw(), strict=True):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("cache", [True, False])
def test_balanced_with_cache(long_tail_csv, cache):
    data = dataset_from_csv(
        long_tail_csv, image_size=(2, 2), batch_size=32, sampling="balanced", seed=0, cache=cache
    )
    labels = np.concatenate([y.numpy() for _, y in data.dataset.take(30)])
    assert set(np.unique(labels)) == {0, 1, 2}


def test_natural_prior_is_the_data_prior(long_tail_csv):
    data = dataset_from_csv(long_tail_csv, image_size=(2, 2))
    np.testing.assert_allclose(data.prior, np.array([24, 6, 2]) / 32)


def test_sampling_prior_and_sample_balanced_directly():
    np.testing.assert_allclose(sampling_prior([3, 1], "natural"), [0.75, 0.25])
    np.testing.assert_allclose(sampling_prior([3, 1], "balanced"), [0.5, 0.5])
    datasets = [tf.data.Dataset.from_tensor_slices([k] * (10**k)) for k in range(3)]
    values = np.array(list(sample_balanced(datasets, seed=0).take(3000).as_numpy_iterator()))
    np.testing.assert_allclose(np.bincount(values) / 3000, [1 / 3] * 3, atol=0.03)
