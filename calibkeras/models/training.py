"""The transfer-learning recipe: head, then the top of the backbone, then the calibration.

These are the steps ``calibkeras train`` runs; each is a public function so the same
recipe can be run, or changed, from Python.
"""

import numbers
import time

import keras
import numpy as np
import tensorflow as tf  # the cached features become a tf.data.Dataset

from calibkeras.choices import (  # SCHEDULES: re-exported under its old name
    CALIBRATIONS,
    LOSSES,
    SCHEDULES,  # noqa: F401
)
from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.losses import FocalCrossentropy, LogitAdjustedCrossentropy
from calibkeras.metrics import BalancedAccuracy
from calibkeras.models.calibrated_classifier import check_calibrated_classifier
from calibkeras.priors import prior_from_counts
from calibkeras.utils.checks import (
    check_choice,
    check_class_counts,
    check_fine_tune_options,
    check_fraction,
)

#: Augmented views of the training data whose backbone features the head phase caches
#: (``train_head(feature_views=...)``, ``fit_calibrated(head_feature_views=...)``).
HEAD_FEATURE_VIEWS = 2


def make_loss(loss, class_counts):
    """The Keras loss for a recipe loss name; all take the model's logits.

    ``"logit_adjusted"`` learns balanced logits directly; ``"crossentropy"`` and
    ``"focal"`` learn logits under the training prior, which
    :func:`remove_training_prior` turns into balanced logits after training.
    """
    check_choice(loss, "loss", LOSSES)
    if loss == "logit_adjusted":
        return LogitAdjustedCrossentropy(class_counts=class_counts)
    if loss == "focal":
        return FocalCrossentropy(gamma=2.0)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit(model, train_data, class_counts, epochs, validation_data, loss, optimizer,
         callbacks, steps_per_epoch, verbose, jit_compile="auto"):
    """Compiles with ``optimizer``, the recipe loss and BalancedAccuracy, then fits."""
    class_counts = _check_fit_arguments(model, train_data, class_counts, validation_data)
    _compile(model, optimizer, loss, class_counts, jit_compile)
    return model.fit(
        getattr(train_data, "dataset", train_data),
        epochs=epochs,
        validation_data=getattr(validation_data, "dataset", validation_data),
        callbacks=callbacks,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras cannot shuffle a Dataset
    )


def _check_fit_arguments(model, train_data, class_counts, validation_data):
    """The checks before any training; returns ``class_counts`` as a list."""
    class_counts = check_class_counts(class_counts).tolist()
    model = check_calibrated_classifier(model)
    check_data_classes(model, train_data, "train_data")
    check_data_classes(model, validation_data, "validation_data")
    _check_uniform_prior(model)
    return class_counts


def _compile(model, optimizer, loss, class_counts, jit_compile):
    """``model.compile`` with the recipe loss and BalancedAccuracy."""
    model.compile(
        optimizer=optimizer,
        loss=make_loss(loss, class_counts),
        metrics=[BalancedAccuracy(len(class_counts))],
        jit_compile=jit_compile,
    )


def _check_uniform_prior(model):
    prior = model.prior_shift.prior
    if not np.allclose(prior, prior[0]):
        raise ValueError(
            "the model's PriorShift layer must hold the uniform prior while training (the "
            f"head learns balanced logits), got {np.round(prior, 4).tolist()}; call "
            "model.set_prior('uniform') first"
        )


