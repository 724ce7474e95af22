"""The transfer-learning recipe: head, then the top of the backbone, then the calibration.

These are the steps ``calibkeras train`` runs; each is a public function so the same
recipe can be run, or changed, from Python.
"""

import numbers

import keras
import numpy as np

from calibkeras.calibration import CALIBRATION_METHODS
from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.losses import FocalCrossentropy, LogitAdjustedCrossentropy
from calibkeras.metrics import BalancedAccuracy
from calibkeras.models.calibrated_classifier import check_calibrated_classifier
from calibkeras.priors import prior_from_counts
from calibkeras.utils.checks import check_choice, check_class_counts, check_fraction

#: The training losses the recipe knows.
LOSSES = ("logit_adjusted", "crossentropy", "focal")

#: The calibrations the recipe fits: chosen by cross-validation, or one method.
CALIBRATIONS = ("auto", *CALIBRATION_METHODS)

#: Learning-rate schedules for fine-tuning: constant, or cosine decay to 0 over the epochs.
SCHEDULES = ("constant", "cosine")


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
         callbacks, steps_per_epoch, verbose):
    """Compiles with ``optimizer``, the recipe loss and BalancedAccuracy, then fits."""
    class_counts = check_class_counts(class_counts).tolist()
    model = check_calibrated_classifier(model)
    check_data_classes(model, train_data, "train_data")
    check_data_classes(model, validation_data, "validation_data")
    _check_uniform_prior(model)
    model.compile(
        optimizer=optimizer,
        loss=make_loss(loss, class_counts),
        metrics=[BalancedAccuracy(len(class_counts))],
    )
    return model.fit(
        getattr(train_data, "dataset", train_data),
        epochs=epochs,
        validation_data=getattr(validation_data, "dataset", validation_data),
        callbacks=callbacks,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras cannot shuffle a Dataset
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
    learning_rate=1e-3, callbacks=None, steps_per_epoch=None, verbose=1,
):
    """Trains the head with the backbone frozen (step 1 of the recipe).

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
        steps_per_epoch: needed for infinite (balanced-sampling) datasets.
        verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The Keras ``History``.
    """
    check_calibrated_classifier(model).backbone.trainable = False
    return _fit(model, train_data, class_counts, epochs, validation_data, loss,
                keras.optimizers.Adam(learning_rate), callbacks, steps_per_epoch, verbose)


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
    schedule="constant", ema_momentum=None,
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
    _check_fine_tune_options(schedule, ema_momentum)
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
                callbacks, steps_per_epoch, verbose)


def _check_fine_tune_options(schedule, ema_momentum, prefix=""):
    check_choice(schedule, f"{prefix}schedule", SCHEDULES)
    if ema_momentum is not None and (
        isinstance(ema_momentum, bool)
        or not isinstance(ema_momentum, numbers.Real)
        or not 0 < ema_momentum < 1
    ):
        raise ValueError(
            f"`{prefix}ema_momentum` must be None or a number in (0, 1), such as 0.99; "
            f"got {ema_momentum!r}"
        )


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
    fine_tune_ema_momentum=None, calibration="auto",
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
    _check_fine_tune_options(fine_tune_schedule, fine_tune_ema_momentum, prefix="fine_tune_")
    model = check_calibrated_classifier(model)
    check_data_classes(model, train_data, "train_data")
    check_data_classes(model, validation_data, "validation_data")
    histories = {"head": None, "fine_tune": None}
    if head_epochs:
        histories["head"] = train_head(
            model, train_data, class_counts, head_epochs, validation_data, loss,
            head_learning_rate, callbacks, steps_per_epoch, verbose,
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
            verbose, fine_tune_schedule, fine_tune_ema_momentum,
        )
    if loss != "logit_adjusted":
        remove_training_prior(model, class_counts)
    fit = model.calibrate(validation_data, method=calibration, prior=validation_prior)
    histories["calibration"] = fit
    histories["temperature"] = fit.temperature
    return histories
