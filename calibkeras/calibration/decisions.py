"""Cost-sensitive (Bayes) decisions from calibrated probabilities, and their costs.

A *cost matrix* ``C`` of shape ``(A, K)`` gives ``C[a, y]``, the cost of taking action
``a`` when the true class is ``y``. There may be more or fewer actions than classes
(``A != K``): "order a re-check", "ship", "discard" ... An optional *abstain* action
costs the same fixed ``abstain_cost`` whatever the class; it is appended as row ``A``
of the extended cost matrix, so action ids run over ``0 .. A`` when it is present.

Given calibrated probabilities ``p(y | x)``, the expected cost of action ``a`` is
``sum_y C[a, y] p(y | x)`` and the Bayes decision is the action that minimises it.
Ties go to the lowest action id (so a class action wins a tie with abstaining).

:func:`calibkeras.metrics.functional.action_expected_costs` is the one definition of the
expected cost: it is written in ``keras.ops``, the
:class:`calibkeras.layers.CostSensitiveDecision` layer and the SavedModel export call it
on tensors, and the NumPy functions here call it on arrays (float64 in, float64 out).
"""

import numpy as np
from keras import ops

from calibkeras.metrics.functional import action_expected_costs
from calibkeras.utils.checks import (
    check_abstain_cost,
    check_cost_matrix,
    check_labels,
    check_probabilities,
)


def extended_cost_matrix(cost_matrix, abstain_cost=None):
    """Returns the ``(A(+1), K)`` cost matrix with the abstain row appended (if any).

    Args:
        cost_matrix: ``(A, K)`` costs (checked with :func:`check_cost_matrix`).
        abstain_cost: None or the fixed cost of abstaining.

    Returns:
        float64 array ``(A, K)``, or ``(A + 1, K)`` whose last row is ``abstain_cost``.
    """
    cost_matrix = check_cost_matrix(cost_matrix)
    abstain_cost = check_abstain_cost(abstain_cost)
    if abstain_cost is None:
        return cost_matrix
    return np.vstack([cost_matrix, np.full((1, cost_matrix.shape[1]), abstain_cost)])


def _expected_cost_matrix(probs, cost_matrix, abstain_cost):
    probs = check_probabilities(probs)
    cost_matrix = check_cost_matrix(cost_matrix, probs.shape[1])
    abstain_cost = check_abstain_cost(abstain_cost)
    costs = action_expected_costs(probs, cost_matrix, abstain_cost)
    return ops.convert_to_numpy(costs).astype(np.float64)


def _check_decisions(decisions, num_actions, num_samples=None):
    """Returns ``decisions`` as a 1-D int64 array of action ids in [0, num_actions)."""
    return check_labels(decisions, num_actions, num_samples, name="decisions", kind="action",
                        against="`probs` has {n} rows")


def bayes_decisions(probs, cost_matrix, abstain_cost=None):
    """Bayes decisions: the action of least expected cost for each sample.

    ``decision = argmin_a sum_y C[a, y] p(y | x)`` over the ``A`` actions and, when
    ``abstain_cost`` is given, the abstain action ``A`` whose cost is ``abstain_cost``
    whatever ``y``. Ties go to the lowest action id.

    Args:
        probs: ``(N, K)`` calibrated probabilities (rows sum to 1).
        cost_matrix: ``(A, K)`` non-negative finite costs ``C[action, true_class]``;
            ``A >= 2`` and may differ from ``K``.
        abstain_cost: None (default, no abstain action) or a non-negative cost.

    Returns:
        int64 array ``(N,)`` of action ids in ``[0, A)``, or ``[0, A]`` with abstain.

    Example:
        >>> probs = np.array([[0.7, 0.3], [0.2, 0.8]])
        >>> bayes_decisions(probs, [[0, 5], [1, 0]])  # a missed positive costs 5
        array([1, 1])

    References:
        Elkan (2001), The foundations of cost-sensitive learning. IJCAI.
    """
    costs = _expected_cost_matrix(probs, cost_matrix, abstain_cost)
    return np.argmin(costs, axis=1).astype(np.int64)


def expected_cost(probs, decisions, cost_matrix, abstain_cost=None):
    """Mean expected cost of the chosen actions under the model's own probabilities.

    ``mean_i sum_y C[d_i, y] p(y | x_i)``: the cost the model *expects* to pay. When
    the probabilities are calibrated it estimates :func:`realized_cost`; a gap between
    the two on labelled data is a sign of miscalibration.

    Args:
        probs: ``(N, K)`` probabilities (rows sum to 1).
        decisions: ``(N,)`` action ids in ``[0, A)`` (``[0, A]`` with abstain).
        cost_matrix: ``(A, K)`` non-negative finite costs.
        abstain_cost: None or the cost of the abstain action (id ``A``).

    Returns:
        float, in the units of the cost matrix; lower is better.

    Example:
        >>> expected_cost([[0.7, 0.3]], [0], [[0, 5], [1, 0]])
        1.5
    """
    costs = _expected_cost_matrix(probs, cost_matrix, abstain_cost)
    decisions = _check_decisions(decisions, costs.shape[1], costs.shape[0])
    return float(np.mean(costs[np.arange(costs.shape[0]), decisions]))


def realized_cost(labels, decisions, cost_matrix, abstain_cost=None):
    """Mean actual cost of the chosen actions against the true labels.

    ``mean_i C[d_i, y_i]``, with ``C`` extended by the abstain row when
    ``abstain_cost`` is given.

    Args:
        labels: ``(N,)`` true class ids in ``[0, K)``.
        decisions: ``(N,)`` action ids in ``[0, A)`` (``[0, A]`` with abstain).
        cost_matrix: ``(A, K)`` non-negative finite costs.
        abstain_cost: None or the cost of the abstain action (id ``A``).

    Returns:
        float, in the units of the cost matrix; lower is better.

    Example:
        >>> realized_cost([1, 0], [0, 0], [[0, 5], [1, 0]])
        2.5
    """
    extended = extended_cost_matrix(cost_matrix, abstain_cost)
    decisions = _check_decisions(decisions, extended.shape[0])
    labels = check_labels(labels, extended.shape[1], decisions.shape[0])
    return float(np.mean(extended[decisions, labels]))
