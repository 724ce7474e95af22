"""One worker of the two-worker MultiWorkerMirroredStrategy check; writes JSON.

    TF_CONFIG=... python multi_worker_check.py DATA_FOLDER OUTPUT_JSON TIMEOUT_SECONDS

With ``--bad-setups`` (TF_CONFIG naming a second worker that is never started) it
writes the errors of two mistakes instead (see `bad_setups`).
"""

import sys
import time

import tiny_setup

tiny_setup.quiet()

import tensorflow as tf  # noqa: E402

# Two workers share two CPU cores: one thread pool each (set before TF starts).
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(2)

from calibkeras.distribute import is_chief, make_strategy, validate_tf_config  # noqa: E402


def bad_setups(output, timeout):
    """Two mistakes, in one process: TF_CONFIG names a peer that never starts (a
    TimeoutError after `timeout` s, not a hang), then the strategy is created after
    TensorFlow has run an operation (a RuntimeError)."""
    import json
    import os

    results = {}
    started = time.monotonic()
    try:
        make_strategy("multi_worker", timeout_seconds=timeout)
        results["missing_peer"] = {"error_type": None, "message": None}
    except Exception as error:  # noqa: BLE001 - the error is the result
        results["missing_peer"] = {"error_type": type(error).__name__, "message": str(error)}
    results["missing_peer"]["elapsed"] = time.monotonic() - started

    config = json.loads(os.environ["TF_CONFIG"])
    config["cluster"]["worker"] = config["cluster"]["worker"][:1]
    os.environ["TF_CONFIG"] = json.dumps(config)
    tf.constant(1.0) + 1.0  # TensorFlow starts
    try:
        make_strategy("multi_worker", timeout_seconds=timeout)
        results["late"] = {"error_type": None, "message": None}
    except Exception as error:  # noqa: BLE001
        results["late"] = {"error_type": type(error).__name__, "message": str(error)}
    tiny_setup.write_json(output, results)


def shards(strategy, folder):
    """Which training examples this worker's replica gets, step by step, for two
    epochs of the shuffled (seeded) pipeline."""
    train_data, _ = tiny_setup.load_data(folder, shuffle=True)
    distributed = strategy.experimental_distribute_dataset(train_data.dataset)
    epochs = []
    for _ in range(2):
        steps = []
        for images, _labels in distributed:
            local = strategy.experimental_local_results(images)
            steps.append([tiny_setup.example_ids(piece) for piece in local])
        epochs.append(steps)
    return epochs


def main(folder, output, timeout):
    started = time.monotonic()
    strategy = make_strategy("multi_worker", timeout_seconds=timeout)
    results = {
        "num_replicas": strategy.num_replicas_in_sync,
        "is_chief": is_chief(validate_tf_config()),
    }
    train_data, val_data = tiny_setup.load_data(folder)
    results["class_counts"] = train_data.class_counts.tolist()
    results["shards_by_data"] = (
        train_data.dataset.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.DATA
    )
    with strategy.scope():
        model = tiny_setup.build_model(train_data.class_counts)
    results["train"] = tiny_setup.train(model, train_data, val_data)
    arrays = tiny_setup.weighted_val_arrays(val_data)
    results["score"] = tiny_setup.score(model, val_data, arrays)
    results["shards"] = shards(strategy, folder)
    if results["is_chief"]:
        # Single-device reference, outside the strategy: no cross-worker traffic.
        train_data, val_data = tiny_setup.load_data(folder)
        single = tiny_setup.build_model(train_data.class_counts)
        results["single_train"] = tiny_setup.train(single, train_data, val_data)
        single.set_weights(model.get_weights())
        results["single_score"] = tiny_setup.score(single, val_data, arrays)
        train_data, _ = tiny_setup.load_data(folder, shuffle=True)
        results["single_order"] = [
            [tiny_setup.example_ids(images) for images, _ in train_data.dataset]
            for _ in range(2)
        ]
    results["seconds"] = time.monotonic() - started
    tiny_setup.write_json(output, results)


if __name__ == "__main__":
    if sys.argv[1] == "--bad-setups":
        bad_setups(sys.argv[2], float(sys.argv[3]))
    else:
        main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
