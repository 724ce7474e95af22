"""Evaluation summary of a probabilistic classifier: one JSON-ready dict and a text table."""

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from calibkeras.calibration import SCORE_NAMES, calibration_errors, calibration_test
from calibkeras.utils.checks import (
    check_class_names,
    check_labels,
    check_positive_float,
    check_prior,
    check_probabilities,
)
from calibkeras.utils.deprecation import labels_first

#: Keys of the consistency-resampling result kept in a summary.
CALIBRATION_TEST_KEYS = ("ece", "ece_perfect_mean", "ece_perfect_p90", "p_value", "n_resamples")

#: Rows of the text and HTML tables: (summary key, label, "lower"/"higher" is better).
METRIC_ROWS = (
    ("nll", "NLL", "lower"),
    ("brier", "Brier score", "lower"),
    ("ece", "ECE (top-label)", "lower"),
    ("ece_perfect_mean", "  ECE if perfectly calibrated", "reference"),
    ("p_value", "  p-value (calibrated?)", "reference"),
    ("classwise_ece", "classwise ECE", "lower"),
    ("adaptive_ece", "adaptive ECE", "lower"),
    ("mce", "MCE", "lower"),
    ("accuracy", "accuracy", "higher"),
    ("balanced_accuracy", "balanced accuracy", "higher"),
    ("macro_f1", "macro F1", "higher"),
)


def _scores(probs, labels, num_bins, n_resamples, seed):
    errors = calibration_errors(labels, probs, num_bins=num_bins)
    test = calibration_test(labels, probs, num_bins=num_bins, n_resamples=n_resamples, seed=seed)
    scores = {name: float(errors[name]) for name in SCORE_NAMES}
    scores["calibration_test"] = {
        key: (int(test[key]) if key == "n_resamples" else float(test[key]))
        for key in CALIBRATION_TEST_KEYS
    }
    return scores


@labels_first()
def evaluation_summary(
    labels,
    probs,
    class_names,
    uncalibrated_probs=None,
    prior_used=None,
    temperature=None,
    num_bins=15,
    n_resamples=1000,
    seed=0,
):
    """Scores, per-class precision/recall and the calibration test, as plain JSON data.

    The metrics are those of :func:`calibkeras.calibration.calibration_errors` (their
    definitions are pinned there: top-label 15-bin L1 ECE, Brier in [0, 2], NLL in
    nats ...), and the ECE comes with its consistency-resampling reference from
    :func:`calibkeras.calibration.calibration_test`: the ECE a perfectly calibrated
    model would show with these confidences on this many samples, and a p-value.

    Args:
        labels: ``(N,)`` integer class ids in ``[0, K)``.
        probs: ``(N, K)`` calibrated probabilities (rows sum to 1).
        class_names: ``K`` class names, in column order.
        uncalibrated_probs: optional ``(N, K)`` probabilities of the same samples before
            calibration (e.g. temperature 1 and the training prior); scored the same way.
        prior_used: optional ``(K,)`` prior the probabilities are conditioned on.
        temperature: optional fitted temperature ``T > 0``.
        num_bins: equal-width bins of the binned errors (default 15).
        n_resamples: resamples of the calibration test (default 1000).
        seed: seed of the calibration test (default 0, so a summary is reproducible).

    Returns:
        A dict of plain floats, ints, strings and lists (``json.dumps`` takes it):
        the scores ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``ece``,
        ``classwise_ece``, ``adaptive_ece``, ``mce``, ``brier``, ``nll``;
        ``calibration_test`` (``ece``, ``ece_perfect_mean``, ``ece_perfect_p90``,
        ``p_value``, ``n_resamples``); ``per_class`` mapping each class name to its
        ``precision``, ``recall``, ``f1`` and ``support`` (argmax predictions; for a
        class absent from ``labels`` the recall is None, and so are its precision
        and F1 unless it is predicted); ``absent_classes`` (names of the classes
        without labels: ``balanced_accuracy`` is the mean recall of the others);
        ``class_names``, ``num_samples``, ``num_bins``, ``prior_used`` (list or None),
        ``temperature`` (float or None) and ``uncalibrated`` (the same scores and
        ``calibration_test`` for ``uncalibrated_probs``, or None).

    Example:
        >>> summary = evaluation_summary(y_test, probs, ["food", "drink", "dessert"],
        ...                              uncalibrated_probs=raw_probs, temperature=1.7)
        >>> print(format_summary_table(summary))
    """
    probs = check_probabilities(probs)
    num_samples, num_classes = probs.shape
    labels = check_labels(labels, num_classes, num_samples)
    class_names = list(check_class_names(class_names, num_classes))
    if prior_used is not None:
        prior_used = check_prior(prior_used, num_classes, name="prior_used").tolist()
    if temperature is not None:
        temperature = check_positive_float(temperature, "temperature")

    summary = _scores(probs, labels, num_bins, n_resamples, seed)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, probs.argmax(axis=1), labels=list(range(num_classes)), zero_division=0
    )
    predicted = np.bincount(probs.argmax(axis=1), minlength=num_classes)
    summary["per_class"] = {
        name: _class_row(precision[k], recall[k], f1[k], support[k], predicted[k])
        for k, name in enumerate(class_names)
    }
    summary.update(
        absent_classes=[name for k, name in enumerate(class_names) if support[k] == 0],
        class_names=class_names,
        num_samples=int(num_samples),
        num_bins=int(num_bins),
        prior_used=prior_used,
        temperature=temperature,
        uncalibrated=None,
    )
    if uncalibrated_probs is not None:
        uncalibrated_probs = check_probabilities(uncalibrated_probs, name="uncalibrated_probs")
        if uncalibrated_probs.shape != probs.shape:
            raise ValueError(
                f"`uncalibrated_probs` must have the shape of `probs` {probs.shape}, got "
                f"{uncalibrated_probs.shape}"
            )
        summary["uncalibrated"] = _scores(uncalibrated_probs, labels, num_bins, n_resamples, seed)
    return summary


