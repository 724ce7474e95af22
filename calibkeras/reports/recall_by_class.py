"""Per-class recall under several settings, side by side (e.g. before/after prior shift)."""

import numpy as np
from sklearn.metrics import recall_score

from calibkeras.calibration import calibration_errors
from calibkeras.reports._figures import class_order, new_figure
from calibkeras.utils.checks import check_class_names, check_labels, check_probabilities


def plot_recall_by_class(labels, probs_by_setting, class_names, class_counts=None):
    """Draws grouped bars of each class's recall (argmax predictions), one bar per setting.

    The picture of a prior correction: with the training prior a long-tailed model
    favours the frequent classes; under a uniform prior the rare classes' recall rises.
    The legend gives each setting's balanced accuracy (mean recall).

    Args:
        labels: ``(N,)`` integer class ids.
        probs_by_setting: dict mapping a setting's name (e.g. ``"training prior"``) to
            its ``(N, K)`` probabilities of the same samples; at least one entry.
        class_names: ``K`` class names, in column order.
        class_counts: optional ``(K,)`` training counts; when given the classes are
            ordered from most to least frequent and the counts are shown.

    Returns:
        A ``matplotlib.figure.Figure`` with 1 axes.

    Example:
        >>> plot_recall_by_class(y_test, {"training prior": p_train, "uniform prior": p_uni},
        ...                      names, class_counts=train_counts)
    """
    if not isinstance(probs_by_setting, dict) or not probs_by_setting:
        raise ValueError(
            "`probs_by_setting` must be a non-empty dict {setting name: (N, K) "
            f"probabilities}}, got {type(probs_by_setting).__name__}"
        )
    settings = {}
    for name, probs in probs_by_setting.items():
        settings[str(name)] = check_probabilities(probs, name=f"probs_by_setting[{name!r}]")
    shapes = {p.shape for p in settings.values()}
    if len(shapes) != 1:
        raise ValueError(
            f"every entry of `probs_by_setting` must have the same shape, got {sorted(shapes)}"
        )
    num_samples, num_classes = shapes.pop()
    labels = check_labels(labels, num_classes, num_samples)
    class_names = list(check_class_names(class_names, num_classes))
    order = class_order(class_counts, num_classes)

    figure = new_figure(min(max(6.0, 0.75 * num_classes + 2.5), 18), 4.6)
    ax = figure.subplots()
    positions = np.arange(num_classes)
    width = 0.8 / len(settings)
    colors = ["#8C8C8C", "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"]
    for index, (name, probs) in enumerate(settings.items()):
        recall = recall_score(labels, probs.argmax(axis=1), labels=list(range(num_classes)),
                              average=None, zero_division=0)
        balanced = calibration_errors(labels, probs)["balanced_accuracy"]
        ax.bar(positions + (index - (len(settings) - 1) / 2) * width, recall[order], width=width,
               color=colors[index % len(colors)], edgecolor="white", linewidth=0.5,
               label=f"{name} (balanced accuracy {balanced:.3f})")
    tick_labels = [class_names[k] for k in order]
    if class_counts is not None:
        tick_labels = [f"{label}\n(n={int(class_counts[k])})"
                       for label, k in zip(tick_labels, order, strict=True)]
    ax.set_xticks(positions, tick_labels, rotation=40, ha="right", rotation_mode="anchor",
                  fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("recall")
    title = "recall by class"
    if class_counts is not None:
        title += " (classes from most to least frequent in training)"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncols=min(len(settings), 3), frameon=False)
    ax.grid(axis="y", alpha=0.25)
    return figure
