"""Trains and scores the tiny model on one device and with MirroredStrategy over two
logical CPU devices; writes the numbers as JSON.

Run in a fresh process (the logical devices must be set before TensorFlow starts):
    python mirrored_check.py DATA_FOLDER OUTPUT_JSON
"""

import sys

import tiny_setup

tiny_setup.quiet()

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from calibkeras.distribute import make_strategy  # noqa: E402


def main(folder, output):
    strategy = make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    results = {"num_replicas": strategy.num_replicas_in_sync}

    train_data, val_data = tiny_setup.load_data(folder)
    results["shards_by_data"] = (
        train_data.dataset.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.DATA
    )
    single = tiny_setup.build_model(train_data.class_counts)
    results["single_train"] = tiny_setup.train(single, train_data, val_data)

    # Fresh datasets: the same seeded shuffle order as the single-device run.
    train_data, val_data = tiny_setup.load_data(folder)
    with strategy.scope():
        mirrored = tiny_setup.build_model(train_data.class_counts)
    results["mirrored_variable"] = type(mirrored.calibration.scale.value).__name__
    results["mirrored_train"] = tiny_setup.train(mirrored, train_data, val_data)

    # Scores on fixed weights: both models hold the mirrored model's final weights.
    single.set_weights(mirrored.get_weights())
    arrays = tiny_setup.weighted_val_arrays(val_data)
    results["single_score"] = tiny_setup.score(single, val_data, arrays)
    results["mirrored_score"] = tiny_setup.score(mirrored, val_data, arrays)
    results["single_other"] = tiny_setup.other_pieces(single, val_data)
    with strategy.scope():
        results["mirrored_other"] = tiny_setup.other_pieces(mirrored, val_data)
    results["single_small"] = tiny_setup.small_batches(single, val_data)
    with strategy.scope():
        results["mirrored_small"] = tiny_setup.small_batches(mirrored, val_data)
    tiny_setup.write_json(output, results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
