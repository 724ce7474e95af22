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


def test_keras_fit_refuses_it_saying_to_pass_its_dataset(tmp_path, write_image):
    # Keras 3 takes a tf.data.Dataset, not a LabeledDataset; its "Unrecognized data type"
    # error shows the object's repr, which names `.dataset`, and `.dataset` trains.
    import keras
    from tiny_models import tiny_classifier

    from calibkeras.data import dataset_from_directory
    from calibkeras.losses import LogitAdjustedCrossentropy

    for k, name in enumerate(["cat", "dog", "cat", "eel", "dog", "cat"]):
        write_image(tmp_path / "d" / name / f"{k}.png", seed=k, size=(16, 16))
    train = dataset_from_directory(tmp_path / "d", image_size=(16, 16), batch_size=4)
    model = tiny_classifier(num_classes=3, class_counts=train.class_counts,
                            class_names=train.class_names)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=LogitAdjustedCrossentropy(train.class_counts))
    expected = ("Unrecognized data type: x=LabeledDataset(6 images, 3 classes ('cat', 'dog', "
                "'eel'), batch_size=4, image_size=(16, 16), sampling='natural'; Keras' fit, "
                "evaluate and predict take its `.dataset`, a tf.data.Dataset: "
                "model.fit(train.dataset, validation_data=val.dataset))")
    with pytest.raises(ValueError) as error:
        model.fit(train, epochs=1, verbose=0)
    assert str(error.value).startswith(expected)
    with pytest.raises(ValueError, match=r"take its `\.dataset`"):
        model.fit(train.dataset, validation_data=train, epochs=1, verbose=0, shuffle=False)
    history = model.fit(train.dataset, validation_data=train.dataset, epochs=1, verbose=0,
                        shuffle=False)
    assert np.isfinite(history.history["val_loss"][0])
