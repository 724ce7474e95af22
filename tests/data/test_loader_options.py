import dataclasses
import doctest
import pathlib

import numpy as np
import pandas as pd
import pytest

from calibkeras.data import (
    LoaderOptions,
    dataset_from_csv,
    dataset_from_dataframe,
    dataset_from_directory,
    dataset_from_tfds,
)
from calibkeras.data import loader_options as loader_options_module
from calibkeras.datasets import FOOD10_OPTIONS, load_food10

DOCUMENTED_DEFAULTS = {
    "image_size": (224, 224),
    "batch_size": 32,
    "shuffle": False,
    "seed": None,
    "augment": False,
    "zoom": 0.0,
    "sampling": "natural",
    "cache": False,
    "drop_remainder": False,
    "shuffle_buffer_size": 10_000,
    "on_bad_image": "raise",
    "bad_image_report": None,
    "validate_images": True,
    "confine_to_image_root": False,
}

# Each loader with source arguments that are never read: option errors come first.
LOADERS = [
    (dataset_from_csv, ("nowhere.csv",)),
    (dataset_from_dataframe, (pd.DataFrame({"filepath": [], "label": []}),)),
    (dataset_from_directory, ("nowhere",)),
    (dataset_from_tfds, ("no_such_tfds_dataset",)),
    (load_food10, ("val",)),
]


def test_defaults_are_the_documented_ones():
    assert dataclasses.asdict(LoaderOptions()) == DOCUMENTED_DEFAULTS
    assert FOOD10_OPTIONS == LoaderOptions(image_size=(160, 160))


def test_docstring_example_runs():
    results = doctest.testmod(loader_options_module)
    assert results.attempted > 0 and results.failed == 0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("image_size", (0, 8), "`image_size` must be a pair of positive integers"),
        ("image_size", 32, r"`image_size` must be a pair of positive integers .*got 32"),
        ("batch_size", 0, "`batch_size` must be a positive integer, got 0"),
        ("batch_size", 2.0, "`batch_size` must be a positive integer, got 2.0"),
        ("shuffle", "yes", "`shuffle` must be True or False, got 'yes'"),
        ("seed", 1.5, "`seed` must be an integer or None, got 1.5"),
        ("seed", True, "`seed` must be an integer or None, got True"),
        ("augment", 1, "`augment` must be True or False, got 1"),
        ("zoom", 1.0, r"`zoom` must be a number in \[0, 1\), such as 0.4 \(0: no zoom\); got 1.0"),
        ("zoom", "0.4", r"`zoom` must be a number in \[0, 1\).*got '0.4'"),
        ("sampling", "oversample", "`sampling` must be one of 'natural', 'balanced'; got 'ov"),
        ("cache", 3, r"`cache` must be False, True \(in memory\) or a file path prefix, got 3"),
        ("cache", "", "`cache` must be False, True"),
        ("drop_remainder", None, "`drop_remainder` must be True or False, got None"),
        ("shuffle_buffer_size", 0, "`shuffle_buffer_size` must be a positive integer, got 0"),
        ("on_bad_image", "ignore", "`on_bad_image` must be 'raise' or 'skip', got 'ignore'"),
        ("bad_image_report", 5, r"`bad_image_report` must be a file path .* got 5"),
        ("validate_images", "no", "`validate_images` must be True or False, got 'no'"),
        ("confine_to_image_root", 1, "`confine_to_image_root` must be True or False, got 1"),
    ],
)
def test_each_check_names_the_field_and_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        LoaderOptions(**{field: value})
    # dataclasses.replace checks again.
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(LoaderOptions(), **{field: value})


def test_values_are_normalised():
    options = LoaderOptions(
        image_size=[np.int64(8), 6],
        batch_size=np.int32(4),
        shuffle=np.bool_(True),
        seed=np.int64(3),
        cache=pathlib.Path("/tmp/prefix"),
        bad_image_report=pathlib.Path("/tmp/report.csv"),
    )
    assert options.image_size == (8, 6) and type(options.image_size[0]) is int
    assert type(options.batch_size) is int and type(options.seed) is int
    assert options.shuffle is True
    assert options.cache == "/tmp/prefix" and options.bad_image_report == "/tmp/report.csv"
    assert LoaderOptions(cache=None).cache is False
    assert LoaderOptions(cache=True).cache is True
    assert dataclasses.replace(options) == options


def test_frozen_and_keyword_only():
    options = LoaderOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 8
    with pytest.raises(TypeError):
        LoaderOptions((32, 32))


