"""Serving latency: a calibkeras SavedModel export against the same network exported
without calibration layers.

Model: ``calibkeras.models.build_classifier(10, backbone="efficientnet_lite0",
weights="imagenet", image_size=160)`` with ``T = 1.3`` and a uniform prior, exported
with ``calibkeras.export.export_saved_model``. Its ``serving_default`` takes
``images`` of unknown shape (checked in the graph by assert ops), and returns
``probabilities``, ``classes``, ``class_names`` (strings) and ``confidence``.

Plain: the same layers and weights without TemperatureScaling and PriorShift
(``images -> backbone -> avg_pool -> dropout -> logits -> softmax``), exported with
``keras.export.ExportArchive``: ``serving_default`` takes float32 ``images``
``[None, 160, 160, 3]`` and returns ``{"probabilities": ...}``.

Two diagnostic exports split the difference (they are not calibkeras' API):

* ``plain + input checks``: the plain model behind calibkeras' in-graph input checks
  (``calibkeras.export.saved_model._checked_images``; input spec of unknown shape).
* ``calibkeras outputs, no checks``: calibkeras' serving_default computation
  (temperature, prior, softmax, classes, class_names, confidence) with the plain
  model's fixed input spec and no checks.

Each export is loaded with ``tf.saved_model.load`` and its
``signatures["serving_default"]`` is called with a float32 tensor of random 0..255
pixels (the same tensor for every model; batch 1 and 32). After warm-up calls, the
timed calls go round the models in an order rotated each time, so that other load
hits all alike; median and p90 per model, and the overhead ratio
``median(calibkeras) / median(plain) - 1``. The calibkeras and plain exports are
also timed through ``calibkeras.export.ServingSession`` (TF Serving's TF1 loader,
``Session.run`` with a NumPy feed, all outputs fetched).

Finally, tiny SavedModels that hold only the ops calibkeras adds (the input checks;
the temperature/prior/softmax/argmax/class-name head) are timed beside their plain
counterparts, to give the absolute cost of those ops in microseconds.

Run:
    /work/venv/bin/python benchmarks/serving_latency.py [--calls 1000] [--calls32 100]
"""

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from calibkeras.export import ServingSession, export_saved_model  # noqa: E402
from calibkeras.export.saved_model import _checked_images, class_outputs  # noqa: E402
from calibkeras.models import build_classifier  # noqa: E402

IMAGE_SIZE = 160
TEMPERATURE = 1.3


def build_models():
    model = build_classifier(10, backbone="efficientnet_lite0", weights="imagenet",
                             image_size=IMAGE_SIZE)
    model.calibration.set_temperature(TEMPERATURE)
    model.set_prior("uniform")
    probabilities = keras.layers.Softmax(name="probabilities")(model.head.output)
    plain = keras.Model(model.inputs, probabilities, name="plain")
    return model, plain


def export_plain(plain, path, checked):
    """The plain model as a SavedModel with a serving_default returning probabilities."""
    archive = keras.export.ExportArchive()
    archive.track(plain)
    if checked:
        spec = tf.TensorSpec(None, tf.float32, name="images")

        def serve(images):
            return {"probabilities": plain(_checked_images(images, (IMAGE_SIZE, IMAGE_SIZE)),
                                           training=False)}
    else:
        spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")

        def serve(images):
            return {"probabilities": plain(images, training=False)}

    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.write_out(path, verbose=False)
    return path


def export_outputs_unchecked(model, path):
    """calibkeras' serving_default computation without the input checks (diagnostic)."""
    scaled = keras.Model(model.inputs, model.calibration.output)
    class_names = tf.Variable(model.class_names, dtype=tf.string, trainable=False)
    log_prior = tf.Variable(model.prior_shift.log_prior.value.numpy(), dtype=tf.float32,
                            trainable=False)

    def serve(images):
        probabilities = tf.nn.softmax(tf.cast(scaled(images, training=False), tf.float32)
                                      + log_prior)
        return class_outputs(probabilities, class_names)

    archive = keras.export.ExportArchive()
    archive.track(scaled)
    archive.add_variable_collection("extra", [class_names, log_prior])
    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")
    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.write_out(path, verbose=False)
    return path


