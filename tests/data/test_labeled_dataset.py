import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from calibkeras.data import LabeledDataset


def make(**overrides):
    fields = dict(
        dataset=tf.data.Dataset.range(1),
        class_names=["a", "b"],
        class_counts=[3, 1],
        prior=[0.75, 0.25],
        file_paths=["x", "y", "z", "w"],
        labels=[0, 0, 0, 1],
        num_examples=4,
        batch_size=3,
        image_size=[8, 8],
        sampling="natural",
    )
    fields.update(overrides)
    return LabeledDataset(**fields)


def test_fields_are_frozen_and_arrays_read_only():
    data = make()
    assert data.class_names == ("a", "b") and data.image_size == (8, 8)
    assert data.num_classes == 2 and data.steps_per_epoch == 2
    np.testing.assert_allclose(data.natural_prior, [0.75, 0.25])
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.prior = None
    with pytest.raises(ValueError):
        data.class_counts[0] = 5
    assert data.labels.dtype == np.int32 and data.class_counts.dtype == np.int64


def test_shapes_must_match_class_names():
    with pytest.raises(ValueError, match=r"must have shape \(2,\)"):
        make(prior=[1.0])
