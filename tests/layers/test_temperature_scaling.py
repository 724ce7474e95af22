import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from calibkeras.calibration import fit_temperature
from calibkeras.layers import TemperatureScaling

logit_arrays = arrays(
    np.float32, st.tuples(st.integers(1, 8), st.integers(2, 6)),
    elements=st.floats(-30, 30, width=32, allow_subnormal=False),
)


@settings(max_examples=30, deadline=None)
@given(logit_arrays)
def test_temperature_one_is_identity(logits):
    np.testing.assert_array_equal(np.asarray(TemperatureScaling()(logits)), logits)


@settings(max_examples=40, deadline=None)
@given(logit_arrays, st.floats(0.05, 20.0))
def test_temperature_keeps_argmax_and_divides(logits, temperature):
    scaled = np.asarray(TemperatureScaling(initial_temperature=temperature)(logits))
    np.testing.assert_allclose(scaled, logits / temperature, rtol=1e-5, atol=1e-6)
    distinct = np.sort(logits, axis=1)
    unique_max = distinct[:, -1] > distinct[:, -2]
    np.testing.assert_array_equal(
        scaled.argmax(1)[unique_max], logits.argmax(1)[unique_max]
    )


def test_set_temperature_and_property():
    layer = TemperatureScaling(initial_temperature=2.0)
    assert layer.temperature == pytest.approx(2.0)
    layer.set_temperature(0.5)
    assert layer.temperature == pytest.approx(0.5)
    assert [w.name for w in layer.trainable_weights] == ["log_temperature"]


def test_config_and_keras_file_round_trip(tmp_path):
    inputs = keras.Input((4,))
    layer = TemperatureScaling(initial_temperature=1.5, name="temperature")
    model = keras.Model(inputs, layer(inputs))
    layer.set_temperature(3.0)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    clone = TemperatureScaling.from_config(layer.get_config())
    assert clone.initial_temperature == 1.5 and clone.name == "temperature"
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_layer("temperature").temperature == pytest.approx(3.0)


def test_trains_inside_model_fit_toward_exact_optimum(small_record):
    probs, labels = small_record
    logits = np.log(probs[:3000]).astype("float32")
    labels = labels[:3000]
    inputs = keras.Input((10,))
    model = keras.Model(inputs, TemperatureScaling(name="temperature")(inputs))
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(logits, labels, batch_size=3000, epochs=150, verbose=0)
    exact = fit_temperature(logits, labels)
    assert model.get_layer("temperature").temperature == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "2"])
def test_bad_initial_temperature(value):
    with pytest.raises(ValueError, match=r"`initial_temperature` must be a positive finite"):
        TemperatureScaling(initial_temperature=value)


def test_bad_set_temperature():
    with pytest.raises(ValueError, match=r"`temperature` must be a positive finite number, got 0"):
        TemperatureScaling().set_temperature(0)
