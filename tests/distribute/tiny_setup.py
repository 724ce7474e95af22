"""The tiny data and model the tf.distribute checks share (run in subprocesses).

Nothing here runs a TensorFlow operation at import time: a multi-worker script
must create its strategy before TensorFlow runs anything.
"""

import csv
import json
import os
from pathlib import Path

import numpy as np

CLASS_NAMES = ("a", "b", "c")
IMAGE_SIZE = (8, 8)
BATCH_SIZE = 16
NUM_TRAIN = 64  # 4 global batches of 16: each splits evenly over 2 replicas
# Batches of 16, 16, 16, 2: the last one is smaller but gives each of 2 replicas a row.
# (One of 1 would give Keras' own evaluate an empty replica piece, which the network's
# kernels may refuse on AVX-512 CPUs with oneDNN; calibkeras' own handling of batches
# smaller than the number of replicas, empty pieces included, is `small_batches`.)
NUM_VAL = 50
EPOCHS = 2
LEARNING_RATE = 0.1


def write_images(folder, seed=0):
    """Writes 8x8 PNGs whose colour depends on the class, and train.csv / val.csv.

    Returns:
        dict with the CSV paths.
    """
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]], dtype=np.float64)
    paths = {}
    for split, count in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        labels = rng.choice(3, size=count, p=[0.6, 0.3, 0.1])
        labels[:3] = [0, 1, 2]  # every class present
        rows = []
        for index, label in enumerate(labels):
            pixels = centres[label] + rng.normal(scale=60.0, size=IMAGE_SIZE + (3,))
            name = f"images/{split}_{index:03d}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name)
            rows.append({"filepath": name, "label": CLASS_NAMES[label]})
        path = folder / f"{split}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["filepath", "label"])
            writer.writeheader()
            writer.writerows(rows)
        paths[split] = str(path)
    return paths


def load_data(folder, shuffle=False):
    """The training (cached; shuffled with a seed when `shuffle`) and validation
    LabeledDatasets.

    Training comparisons use `shuffle=False`: with a seeded shuffle every epoch is a
    permutation, but Keras' fit may start a different number of iterators of the
    dataset on one device than under a strategy, so epoch 2 can get another
    permutation than on one device."""
    from calibkeras.data import dataset_from_csv

    folder = Path(folder)
    train = dataset_from_csv(
        folder / "train.csv", class_names=CLASS_NAMES, image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE, shuffle=shuffle, seed=0, cache=True,
    )
    val = dataset_from_csv(
        folder / "val.csv", class_names=CLASS_NAMES, image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE,
    )
    return train, val


def build_model(class_counts):
    """A CalibratedClassifier: Input(8x8x3) -> Conv backbone -> GAP -> Dense(3) ->
    TemperatureScaling -> PriorShift, compiled with the logit-adjusted loss, plain SGD
    and the calibkeras metrics, with fixed initial weights (the same on every device
    and worker)."""
    import keras

    from calibkeras.losses import LogitAdjustedCrossentropy
    from calibkeras.metrics import (
        BalancedAccuracy,
        BrierScore,
        ExpectedCalibrationError,
        NegativeLogLikelihood,
    )
    from calibkeras.models import CalibratedClassifier

    inputs = keras.Input(IMAGE_SIZE + (3,))
    features = keras.layers.Rescaling(1.0 / 255)(inputs)
    features = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(features)
    model = CalibratedClassifier(keras.Model(inputs, features), 3, dropout=0.0,
                                 class_counts=class_counts)
    rng = np.random.default_rng(1)
    for layer in (model.backbone.get_layer("conv"), model.head):
        layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()])
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=LogitAdjustedCrossentropy(class_counts),
        metrics=[
            BalancedAccuracy(3), ExpectedCalibrationError(from_logits=True),
            BrierScore(from_logits=True), NegativeLogLikelihood(from_logits=True),
        ],
    )
    return model


def train(model, train_data, val_data):
    """Fits EPOCHS epochs with CalibrationMonitor and TemperatureCalibration.

    Returns:
        dict: the history's last values, the fitted temperature, the weights.
    """
    from calibkeras.callbacks import CalibrationMonitor, TemperatureCalibration

    calibration = TemperatureCalibration(val_data, prior="validation")
    history = model.fit(
        train_data.dataset, epochs=EPOCHS, verbose=0,
        callbacks=[CalibrationMonitor(val_data), calibration],
    )
    return {
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        "fit_temperature": float(calibration.temperature),
        "weights": [w.tolist() for w in model.get_weights()],
    }


