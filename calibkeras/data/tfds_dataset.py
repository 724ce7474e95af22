"""Loader for an image classification dataset from TensorFlow Datasets (TFDS)."""

import numpy as np
import tensorflow as tf

from calibkeras.data.labeled_dataset import LabeledDataset
from calibkeras.data.pipeline import (
    AUTOTUNE,
    apply_cache,
    bytes_pipeline,
    check_pipeline_arguments,
    finish_batches,
)
from calibkeras.data.sampling import resample_balanced, sampling_prior
from calibkeras.priors import class_counts, prior_from_counts


def dataset_from_tfds(
    name,
    split="train",
    *,
    data_dir=None,
    download=True,
    image_key="image",
    label_key="label",
    image_size=(224, 224),
    batch_size=32,
    shuffle=False,
    seed=None,
    augment=False,
    sampling="natural",
    cache=False,
    shuffle_buffer_size=10_000,
    drop_remainder=False,
):
    """Builds a batched image dataset from a TFDS image classification dataset.

    The images are read as their encoded bytes (`tfds.decode.SkipDecoding`) and
    decoded with `calibkeras.data.decode_image`, the same function the CSV
    loader and the serving signatures use, so TFDS data get exactly the
    preprocessing a served model sees. Class names come from the label
    feature (`tfds.features.ClassLabel`); class counts come from one pass over
    the split when the dataset is built (images are not decoded, but every
    record is read once: a few seconds to a minute for large splits such as
    Food-101 "train").

    Sampling, `prior`, augmentation and determinism are as in
    `dataset_from_csv`. Balanced sampling here uses
    `tf.data.Dataset.rejection_resample` on the repeated split (the class
    counts are known, so no estimation is needed); the result is infinite
    (pass `steps_per_epoch`); for strongly imbalanced splits TensorFlow logs
    "Proportion of examples rejected by sampler is high" up to 10 times, which
    is expected. `file_paths` of the result is empty.

    Args:
        name: str TFDS name, e.g. "food101" or "tf_flowers" (optionally with a
            version, "food101:2.0.0").
        split: str TFDS split, e.g. "train", "validation", "train[:90%]".
            Default "train".
        data_dir: str folder of prepared TFDS data, or None for TFDS' default.
        download: bool, call `download_and_prepare()` first (needs network the
            first time; a no-op when the data are already prepared). Default True.
        image_key: str, the image feature. Default "image".
        label_key: str, the `ClassLabel` feature. Default "label".
        image_size: `(height, width)`. Default (224, 224).
        batch_size: positive int. Default 32.
        shuffle: bool, shuffle files and examples (buffer of
            `shuffle_buffer_size` encoded images). Default False.
        seed: int or None. Default None.
        augment: bool. Default False (keep False for evaluation data).
        sampling: "natural" (default) or "balanced".
        cache: False (default), True (memory) or a str file prefix; caches the
            decoded, resized images (`N * H * W * 3 * 4` bytes).
        shuffle_buffer_size: positive int, examples in the shuffle buffer.
            Default 10,000.
        drop_remainder: bool. Default False.

    Returns:
        `LabeledDataset` (see `dataset_from_csv`), with `file_paths` empty.

    Raises:
        ValueError: if `image_key` is not an Image feature, `label_key` is not
            a ClassLabel feature (the message lists the features), the split
            is empty, a class has no examples in the split, or an argument is
            bad.

    Example:
    ```python
    train = dataset_from_tfds("food101", "train", image_size=(224, 224),
                              shuffle=True, augment=True, seed=0)
    ```
    """
    # Imported here: tensorflow_datasets is slow to import and only this loader needs it.
    import tensorflow_datasets as tfds

    arguments = check_pipeline_arguments(
        image_size, batch_size, shuffle, seed, augment, sampling, cache, drop_remainder
    )
    if (
        isinstance(shuffle_buffer_size, bool)
        or not isinstance(shuffle_buffer_size, int)
        or shuffle_buffer_size < 1
    ):
        raise ValueError(
            f"`shuffle_buffer_size` must be a positive integer, got {shuffle_buffer_size!r}"
        )
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    available = ", ".join(features.keys())
    if image_key not in features or not isinstance(features[image_key], tfds.features.Image):
        raise ValueError(
            f"`image_key` '{image_key}' is not an Image feature of TFDS dataset '{name}'; "
            f"features are: {available}"
        )
    if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        raise ValueError(
            f"`label_key` '{label_key}' is not a ClassLabel feature of TFDS dataset "
            f"'{name}'; features are: {available}"
        )
    class_names = tuple(features[label_key].names)
    if download:
        builder.download_and_prepare()

    # The same reader as the image pipeline below, images left encoded, so the
    # counts describe exactly the examples the pipeline yields.
    label_only = builder.as_dataset(
        split=split, decoders={image_key: tfds.decode.SkipDecoding()}, shuffle_files=False
    )
    labels = np.concatenate(
        [np.zeros([0], np.int64)]
        + [
            batch.numpy()
            for batch in label_only.map(lambda example: example[label_key]).batch(8192)
        ]
    ).astype(np.int32)
    source = f"TFDS '{name}' split '{split}'"
    if labels.size == 0:
        raise ValueError(f"{source} has no examples")
    counts = class_counts(labels, len(class_names))
    empty = [f"'{class_names[k]}' (id {k})" for k in np.flatnonzero(counts == 0)]
    if empty:
        listed = ", ".join(empty[:10]) + (f", ... ({len(empty)} in all)" if len(empty) > 10 else "")
        raise ValueError(
            f"classes {listed} have no examples in {source}; every class needs at least "
            "one example: use a larger split"
        )

    read_config = tfds.ReadConfig(shuffle_seed=arguments["seed"])
    raw = builder.as_dataset(
        split=split,
        decoders={image_key: tfds.decode.SkipDecoding()},
        shuffle_files=arguments["shuffle"] or arguments["sampling"] == "balanced",
        read_config=read_config,
    ).map(
        lambda example: (example[image_key], tf.cast(example[label_key], tf.int32)),
        num_parallel_calls=AUTOTUNE,
    )
    cached = arguments["cache"] is not False
    if cached:
        raw = apply_cache(bytes_pipeline(raw, arguments["image_size"]), arguments["cache"])
    if arguments["shuffle"] or arguments["sampling"] == "balanced":
        raw = raw.shuffle(
            min(shuffle_buffer_size, int(labels.size)),
            seed=arguments["seed"],
            reshuffle_each_iteration=True,
        )
    if arguments["sampling"] == "balanced":
        raw = resample_balanced(
            raw, lambda image, label: label, prior_from_counts(counts), seed=arguments["seed"]
        )
    if not cached:
        raw = bytes_pipeline(raw, arguments["image_size"])
    dataset = finish_batches(
        raw,
        batch_size=arguments["batch_size"],
        augment=arguments["augment"],
        seed=arguments["seed"],
        drop_remainder=arguments["drop_remainder"],
        deterministic=(not arguments["shuffle"] and arguments["sampling"] == "natural")
        or arguments["seed"] is not None,
    )
    return LabeledDataset(
        dataset=dataset,
        class_names=class_names,
        class_counts=counts,
        prior=sampling_prior(counts, arguments["sampling"]),
        file_paths=(),
        labels=labels,
        num_examples=int(labels.size),
        batch_size=arguments["batch_size"],
        image_size=arguments["image_size"],
        sampling=arguments["sampling"],
    )