def micro_exports(folder, class_names):
    """Tiny SavedModels holding only the ops calibkeras adds around the network.

    ``identity`` / ``input checks`` take images and return one pixel per image, without
    and with calibkeras' in-graph checks; ``softmax head`` / ``calibkeras head`` take
    (batch, 10) logits and return the plain model's output and calibkeras'
    serving_default outputs (temperature, log prior, softmax, argmax, class name
    gather, max). Their latency difference is the absolute cost of those ops.
    """
    image_spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")
    logits_spec = tf.TensorSpec([None, 10], tf.float32, name="logits")
    module = tf.Module()
    module.names = tf.Variable(class_names, dtype=tf.string, trainable=False)
    module.log_prior = tf.Variable(np.full(10, -np.log(10.0), np.float32), trainable=False)
    module.log_temperature = tf.Variable(np.log(TEMPERATURE), dtype=tf.float32, trainable=False)

    def head(logits):
        probabilities = tf.nn.softmax(logits * tf.exp(-module.log_temperature) + module.log_prior)
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "classes": classes,
                "class_names": tf.gather(module.names, classes),
                "confidence": tf.reduce_max(probabilities, axis=-1)}

    functions = {
        "identity (one pixel out)": (
            lambda images: {"x": images[:, 0, 0, 0]}, image_spec),
        "calibkeras input checks (one pixel out)": (
            lambda images: {"x": _checked_images(images, (IMAGE_SIZE, IMAGE_SIZE))[:, 0, 0, 0]},
            tf.TensorSpec(None, tf.float32, name="images")),
        "softmax head (plain)": (lambda logits: {"probabilities": tf.nn.softmax(logits)},
                                 logits_spec),
        "calibkeras head (T, prior, softmax, classes, names, confidence)": (head, logits_spec),
    }
    loaded = {}
    for index, (name, (fn, spec)) in enumerate(functions.items()):
        module.serve = tf.function(fn, input_signature=[spec])
        path = os.path.join(folder, f"micro{index}")
        tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
        signature = tf.saved_model.load(path).signatures["serving_default"]
        key = spec.name
        loaded[name] = (lambda batch, f=signature, k=key: f(**{k: batch[k]}))
    return loaded


def time_calls(functions, batch, calls, warmup):
    """Rotated interleaved calls; returns {name: [seconds]}."""
    names = list(functions)
    for name in names:
        for _ in range(warmup):
            functions[name](batch)
    times = {name: [] for name in names}
    for index in range(calls):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            functions[name](batch)
            times[name].append(time.perf_counter() - start)
    return times


