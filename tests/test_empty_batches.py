"""Every calibkeras layer, loss and metric takes an empty batch, on every CPU.

tf.distribute hands an empty piece of a batch to a replica whenever a batch has fewer
rows than there are replicas (Keras' own fit/evaluate/predict do too), and oneDNN,
TensorFlow's CPU path, rejects zero-row matrix products and einsums on AVX-512 CPUs
("Matrix size-incompatible: In[0]: [0,3], In[1]: [4,3]"), while it takes them
elsewhere. So running an empty batch proves little on most machines; these tests also
trace each computation on a batch of unknown size and check that no matrix product
or einsum runs on the batch outside a branch that skips empty batches.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from calibkeras import losses, metrics
from calibkeras.layers import CostSensitiveDecision, PriorShift, TemperatureScaling

K = 3
PRODUCTS = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"}

METRICS = [
    lambda: metrics.BalancedAccuracy(K),
    lambda: metrics.BrierScore(from_logits=True),
    lambda: metrics.ExpectedCalibrationError(from_logits=True),
    lambda: metrics.ExpectedCalibrationError(classwise=True, num_classes=K, from_logits=True),
    lambda: metrics.NegativeLogLikelihood(from_logits=True),
]
LOSSES = [
    lambda: losses.BrierScore(from_logits=True),
    lambda: losses.FocalCrossentropy(gamma=2.0),
    lambda: losses.LogitAdjustedCrossentropy([5, 3, 1]),
]
LAYERS = [
    lambda: TemperatureScaling(initial_temperature=2.0),
    lambda: PriorShift(prior="training", class_counts=[5, 3, 1]),
    lambda: CostSensitiveDecision([[0.0, 2.0, 3.0], [1.0, 0.0, 4.0]], abstain_cost=0.5),
]

LABELS = tf.TensorSpec([None], tf.int32)
SCORES = tf.TensorSpec([None, K], tf.float32)


def op_types(function, *specs):
    graph = tf.function(function).get_concrete_function(*specs).graph
    return {op.type for op in graph.get_operations()}


def empty():
    return np.zeros([0], np.int32), np.zeros([0, K], np.float32)


@pytest.mark.parametrize("make", METRICS)
def test_metric_update_has_no_matrix_product_and_takes_an_empty_batch(make):
    metric = make()
    metric.update_state(np.array([0, 2], np.int32), np.array([[2.0, 0, 1], [0, 1, 3]], "f"))
    before = float(metric.result())
    assert not PRODUCTS & op_types(metric.update_state, LABELS, SCORES)
    metric.update_state(*empty())
    assert float(metric.result()) == pytest.approx(before, abs=1e-7)


@pytest.mark.parametrize("make", LOSSES)
def test_loss_has_no_matrix_product_and_takes_an_empty_batch(make):
    loss = make()
    assert not PRODUCTS & op_types(loss.call, LABELS, SCORES)
    assert np.shape(loss.call(*empty())) == (0,)


@pytest.mark.parametrize("make", LAYERS)
def test_layer_has_no_unguarded_matrix_product_and_takes_an_empty_batch(make):
    layer = make()
    layer.build((None, K))
    assert not PRODUCTS & op_types(layer, SCORES)  # CostSensitiveDecision: inside a cond
    outputs = layer(empty()[1])
    for output in tf.nest.flatten(outputs):
        assert output.shape[0] == 0


def test_a_keras_model_with_the_decision_layer_predicts_an_empty_batch():
    inputs = keras.Input((K,))
    probabilities = keras.layers.Softmax()(PriorShift(prior="uniform", num_classes=K)(inputs))
    model = keras.Model(inputs, CostSensitiveDecision(1 - np.eye(K))(probabilities))
    outputs = model.predict_on_batch(np.zeros((0, K), np.float32))
    assert outputs["decision"].shape == (0,) and outputs["expected_cost"].shape == (0, K)