def score(model, val_data, weighted_arrays):
    """Scores with fixed weights: evaluate, CalibrationMonitor, calibrate_temperature,
    and the strategy-aware predictions."""
    from calibkeras.callbacks import CalibrationMonitor, calibrate_temperature
    from calibkeras.distribute import batch_predictor
    from calibkeras.models.inference import predict_balanced_logits

    evaluated = model.evaluate(val_data.dataset, verbose=0, return_dict=True)
    monitor = CalibrationMonitor(val_data)
    monitor.set_model(model)
    weighted = CalibrationMonitor(weighted_arrays, batch_size=10)
    weighted.set_model(model)
    predict = batch_predictor(model)
    outputs = np.concatenate([predict(x) for x, _ in val_data.dataset])
    temperature = calibrate_temperature(model, val_data, prior="validation")
    # What `calibkeras train` scores with after training (outside the scope).
    balanced_logits, _ = predict_balanced_logits(model, val_data)
    return {
        "evaluate": {k: float(v) for k, v in evaluated.items()},
        "monitor": monitor.compute(),
        "monitor_weighted": weighted.compute(),
        "temperature": float(temperature),
        "outputs": outputs.tolist(),
        "balanced_logits": balanced_logits.tolist(),
    }


def other_pieces(model, val_data):
    """The calibkeras pieces the training run does not use, on fixed weights: the
    CostSensitiveDecision layer (dict outputs), the BrierScore and focal losses and the
    classwise ECE under `evaluate`. Call it in the strategy's scope (the new layers'
    and metrics' weights are created here)."""
    import keras

    from calibkeras.distribute import batch_predictor
    from calibkeras.layers import CostSensitiveDecision
    from calibkeras.losses import BrierScore, FocalCrossentropy
    from calibkeras.metrics import ExpectedCalibrationError

    probabilities = keras.layers.Softmax()(model.outputs[0])
    decide = CostSensitiveDecision([[0.0, 5.0, 5.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]],
                                   abstain_cost=0.4)
    decision_model = keras.Model(model.inputs, decide(probabilities))
    predict = batch_predictor(decision_model)
    decisions = [predict(x) for x, _ in val_data.dataset]
    results = {
        "decision": np.concatenate([d["decision"] for d in decisions]).tolist(),
        "expected_cost": np.concatenate([d["expected_cost"] for d in decisions]).tolist(),
    }
    for name, loss in (("brier_loss", BrierScore(from_logits=True)),
                       ("focal_loss", FocalCrossentropy(gamma=2.0))):
        scorer = keras.Model(model.inputs, model.outputs)
        scorer.compile(loss=loss, metrics=[
            ExpectedCalibrationError(classwise=True, num_classes=3, from_logits=True)
        ])
        evaluated = scorer.evaluate(val_data.dataset, verbose=0, return_dict=True)
        results[name] = {k: float(v) for k, v in evaluated.items()}
    return results


def small_batches(model, val_data):
    """Batches smaller than the number of replicas, and an empty one, through
    batch_predictor (of the model behind a layer that refuses empty batches, as
    oneDNN does on AVX-512 CPUs) and CalibrationMonitor (batches of 1)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from empty_batch_guard import guarded

    from calibkeras.callbacks import CalibrationMonitor
    from calibkeras.distribute import batch_predictor

    images, labels, weights = weighted_val_arrays(val_data)
    predict = batch_predictor(guarded(model))
    outputs = {str(size): predict(images[:size]) for size in (0, 1, 3)}
    shapes = {size: list(value.shape) for size, value in outputs.items()}
    outputs = {size: value.tolist() for size, value in outputs.items()}
    monitor = CalibrationMonitor((images[:5], labels[:5]), batch_size=1)
    monitor.set_model(model)
    weighted = CalibrationMonitor((images[:5], labels[:5], weights[:5]), batch_size=1)
    weighted.set_model(model)
    return {"outputs": outputs, "shapes": shapes, "monitor": monitor.compute(),
            "weighted": weighted.compute()}


def weighted_val_arrays(val_data):
    """The validation images and labels as arrays, with fixed sample weights."""
    images = np.concatenate([x.numpy() for x, _ in val_data.dataset])
    labels = np.concatenate([y.numpy() for _, y in val_data.dataset])
    weights = np.random.default_rng(2).uniform(0.2, 2.0, size=len(labels)).astype("float32")
    return images, labels, weights


def write_json(path, payload):
    Path(path).write_text(json.dumps(payload))


def example_ids(images):
    """A per-image identifier (the rounded pixel sum) for a batch of images."""
    images = np.asarray(images)
    return np.round(images.reshape(len(images), -1).sum(axis=1)).astype(int).tolist()


def quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