def train_head(
    model, train_data, class_counts, epochs, validation_data=None, loss="logit_adjusted",
    learning_rate=1e-3, callbacks=None, steps_per_epoch=None, verbose=1, *,
    feature_views=HEAD_FEATURE_VIEWS, jit_compile="auto",
):
    """Trains the head with the backbone frozen (step 1 of the recipe).

    The backbone is frozen and called with ``training=False``, so what the head sees
    of an image is a fixed function of the (augmented) pixels. By default
    (``feature_views=2``) that function is computed once: the backbone (and pooling)
    features of ``feature_views`` passes over ``train_data`` are cached, each pass
    drawing its own augmentation when the pipeline augments (``augment=True``), and
    the head (the model's own dropout and Dense layers, then its calibration and
    prior shift, so the loss is the one ``model.fit`` computes) is fitted on them with
    the same loss, optimizer, class counts and metrics, in batches of the training
    data's size, reshuffled on every pass over the cache. An epoch is as many
    batches as one pass over ``train_data`` (``steps_per_epoch`` if given), as
    without the cache, so epochs, learning rates and callbacks mean the same; the
    validation data (plain, one pass) are cached too. On food10 with Lite0 at 224 px
    on 2 CPU cores (BENCHMARKS.md, "Training speed") the 5-epoch head phase takes
    9.0 s instead of 23.7 s for 256 images, the features included (2.6 times
    faster; the more epochs, the larger the gain); the demo with it scored as well as
    the demos before it (one run, BENCHMARKS.md).
    ``feature_views=None`` runs ``model.fit`` over the images in every epoch
    instead, drawing a new augmentation each epoch (as calibkeras 0.1 did).

    Memory: the cache holds ``feature_views x N x F`` float32 numbers (``F`` = 1280
    for EfficientNet-Lite0 and -B0: 10 MB for 1,000 images and 2 views, 1 GB for
    100,000), plus a copy in the tf.data pipeline; with a balanced (infinite)
    dataset ``N`` is ``steps_per_epoch x batch size``. A pipeline that does not
    augment gives the same features on every pass: use ``feature_views=1`` there.

    Callbacks work as with ``model.fit``: their ``self.model`` is ``model`` itself
    (compiled with the head's optimizer, loss and metrics), whose head is the layer
    being trained, and ``self.model.stop_training`` stops the head phase. The logs
    they receive (``loss``, ``balanced_accuracy``, ``val_*``) are those of the head on
    the cached features, and the returned ``History.model`` is the internal head
    model (features to the model's outputs), not ``model``.

    Args:
        model: a model from :func:`calibkeras.models.build_classifier` whose prior is
            uniform.
        train_data: a ``tf.data.Dataset`` of ``(images, labels)`` batches (or a
            calibkeras ``LabeledDataset``).
        class_counts: ``K`` class counts of the batches the model sees (the sampling
            prior; ``LabeledDataset.class_counts`` for natural sampling).
        epochs: number of epochs.
        validation_data: optional data for Keras' validation loss.
        loss: ``"logit_adjusted"`` (default), ``"crossentropy"`` or ``"focal"``.
        learning_rate: Adam learning rate (default 1e-3).
        callbacks: optional Keras callbacks.
        steps_per_epoch: needed for infinite (balanced-sampling) datasets; with the
            cache, also the batches of each pass that is cached.
        verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        feature_views: a positive integer (default 2): the passes over
            ``train_data`` whose features are cached; or None: no cache, the backbone
            runs on every image in every epoch.
        jit_compile: ``model.compile``'s ``jit_compile``: ``"auto"`` (default;
            Keras: XLA on a GPU, not on a CPU), True or False. On the 2-core CPU of
            BENCHMARKS.md XLA made the head phase slower (cached: 11.9 s against
            9.0 s; over the images 10 times slower).

    Returns:
        The Keras ``History``.
    """
    feature_views = _check_feature_views(feature_views)
    _check_jit_compile(jit_compile)
    check_calibrated_classifier(model).backbone.trainable = False
    optimizer = keras.optimizers.Adam(learning_rate)
    if feature_views is None:
        return _fit(model, train_data, class_counts, epochs, validation_data, loss,
                    optimizer, callbacks, steps_per_epoch, verbose, jit_compile)
    return _fit_head_on_features(
        model, train_data, class_counts, epochs, validation_data, loss, optimizer,
        callbacks, steps_per_epoch, verbose, feature_views, jit_compile,
    )


