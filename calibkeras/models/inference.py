"""Running a trained classifier once and re-using its balanced logits."""

import numpy as np
from keras import ops

from calibkeras._batches import predict_with_labels
from calibkeras.layers import PriorShift
from calibkeras.layers.prior_shift import check_data_classes
from calibkeras.models.classifier import TEMPERATURE_LAYER, logits_model


def predict_balanced_logits(model, data, progress=False):
    """Balanced logits ``f(x)`` and integer labels of labelled data, one pass.

    Args:
        model: a :func:`calibkeras.models.build_classifier` model.
        data: labelled data (a ``LabeledDataset``, a ``tf.data.Dataset`` of
            ``(images, labels)`` or a tuple of arrays).
        progress: show a progress bar.

    Returns:
        ``(logits, labels)``: float32 ``(N, K)`` and int ``(N,)``.

    Raises:
        ValueError: if ``data`` is a ``LabeledDataset`` whose class list is not the
            model's (PriorShift ``class_names``), in the same order.
    """
    check_data_classes(model, data, "data")
    return predict_with_labels(logits_model(model), data, progress=progress)


def posterior_probabilities(model, balanced_logits, prior, calibrated=True):
    """``softmax(f / T + log(prior))`` through the model's own layers.

    The model's TemperatureScaling layer divides (skipped with ``calibrated=False``,
    i.e. ``T = 1``) and a PriorShift layer holding ``prior`` adds ``log(prior)``, so
    re-weighting to another prior costs no new pass through the backbone.

    Args:
        model: the classifier the logits came from.
        balanced_logits: ``(N, K)`` from :func:`predict_balanced_logits`.
        prior: ``K`` probabilities, ``"uniform"``, or ``"training"`` (the model's
            PriorShift training prior).
        calibrated: apply the fitted temperature (default True).

    Returns:
        float64 ``(N, K)`` probabilities.
    """
    logits = ops.convert_to_tensor(np.asarray(balanced_logits, dtype="float32"))
    if calibrated:
        logits = model.get_layer(TEMPERATURE_LAYER)(logits)
    source = model.get_layer("prior_shift")
    if isinstance(prior, str) and prior == "training":
        prior = source.training_prior
        if prior is None:
            raise ValueError(
                "`prior` 'training' needs the model's training class counts, but its "
                "PriorShift layer has none"
            )
    shift = PriorShift(prior=prior, num_classes=balanced_logits.shape[1])
    probs = ops.convert_to_numpy(ops.softmax(shift(logits), axis=-1)).astype(np.float64)
    return probs / probs.sum(axis=1, keepdims=True)
