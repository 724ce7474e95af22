import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkeras.calibration.decisions import (
    action_expected_costs,
    bayes_decisions,
    check_abstain_cost,
    check_cost_matrix,
    expected_cost,
    extended_cost_matrix,
    realized_cost,
)


def reference_expected_costs(probs, cost_matrix, abstain_cost=None):
    """Plain loops: cost[i, a] = sum_y C[a, y] p[i, y], abstain column last."""
    probs = np.asarray(probs, dtype=np.float64)
    cost_matrix = np.asarray(cost_matrix, dtype=np.float64)
    num_actions = cost_matrix.shape[0] + (abstain_cost is not None)
    costs = np.zeros((probs.shape[0], num_actions))
    for i in range(probs.shape[0]):
        for a in range(cost_matrix.shape[0]):
            costs[i, a] = sum(cost_matrix[a, y] * probs[i, y] for y in range(probs.shape[1]))
        if abstain_cost is not None:
            costs[i, -1] = abstain_cost
    return costs


@st.composite
def decision_problems(draw):
    num_classes = draw(st.integers(2, 5))
    num_actions = draw(st.integers(2, 6))
    num_samples = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    probs = rng.dirichlet(np.full(num_classes, 0.7), size=num_samples)
    cost_matrix = rng.uniform(0, 10, size=(num_actions, num_classes))
    cost_matrix[rng.random(cost_matrix.shape) < 0.2] = 0.0
    abstain_cost = draw(st.one_of(st.none(), st.floats(0, 10)))
    return probs, cost_matrix, abstain_cost


@settings(max_examples=60, deadline=None)
@given(decision_problems())
def test_bayes_decisions_minimise_the_reference_expected_cost(problem):
    probs, cost_matrix, abstain_cost = problem
    reference = reference_expected_costs(probs, cost_matrix, abstain_cost)
    decisions = bayes_decisions(probs, cost_matrix, abstain_cost)
    np.testing.assert_array_equal(decisions, np.argmin(reference, axis=1))
    np.testing.assert_allclose(
        np.asarray(action_expected_costs(probs, cost_matrix, abstain_cost)), reference,
        rtol=1e-12, atol=1e-12,
    )
    chosen = reference[np.arange(len(probs)), decisions]
    assert expected_cost(probs, decisions, cost_matrix, abstain_cost) == pytest.approx(
        chosen.mean(), rel=1e-12
    )
    # No other decision rule has a lower expected cost, e.g. the argmax.
    if cost_matrix.shape[0] >= probs.shape[1]:
        argmax = probs.argmax(axis=1)
        assert expected_cost(probs, decisions, cost_matrix, abstain_cost) <= (
            expected_cost(probs, argmax, cost_matrix, abstain_cost) + 1e-12
        )


def test_small_worked_example():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1]])
    cost_matrix = [[0.0, 5.0], [1.0, 0.0]]  # a missed positive costs 5, a false alarm 1
    # expected costs: (1.5, 0.7), (4.0, 0.2), (0.5, 0.9); abstain at 0.6
    np.testing.assert_array_equal(bayes_decisions(probs, cost_matrix), [1, 1, 0])
    np.testing.assert_array_equal(bayes_decisions(probs, cost_matrix, 0.6), [2, 1, 0])
    assert expected_cost(probs, [1, 1, 0], cost_matrix) == pytest.approx((0.7 + 0.2 + 0.5) / 3)
    assert expected_cost(probs, [2, 1, 0], cost_matrix, 0.6) == pytest.approx(
        (0.6 + 0.2 + 0.5) / 3
    )
    # labels 1, 0, 1: costs C[1, 1] = 0, C[1, 0] = 1, C[0, 1] = 5
    assert realized_cost([1, 0, 1], [1, 1, 0], cost_matrix) == pytest.approx(2.0)
    assert realized_cost([1, 0, 1], [2, 1, 0], cost_matrix, 0.6) == pytest.approx(6.6 / 3)


def test_binary_threshold_is_cost_ratio():
    c_fp, c_fn = 1.0, 4.0
    threshold = c_fp / (c_fp + c_fn)  # 0.2
    p_positive = np.array([0.05, 0.15, 0.19, 0.21, 0.5, 0.95])
    probs = np.stack([1 - p_positive, p_positive], axis=1)
    decisions = bayes_decisions(probs, [[0.0, c_fn], [c_fp, 0.0]])
    np.testing.assert_array_equal(decisions, (p_positive > threshold).astype(int))