def _check_feature_views(feature_views, name="feature_views"):
    """``feature_views`` as None or an int >= 1, else a ValueError naming ``name``."""
    if feature_views is None:
        return None
    if (isinstance(feature_views, (bool, np.bool_))
            or not isinstance(feature_views, numbers.Integral) or feature_views < 1):
        raise ValueError(
            f"`{name}` must be a positive integer (the augmented passes over the "
            f"training data whose backbone features are cached), such as "
            f"{HEAD_FEATURE_VIEWS}, or None (no cache: the backbone runs on every image "
            f"in every epoch); got {feature_views!r}"
        )
    return int(feature_views)


def _check_jit_compile(jit_compile, name="jit_compile"):
    if isinstance(jit_compile, str):
        known = jit_compile == "auto"
    else:
        known = isinstance(jit_compile, (bool, np.bool_))
    if not known:
        raise ValueError(
            f"`{name}` must be 'auto' (Keras' choice: XLA on a GPU, not on a CPU), True "
            f"or False; got {jit_compile!r}"
        )


class _HeadModel(keras.Model):
    """The part of a CalibratedClassifier after the (pooled) backbone features.

    ``features -> head_dropout -> head -> calibration -> prior_shift``: the classifier's
    own layers (no copies), so training this model trains the classifier's head, and
    its output for the features of an image is the classifier's output for the image.
    """

    def __init__(self, classifier):
        super().__init__(name=f"{classifier.name}_head")
        self.head_dropout = classifier.head_dropout
        self.head = classifier.head
        self.calibration = classifier.calibration
        self.prior_shift = classifier.prior_shift

    def call(self, features, training=None):
        logits = self.head(self.head_dropout(features, training=training))
        return self.prior_shift(self.calibration(logits))


class _ClassifierCallbacks(keras.callbacks.Callback):
    """Runs the user's callbacks with the classifier as their model while the head
    model trains on cached features; their ``stop_training`` stops the head model."""

    def __init__(self, callbacks, classifier):
        super().__init__()
        self.classifier = classifier
        self.callbacks = keras.callbacks.CallbackList(callbacks, model=classifier)

    def set_params(self, params):
        super().set_params(params)
        self.callbacks.set_params(params)

    def on_train_begin(self, logs=None):
        self.classifier.stop_training = False
        self._forward("on_train_begin", logs)

    def _forward(self, hook, *args, **kwargs):
        getattr(self.callbacks, hook)(*args, **kwargs)
        if getattr(self.classifier, "stop_training", False):
            self.model.stop_training = True


def _forwarding(hook):
    """The ``_ClassifierCallbacks`` method that forwards the Keras hook ``hook``."""
    def forward(self, *args, **kwargs):
        self._forward(hook, *args, **kwargs)
    forward.__name__ = hook
    return forward


for _hook in ("on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
              "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin",
              "on_test_batch_end"):
    setattr(_ClassifierCallbacks, _hook, _forwarding(_hook))
del _hook