def p90(values):
    return float(np.percentile(values, 90))


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args, folder):
    """Builds, exports, times and prints; the exports go to ``folder``."""
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}, python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, TF intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads()} (0 = all)"
    )
    model, plain = build_models()
    paths = {
        "calibkeras export_saved_model": export_saved_model(model, os.path.join(folder, "ck")),
        "plain (ExportArchive)": export_plain(plain, os.path.join(folder, "plain"), False),
        "diagnostic: plain + input checks": export_plain(
            plain, os.path.join(folder, "plain_checked"), True),
        "diagnostic: calibkeras outputs, no checks": export_outputs_unchecked(
            model, os.path.join(folder, "ck_unchecked")),
    }
    signatures = {
        name: tf.saved_model.load(path).signatures["serving_default"]
        for name, path in paths.items()
    }
    rng = np.random.default_rng(0)
    batches = {size: rng.uniform(0, 255, (size, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
               for size in (1, 32)}

    # Agreement: calibkeras probabilities = softmax(log(plain probabilities) / T).
    check = tf.constant(batches[32])
    ck_out = signatures["calibkeras export_saved_model"](images=check)
    plain_probs = signatures["plain (ExportArchive)"](images=check)["probabilities"].numpy()
    expected = tf.nn.softmax(np.log(plain_probs) / TEMPERATURE).numpy()
    diff = np.abs(ck_out["probabilities"].numpy() - expected).max()
    print(f"max |calibkeras probs - softmax(log(plain probs) / T)| = {diff:.2g}; "
          f"calibkeras outputs: {sorted(ck_out)}")
    assert diff < 1e-4, diff

    functions = {
        name: (lambda batch, fn=fn: fn(images=batch)) for name, fn in signatures.items()
    }
    load_before = loadavg()
    results = []
    for size, calls, warmup in ((1, args.calls, 20), (32, args.calls32, 5)):
        batch = tf.constant(batches[size])
        times = time_calls(functions, batch, calls, warmup)
        results.append(("tf.saved_model.load signature", size, calls, times))
        print(f"batch {size}: done (load {loadavg()})", flush=True)
    if not args.no_session:
        sessions = {
            "calibkeras export_saved_model": ServingSession(paths["calibkeras export_saved_model"]),
            "plain (ExportArchive)": ServingSession(paths["plain (ExportArchive)"]),
        }
        session_functions = {
            name: (lambda batch, s=session: s.run("serving_default", images=batch))
            for name, session in sessions.items()
        }
        for size, calls, warmup in ((1, args.calls, 20), (32, args.calls32, 5)):
            times = time_calls(session_functions, batches[size], calls, warmup)
            results.append(("ServingSession (TF1 loader)", size, calls, times))
            print(f"session batch {size}: done (load {loadavg()})", flush=True)
        for session in sessions.values():
            session.close()
    micro = micro_exports(folder, model.class_names)
    micro_inputs = {"images": tf.constant(batches[1]),
                    "logits": tf.constant(np.random.default_rng(1).normal(size=(1, 10)),
                                          tf.float32)}
    micro_times = time_calls(micro, micro_inputs, args.micro_calls, 50)
    load_after = loadavg()

    print(f"\nload average before {load_before}, after {load_after}\n")
    print("| path | batch | model | calls | median ms | p10 ms | p90 ms | median / plain - 1 | "
          "median of paired ratios - 1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = []
    for path, size, calls, times in results:
        base = times["plain (ExportArchive)"]
        for name, values in times.items():
            overhead = statistics.median(values) / statistics.median(base) - 1
            paired = statistics.median(np.array(values) / np.array(base)) - 1
            print(f"| {path} | {size} | {name} | {calls} | {1e3 * statistics.median(values):.2f} "
                  f"| {1e3 * np.percentile(values, 10):.2f} | {1e3 * p90(values):.2f} | "
                  f"{100 * overhead:+.1f}% | {100 * paired:+.1f}% |")
            if name == "calibkeras export_saved_model":
                summary.append((path, size, overhead))
    print("\nThe added ops alone (tiny SavedModels, batch 1, "
          f"{args.micro_calls} interleaved calls each):\n")
    print("| export | median us | p10 us | p90 us |\n|---|---|---|---|")
    for name, values in micro_times.items():
        print(f"| {name} | {1e6 * statistics.median(values):.0f} | "
              f"{1e6 * np.percentile(values, 10):.0f} | {1e6 * p90(values):.0f} |")
    print("\n| path | batch | calibkeras overhead | target (< 5%) |\n|---|---|---|---|")
    for path, size, overhead in summary:
        print(f"| {path} | {size} | {100 * overhead:+.1f}% | "
              f"{'met' if overhead < 0.05 else 'missed'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000,
                        help="timed calls per model, batch 1")
    parser.add_argument("--calls32", type=int, default=100,
                        help="timed calls per model, batch 32")
    parser.add_argument("--micro-calls", type=int, default=3000,
                        help="timed calls per tiny export of the added ops")
    parser.add_argument("--no-session", action="store_true", help="skip the ServingSession runs")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="serving_latency_")
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # about 110 MB of exports


if __name__ == "__main__":
    main()
