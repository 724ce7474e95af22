"""One harness for every calibkeras layer, loss and metric (as keras-hub's run_layer_test).

Each check builds what it needs from a factory (a function returning a fresh
instance), so that the same object is never reused across Keras models:

- `run_layer_test`: get_config/from_config gives the same config and outputs; a
  `.keras` round trip inside a model gives the same outputs; the symbolic output
  shapes equal the eager ones; `jit_compile=True` prediction equals eager; under the
  `mixed_float16` policy the layer still computes and returns float32.
- `run_metric_test`: config round trip; the value streamed over uneven batches under
  `model.evaluate(jit_compile=True)` equals the eager value on the whole data; a model
  under `mixed_float16` gives a float32 result equal to the float32 one.
- `run_loss_test`: config round trip; `fit` with `jit_compile=True` runs and gives the
  eager loss; under `mixed_float16` the loss is float32 and finite.

tf.distribute (MirroredStrategy over two logical CPUs) needs a fresh process; every
layer, loss and metric goes through tests/distribute/mirrored_check.py.
"""

import contextlib

import keras
import numpy as np

NUM_CLASSES = 3


@contextlib.contextmanager
def dtype_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def data(num_samples=37, seed=0):
    """Features ``(N, 4)``, integer labels ``(N,)`` and logits ``(N, K)`` of a toy task."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_samples, 4)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=num_samples).astype("int32")
    logits = (rng.normal(size=(num_samples, NUM_CLASSES)) * 2).astype("float32")
    return features, labels, logits


def _flat(outputs):
    return [np.asarray(value) for value in keras.tree.flatten(outputs)]


def _assert_outputs_close(actual, expected, atol=1e-6):
    actual, expected = _flat(actual), _flat(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        if a.dtype == bool or e.dtype == bool:  # sets: equal, entry by entry
            np.testing.assert_array_equal(a, e)
            continue
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=atol)


def run_layer_test(make_layer, tmp_path, input_width=NUM_CLASSES, softmax_input=False):
    """Runs the layer contract checks on ``make_layer()`` for inputs ``(N, input_width)``."""
    _, _, logits = data()
    inputs_array = logits
    if softmax_input:  # layers that take probabilities
        inputs_array = np.asarray(keras.ops.softmax(logits), "float32")

    layer = make_layer()
    eager = layer(inputs_array)
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    _assert_outputs_close(clone(inputs_array), eager)

    inputs = keras.Input((input_width,))
    symbolic = make_layer()(inputs)
    for spec, value in zip(keras.tree.flatten(symbolic), _flat(eager), strict=True):
        assert tuple(spec.shape[1:]) == value.shape[1:]
    model = keras.Model(inputs, symbolic)
    reference = model.predict_on_batch(inputs_array)
    path = tmp_path / f"{layer.__class__.__name__}.keras"
    model.save(path)
    _assert_outputs_close(keras.saving.load_model(path).predict_on_batch(inputs_array), reference)
    shapes = layer.compute_output_shape((None, input_width))
    if isinstance(shapes, dict):  # dict outputs: compare key by key
        assert set(shapes) == set(symbolic)
        pairs = [(shapes[key], symbolic[key]) for key in shapes]
    else:
        pairs = [(shapes, symbolic)]
    for shape, spec in pairs:
        assert tuple(shape) == tuple(spec.shape)

    model.compile(jit_compile=True)
    _assert_outputs_close(model.predict(inputs_array, batch_size=8, verbose=0), reference)

    with dtype_policy("mixed_float16"):
        mixed = make_layer()
        outputs = mixed(inputs_array.astype("float16"))
        assert mixed.compute_dtype == "float32"
    for value in keras.tree.flatten(outputs):
        assert keras.backend.standardize_dtype(value.dtype) in ("float32", "int32", "bool")
    _assert_outputs_close(outputs, eager, atol=1e-2)  # float16 inputs: ~3 digits


def _toy_model(num_outputs=NUM_CLASSES):
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(num_outputs, kernel_initializer="glorot_uniform")(inputs)
    return keras.Model(inputs, outputs)


def run_metric_test(make_metric, from_logits=True):
    """Runs the metric contract checks; ``make_metric()`` must take logits when
    ``from_logits`` (as the toy model outputs) else probabilities."""
    features, labels, _ = data()
    keras.utils.set_random_seed(0)
    model = _toy_model()
    outputs = model.predict_on_batch(features)
    if not from_logits:
        outputs = np.asarray(keras.ops.softmax(outputs), "float32")
        model = keras.Model(model.inputs, keras.layers.Softmax()(model.outputs[0]))

    metric = make_metric()
    metric.update_state(labels, outputs)
    expected = float(metric.result())
    clone = metric.__class__.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    clone.update_state(labels, outputs)
    assert float(clone.result()) == expected

    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                  metrics=[make_metric()], jit_compile=True)
    scores = model.evaluate(features, labels, batch_size=8, verbose=0, return_dict=True)
    assert abs(scores[metric.name] - expected) <= 1e-6, (scores, expected)

    with dtype_policy("mixed_float16"):
        mixed = make_metric()
        mixed.update_state(labels, outputs.astype("float16"))
        value = mixed.result()
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert abs(float(value) - expected) <= 5e-3


def run_loss_test(make_loss):
    """Runs the loss contract checks on ``make_loss()`` (a loss on logits)."""
    features, labels, logits = data()
    loss = make_loss()
    expected = float(loss(labels, logits))
    clone = loss.__class__.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert float(clone(labels, logits)) == expected

    keras.utils.set_random_seed(0)
    model = _toy_model()
    model.compile(optimizer="sgd", loss=make_loss(), jit_compile=True)
    eager = float(make_loss()(labels, model.predict_on_batch(features)))
    evaluated = model.evaluate(features, labels, batch_size=len(labels), verbose=0)
    assert abs(evaluated - eager) <= 1e-5
    history = model.fit(features, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    with dtype_policy("mixed_float16"):
        value = make_loss()(labels, logits.astype("float16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(float(value)) and abs(float(value) - expected) <= 1e-2 * max(1, expected)
