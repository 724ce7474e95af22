"""Options of the recipe: the head on cached features, XLA, cosine schedule and weight
averaging."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from calibkeras.data import LabeledDataset, build_augmentation
from calibkeras.data.sampling import sample_balanced
from calibkeras.models import build_classifier, fine_tune, fit_calibrated, train_head, training
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
        ({"early_stopping_patience": 1.5},
         r"`early_stopping_patience` must be an integer >= 0 or None \(no early stopping\), "
         r"got 1.5"),
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


# ------------------------------------------------------- the head on cached features


def _numpy_head_loss(model, images, labels, counts):
    """The logit-adjusted loss of the head, written out in NumPy from the backbone's
    feature map: mean pooling, Dense, + log(uniform prior), + log(training prior)."""
    features = model.backbone.predict(images, verbose=0).mean(axis=(1, 2))
    kernel, bias = model.head.get_weights()
    logits = features @ kernel + bias + np.log(1 / 3) + np.log(counts / counts.sum())
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return features, float(np.mean(log_norm - logits[np.arange(len(labels)), labels]))


def _images_and_labels(dataset):
    pairs = list(dataset.unbatch().as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])


def test_cached_head_gives_the_uncached_loss_and_the_numpy_loss(data):
    dataset, counts = data
    model = classifier(counts, dropout=0.0)
    images, labels = _images_and_labels(dataset)
    features, expected = _numpy_head_loss(model, images, labels, counts)
    cached, cached_labels, batch_size = training.head_features(model, dataset)
    np.testing.assert_allclose(cached, features, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cached_labels, labels)
    assert batch_size == 16
    # Learning rate 0: the weights stay, so the epoch's loss is the loss at epoch 0
    # (one view of 48 images: the 3 batches of the epoch are one pass over the cache).
    losses = {
        views: train_head(model, dataset, counts, 1, learning_rate=0.0, verbose=0,
                          feature_views=views).history["loss"][0]
        for views in (1, None)
    }
    assert losses[1] == pytest.approx(expected, rel=1e-5)
    assert losses[None] == pytest.approx(expected, rel=1e-5)


def test_cached_head_trains_the_models_own_head_and_leaves_the_backbone(data):
    dataset, counts = data
    model = classifier(counts)  # conv, batch norm, ReLU: moving statistics must stay
    kernel, backbone = model.head.kernel.numpy(), model.backbone.get_weights()
    history = train_head(model, dataset, counts, 2, validation_data=dataset,
                         learning_rate=1e-2, verbose=0)  # the default: 2 cached views
    assert history.model.head is model.head
    assert history.model.head_dropout is model.head_dropout
    assert not np.allclose(model.head.kernel.numpy(), kernel)
    for before, after in zip(backbone, model.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(after, before)
    assert int(model.optimizer.iterations) == 2 * 3  # an epoch: one pass's 3 batches
    assert set(history.history) == {"loss", "balanced_accuracy", "val_loss",
                                    "val_balanced_accuracy"}


def test_each_cached_view_is_a_pass_with_its_own_augmentation(data):
    dataset, counts = data
    model = classifier(counts)
    # The loaders' augmentation: its random state advances from pass to pass, whatever
    # the global seed (a plain tf.random op in a map replays its values on each pass
    # when a global seed is set).
    augmentation = build_augmentation(seed=0)
    augmented = dataset.map(lambda x, y: (augmentation(x, training=True), y))
    features, labels, _ = training.head_features(model, augmented, views=2)
    assert features.shape == (96, 8) and labels.shape == (96,)
    np.testing.assert_array_equal(labels[:48], labels[48:])
    assert not np.allclose(features[:48], features[48:])
    plain, _, _ = training.head_features(model, dataset, views=2)
    np.testing.assert_array_equal(plain[:48], plain[48:])


def _balanced(dataset):
    images, labels = _images_and_labels(dataset)
    return sample_balanced([
        tf.data.Dataset.from_tensor_slices((images[labels == k], labels[labels == k]))
        for k in range(3)
    ], seed=0).batch(16)


def test_cached_head_takes_steps_per_epoch_batches_of_balanced_infinite_data(data):
    dataset, counts = data
    balanced, uniform = _balanced(dataset), np.full(3, 16)
    model = classifier(counts)
    features, labels, _ = training.head_features(model, balanced, views=2, steps=2)
    assert features.shape == (2 * 2 * 16, 8)
    history = train_head(model, balanced, uniform, 3, steps_per_epoch=2, verbose=0,
                         feature_views=2)
    assert len(history.history["loss"]) == 3
    assert int(model.optimizer.iterations) == 3 * 2
    with pytest.raises(ValueError, match=r"the training dataset is infinite .* pass "
                                         r"`steps_per_epoch`"):
        train_head(model, balanced, uniform, 1, verbose=0)


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.models = [self.model]

    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs)
        self.model.stop_training = True


def test_callbacks_see_the_classifier_and_can_stop_the_cached_head(data):
    dataset, counts = data
    model = classifier(counts)
    stop, kernels = StopAfterFirstEpoch(), RecordKernel()
    history = train_head(model, dataset, counts, 5, validation_data=dataset, verbose=0,
                         callbacks=[stop, kernels])
    assert stop.models == [model]
    assert len(history.history["loss"]) == 1
    assert {"loss", "val_loss"} <= set(stop.logs)
    assert len(kernels.kernels) == 1 + 3  # get_layer("logits") of the classifier
    np.testing.assert_array_equal(kernels.kernels[-1], model.head.kernel.numpy())


def test_jit_compile_reaches_model_compile(data):
    dataset, counts = data
    model = classifier(counts)
    history = train_head(model, dataset, counts, 1, verbose=0, jit_compile=True)
    assert history.model.jit_compile is True and model.jit_compile is True
    fine_tune(model, dataset, counts, 1, verbose=0, jit_compile=False)
    assert model.jit_compile is False


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_bad_feature_views_are_refused_before_training(data, value):
    dataset, counts = data
    model = classifier(counts)
    kernel = model.head.kernel.numpy()
    message = (r"must be a positive integer \(the augmented passes over the training "
               r"data whose backbone features are cached\), such as 2, or None \(no "
               r"cache: the backbone runs on every image in every epoch\); got "
               + re.escape(repr(value)))
    with pytest.raises(ValueError, match="`head_feature_views` " + message):
        fit_calibrated(model, dataset, dataset, counts, head_epochs=1, verbose=0,
                       head_feature_views=value)
    with pytest.raises(ValueError, match="`feature_views` " + message):
        train_head(model, dataset, counts, 1, verbose=0, feature_views=value)
    np.testing.assert_array_equal(model.head.kernel.numpy(), kernel)


def test_bad_jit_compile_is_refused(data):
    dataset, counts = data
    model = classifier(counts)
    with pytest.raises(ValueError, match=r"`jit_compile` must be 'auto' \(Keras' choice: "
                                         r"XLA on a GPU, not on a CPU\), True or False; "
                                         r"got 'yes'"):
        fit_calibrated(model, dataset, dataset, counts, verbose=0, jit_compile="yes")
