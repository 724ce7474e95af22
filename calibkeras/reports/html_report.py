"""Writes a report folder: the PNG plots, summary.json and one self-contained report.html."""

import base64
import html
import json
from pathlib import Path

from calibkeras.reports._figures import figure_to_png
from calibkeras.reports.classwise_reliability import plot_classwise_reliability
from calibkeras.reports.confusion_matrix import plot_confusion_matrix
from calibkeras.reports.cost_vs_abstain import plot_cost_vs_abstain
from calibkeras.reports.evaluation import absent_classes_note, ece_sentence, metric_rows
from calibkeras.reports.prediction_sets import plot_set_coverage
from calibkeras.reports.recall_by_class import plot_recall_by_class
from calibkeras.reports.reliability_diagram import plot_reliability_diagram
from calibkeras.utils.deprecation import labels_first
from calibkeras.utils.staging import check_output_dir, staged_directory

#: Captions of the plots, by file name, in the order the HTML shows them.
CAPTIONS = {
    "reliability.png": "Reliability diagram of the calibrated probabilities",
    "reliability_uncalibrated.png": "Reliability diagram before calibration",
    "classwise_reliability.png": "Classwise (one-vs-rest) reliability",
    "confusion_matrix.png": "Confusion matrix of the argmax predictions (rows: true class)",
    "recall_by_class.png": "Recall by class under each prior",
    "cost_vs_abstain.png": "Cost of Bayes decisions with an abstain option",
    "prediction_sets.png": "Coverage of the conformal prediction sets by class, and their "
                           "sizes",
}