def head_features(model, data, views=1, steps=None, progress=False):
    """``(features, labels, batch_size)``: what the head of ``model`` sees of ``data``.

    The (pooled) backbone features, in inference mode, of ``views`` passes over
    ``data`` (each pass draws its own augmentation when the pipeline augments),
    concatenated, with the integer labels of the same images in the same order; and
    the largest batch seen.

    Args:
        model: a :class:`CalibratedClassifier`.
        data: labelled data, as for :meth:`CalibratedClassifier.predict_balanced_logits`.
        views: passes over ``data`` (default 1).
        steps: None (default: whole passes), or the batches of each pass (needed for
            an infinite dataset).
        progress: show a progress bar.

    Returns:
        ``features`` float32 ``(M, F)``, ``labels`` int ``(M,)``, ``batch_size`` int.
    """
    from calibkeras.distribute import batch_predictor
    from calibkeras.utils.batches import predict_with_labels

    model = check_calibrated_classifier(model)
    dataset = getattr(data, "dataset", data)
    if isinstance(dataset, tf.data.Dataset):
        if steps is not None:
            dataset = dataset.take(int(steps))
        elif int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(
                "the training dataset is infinite (balanced sampling repeats it), so the "
                "passes whose features are cached need a length: pass `steps_per_epoch` "
                "(for a LabeledDataset, its steps_per_epoch)"
            )
    # The features the head sees: the input of the dropout before the head.
    extractor = keras.Model(model.inputs, model.head_dropout.input,
                            name=f"{model.name}_features")
    predict, sizes = batch_predictor(extractor), []

    def predict_and_count(x):
        sizes.append(int(tf.nest.flatten(x)[0].shape[0]))
        return predict(x)

    passes = [predict_with_labels(predict_and_count, dataset, progress=progress)
              for _ in range(views)]
    features = np.concatenate([f for f, _ in passes]).astype("float32", copy=False)
    labels = np.concatenate([y for _, y in passes])
    return features, labels, max(sizes)