@pytest.mark.parametrize("loader, source", LOADERS, ids=lambda item: getattr(item, "__name__", ""))
def test_unknown_keyword_is_a_type_error_listing_the_names(loader, source):
    with pytest.raises(TypeError) as raised:
        loader(*source, image_sise=(8, 8))
    message = str(raised.value)
    assert message.startswith(
        f"{loader.__name__}() got an unexpected keyword argument 'image_sise'; valid keyword "
        "arguments are "
    )
    assert "image_size" in message and "options" in message and "confine_to_image_root" in message
    with pytest.raises(ValueError, match="`options` must be a calibkeras.data.LoaderOptions"):
        loader(*source, options={"batch_size": 2})
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        loader(*source, options=LoaderOptions(), batch_size=0)


@pytest.mark.parametrize(
    "loader, source, field, value",
    [
        (dataset_from_csv, ("nowhere.csv",), "shuffle_buffer_size", 100),
        (dataset_from_dataframe, (pd.DataFrame(),), "shuffle_buffer_size", 100),
        (dataset_from_directory, ("nowhere",), "shuffle_buffer_size", 100),
        (dataset_from_directory, ("nowhere",), "confine_to_image_root", True),
        (dataset_from_tfds, ("tf_flowers",), "on_bad_image", "skip"),
        (dataset_from_tfds, ("tf_flowers",), "bad_image_report", "report.csv"),
        (dataset_from_tfds, ("tf_flowers",), "validate_images", False),
        (dataset_from_tfds, ("tf_flowers",), "confine_to_image_root", True),
        (load_food10, ("val",), "shuffle_buffer_size", 100),
    ],
)
def test_unsupported_options_are_refused(loader, source, field, value):
    message = rf"`{field}` is not supported by {loader.__name__}\(\), got {value!r}: .*default"
    with pytest.raises(ValueError, match=message):
        loader(*source, **{field: value})
    with pytest.raises(ValueError, match=message):
        loader(*source, options=LoaderOptions(**{field: value}))


def assert_same_data(keywords, options):
    """Both `LabeledDataset`s hold the same metadata and yield the same batches."""
    for name in ("class_names", "file_paths", "batch_size", "image_size", "sampling"):
        assert getattr(keywords, name) == getattr(options, name)
    for name in ("class_counts", "prior", "labels"):
        np.testing.assert_array_equal(getattr(keywords, name), getattr(options, name))
    batches = zip(keywords.dataset.take(3), options.dataset.take(3), strict=True)
    for (images_a, labels_a), (images_b, labels_b) in batches:
        np.testing.assert_array_equal(images_a.numpy(), images_b.numpy())
        np.testing.assert_array_equal(labels_a.numpy(), labels_b.numpy())


def test_options_plus_overrides(image_table):
    csv_path, _ = image_table
    base = LoaderOptions(image_size=(8, 8), batch_size=2)
    data = dataset_from_csv(csv_path, options=base, batch_size=3, shuffle=True, seed=1)
    assert data.batch_size == 3 and data.image_size == (8, 8)
    assert base.batch_size == 2 and base.shuffle is False
    reference = dataset_from_csv(csv_path, image_size=(8, 8), batch_size=3, shuffle=True, seed=1)
    assert_same_data(reference, data)


def test_csv_and_dataframe_loaders_accept_options(image_table):
    csv_path, _ = image_table
    keywords = {"image_size": (8, 8), "batch_size": 3, "sampling": "balanced", "seed": 2}
    options = LoaderOptions(**keywords)
    assert_same_data(
        dataset_from_csv(csv_path, **keywords), dataset_from_csv(csv_path, options=options)
    )
    frame = pd.read_csv(csv_path)
    assert_same_data(
        dataset_from_dataframe(frame, image_root=csv_path.parent, **keywords),
        dataset_from_dataframe(frame, image_root=csv_path.parent, options=options),
    )


def test_directory_loader_accepts_options(image_table):
    folder = image_table[0].parent / "images"
    keywords = {"image_size": (4, 4), "batch_size": 2, "cache": True, "drop_remainder": True}
    assert_same_data(
        dataset_from_directory(folder, **keywords),
        dataset_from_directory(folder, options=LoaderOptions(**keywords)),
    )


def test_tfds_loader_accepts_options():
    import tensorflow_datasets as tfds

    keywords = {"image_size": (8, 8), "batch_size": 8, "shuffle": True, "seed": 4}
    with tfds.testing.mock_data(num_examples=20):
        keyword_data = dataset_from_tfds("tf_flowers", **keywords, shuffle_buffer_size=5)
        options = LoaderOptions(**keywords, shuffle_buffer_size=5)
        assert_same_data(keyword_data, dataset_from_tfds("tf_flowers", options=options))


def test_food10_accepts_options_and_keeps_its_image_size():
    keywords = {"image_size": (32, 32), "batch_size": 4, "validate_images": False}
    assert_same_data(
        load_food10("val", **keywords), load_food10("val", options=LoaderOptions(**keywords))
    )
    assert load_food10("val", validate_images=False).image_size == (160, 160)
    # An options object is used as it is, with its own image_size.
    options = LoaderOptions(validate_images=False)
    assert load_food10("val", options=options).image_size == (224, 224)