HOW_TO_READ = (
    "NLL and the Brier score are proper scores: they reward probabilities that are both "
    "sharp and honest, and are the primary measures (lower is better). The ECE is the "
    "average gap between confidence and accuracy over confidence bins; it is biased "
    "upward on finite sets, so it is shown beside the ECE a perfectly calibrated model "
    "would have with these confidences on this many samples (consistency resampling). "
    "A small p-value (say below 0.05) means the miscalibration is real; a large one means "
    "the ECE is within what chance alone produces. In the reliability diagram, bars on "
    "the diagonal are calibrated, bars below it are over-confident, above it "
    "under-confident; the panel underneath shows where the confidences lie. Recall by "
    "class shows what a prior correction does: it trades recall of frequent classes for "
    "recall of rare ones. The cost curve shows the Bayes decisions with an option to "
    "abstain: when the probabilities are calibrated the model's expected cost matches "
    "the realised cost."
)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.ece { background: #f6f8fb; border-left: 4px solid #4C72B0; padding: 0.5em 1em; }
figure { margin: 1.2em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.meta { color: #555; }
"""


@labels_first(2)
def write_report(
    output_dir,
    summary,
    labels,
    probs,
    class_names,
    uncalibrated_probs=None,
    probs_by_prior=None,
    cost_matrix=None,
    class_counts=None,
    overwrite=False,
    sets=None,
):
    """Writes the evaluation report: PNG plots, ``summary.json`` and ``report.html``.

    Everything is first written into a temporary folder next to ``output_dir`` and
    renamed into place at the end, so a failing plot leaves no half-written report.

    Files: ``reliability.png``, ``reliability_uncalibrated.png`` (with
    ``uncalibrated_probs``), ``classwise_reliability.png``, ``confusion_matrix.png``,
    ``recall_by_class.png`` (with ``probs_by_prior``), ``cost_vs_abstain.png``,
    ``summary.json`` and ``report.html``, a single self-contained page (images embedded
    as base64 data URIs, no external CSS or JavaScript).

    Args:
        output_dir: folder to create; it must not exist or be empty, unless
            ``overwrite=True`` (its old content is then replaced).
        summary: the :func:`calibkeras.reports.evaluation_summary` of ``probs``.
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` calibrated probabilities.
        class_names: ``K`` class names, in column order.
        uncalibrated_probs: optional ``(N, K)`` probabilities before calibration.
        probs_by_prior: optional dict {setting name: ``(N, K)`` probabilities}, e.g.
            ``{"training prior": p_train, "uniform prior": p_uniform}``.
        cost_matrix: optional ``(A, K)`` cost matrix of the cost curve (default 0-1).
        class_counts: optional ``(K,)`` training counts (orders the recall plot).
        overwrite: whether to replace an existing non-empty ``output_dir``; only a
            report folder (one holding report.html and summary.json) is replaced.
        sets: optional ``(N, K)`` conformal prediction sets; ``summary["conformal"]``
            must then hold their ``alpha`` (adds ``prediction_sets.png``).

    Returns:
        A dict mapping each written file's name (``"reliability.png"``, ...,
        ``"summary.json"``, ``"report.html"``) to its ``pathlib.Path`` in ``output_dir``.

    Example:
        >>> summary = evaluation_summary(y_test, probs, names, uncalibrated_probs=raw)
        >>> paths = write_report("reports/run1", summary, y_test, probs, names,
        ...                      uncalibrated_probs=raw)
        >>> paths["report.html"]
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite, argument="output_dir", layout="report")
    num_samples = len(labels)
    if summary.get("num_samples") != num_samples:
        raise ValueError(
            f"`summary` describes {summary.get('num_samples')} samples but `labels` has "
            f"{num_samples}; pass the evaluation_summary of these predictions"
        )
    num_bins = int(summary.get("num_bins", 15))

    figures = {
        "reliability.png": lambda: plot_reliability_diagram(
            labels, probs, num_bins=num_bins, title="calibrated",
            reference=summary["calibration_test"]),
    }
    if uncalibrated_probs is not None:
        reference = (summary.get("uncalibrated") or {}).get("calibration_test")
        figures["reliability_uncalibrated.png"] = lambda: plot_reliability_diagram(
            labels, uncalibrated_probs, num_bins=num_bins, title="uncalibrated",
            reference=reference)
    figures["classwise_reliability.png"] = lambda: plot_classwise_reliability(
        labels, probs, class_names)
    figures["confusion_matrix.png"] = lambda: plot_confusion_matrix(labels, probs, class_names)
    if probs_by_prior is not None:
        figures["recall_by_class.png"] = lambda: plot_recall_by_class(
            labels, probs_by_prior, class_names, class_counts=class_counts)
    figures["cost_vs_abstain.png"] = lambda: plot_cost_vs_abstain(labels, probs, cost_matrix)
    if sets is not None:
        figures["prediction_sets.png"] = lambda: plot_set_coverage(
            labels, sets, class_names, summary["conformal"]["alpha"],
            class_counts=class_counts)

    with staged_directory(output_dir, overwrite, argument="output_dir",
                          layout="report") as staging:
        images = {}
        for name, draw in figures.items():
            images[name] = figure_to_png(draw())
            (staging / name).write_bytes(images[name])
        (staging / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        (staging / "report.html").write_text(report_html(summary, images), encoding="utf-8")
    return {name: output_dir / name for name in [*figures, "summary.json", "report.html"]}


def report_html(summary, images):
    """Returns the self-contained HTML page of a report.

    Args:
        summary: an :func:`calibkeras.reports.evaluation_summary`.
        images: dict {file name: PNG bytes}, embedded in order as data URIs.

    Returns:
        The HTML document as a string.
    """
    esc = html.escape
    has_uncalibrated = bool(summary.get("uncalibrated"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>calibkeras evaluation report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>calibkeras evaluation report</h1>",
        f'<p class="meta">{esc(_meta_line(summary))}</p>',
        '<div class="ece">',
        f"<p><b>Calibrated:</b> {esc(ece_sentence(summary['calibration_test']))}</p>",
    ]
    if has_uncalibrated:
        parts.append(
            f"<p><b>Uncalibrated:</b> "
            f"{esc(ece_sentence(summary['uncalibrated']['calibration_test']))}</p>"
        )
    parts += ["</div>", "<h2>How to read this report</h2>", f"<p>{esc(HOW_TO_READ)}</p>"]

    parts += ["<h2>Scores</h2>", "<table>", "<tr><th>metric</th><th>calibrated</th>"]
    if has_uncalibrated:
        parts.append("<th>uncalibrated</th>")
    parts.append("</tr>")
    for label, calibrated, uncalibrated in metric_rows(summary):
        cells = [calibrated] + ([uncalibrated] if has_uncalibrated else [])
        parts.append(
            f"<tr><td>{esc(label.strip())}</td>"
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "</tr>"
        )
    parts.append("</table>")

    parts += [
        "<h2>Per class</h2>",
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
        "<th>support</th></tr>",
    ]
    for name, row in summary["per_class"].items():
        cells = "".join(
            f"<td>{'-' if row[key] is None else format(row[key], '.4f')}</td>"
            for key in ("precision", "recall", "f1"))
        parts.append(f"<tr><td>{esc(name)}</td>{cells}<td>{row['support']}</td></tr>")
    parts.append("</table>")
    note = absent_classes_note(summary)
    if note:
        parts.append(f"<p>{esc(note)}.</p>")

    conformal = summary.get("conformal")
    if conformal:
        below = ", ".join(conformal["classes_below_target"]) or "none"
        always = ", ".join(conformal["always_included"]) or "none"
        parts += [
            "<h2>Prediction sets</h2>",
            f"<p>{esc(conformal['mode'])} sets ({esc(conformal['score'])}) at alpha "
            f"{conformal['alpha']:g}: the true class is in the set of "
            f"{conformal['marginal_coverage']:.3f} of the images (target "
            f"{1 - conformal['alpha']:.2f}); mean size {conformal['mean_set_size']:.2f}; "
            f"classes below the target: {esc(below)}; always in the set (too few "
            f"calibration images): {esc(always)}.</p>",
        ]
    parts.append("<h2>Plots</h2>")
    for name, png in images.items():
        caption = CAPTIONS.get(name, name)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)} ({esc(name)})</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _meta_line(summary):
    parts = [f"{summary['num_samples']} samples", f"{len(summary['per_class'])} classes",
             f"{summary.get('num_bins', 15)} bins"]
    if summary.get("temperature") is not None:
        parts.append(f"temperature T = {summary['temperature']:.4g}")
    if summary.get("calibration"):
        parts.append(f"calibration: {summary['calibration']}")
    if summary.get("prior_used") is not None:
        pairs = zip(summary["per_class"], summary["prior_used"], strict=True)
        parts.append("prior used: " + ", ".join(f"{name} {p:.3g}" for name, p in pairs))
    return "; ".join(parts)