def _fit_head_on_features(model, train_data, class_counts, epochs, validation_data, loss,
                          optimizer, callbacks, steps_per_epoch, verbose, views,
                          jit_compile):
    """The head phase on cached features (see :func:`train_head`)."""
    class_counts = _check_fit_arguments(model, train_data, class_counts, validation_data)
    progress = verbose == 1
    started = time.perf_counter()
    features, labels, batch_size = head_features(model, train_data, views,
                                                 steps_per_epoch, progress)
    # An epoch: the batches of one pass over train_data, as without the cache.
    steps = int(steps_per_epoch or -(-len(labels) // (views * batch_size)))
    train = (tf.data.Dataset.from_tensor_slices((features, labels.astype("int32")))
             .shuffle(len(labels), reshuffle_each_iteration=True).repeat()
             .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    validation = None
    if validation_data is not None:
        val_features, val_labels, _ = head_features(model, validation_data,
                                                    progress=progress)
        validation = tf.data.Dataset.from_tensor_slices(
            (val_features, val_labels.astype("int32"))).batch(batch_size)
    if verbose:
        print(f"head phase: backbone features of {views} pass(es) over the training data "
              f"({len(labels)} feature vectors) cached in "
              f"{time.perf_counter() - started:.0f} s; the head trains on them", flush=True)
    head = _HeadModel(model)
    _compile(head, optimizer, loss, class_counts, jit_compile)
    # The classifier too, with the same optimizer: what callbacks see of it
    # (self.model.optimizer, evaluate) is the head phase.
    _compile(model, optimizer, loss, class_counts, jit_compile)
    if callbacks:
        callbacks = [_ClassifierCallbacks(list(callbacks), model)]
    return head.fit(train, epochs=epochs, steps_per_epoch=steps,
                    validation_data=validation, callbacks=callbacks, verbose=verbose,
                    shuffle=False)  # the features dataset shuffles itself


def unfreeze_top(model, fraction=1.0):
    """Makes the top ``fraction`` of the backbone's layers trainable, BatchNorm excluded.

    BatchNormalization layers stay frozen (and, because the backbone is called with
    ``training=False``, in inference mode), which keeps small-batch fine-tuning stable.

    Returns:
        The number of backbone layers made trainable.
    """
    check_fraction(fraction, "fraction")
    backbone = check_calibrated_classifier(model).backbone
    backbone.trainable = True
    layers = backbone.layers
    first = int(round(len(layers) * (1 - float(fraction))))
    unfrozen = 0
    for index, layer in enumerate(layers):
        trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += bool(trainable and layer.weights)
    return unfrozen


def fine_tune(
    model, train_data, class_counts, epochs, validation_data=None, loss="logit_adjusted",
    learning_rate=1e-4, fraction=1.0, callbacks=None, steps_per_epoch=None, verbose=1,
    schedule="constant", ema_momentum=None, *, jit_compile="auto",
):
    """Fine-tunes the backbone (its top ``fraction``) and the head at a lower rate (step 2).

    Arguments as :func:`train_head`, plus ``fraction`` (share of backbone layers, from
    the top, to train; default 1.0, all but BatchNorm) and a default learning rate of
    1e-4. On food10 (BENCHMARKS.md) the whole backbone at 1e-4 beat the top 30% at
    1e-4 and the top half at 3e-4.

    Args:
        schedule: ``"constant"`` (default) keeps ``learning_rate``; ``"cosine"`` decays
            it to 0 over ``epochs`` (Keras ``CosineDecay``; needs ``steps_per_epoch``
            or a dataset of known length).
        ema_momentum: None (default), or a number in (0, 1): train with Keras' weight
            averaging (Adam ``use_ema``; the average of the weights of every step,
            ``ema_momentum`` per step) and keep the averaged weights. Keras'
            ``SwapEMAWeights`` is put first in ``callbacks``, so validation and the
            callbacks at the end of each epoch (early stopping too) see the averaged
            weights.
    """
    check_fine_tune_options(schedule, ema_momentum)
    if schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, epochs * _steps_per_epoch(train_data, steps_per_epoch)
        )
    callbacks = list(callbacks or [])
    if ema_momentum is not None:
        optimizer = keras.optimizers.Adam(
            learning_rate, use_ema=True, ema_momentum=float(ema_momentum)
        )
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    unfreeze_top(model, fraction)
    return _fit(model, train_data, class_counts, epochs, validation_data, loss, optimizer,
                callbacks, steps_per_epoch, verbose, jit_compile)


def _steps_per_epoch(train_data, steps_per_epoch):
    """Batches per epoch: ``steps_per_epoch`` if given, else the dataset's known length."""
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    dataset = getattr(train_data, "dataset", train_data)
    cardinality = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
    if cardinality <= 0:
        raise ValueError(
            "`schedule='cosine'` needs the number of batches per epoch, and the training "
            f"dataset's length is unknown (cardinality {cardinality}); pass "
            "`steps_per_epoch`"
        )
    return cardinality


def remove_training_prior(model, class_counts):
    """Turns logits learned under the training prior into balanced logits.

    A head trained with plain (or focal) cross-entropy learns
    ``z(x) = f(x) + log(pi_train) + c``; subtracting ``log(pi_train)`` from the bias of
    the head leaves the balanced logits ``f(x)`` (Menon et al. 2021, post-hoc logit
    adjustment). Not needed after the logit-adjusted loss.
    """
    log_prior = np.log(prior_from_counts(check_class_counts(class_counts)))
    dense = check_calibrated_classifier(model).head
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias - log_prior.astype(bias.dtype)])


