import io
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

import calibkeras.datasets
from calibkeras.data import decode_image
from calibkeras.data.preprocessing import decode_images
from calibkeras.datasets import FOOD10_CLASS_NAMES, food10_csv, food10_dir, load_food10

SIZE = (32, 32)
ROWS = {"train": 1021, "val": 256, "test": 750}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_counts_match_the_csv(split):
    data = load_food10(split, image_size=SIZE, validate_images=split == "train")
    reference = pd.read_csv(food10_csv(split))["label"].value_counts()
    assert data.class_names == FOOD10_CLASS_NAMES
    np.testing.assert_array_equal(data.class_counts, [reference[n] for n in FOOD10_CLASS_NAMES])
    assert data.num_examples == ROWS[split] == int(reference.sum())
    np.testing.assert_allclose(data.prior, reference[list(FOOD10_CLASS_NAMES)] / ROWS[split])


def test_train_is_long_tailed_and_test_balanced():
    train = load_food10("train", image_size=SIZE, validate_images=False)
    test = load_food10("test", image_size=SIZE, validate_images=False)
    assert train.class_counts.max() == 300 and train.class_counts.min() == 15
    np.testing.assert_array_equal(test.class_counts, [75] * 10)


def test_a_batch_has_the_right_shape_dtype_and_range():
    data = load_food10("test", image_size=SIZE, batch_size=16, validate_images=False)
    images, labels = next(iter(data.dataset))
    assert images.shape == (16, 32, 32, 3) and images.dtype == tf.float32
    assert labels.shape == (16,) and labels.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert float(tf.reduce_max(images)) > 100.0  # 0..255, not 0..1
    np.testing.assert_array_equal(labels.numpy(), data.labels[:16])


def test_training_path_and_serving_path_give_the_same_pixels():
    data = load_food10("val", image_size=SIZE, batch_size=16, validate_images=False)
    images, _ = next(iter(data.dataset))
    raw = []
    for path in data.file_paths[:16]:
        with open(path, "rb") as file:
            raw.append(file.read())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(image_bytes):
        return decode_images(image_bytes, SIZE)

    np.testing.assert_array_equal(serve(tf.constant(raw)).numpy(), images.numpy())


def test_decoding_agrees_with_pil():
    for path in load_food10("test", image_size=SIZE, validate_images=False).file_paths[:5]:
        with open(path, "rb") as file:
            data = file.read()
        reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
        out = decode_image(data, reference.shape[:2]).numpy()
        # TensorFlow's fast integer DCT against PIL's accurate one.
        assert np.abs(out - reference).mean() < 1.5


def collect(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_same_pixels_as_keras_image_dataset_from_directory(tmp_path):
    data = load_food10("val", image_size=SIZE, batch_size=64, validate_images=False)
    links = []
    for path, label in zip(data.file_paths, data.labels, strict=True):
        link = tmp_path / FOOD10_CLASS_NAMES[label] / os.path.basename(path)
        link.parent.mkdir(exist_ok=True)
        os.symlink(path, link)
        links.append(str(link))
    reference = keras.utils.image_dataset_from_directory(
        tmp_path,
        image_size=SIZE,
        batch_size=64,
        shuffle=False,
        verbose=False,
        class_names=list(FOOD10_CLASS_NAMES),
    )
    their_images, their_labels = collect(reference)
    position = {path: i for i, path in enumerate(reference.file_paths)}
    order = [position[link] for link in links]
    our_images, our_labels = collect(data.dataset)
    np.testing.assert_array_equal(our_labels, their_labels[order])
    np.testing.assert_array_equal(our_images, their_images[order])


def test_balanced_sampling_reports_uniform_prior():
    data = load_food10(
        "train", image_size=(8, 8), sampling="balanced", seed=0, validate_images=False
    )
    np.testing.assert_allclose(data.prior, [0.1] * 10)
    assert data.steps_per_epoch == 32


def test_bundled_files_are_inside_the_package_and_match_package_data():
    package = os.path.dirname(os.path.abspath(calibkeras.datasets.__file__))
    assert food10_dir() == os.path.join(package, "food10")
    referenced = set()
    for split in ROWS:
        assert food10_csv(split).startswith(food10_dir())
        referenced |= set(pd.read_csv(food10_csv(split))["filepath"])
    on_disk = set()
    for folder, _, files in os.walk(food10_dir()):
        for name in files:
            relative = os.path.relpath(os.path.join(folder, name), food10_dir())
            parts = relative.split(os.sep)
            # setup.cfg package_data: food10/*.csv, *.txt, *.md, food10/images/*/*.jpg
            assert (len(parts) == 1 and name.endswith((".csv", ".txt", ".md"))) or (
                len(parts) == 3 and parts[0] == "images" and name.endswith(".jpg")
            ), relative
            if parts[0] == "images":
                on_disk.add("/".join(parts))
    assert on_disk == referenced and len(referenced) == sum(ROWS.values())


def test_unknown_split():
    with pytest.raises(
        ValueError, match="`split` must be one of 'train', 'val', 'test'; got 'dev'"
    ):
        load_food10("dev")
