"""Natural and class-balanced sampling, and the class prior each one produces.

Natural sampling (the default everywhere) shows the model each example once per
epoch, so the batches carry the data's own class prior. Balanced sampling draws
each class equally often; it changes the prior the model learns to uniform.
calibkeras prefers to keep the natural prior and make it explicit (PriorShift,
the logit-adjusted loss), but when balanced sampling is used, the prior it
produces is reported so that calibration can undo it.
"""

import numpy as np
import tensorflow as tf

from calibkeras.choices import SAMPLING_MODES
from calibkeras.priors import prior_from_counts
from calibkeras.utils.checks import check_choice


def check_sampling(sampling):
    """Checks a `sampling` argument.

    Args:
        sampling: "natural" or "balanced".

    Returns:
        The same string.

    Raises:
        ValueError: for any other value.
    """
    return check_choice(sampling, "sampling", SAMPLING_MODES)


def sampling_prior(counts, sampling):
    """The class prior seen in batches under a sampling mode.

    Args:
        counts: class counts, array-like `[K]`, all positive for "balanced".
        sampling: "natural" (prior = counts / sum) or "balanced" (uniform 1/K).

    Returns:
        float64 array `[K]` summing to 1.

    Example:
    >>> sampling_prior([3, 1], "balanced")
    array([0.5, 0.5])
    """
    check_sampling(sampling)
    counts = np.asarray(counts)
    if sampling == "balanced":
        return np.full(counts.shape[0], 1.0 / counts.shape[0])
    return prior_from_counts(counts)


def sample_balanced(class_datasets, seed=None):
    """Interleaves per-class datasets so that each class is drawn equally often.

    Each per-class dataset is shuffled and repeated forever, then
    `tf.data.Dataset.sample_from_datasets` picks the next element's class
    uniformly at random. The result is infinite.

    Args:
        class_datasets: list of `K` finite, non-empty `tf.data.Dataset`s, one per
            class, all with the same element spec.
        seed: optional int for reproducible shuffling and class draws.

    Returns:
        Infinite `tf.data.Dataset` with the same element spec.
    """
    repeated = []
    for index, class_dataset in enumerate(class_datasets):
        size = int(class_dataset.cardinality())
        class_seed = None if seed is None else int(seed) + 1 + index
        repeated.append(
            class_dataset.shuffle(
                max(size, 1), seed=class_seed, reshuffle_each_iteration=True
            ).repeat()
        )
    weights = [1.0 / len(repeated)] * len(repeated)
    return tf.data.Dataset.sample_from_datasets(repeated, weights=weights, seed=seed)


def resample_balanced(dataset, label_fn, prior, seed=None):
    """Rejection-resamples an element stream to a uniform class distribution.

    For streams that cannot be split by class cheaply (TFDS). Uses
    `tf.data.Dataset.rejection_resample`, which yields `(class, element)` pairs;
    they are mapped back to `element`. The input is repeated, so the result is
    infinite.

    Args:
        dataset: finite `tf.data.Dataset`, ideally shuffled.
        label_fn: function from one element to its int32 scalar class id.
        prior: float array `[K]`, the class frequencies of `dataset`, all > 0.
        seed: optional int.

    Returns:
        Infinite `tf.data.Dataset` with the input's element spec.
    """
    prior = np.asarray(prior, dtype=np.float32)
    target = np.full(prior.shape, 1.0 / prior.shape[0], dtype=np.float32)
    resampled = dataset.repeat().rejection_resample(
        label_fn, target_dist=target, initial_dist=prior, seed=seed
    )
    return resampled.map(lambda class_id, element: element)
