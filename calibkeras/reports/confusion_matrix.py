"""Row-normalised confusion matrix of argmax predictions."""

import numpy as np
from sklearn.metrics import confusion_matrix

from calibkeras.reports._figures import new_figure
from calibkeras.utils.checks import check_class_names, check_labels, check_probabilities
from calibkeras.utils.deprecation import labels_first


@labels_first()
def plot_confusion_matrix(labels, probs, class_names):
    """Draws the row-normalised confusion matrix of the argmax predictions, annotated.

    Row ``i`` holds the share of the samples of true class ``i`` predicted as each
    class (``sklearn.metrics.confusion_matrix(normalize="true")``), so the diagonal is
    each class's recall whatever its support. Rows of classes absent from ``labels``
    are all zero.

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` predicted probabilities.
        class_names: ``K`` class names, in column order.

    Returns:
        A ``matplotlib.figure.Figure`` with 2 axes: the matrix and its colour bar.

    Example:
        >>> plot_confusion_matrix(labels, probs, names).savefig("confusion.png")
    """
    probs = check_probabilities(probs)
    num_classes = probs.shape[1]
    labels = check_labels(labels, num_classes, probs.shape[0])
    class_names = list(check_class_names(class_names, num_classes))
    matrix = confusion_matrix(
        labels, probs.argmax(axis=1), labels=list(range(num_classes)), normalize="true"
    )
    matrix = np.nan_to_num(matrix)  # sklearn leaves NaN rows for absent classes

    size = min(max(4.8, 0.55 * num_classes + 2.6), 16)
    figure = new_figure(size + 0.9, size)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    fontsize = 8 if num_classes <= 12 else max(4, 8 - (num_classes - 12) // 4)
    if num_classes <= 30:
        for i in range(num_classes):
            for j in range(num_classes):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                        fontsize=fontsize, color="white" if matrix[i, j] > 0.5 else "black")
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=max(fontsize, 6))
    ax.set_yticks(ticks, class_names, fontsize=max(fontsize, 6))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (rows sum to 1)")
    return figure
