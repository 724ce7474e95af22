"""The functional forms of CalibratedClassifier's inference methods."""

from calibkeras.models.calibrated_classifier import check_calibrated_classifier


def predict_balanced_logits(model, data, progress=False):
    """Balanced logits ``f(x)`` and integer labels of labelled data, one pass.

    :meth:`calibkeras.models.CalibratedClassifier.predict_balanced_logits`.

    Args:
        model: a :class:`calibkeras.models.CalibratedClassifier`.
        data: labelled data (a ``LabeledDataset``, a ``tf.data.Dataset`` of
            ``(images, labels)`` or a tuple of arrays).
        progress: show a progress bar.

    Returns:
        ``(logits, labels)``: float32 ``(N, K)`` and int ``(N,)``.

    Raises:
        ValueError: if ``data`` is a ``LabeledDataset`` whose class list is not the
            model's, in the same order.
    """
    return check_calibrated_classifier(model).predict_balanced_logits(data, progress=progress)


def posterior_probabilities(model, balanced_logits, prior, calibrated=True):
    """``softmax(a * f + b + log(prior))``: re-weighting to a prior costs no backbone pass.

    :meth:`calibkeras.models.CalibratedClassifier.probabilities`.

    Args:
        model: the classifier the logits came from.
        balanced_logits: ``(N, K)`` from :func:`predict_balanced_logits`.
        prior: any specification of :func:`calibkeras.priors.resolve_prior` that needs
            no data (``K`` probabilities, ``"uniform"``, ``"training"``, a mapping).
        calibrated: apply the fitted calibration ``a * f + b`` (default True).

    Returns:
        float64 ``(N, K)`` probabilities.
    """
    return check_calibrated_classifier(model).probabilities(
        balanced_logits, prior, calibrated=calibrated
    )
