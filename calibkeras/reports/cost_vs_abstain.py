"""Cost of Bayes decisions as the cost of abstaining varies."""

import numpy as np

from calibkeras.calibration.decisions import bayes_decisions, expected_cost, realized_cost
from calibkeras.reports._figures import new_figure
from calibkeras.utils.checks import check_cost_matrix, check_labels, check_probabilities
from calibkeras.utils.deprecation import labels_first


@labels_first()
def cost_vs_abstain(labels, probs, cost_matrix=None, abstain_costs=None):
    """Realised and expected cost, and abstention rate, of Bayes decisions per abstain cost.

    For each abstain cost ``c`` the decisions are
    :func:`calibkeras.calibration.decisions.bayes_decisions` with the abstain action at
    cost ``c`` (action id ``A``, one past the cost matrix's rows).

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` calibrated probabilities.
        cost_matrix: ``(A, K)`` costs ``C[action, true_class]``; default the 0-1 cost
            ``1 - I`` (``A = K``: predicting a class costs 1 when wrong).
        abstain_costs: 1-D non-negative abstain costs; default ``np.linspace(0, 1, 41)``.

    Returns:
        A dict of ``(M,)`` float arrays: ``abstain_cost``, ``realized_cost`` and
        ``expected_cost`` (mean per sample, in cost units) and ``abstention_rate``
        (share of samples where abstaining is chosen); and ``no_abstain_cost``, the
        realised cost of the Bayes decisions without an abstain action (float).

    Example:
        >>> curve = cost_vs_abstain(labels, probs)
        >>> curve["abstention_rate"][curve["abstain_cost"] == 0.5]
    """
    probs = check_probabilities(probs)
    num_classes = probs.shape[1]
    labels = check_labels(labels, num_classes, probs.shape[0])
    if cost_matrix is None:
        cost_matrix = 1.0 - np.eye(num_classes)
    cost_matrix = check_cost_matrix(cost_matrix, num_classes)
    if abstain_costs is None:
        abstain_costs = np.linspace(0.0, 1.0, 41)
    abstain_costs = np.asarray(abstain_costs, dtype=np.float64)
    if abstain_costs.ndim != 1 or abstain_costs.size == 0:
        raise ValueError(
            f"`abstain_costs` must be a non-empty 1-D array, got shape {abstain_costs.shape}"
        )
    if not np.all(np.isfinite(abstain_costs)) or np.any(abstain_costs < 0):
        raise ValueError(
            "`abstain_costs` must be finite and non-negative, got "
            f"{abstain_costs[~(np.isfinite(abstain_costs) & (abstain_costs >= 0))][:3].tolist()}"
        )
    abstain_action = cost_matrix.shape[0]
    realized, expected, rate = [], [], []
    for cost in abstain_costs:
        decisions = bayes_decisions(probs, cost_matrix, abstain_cost=float(cost))
        realized.append(realized_cost(labels, decisions, cost_matrix, abstain_cost=float(cost)))
        expected.append(expected_cost(probs, decisions, cost_matrix, abstain_cost=float(cost)))
        rate.append(float(np.mean(decisions == abstain_action)))
    no_abstain = realized_cost(labels, bayes_decisions(probs, cost_matrix), cost_matrix)
    return {
        "abstain_cost": abstain_costs,
        "realized_cost": np.asarray(realized),
        "expected_cost": np.asarray(expected),
        "abstention_rate": np.asarray(rate),
        "no_abstain_cost": float(no_abstain),
    }


@labels_first()
def plot_cost_vs_abstain(labels, probs, cost_matrix=None, abstain_costs=None):
    """Draws the realised and expected cost per sample, and the abstention rate.

    When the probabilities are calibrated, the model's expected cost tracks the
    realised one; a gap between the two curves is miscalibration priced in cost units.
    The dotted line is the cost of always acting (no abstain option).

    Args:
        labels: ``(N,)`` integer class ids.
        probs: ``(N, K)`` calibrated probabilities.
        cost_matrix: ``(A, K)`` costs; default the 0-1 cost ``1 - I``.
        abstain_costs: 1-D abstain costs; default ``np.linspace(0, 1, 41)``.

    Returns:
        A ``matplotlib.figure.Figure`` with 2 axes: cost (left) and abstention rate
        (right, a twin of the first).

    Example:
        >>> plot_cost_vs_abstain(labels, probs).savefig("cost_vs_abstain.png")
    """
    curve = cost_vs_abstain(labels, probs, cost_matrix, abstain_costs)
    figure = new_figure(6.4, 4.2)
    ax = figure.subplots()
    rate_ax = ax.twinx()
    x = curve["abstain_cost"]
    lines = [
        ax.plot(x, curve["realized_cost"], color="#4C72B0", linewidth=2,
                label="realised cost (labels)")[0],
        ax.plot(x, curve["expected_cost"], color="#DD8452", linewidth=1.6, linestyle="--",
                label="expected cost (model)")[0],
        ax.axhline(curve["no_abstain_cost"], color="0.45", linewidth=1, linestyle=":",
                   label=f"no abstain option ({curve['no_abstain_cost']:.3f})"),
        rate_ax.plot(x, curve["abstention_rate"], color="#55A868", linewidth=1.4,
                     linestyle="-.", label="abstention rate (right axis)")[0],
    ]
    ax.set_xlabel("cost of abstaining")
    ax.set_ylabel("cost per sample")
    ax.set_ylim(bottom=0)
    rate_ax.set_ylabel("abstention rate", color="#55A868")
    rate_ax.set_ylim(0, 1.02)
    rate_ax.tick_params(axis="y", colors="#55A868")
    ax.legend(handles=lines, loc="center right", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.25)
    ax.set_title("Bayes decisions with an abstain option", fontsize=10)
    return figure
