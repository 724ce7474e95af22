"""LabeledDataset: a tf.data pipeline together with the class facts calibration needs."""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from calibkeras.priors import prior_from_counts


def _read_only(array, dtype):
    array = np.array(array, dtype=dtype, copy=True)
    array.flags.writeable = False
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class LabeledDataset:
    """A batched image dataset and the numbers that describe its classes.

    Returned by `dataset_from_csv`, `dataset_from_dataframe`,
    `dataset_from_directory`, `dataset_from_tfds` and `load_food10`. The arrays
    are read-only copies.

    Attributes:
        dataset: `tf.data.Dataset` yielding `(images, labels)`: images float32
            `[B, H, W, 3]` in [0, 255], labels int32 `[B]`. Finite for
            `sampling="natural"`, infinite for `sampling="balanced"` (pass
            `steps_per_epoch` to `model.fit`).
        class_names: tuple of `K` str; label id `k` means `class_names[k]`.
        class_counts: int64 array `[K]`, examples per class in the data (after
            any skipped rows).
        prior: float64 array `[K]`, the class prior the model sees in its
            batches: `class_counts / num_examples` for natural sampling, uniform
            `1 / K` for balanced sampling. Give this to PriorShift / the
            logit-adjusted loss as the training prior.
        file_paths: tuple of `N` absolute paths in the order of `labels` (the
            dataset's order when not shuffled); empty for TFDS datasets.
        labels: int32 array `[N]`, the label id of each example.
        num_examples: int `N`, examples in the data (one natural epoch).
        batch_size: int, examples per batch.
        image_size: `(height, width)` of the images.
        sampling: "natural" or "balanced".
        num_skipped: int, rows skipped with `on_bad_image="skip"`. Default 0.
        bad_image_report: str path of the skipped-rows report, or None when
            nothing was skipped. Default None.

    Keras' `model.fit`, `evaluate` and `predict` take a `tf.data.Dataset`, not this
    object: pass `data.dataset` there (`model.fit(train.dataset,
    validation_data=val.dataset)`). calibkeras' own functions (`fit_calibrated`,
    the callbacks, `predict_balanced_logits`, `fit_prediction_sets`) take either. A
    LabeledDataset given to Keras is refused with Keras' "Unrecognized data type"
    error, whose text shows this object's repr, which says so.
    """

    dataset: tf.data.Dataset
    class_names: tuple
    class_counts: np.ndarray
    prior: np.ndarray
    file_paths: tuple = dataclasses.field(repr=False)
    labels: np.ndarray = dataclasses.field(repr=False)
    num_examples: int
    batch_size: int
    image_size: tuple
    sampling: str
    num_skipped: int = 0
    bad_image_report: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "class_counts", _read_only(self.class_counts, np.int64))
        object.__setattr__(self, "prior", _read_only(self.prior, np.float64))
        object.__setattr__(self, "file_paths", tuple(str(p) for p in self.file_paths))
        object.__setattr__(self, "labels", _read_only(self.labels, np.int32))
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.class_counts.shape != (len(self.class_names),) or self.prior.shape != (
            len(self.class_names),
        ):
            raise ValueError(
                f"`class_counts` and `prior` must have shape ({len(self.class_names)},) "
                f"to match `class_names`, got {self.class_counts.shape} and {self.prior.shape}"
            )

    def __repr__(self):
        names = ", ".join(repr(name) for name in self.class_names[:10])
        if self.num_classes > 10:
            names += ", ..."
        return (
            f"LabeledDataset({self.num_examples} images, {self.num_classes} classes "
            f"({names}), batch_size={self.batch_size}, image_size={self.image_size}, "
            f"sampling={self.sampling!r}; Keras' fit, evaluate and predict take its "
            "`.dataset`, a tf.data.Dataset: model.fit(train.dataset, "
            "validation_data=val.dataset))"
        )

    @property
    def num_classes(self):
        """int: the number of classes `K`."""
        return len(self.class_names)

    @property
    def natural_prior(self):
        """float64 array `[K]`: the class frequencies of the data, `class_counts / N`."""
        return prior_from_counts(self.class_counts)

    @property
    def steps_per_epoch(self):
        """int: batches in one pass over `num_examples` examples, `ceil(N / batch_size)`.

        Pass it to `model.fit(steps_per_epoch=...)` for balanced (infinite)
        datasets, so that an epoch still means "about N examples".
        """
        return max(1, math.ceil(self.num_examples / self.batch_size))
