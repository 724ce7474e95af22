"""Fine-tuning options of the recipe: cosine schedule and weight averaging."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from calibkeras.data import LabeledDataset
from calibkeras.models import build_classifier, fine_tune, fit_calibrated, train_head
from calibkeras.models.inference import predict_balanced_logits


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=48, p=[0.5, 0.3, 0.2])
    images = rng.uniform(0, 255, size=(48, 32, 32, 3)).astype("float32")
    images[labels == 1, :, :, 0] = 255.0
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    return dataset, np.bincount(labels, minlength=3)


def classifier(counts, **kwargs):
    """The classifier on a tiny backbone (conv, batch norm, ReLU): these tests are about
    the recipe's options, not the backbone (tests/models/test_classifier.py runs the
    recipe on EfficientNet-Lite0)."""
    backbone = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 3),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
    ])
    return build_classifier(3, backbone=backbone, weights=None, image_size=32,
                            class_counts=counts, **kwargs)


class RecordKernel(keras.callbacks.Callback):
    """The head's kernel after every optimizer step, and before the first."""

    def on_train_begin(self, logs=None):
        self.kernels = [self.model.get_layer("logits").kernel.numpy()]

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(self.model.get_layer("logits").kernel.numpy())


@pytest.mark.filterwarnings("ignore:fit_temperature")  # random toy images: T is huge
def test_weight_averaging_keeps_the_moving_average_of_every_step(data):
    dataset, counts = data
    model = classifier(counts)
    record = RecordKernel()
    fit_calibrated(model, dataset, dataset, counts, head_epochs=0, fine_tune_epochs=2,
                   fine_tune_ema_momentum=0.8, early_stopping_patience=None,
                   fine_tune_learning_rate=1e-2, callbacks=[record], verbose=0)
    assert len(record.kernels) == 1 + 2 * 3  # 2 epochs of 3 batches
    average = record.kernels[1]  # Keras starts the average at the first step's weights
    for kernel in record.kernels[2:]:  # Polyak averaging, written out
        average = 0.8 * average + 0.2 * kernel
    final = model.get_layer("logits").kernel.numpy()
    np.testing.assert_allclose(final, average, rtol=1e-4, atol=1e-6)
    assert not np.allclose(final, record.kernels[-1], atol=1e-6)


class RecordEpochs(keras.callbacks.Callback):
    """The validation loss and the head's kernel at the end of every epoch."""

    def on_train_begin(self, logs=None):
        self.val_losses, self.kernels = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.val_losses.append(logs["val_loss"])
        self.kernels.append(self.model.get_layer("logits").kernel.numpy())


@pytest.mark.filterwarnings("ignore:fit_temperature")
def test_early_stopping_judges_and_restores_the_averaged_weights(data):
    dataset, counts = data
    model = classifier(counts)
    record, kernels = RecordEpochs(), RecordKernel()
    fit_calibrated(model, dataset, dataset, counts, head_epochs=0, fine_tune_epochs=4,
                   fine_tune_ema_momentum=0.5, early_stopping_patience=1,
                   fine_tune_learning_rate=3e-2, callbacks=[record, kernels], verbose=0)
    # At the end of every epoch the model holds the average of the steps so far.
    average = kernels.kernels[1]
    for step, kernel in enumerate(kernels.kernels[2:], start=2):
        average = 0.5 * average + 0.5 * kernel
        if step % 3 == 0:
            np.testing.assert_allclose(record.kernels[step // 3 - 1], average, rtol=1e-4,
                                       atol=1e-6)
    best = int(np.argmin(record.val_losses))
    np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), record.kernels[best])


def test_cosine_schedule_decays_to_zero_over_the_epochs(data):
    dataset, counts = data
    model = classifier(counts)
    fine_tune(model, dataset, counts, 2, schedule="cosine", learning_rate=1e-3, verbose=0)
    assert int(model.optimizer.iterations) == 6
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)
    schedule = model.optimizer._learning_rate
    assert float(schedule(3)) == pytest.approx(0.5e-3, rel=1e-6)  # half way: half the rate


def test_cosine_schedule_needs_the_epoch_length(data):
    dataset, counts = data
    model = classifier(counts)
    with pytest.raises(ValueError, match=r"pass `steps_per_epoch`"):
        fine_tune(model, dataset.repeat(), counts, 1, schedule="cosine", verbose=0)
    fine_tune(model, dataset.repeat(), counts, 1, schedule="cosine", steps_per_epoch=2,
              verbose=0)
    assert int(model.optimizer.iterations) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fine_tune_schedule": "linear"},
         r"`fine_tune_schedule` must be one of 'constant', 'cosine'; got 'linear'"),
        ({"fine_tune_ema_momentum": 1.0},
         r"`fine_tune_ema_momentum` must be None or a number in \(0, 1\), such as 0.99; "
         r"got 1.0"),
        ({"fine_tune_ema_momentum": True}, r"`fine_tune_ema_momentum` must be None"),
    ],
)
def test_bad_options_fail_before_any_training(data, kwargs, message):
    dataset, counts = data
    model = classifier(counts)
    kernel = model.get_layer("logits").kernel.numpy()
    with pytest.raises(ValueError, match=message):
        fit_calibrated(model, dataset, dataset, counts, head_epochs=1, verbose=0, **kwargs)
    np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), kernel)


# ------------------------------------------------ data whose classes are not the model's

NAMES = ("cake", "soda", "soup")


def _labeled(dataset, counts, class_names):
    return LabeledDataset(
        dataset=dataset, class_names=class_names, class_counts=counts,
        prior=counts / counts.sum(), file_paths=(), labels=np.zeros(0, np.int32),
        num_examples=int(counts.sum()), batch_size=16, image_size=(32, 32),
        sampling="natural",
    )


@pytest.mark.parametrize(
    "which, names, message",
    [
        ("validation", ("soda", "cake", "soup"),
         r"`validation_data` has the classes \['soda', 'cake', 'soup'\] but the model's "
         r"classes are \['cake', 'soda', 'soup'\] \(the same names in another order"),
        ("train", ("cake", "soda", "tea"),
         r"`train_data` has the classes \['cake', 'soda', 'tea'\] but the model's classes "
         r"are \['cake', 'soda', 'soup'\] \(other names; id 2 is 'tea'"),
    ],
)
def test_fit_calibrated_refuses_data_with_other_classes_before_training(
    data, which, names, message
):
    dataset, counts = data
    model = classifier(counts, class_names=NAMES)
    kernel = model.get_layer("logits").kernel.numpy()
    good, bad = _labeled(dataset, counts, NAMES), _labeled(dataset, counts, names)
    train, validation = (good, bad) if which == "validation" else (bad, good)
    with pytest.raises(ValueError, match=message):
        fit_calibrated(model, train, validation, counts, head_epochs=1, fine_tune_epochs=1,
                       verbose=0)
    with pytest.raises(ValueError, match=message):
        train_head(model, train, counts, 1, validation_data=validation, verbose=0)
    np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy(), kernel)
    assert model.calibration.method == "none"  # not fitted


def test_predict_balanced_logits_refuses_data_with_other_classes(data):
    dataset, counts = data
    model = classifier(counts, class_names=NAMES)
    with pytest.raises(
        ValueError, match=r"`data` has the classes \['soup', 'soda', 'cake'\] but the model's"
    ):
        predict_balanced_logits(model, _labeled(dataset, counts, ("soup", "soda", "cake")))
    logits, labels = predict_balanced_logits(model, _labeled(dataset, counts, NAMES))
    assert logits.shape == (48, 3) and labels.shape == (48,)
