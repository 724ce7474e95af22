import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkeras.layers.cost_sensitive_decision import CostSensitiveDecision


def reference_expected_costs(probs, cost_matrix, abstain_cost=None):
    """Plain NumPy: cost[i, a] = sum_y C[a, y] p[i, y], then the abstain column."""
    probs = np.asarray(probs, dtype=np.float64)
    cost_matrix = np.asarray(cost_matrix, dtype=np.float64)
    costs = np.einsum("ay,iy->ia", cost_matrix, probs)
    if abstain_cost is not None:
        costs = np.concatenate([costs, np.full((len(probs), 1), abstain_cost)], axis=1)
    return costs


def assert_bayes_optimal(decision, reference, atol=1e-5):
    """Each decision has the least reference cost; near-ties (float32) may go either way."""
    chosen = reference[np.arange(len(reference)), decision]
    assert np.all(chosen <= reference.min(axis=1) + atol)
    gaps = np.sort(reference, axis=1)
    clear = gaps[:, 1] - gaps[:, 0] > atol
    np.testing.assert_array_equal(decision[clear], reference.argmin(axis=1)[clear])


@st.composite
def decision_problems(draw):
    num_classes = draw(st.integers(2, 5))
    num_actions = draw(st.integers(2, 6).filter(lambda a: a != num_classes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    probs = rng.dirichlet(np.full(num_classes, 0.5), size=draw(st.integers(1, 16)))
    cost_matrix = rng.uniform(0, 10, size=(num_actions, num_classes))
    abstain_cost = draw(st.one_of(st.none(), st.floats(0, 10)))
    return probs.astype("float32"), cost_matrix, abstain_cost


@settings(max_examples=50, deadline=None)
@given(decision_problems())
def test_decision_is_argmin_of_expected_cost(problem):
    probs, cost_matrix, abstain_cost = problem
    outputs = CostSensitiveDecision(cost_matrix, abstain_cost=abstain_cost)(probs)
    decision = np.asarray(outputs["decision"])
    reference = reference_expected_costs(probs, cost_matrix, abstain_cost)
    assert decision.dtype == np.int32 and decision.shape == (len(probs),)
    np.testing.assert_allclose(np.asarray(outputs["expected_cost"]), reference, rtol=1e-5,
                               atol=1e-5)
    assert_bayes_optimal(decision, reference)


def test_binary_costs_give_the_cost_ratio_threshold():
    c_fp, c_fn = 2.0, 6.0  # threshold C_FP / (C_FP + C_FN) = 0.25
    p_positive = np.array([0.0, 0.1, 0.24, 0.26, 0.6, 1.0], dtype="float32")
    probs = np.stack([1 - p_positive, p_positive], axis=1)
    layer = CostSensitiveDecision([[0.0, c_fn], [c_fp, 0.0]], action_names=["neg", "pos"])
    decision = np.asarray(layer(probs)["decision"])
    np.testing.assert_array_equal(decision, (p_positive > 0.25).astype("int32"))


def test_zero_one_costs_with_abstain_is_chow_rule():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=300).astype("float32")
    layer = CostSensitiveDecision(1 - np.eye(3), abstain_cost=0.45)
    decision = np.asarray(layer(probs)["decision"])
    top = probs.max(axis=1)
    clear = np.abs(top - 0.55) > 1e-5
    np.testing.assert_array_equal((decision == 3)[clear], (top < 0.55)[clear])
    keep = clear & (top >= 0.55)
    np.testing.assert_array_equal(decision[keep], probs.argmax(axis=1)[keep])
    assert layer.output_action_names == ["0", "1", "2", "abstain"]


def test_docstring_example():
    probs = keras.Input((2,))
    decide = CostSensitiveDecision([[0.0, 5.0], [1.0, 0.0]], abstain_cost=0.4,
                                   action_names=["negative", "positive"])
    model = keras.Model(probs, decide(probs)["decision"])
    batch = np.array([[0.95, 0.05], [0.8, 0.2], [0.3, 0.7]], dtype="float32")
    np.testing.assert_array_equal(model.predict(batch, verbose=0), [0, 2, 1])
    assert decide.output_action_names == ["negative", "positive", "abstain"]


def test_weights_are_non_trainable_and_hold_the_costs():
    layer = CostSensitiveDecision([[0, 1, 2], [3, 0, 1]], abstain_cost=0.5)
    assert layer.trainable_weights == []
    assert sorted(w.name for w in layer.non_trainable_weights) == ["abstain_cost", "cost_matrix"]
    np.testing.assert_array_equal(np.asarray(layer.cost_matrix), [[0, 1, 2], [3, 0, 1]])
    assert CostSensitiveDecision([[0, 1], [1, 0]]).abstain_cost_weight is None


def _decision_model(layer, num_classes):
    inputs = keras.Input((num_classes,))
    outputs = layer(keras.layers.Softmax()(inputs))
    return keras.Model(inputs, outputs)


def test_round_trip_config_and_keras_file(tmp_path):
    cost_matrix = [[0.0, 1.0, 4.0], [2.0, 0.0, 1.0], [1.0, 1.0, 1.0], [5.0, 0.5, 0.0]]
    layer = CostSensitiveDecision(cost_matrix, abstain_cost=0.7,
                                  action_names=["a", "b", "c", "d"], name="decision")
    config = layer.get_config()
    assert config["cost_matrix"] == cost_matrix and config["abstain_cost"] == 0.7
    clone = CostSensitiveDecision.from_config(config)
    logits = np.random.default_rng(0).normal(size=(6, 3)).astype("float32") * 3
    model = _decision_model(layer, 3)
    expected = model.predict(logits, verbose=0)
    clone_out = _decision_model(clone, 3).predict(logits, verbose=0)
    path = tmp_path / "decision.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded_out = loaded.predict(logits, verbose=0)
    for out in (clone_out, loaded_out):
        np.testing.assert_array_equal(out["decision"], expected["decision"])
        np.testing.assert_array_equal(out["expected_cost"], expected["expected_cost"])
    restored = loaded.get_layer("decision")
    assert isinstance(restored, CostSensitiveDecision)
    assert restored.action_names == ["a", "b", "c", "d"] and restored.abstain_cost == 0.7


def test_saved_weights_win_over_config(tmp_path):
    layer = CostSensitiveDecision([[0.0, 1.0], [1.0, 0.0]], name="decision")
    model = _decision_model(layer, 2)
    layer.cost_matrix.assign([[0.0, 9.0], [1.0, 0.0]])  # e.g. costs tuned after building
    path = tmp_path / "decision.keras"
    model.save(path)
    restored = keras.models.load_model(path).get_layer("decision")
    np.testing.assert_array_equal(np.asarray(restored.cost_matrix), [[0, 9], [1, 0]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cost_matrix": [[0.0, np.nan], [1.0, 0.0]]}, r"`cost_matrix` must be finite; found nan"),
        ({"cost_matrix": [[0.0, np.inf], [1.0, 0.0]]}, r"`cost_matrix` must be finite; found inf"),
        ({"cost_matrix": [[0.0, -2.0], [1.0, 0.0]]}, r"`cost_matrix` must be non-negative"),
        ({"cost_matrix": [0.0, 1.0, 1.0]}, r"`cost_matrix` must be a 2-D array .*\(3,\)"),
        ({"cost_matrix": [[0.0, 1.0, 1.0]]}, r"`cost_matrix` must have at least 2 rows"),
        (
            {"cost_matrix": [[0.0, 1.0], [1.0, 0.0]], "abstain_cost": -1.0},
            r"`abstain_cost` must be None or a non-negative finite number, got -1.0",
        ),
        (
            {"cost_matrix": [[0.0, 1.0], [1.0, 0.0]], "abstain_cost": float("nan")},
            r"`abstain_cost` must be None or a non-negative finite number, got nan",
        ),
        (
            {"cost_matrix": [[0.0, 1.0], [1.0, 0.0]], "action_names": ["only one"]},
            r"`action_names` must have 2 entries \(one per row of `cost_matrix`\), got 1",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CostSensitiveDecision(**kwargs)


def test_wrong_number_of_probabilities():
    layer = CostSensitiveDecision([[0, 1, 1], [1, 0, 1]])
    with pytest.raises(ValueError, match=r"cost matrix over 3 classes but its input has 2"):
        layer(np.full((1, 2), 0.5, "float32"))
