import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from calibkeras.data import dataset_from_tfds, decode_image


@pytest.fixture
def mocked_flowers():
    """tf_flowers (5 classes) replaced by 40 random examples; no files, no network."""
    with tfds.testing.mock_data(num_examples=40):
        yield


def reference_examples(decoders):
    builder = tfds.builder("tf_flowers")
    dataset = builder.as_dataset(split="train", decoders=decoders, shuffle_files=False)
    return [(example["image"].numpy(), int(example["label"])) for example in dataset]


def test_counts_names_labels_and_pixels(mocked_flowers):
    data = dataset_from_tfds("tf_flowers", "train", image_size=(16, 16), batch_size=8)
    examples = reference_examples({"image": tfds.decode.SkipDecoding()})
    reference_labels = np.array([label for _, label in examples])
    assert data.class_names == ("dandelion", "daisy", "tulips", "sunflowers", "roses")
    np.testing.assert_array_equal(data.class_counts, np.bincount(reference_labels, minlength=5))
    np.testing.assert_allclose(data.prior, data.class_counts / 40)
    assert data.num_examples == 40 and data.file_paths == ()
    batches = list(data.dataset)
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert images.shape == (40, 16, 16, 3) and images.dtype == np.float32
    assert batches[0][1].dtype == tf.int32
    np.testing.assert_array_equal(labels, reference_labels)
    np.testing.assert_array_equal(labels, data.labels)
    # The same serving preprocessing applied to the raw bytes gives the same pixels.
    np.testing.assert_array_equal(images[3], decode_image(examples[3][0], (16, 16)))


def test_balanced_sampling(mocked_flowers):
    data = dataset_from_tfds(
        "tf_flowers", "train", image_size=(8, 8), batch_size=50, sampling="balanced", seed=0
    )
    np.testing.assert_allclose(data.prior, [0.2] * 5)
    labels = np.concatenate([y.numpy() for _, y in data.dataset.take(40)])
    np.testing.assert_allclose(np.bincount(labels, minlength=5) / labels.size, [0.2] * 5, atol=0.03)


def test_shuffle_with_seed_is_reproducible(mocked_flowers):
    def labels():
        data = dataset_from_tfds(
            "tf_flowers",
            "train",
            image_size=(8, 8),
            batch_size=40,
            shuffle=True,
            seed=4,
            cache=True,
        )
        return next(iter(data.dataset))[1].numpy()

    first = labels()
    np.testing.assert_array_equal(first, labels())
    assert sorted(first) == sorted(reference_labels_plain())


def reference_labels_plain():
    return [label for _, label in reference_examples({"image": tfds.decode.SkipDecoding()})]


def test_errors(mocked_flowers):
    with pytest.raises(
        ValueError,
        match="`label_key` 'species' is not a ClassLabel feature of "
        "TFDS dataset 'tf_flowers'; features are: image, label",
    ):
        dataset_from_tfds("tf_flowers", label_key="species")
    with pytest.raises(ValueError, match="`image_key` 'label' is not an Image feature"):
        dataset_from_tfds("tf_flowers", image_key="label")
    with pytest.raises(ValueError, match=r"classes .* have no examples in TFDS 'food101'"):
        dataset_from_tfds("food101", "train", image_size=(8, 8))