def test_zero_one_costs_give_argmax_and_chow_rule():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=200)
    zero_one = 1.0 - np.eye(4)
    np.testing.assert_array_equal(bayes_decisions(probs, zero_one), probs.argmax(axis=1))
    decisions = bayes_decisions(probs, zero_one, abstain_cost=0.4)
    abstain = probs.max(axis=1) < 1 - 0.4
    np.testing.assert_array_equal(decisions == 4, abstain)
    np.testing.assert_array_equal(decisions[~abstain], probs.argmax(axis=1)[~abstain])


def test_ties_go_to_the_lowest_action_id():
    probs = np.array([[0.5, 0.5]])
    assert bayes_decisions(probs, [[1.0, 1.0], [1.0, 1.0]]).tolist() == [0]
    assert bayes_decisions(probs, [[0.0, 1.0], [1.0, 0.0]], abstain_cost=0.5).tolist() == [0]


def test_realized_cost_matches_expected_cost_on_calibrated_labels():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=20_000)
    labels = np.array([rng.choice(3, p=p) for p in probs])  # calibrated by construction
    cost_matrix = rng.uniform(0, 3, size=(5, 3))
    decisions = bayes_decisions(probs, cost_matrix, abstain_cost=0.8)
    assert realized_cost(labels, decisions, cost_matrix, 0.8) == pytest.approx(
        expected_cost(probs, decisions, cost_matrix, 0.8), abs=0.02
    )


def test_extended_cost_matrix():
    np.testing.assert_array_equal(
        extended_cost_matrix([[0, 1], [1, 0]], 0.3), [[0, 1], [1, 0], [0.3, 0.3]]
    )
    np.testing.assert_array_equal(extended_cost_matrix([[0, 1], [1, 0]]), [[0, 1], [1, 0]])


@pytest.mark.parametrize(
    "cost_matrix, message",
    [
        ([[0.0, np.nan], [1.0, 0.0]], r"`cost_matrix` must be finite; found nan at row 0, col"),
        ([[0.0, np.inf], [1.0, 0.0]], r"`cost_matrix` must be finite; found inf"),
        ([[0.0, -1.0], [1.0, 0.0]], r"`cost_matrix` must be non-negative .* found -1.0 at row 0"),
        ([0.0, 1.0], r"`cost_matrix` must be a 2-D array .* got shape \(2,\)"),
        ([[[0.0]]], r"`cost_matrix` must be a 2-D array .* got shape \(1, 1, 1\)"),
        ([[0.0, 1.0]], r"`cost_matrix` must have at least 2 rows .* got shape \(1, 2\)"),
        ([[0.0], [1.0]], r"`cost_matrix` must have at least 2 columns"),
        ([["a", "b"], ["c", "d"]], r"`cost_matrix` must be a 2-D array of numbers"),
    ],
)
def test_bad_cost_matrix(cost_matrix, message):
    with pytest.raises(ValueError, match=message):
        check_cost_matrix(cost_matrix)


def test_cost_matrix_columns_must_match_the_classes():
    with pytest.raises(ValueError, match=r"`cost_matrix` must have 3 columns .* shape \(2, 2\)"):
        bayes_decisions(np.full((1, 3), 1 / 3), [[0, 1], [1, 0]])


@pytest.mark.parametrize("abstain_cost", [-0.1, float("nan"), float("inf"), True, "0.5"])
def test_bad_abstain_cost(abstain_cost):
    with pytest.raises(ValueError, match=r"`abstain_cost` must be None or a non-negative finite"):
        check_abstain_cost(abstain_cost)


def test_bad_decisions_and_labels():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    costs = [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match=r"`decisions` must be action ids in \[0, 2\).*found 2"):
        expected_cost(probs, [0, 2], costs)
    with pytest.raises(ValueError, match=r"`decisions` has 1 entries but `probs` has 2 rows"):
        expected_cost(probs, [0], costs)
    with pytest.raises(ValueError, match=r"`decisions` must hold integer action ids"):
        expected_cost(probs, [0.5, 1.0], costs)
    with pytest.raises(ValueError, match=r"`labels` must be class ids in \[0, 2\)"):
        realized_cost([0, 3], [0, 1], costs)
    with pytest.raises(ValueError, match=r"`labels` has 3 entries"):
        realized_cost([0, 1, 1], [0, 1], costs)
    with pytest.raises(ValueError, match=r"`decisions` is empty"):
        realized_cost([], [], costs)
    with pytest.raises(ValueError, match=r"rows of `probs` must sum to 1"):
        bayes_decisions([[0.7, 0.7]], costs)
