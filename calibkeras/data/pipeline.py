"""The tf.data pipeline shared by all loaders: decode, cache, shuffle or rebalance,
batch, augment, prefetch."""

import numbers
import os

import numpy as np
import tensorflow as tf

from calibkeras.data.augmentation import build_augmentation
from calibkeras.data.preprocessing import check_image_size, decode_image, load_image
from calibkeras.data.sampling import check_sampling, sample_balanced

AUTOTUNE = tf.data.AUTOTUNE


def check_pipeline_arguments(
    image_size, batch_size, shuffle, seed, augment, sampling, cache, drop_remainder
):
    """Checks the pipeline arguments every loader shares, before any work is done.

    Returns:
        dict of the checked arguments (`image_size` as a tuple of ints, `cache`
        as False, "" for memory, or a str file prefix).

    Raises:
        ValueError: naming the bad argument and value.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
    for name, value in (
        ("shuffle", shuffle),
        ("augment", augment),
        ("drop_remainder", drop_remainder),
    ):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"`{name}` must be True or False, got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"`seed` must be an integer or None, got {seed!r}")
    if cache is True:
        cache_spec = ""
    elif cache is False or cache is None:
        cache_spec = False
    elif isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
        cache_spec = os.fspath(cache)
    else:
        raise ValueError(
            f"`cache` must be False, True (in memory) or a file path prefix, got {cache!r}"
        )
    return {
        "image_size": check_image_size(image_size),
        "batch_size": int(batch_size),
        "shuffle": bool(shuffle),
        "seed": None if seed is None else int(seed),
        "augment": bool(augment),
        "sampling": check_sampling(sampling),
        "cache": cache_spec,
        "drop_remainder": bool(drop_remainder),
    }


def apply_cache(dataset, cache, suffix=""):
    """`dataset.cache(...)` for `cache` "" (memory) or a file prefix; unchanged for False."""
    if cache is False:
        return dataset
    return dataset.cache(cache + suffix if cache else "")


def finish_batches(dataset, *, batch_size, augment, seed, drop_remainder, deterministic):
    """Batches, optionally augments, prefetches and sets the determinism and sharding
    options (`auto_shard_policy` DATA: under a multi-worker strategy each worker
    keeps its share of every global batch).

    Args:
        dataset: `tf.data.Dataset` of `(image [H, W, 3] float32, label int32)`.
        batch_size: int.
        augment: bool, apply `build_augmentation(seed)` to each batch.
        seed: int or None.
        drop_remainder: bool, drop the last partial batch.
        deterministic: bool, keep element order fixed despite parallel maps.

    Returns:
        `tf.data.Dataset` of `(images [B, H, W, 3], labels [B])`.
    """
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if augment:
        augmentation = build_augmentation(seed=seed)
        dataset = dataset.map(
            lambda images, labels: (augmentation(images, training=True), labels),
            num_parallel_calls=AUTOTUNE,
        )
    dataset = dataset.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    # Under tf.distribute with several workers, every worker builds this same
    # pipeline and keeps its own share of each global batch (sharding by data: the
    # sources are in-memory lists of paths or TFDS records, not one file per worker).
    # The shares partition the data only when every worker draws the same order,
    # i.e. when `seed` is set for shuffling, balanced sampling and augmentation.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def file_pipeline(
    file_paths,
    labels,
    num_classes,
    *,
    image_size,
    batch_size,
    shuffle,
    seed,
    augment,
    sampling,
    cache,
    drop_remainder,
):
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
        image_size, batch_size, shuffle, seed, augment, sampling, cache,
            drop_remainder: checked arguments (see `check_pipeline_arguments`).

    Returns:
        `tf.data.Dataset` of `(images float32 [B, H, W, 3], labels int32 [B])`.
    """
    paths = np.asarray([str(p) for p in file_paths], dtype=object)
    labels = np.asarray(labels, dtype=np.int32)

    def load(path, label):
        return load_image(path, image_size), label

    if sampling == "balanced":
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
        deterministic = seed is not None
    else:
        dataset = tf.data.Dataset.from_tensor_slices((paths.astype(str), labels))
        if shuffle and cache is False:
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
        if cache is not False:
            dataset = apply_cache(dataset, cache)
            if shuffle:
                dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        deterministic = not shuffle or seed is not None
    return finish_batches(
        dataset,
        batch_size=batch_size,
        augment=augment,
        seed=seed,
        drop_remainder=drop_remainder,
        deterministic=deterministic,
    )


def bytes_pipeline(dataset, image_size):
    """Maps `(image_bytes, label)` elements to `(decode_image(bytes), label)` in parallel."""
    return dataset.map(
        lambda image_bytes, label: (decode_image(image_bytes, image_size), label),
        num_parallel_calls=AUTOTUNE,
    )