def fit_calibrated(
    model, train_data, validation_data, class_counts, head_epochs=5, fine_tune_epochs=6,
    loss="logit_adjusted", head_learning_rate=1e-3, fine_tune_learning_rate=1e-4,
    fine_tune_fraction=1.0, callbacks=None, steps_per_epoch=None, validation_prior=None,
    early_stopping_patience=2, verbose=1, fine_tune_schedule="constant",
    fine_tune_ema_momentum=None, calibration="auto", *,
    head_feature_views=HEAD_FEATURE_VIEWS, jit_compile="auto",
):
    """The whole recipe: head, fine-tune, remove the training prior, fit the calibration.

    After it, the model's balanced logits are calibrated: the calibration
    (``calibration``: ``"auto"``, the default, picks temperature, bias-corrected or
    vector scaling by cross-validated NLL; or name one) is the exact NLL optimum on
    ``validation_data`` under ``validation_prior``. The PriorShift layer is
    left at the uniform prior; set it to the deployment prior you expect.

    ``class_counts`` are the counts behind the prior of the *batches* (what the loss
    and :func:`remove_training_prior` need; uniform for balanced sampling), while
    ``validation_prior`` defaults to the training prior held by the model's
    PriorShift layer (``build_classifier(class_counts=...)``, the natural class
    counts), i.e. the validation data are assumed drawn like the training data.

    Fine-tuning a backbone on a small data set overfits within a few epochs, so with
    ``early_stopping_patience`` (default 2; None turns it off) fine-tuning stops when
    the validation loss (a proper score: the NLL under the training prior) has not
    improved for that many epochs, and the best epoch's weights are restored.
    ``fine_tune_schedule`` and ``fine_tune_ema_momentum`` are :func:`fine_tune`'s
    ``schedule`` and ``ema_momentum`` (checked before any training); with weight
    averaging, early stopping judges and restores the averaged weights. On food10 at
    256 px, 12 fine-tuning epochs with the cosine schedule, weight averaging at 0.99 and
    ``build_augmentation(zoom=0.4)`` beat the defaults (one run each; BENCHMARKS.md).

    ``head_feature_views`` is :func:`train_head`'s ``feature_views``: by default the
    head trains on the cached backbone features of 2 augmented passes over
    ``train_data`` (None: over the images in every epoch); callbacks see ``model`` in
    both phases. ``jit_compile`` goes to ``model.compile`` in both phases (default
    ``"auto"``: Keras' choice, XLA on a GPU, not on a CPU; on the 2-core CPU of
    BENCHMARKS.md XLA made fine-tuning about 12 times slower).

    ``train_data`` and ``validation_data`` given as ``LabeledDataset`` must have the
    model's class list, in its order (``check_data_classes``); a mismatch raises
    ``ValueError`` before any training.

    Returns:
        A dict with ``head`` and ``fine_tune`` (Keras ``History`` objects or None when
        the epochs are 0), ``calibration`` (the
        :class:`calibkeras.calibration.CalibrationFit`) and ``temperature`` (float).
    """
    check_choice(loss, "loss", LOSSES)
    check_choice(calibration, "calibration", CALIBRATIONS)
    check_fine_tune_options(fine_tune_schedule, fine_tune_ema_momentum, prefix="fine_tune_",
                            early_stopping_patience=early_stopping_patience)
    head_feature_views = _check_feature_views(head_feature_views, "head_feature_views")
    _check_jit_compile(jit_compile)
    model = check_calibrated_classifier(model)
    check_data_classes(model, train_data, "train_data")
    check_data_classes(model, validation_data, "validation_data")
    histories = {"head": None, "fine_tune": None}
    if head_epochs:
        histories["head"] = train_head(
            model, train_data, class_counts, head_epochs, validation_data, loss,
            head_learning_rate, callbacks, steps_per_epoch, verbose,
            feature_views=head_feature_views, jit_compile=jit_compile,
        )
    if fine_tune_epochs:
        fine_tune_callbacks = list(callbacks or [])
        if early_stopping_patience is not None:
            fine_tune_callbacks.append(keras.callbacks.EarlyStopping(
                "val_loss", mode="min", patience=early_stopping_patience,
                restore_best_weights=True, verbose=int(bool(verbose)),
            ))
        histories["fine_tune"] = fine_tune(
            model, train_data, class_counts, fine_tune_epochs, validation_data, loss,
            fine_tune_learning_rate, fine_tune_fraction, fine_tune_callbacks, steps_per_epoch,
            verbose, fine_tune_schedule, fine_tune_ema_momentum, jit_compile=jit_compile,
        )
    if loss != "logit_adjusted":
        remove_training_prior(model, class_counts)
    fit = model.calibrate(validation_data, method=calibration, prior=validation_prior)
    histories["calibration"] = fit
    histories["temperature"] = fit.temperature
    return histories
