"""The tf.data pipeline shared by all loaders: decode, cache, shuffle or rebalance,
batch, augment, prefetch."""

import numpy as np
import tensorflow as tf

from calibkeras.data.augmentation import build_augmentation
from calibkeras.data.preprocessing import decode_image, load_image
from calibkeras.data.sampling import sample_balanced

AUTOTUNE = tf.data.AUTOTUNE


def apply_cache(dataset, cache, suffix=""):
    """`dataset.cache(...)` for `cache` True (memory) or a str file prefix (plus `suffix`);
    `dataset` unchanged for False."""
    if cache is False:
        return dataset
    return dataset.cache("" if cache is True else cache + suffix)


def finish_batches(dataset, options):
    """Batches, optionally augments, prefetches and sets the determinism and sharding
    options (`auto_shard_policy` DATA: under a multi-worker strategy each worker
    keeps its share of every global batch).

    The element order is kept fixed despite parallel maps (`deterministic`) when
    it is meant to be: natural sampling without shuffling, or any `seed`.

    Args:
        dataset: `tf.data.Dataset` of `(image [H, W, 3] float32, label int32)`.
        options: `LoaderOptions`; its batch_size, drop_remainder, augment and zoom
            (apply `build_augmentation(seed, zoom=zoom)` to each batch), seed, shuffle and
            sampling are used.

    Returns:
        `tf.data.Dataset` of `(images [B, H, W, 3], labels [B])`.
    """
    dataset = dataset.batch(options.batch_size, drop_remainder=options.drop_remainder)
    if options.augment:
        augmentation = build_augmentation(seed=options.seed, zoom=options.zoom)
        dataset = dataset.map(
            lambda images, labels: (augmentation(images, training=True), labels),
            num_parallel_calls=AUTOTUNE,
        )
    dataset = dataset.prefetch(AUTOTUNE)
    data_options = tf.data.Options()
    data_options.deterministic = (
        options.sampling == "natural" and not options.shuffle
    ) or options.seed is not None
    # Under tf.distribute with several workers, every worker builds this same
    # pipeline and keeps its own share of each global batch (sharding by data: the
    # sources are in-memory lists of paths or TFDS records, not one file per worker).
    # The shares partition the data only when every worker draws the same order,
    # i.e. when `seed` is set for shuffling, balanced sampling and augmentation.
    data_options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(data_options)


def file_pipeline(file_paths, labels, num_classes, options):
    """Builds the batched image dataset for a list of files.

    Natural sampling: (shuffled paths ->) parallel `load_image` (-> cache ->
    shuffle) -> batch (-> augment) -> prefetch; one epoch is one pass in file
    order when `shuffle=False`. Balanced sampling: one shuffled, repeated dataset
    per class, drawn uniformly with `sample_balanced` (infinite).

    Args:
        file_paths: sequence of `N` str paths (already checked).
        labels: int array `[N]` of ids in `[0, num_classes)`; every class present
            when `sampling="balanced"`.
        num_classes: int `K`.
        options: `LoaderOptions`; its image_size, batch_size, shuffle, seed,
            augment, sampling, cache and drop_remainder are used.

    Returns:
        `tf.data.Dataset` of `(images float32 [B, H, W, 3], labels int32 [B])`.
    """
    paths = np.asarray([str(p) for p in file_paths], dtype=object)
    labels = np.asarray(labels, dtype=np.int32)
    cache, seed = options.cache, options.seed

    def load(path, label):
        return load_image(path, options.image_size), label

    if options.sampling == "balanced":
        class_datasets = []
        for class_id in range(num_classes):
            members = labels == class_id
            class_dataset = tf.data.Dataset.from_tensor_slices(
                (paths[members].astype(str), labels[members])
            )
            if cache is not False:
                class_dataset = apply_cache(
                    class_dataset.map(load, num_parallel_calls=AUTOTUNE),
                    cache,
                    suffix=f".class{class_id}",
                )
            class_datasets.append(class_dataset)
        dataset = sample_balanced(class_datasets, seed=seed)
        if cache is False:
            dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((paths.astype(str), labels))
        if options.shuffle and cache is False:
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
        if cache is not False:
            dataset = apply_cache(dataset, cache)
            if options.shuffle:
                dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return finish_batches(dataset, options)


def bytes_pipeline(dataset, image_size):
    """Maps `(image_bytes, label)` elements to `(decode_image(bytes), label)` in parallel."""
    return dataset.map(
        lambda image_bytes, label: (decode_image(image_bytes, image_size), label),
        num_parallel_calls=AUTOTUNE,
    )
