"""Coverage of conformal prediction sets by class, with the target line, and set sizes."""

import numpy as np

from calibkeras.conformal import set_coverage
from calibkeras.reports._figures import class_order, new_figure
from calibkeras.utils.checks import check_class_names


def plot_set_coverage(labels, sets, class_names, alpha, class_counts=None):
    """Draws each class's coverage by its prediction sets against ``1 - alpha``, and the
    histogram of set sizes.

    Args:
        labels: ``(N,)`` integer class ids.
        sets: ``(N, K)`` booleans (``model.prediction_sets`` or
            ``ConformalFit.predict_sets``).
        class_names: ``K`` class names, in column order.
        alpha: the sets' miscoverage level (the dashed line is ``1 - alpha``).
        class_counts: optional ``(K,)`` training counts; the classes are then ordered
            from most to least frequent.

    Returns:
        A ``matplotlib.figure.Figure`` with 2 axes.

    Example:
        >>> plot_set_coverage(y_test, model.prediction_sets(logits), names, alpha=0.1)
    """
    coverage = set_coverage(labels, sets)
    names = check_class_names(class_names, len(coverage.per_class))
    order = class_order(class_counts, len(names))
    figure = new_figure(max(6.0, 0.45 * len(names) + 2.5), 6.5)
    bars, sizes = figure.subplots(2, 1, height_ratios=[3, 2])
    values = np.nan_to_num(coverage.per_class[order], nan=0.0)  # no rows: no bar
    below = set(coverage.classes_below(1 - alpha).tolist())
    colours = ["tab:red" if k in below else "tab:blue" for k in order]
    bars.bar(np.arange(len(order)), values, color=colours)
    bars.axhline(1 - alpha, color="black", linestyle="--", linewidth=1,
                 label=f"target 1 - alpha = {1 - alpha:.2f}")
    bars.set_xticks(np.arange(len(order)), [names[k] for k in order], rotation=45,
                    ha="right")
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("coverage (true class in the set)")
    bars.set_title(f"coverage by class (marginal {coverage.marginal:.3f}; red: below target)")
    bars.legend(loc="lower right")
    histogram = coverage.size_histogram
    sizes.bar(np.arange(len(histogram)), histogram, color="tab:gray")
    sizes.set_xlabel("set size (classes)")
    sizes.set_ylabel("images")
    sizes.set_title(f"set sizes (mean {coverage.mean_size:.2f})")
    return figure
