"""The bundled food10 data: ten Food-101 classes, long-tailed train/val and a balanced test."""

import os

from calibkeras.data.csv_dataset import dataset_from_csv

FOOD10_CLASS_NAMES = (
    "apple_pie",
    "baby_back_ribs",
    "baklava",
    "beef_carpaccio",
    "beef_tartare",
    "beet_salad",
    "beignets",
    "bibimbap",
    "bread_pudding",
    "breakfast_burrito",
)
"""The ten class names in label-id order (alphabetical), the same for every split."""

FOOD10_SPLITS = {
    "train": "train_longtail.csv",
    "val": "val_longtail.csv",
    "test": "test.csv",
}
"""Split name -> bundled CSV file name."""


def food10_dir():
    """Returns the absolute path of the bundled `food10` folder (CSVs and images)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "food10")


def food10_csv(split):
    """Returns the absolute path of the bundled CSV of a food10 split.

    Args:
        split: "train" (1,021 long-tailed images, 300 down to 15 per class),
            "val" (256, same long-tailed prior) or "test" (750, 75 per class).

    Returns:
        str path. Its `filepath` column is relative to the CSV's folder.

    Raises:
        ValueError: for an unknown split.

    Example:
    >>> os.path.basename(food10_csv("train"))
    'train_longtail.csv'
    """
    if split not in FOOD10_SPLITS:
        raise ValueError(
            f"`split` must be one of {', '.join(repr(s) for s in FOOD10_SPLITS)}, got {split!r}"
        )
    return os.path.join(food10_dir(), FOOD10_SPLITS[split])


def load_food10(
    split,
    *,
    image_size=(160, 160),
    batch_size=32,
    shuffle=False,
    seed=None,
    augment=False,
    sampling="natural",
    cache=False,
    on_bad_image="raise",
    bad_image_report=None,
    validate_images=True,
    drop_remainder=False,
):
    """Loads a split of the bundled food10 data with `dataset_from_csv`.

    Works offline: the CSVs and images ship inside the package. Every split
    uses `FOOD10_CLASS_NAMES`, so label ids agree across splits. The training
    and validation splits are long-tailed (baby_back_ribs most, beef_tartare
    fewest; imbalance ratio 20); the test split is balanced, so its prior
    differs from the training prior, which is what PriorShift corrects.

    Args:
        split: "train", "val" or "test".
        image_size: `(height, width)`. Default (160, 160), the images' shorter side.
        batch_size, shuffle, seed, augment, sampling, cache, on_bad_image,
            bad_image_report, validate_images, drop_remainder: as in
            `calibkeras.data.dataset_from_csv` (defaults 32, False, None, False,
            "natural", False, "raise", None, True, False).

    Returns:
        `calibkeras.data.LabeledDataset`.

    Raises:
        ValueError: for an unknown split or a bad argument.

    Example:
    ```python
    train = load_food10("train", shuffle=True, augment=True, seed=0)
    train.class_counts   # [57, 300, 29, 215, 15, 21, 79, 41, 110, 154]
    ```
    """
    return dataset_from_csv(
        food10_csv(split),
        image_column="filepath",
        label_column="label",
        class_names=FOOD10_CLASS_NAMES,
        image_size=image_size,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=augment,
        sampling=sampling,
        cache=cache,
        on_bad_image=on_bad_image,
        bad_image_report=bad_image_report,
        validate_images=validate_images,
        drop_remainder=drop_remainder,
    )
