"""Loader for an image classification dataset from TensorFlow Datasets (TFDS)."""

import numpy as np
import tensorflow as tf

from calibkeras.data.labeled_dataset import LabeledDataset
from calibkeras.data.loader_options import resolve_options
from calibkeras.data.pipeline import AUTOTUNE, apply_cache, bytes_pipeline, finish_batches
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
    options=None,
    **option_overrides,
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

    The pipeline is set by `options` (a `LoaderOptions`) and/or its fields as
    keywords: image_size, batch_size, shuffle, seed, augment, sampling, cache,
    drop_remainder, shuffle_buffer_size (not supported here, since TFDS records
    are not image files: `on_bad_image`, `bad_image_report`, `validate_images`,
    `confine_to_image_root`). `shuffle` shuffles the files and the examples (a
    buffer of `shuffle_buffer_size` encoded images); `cache` caches the decoded,
    resized images. Sampling, `prior`, augmentation and determinism are as
    described in `LoaderOptions`. Balanced sampling here uses
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
        options: `LoaderOptions`, or None for its defaults.
        **option_overrides: `LoaderOptions` fields, applied on top of `options`.

    Returns:
        `LabeledDataset` (see `dataset_from_csv`), with `file_paths` empty.

    Raises:
        ValueError: if `image_key` is not an Image feature, `label_key` is not
            a ClassLabel feature (the message lists the features), the split
            is empty, a class has no examples in the split, or an argument or
            option is bad.
        TypeError: for a keyword that is neither an argument nor an option.

    Example:
    ```python
    train = dataset_from_tfds("food101", "train", image_size=(224, 224),
                              shuffle=True, augment=True, seed=0)
    ```
    """
    options = resolve_options(
        dataset_from_tfds,
        options,
        option_overrides,
        unsupported=(
            "on_bad_image",
            "bad_image_report",
            "validate_images",
            "confine_to_image_root",
        ),
    )
    # Imported here: tensorflow_datasets is slow to import and only this loader needs it.
    import tensorflow_datasets as tfds

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

    shuffled = options.shuffle or options.sampling == "balanced"
    raw = builder.as_dataset(
        split=split,
        decoders={image_key: tfds.decode.SkipDecoding()},
        shuffle_files=shuffled,
        read_config=tfds.ReadConfig(shuffle_seed=options.seed),
    ).map(
        lambda example: (example[image_key], tf.cast(example[label_key], tf.int32)),
        num_parallel_calls=AUTOTUNE,
    )
    cached = options.cache is not False
    if cached:
        raw = apply_cache(bytes_pipeline(raw, options.image_size), options.cache)
    if shuffled:
        raw = raw.shuffle(
            min(options.shuffle_buffer_size, int(labels.size)),
            seed=options.seed,
            reshuffle_each_iteration=True,
        )
    if options.sampling == "balanced":
        raw = resample_balanced(
            raw, lambda image, label: label, prior_from_counts(counts), seed=options.seed
        )
    if not cached:
        raw = bytes_pipeline(raw, options.image_size)
    return LabeledDataset(
        dataset=finish_batches(raw, options),
        class_names=class_names,
        class_counts=counts,
        prior=sampling_prior(counts, options.sampling),
        file_paths=(),
        labels=labels,
        num_examples=int(labels.size),
        batch_size=options.batch_size,
        image_size=options.image_size,
        sampling=options.sampling,
    )