def _class_row(precision, recall, f1, support, predicted):
    """One class's row of ``per_class``: None for what its images cannot define (the
    recall of a class absent from the labels; its precision and F1 unless predicted)."""
    present = support > 0
    return {
        "precision": float(precision) if present or predicted else None,
        "recall": float(recall) if present else None,
        "f1": float(f1) if present or predicted else None,
        "support": int(support),
    }


def absent_classes_note(summary):
    """The line that names the classes absent from an evaluation's labels, or None."""
    absent = summary.get("absent_classes") or []
    if not absent:
        return None
    present = len(summary["per_class"]) - len(absent)
    return (f"Not in the labels: {', '.join(absent)} (no recall; balanced accuracy is the "
            f"mean recall of the {present} classes present)")


def _cell(value, width):
    """A per-class number as text, ``-`` for None (undefined)."""
    return f"{value:{width}.4f}" if value is not None else "-".rjust(width)


def p_value_text(p_value, n_resamples):
    """``"0.18"``, or ``"< 0.001"`` when no resample reached the observed ECE."""
    if p_value <= 1.0 / (n_resamples + 1) + 1e-12:
        return f"< {1.0 / n_resamples:.2g}"
    return f"{p_value:.2g}"


def format_p_value(p_value, n_resamples):
    """``"p = 0.18"``, or ``"p < 0.001"`` when no resample reached the observed ECE."""
    text = p_value_text(p_value, n_resamples)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def ece_sentence(test):
    """``"ECE 0.047 (perfectly calibrated at this size: 0.040, p = 0.18)"``.

    Args:
        test: a ``calibration_test`` result (or a summary's ``calibration_test``).
    """
    return (
        f"ECE {test['ece']:.3f} (perfectly calibrated at this size: "
        f"{test['ece_perfect_mean']:.3f}, {format_p_value(test['p_value'], test['n_resamples'])})"
    )


def metric_rows(summary):
    """Rows ``(label, calibrated_text, uncalibrated_text_or_None)`` of the metric table."""
    columns = [summary] + ([summary["uncalibrated"]] if summary.get("uncalibrated") else [])
    rows = []
    for key, label, direction in METRIC_ROWS:
        cells = []
        for scores in columns:
            if key in ("ece_perfect_mean", "p_value"):
                test = scores["calibration_test"]
                value = test[key]
                if key == "p_value":
                    cells.append(p_value_text(value, test["n_resamples"]))
                else:
                    cells.append(f"{value:.4f} (p90 {test['ece_perfect_p90']:.4f})")
            else:
                cells.append(f"{scores[key]:.4f}")
        suffix = {"lower": " (lower better)", "higher": " (higher better)"}.get(direction, "")
        rows.append((label + suffix, cells[0], cells[1] if len(cells) > 1 else None))
    return rows


def format_summary_table(summary):
    """A fixed-width text table of an :func:`evaluation_summary`.

    Args:
        summary: the dict returned by :func:`evaluation_summary` (or read back from
            its JSON).

    Returns:
        A multi-line string: a header line, the metric table (metric | calibrated |
        uncalibrated), each ECE beside its perfect-calibration reference, and the
        per-class precision/recall/F1/support table.

    Example:
        >>> print(format_summary_table(evaluation_summary(labels, probs, names)))
    """
    has_uncalibrated = bool(summary.get("uncalibrated"))
    lines = [_header(summary)]
    note = absent_classes_note(summary)
    if note:
        lines.append(note)
    if summary.get("calibration"):
        lines.append(f"Calibration: {summary['calibration']}")
    lines.append("")
    rows = metric_rows(summary)
    header = ("metric", "calibrated") + (("uncalibrated",) if has_uncalibrated else ())
    body = [row if has_uncalibrated else row[:2] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    for row in [header, None, *body]:
        if row is None:
            lines.append("  ".join("-" * w for w in widths))
        else:
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append("ECE beside the ECE of a perfectly calibrated model (consistency resampling):")
    lines.append(f"  calibrated:   {ece_sentence(summary['calibration_test'])}")
    if has_uncalibrated:
        lines.append(f"  uncalibrated: {ece_sentence(summary['uncalibrated']['calibration_test'])}")
    lines.append("")
    lines.append("Per class (argmax predictions of the calibrated probabilities):")
    names = list(summary["per_class"])
    name_width = max(len("class"), *(len(n) for n in names))
    lines.append(f"{'class'.ljust(name_width)}  precision  recall  f1      support")
    lines.append(f"{'-' * name_width}  ---------  ------  ------  -------")
    for name in names:
        row = summary["per_class"][name]
        lines.append(
            f"{name.ljust(name_width)}  {_cell(row['precision'], 9)}  "
            f"{_cell(row['recall'], 6)}  {_cell(row['f1'], 6)}  {row['support']:7d}"
        )
    return "\n".join(lines)


def _header(summary):
    parts = [
        f"{summary['num_samples']} samples",
        f"{len(summary['per_class'])} classes",
        f"{summary['num_bins']} bins",
    ]
    if summary.get("temperature") is not None:
        parts.append(f"temperature {summary['temperature']:.4g}")
    prior = summary.get("prior_used")
    if prior is not None:
        parts.append("prior used [" + ", ".join(f"{p:.3g}" for p in prior) + "]")
    return "Evaluation: " + ", ".join(parts)
