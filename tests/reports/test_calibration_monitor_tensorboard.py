"""CalibrationMonitor(log_dir=...) writes scalars and a reliability diagram per epoch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from calibkeras.callbacks import CalibrationMonitor
from calibkeras.reports._figures import PNG_SIGNATURE

SCALARS = ("val_ece", "val_brier", "val_nll", "val_balanced_accuracy")


def read_events(log_dir):
    """{(step, tag): (plugin name, value)} from every event file under ``log_dir``."""
    found = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[(event.step, value.tag)] = (
                    value.metadata.plugin_data.plugin_name,
                    tf.make_ndarray(value.tensor),
                )
    return found


def test_monitor_writes_scalars_and_reliability_image_each_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    log_dir = tmp_path / "logs"
    history = model.fit(x[:160], y[:160], epochs=2, batch_size=32, verbose=0,
                        callbacks=[CalibrationMonitor((x[160:], y[160:]), log_dir=log_dir)])

    events = read_events(log_dir)
    for step in (0, 1):
        for tag in SCALARS:
            plugin, value = events[(step, tag)]
            assert plugin == "scalars"
            assert float(value) == pytest.approx(history.history[tag][step], rel=1e-6)
        plugin, value = events[(step, "val_reliability_diagram")]
        assert plugin == "images"
        width, height, png = value.tolist()
        assert png[:8] == PNG_SIGNATURE
        assert tf.image.decode_png(png).shape[:2] == (int(height), int(width))
    images = [key for key, (plugin, _) in events.items() if plugin == "images"]
    assert sorted(images) == [(0, "val_reliability_diagram"), (1, "val_reliability_diagram")]


def test_monitor_runs_the_model_once_per_epoch(tmp_path):
    x = np.random.default_rng(1).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    calls = []
    predict_on_batch = model.predict_on_batch
    model.predict_on_batch = lambda batch: calls.append(len(batch)) or predict_on_batch(batch)
    monitor = CalibrationMonitor((x, y), batch_size=16, log_dir=tmp_path)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    assert calls == [16, 16, 16, 16]


def test_bad_log_dir():
    with pytest.raises(ValueError, match=r"`log_dir` must be None or a folder path, got 3"):
        CalibrationMonitor((np.zeros((2, 4)), np.zeros(2)), log_dir=3)
