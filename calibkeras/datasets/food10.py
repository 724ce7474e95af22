"""The bundled food10 data: ten Food-101 classes, long-tailed train/val and a balanced test."""

import os

from calibkeras.data.csv_dataset import UNSUPPORTED_OPTIONS, dataset_from_csv
from calibkeras.data.loader_options import LoaderOptions, resolve_options
from calibkeras.utils.checks import check_choice

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

FOOD10_OPTIONS = LoaderOptions(image_size=(160, 160))
"""What `load_food10` uses without `options`: the defaults at the images' shorter side."""


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
    check_choice(split, "split", tuple(FOOD10_SPLITS))
    return os.path.join(food10_dir(), FOOD10_SPLITS[split])


def load_food10(split, *, options=None, **option_overrides):
    """Loads a split of the bundled food10 data with `dataset_from_csv`.

    Works offline: the CSVs and images ship inside the package. Every split
    uses `FOOD10_CLASS_NAMES`, so label ids agree across splits. The training
    and validation splits are long-tailed (baby_back_ribs most, beef_tartare
    fewest; imbalance ratio 20); the test split is balanced, so its prior
    differs from the training prior, which is what PriorShift corrects.

    The pipeline is set by `options` (a `calibkeras.data.LoaderOptions`) and/or
    its fields as keywords, as in `calibkeras.data.dataset_from_csv`:
    image_size, batch_size, shuffle, seed, augment, sampling, cache,
    drop_remainder, on_bad_image, bad_image_report, validate_images,
    confine_to_image_root (not `shuffle_buffer_size`). Without `options`, the
    defaults are LoaderOptions' except `image_size=(160, 160)`, the images'
    shorter side; an `options` object is used as it is (its own `image_size`).

    Args:
        split: "train", "val" or "test".
        options: `LoaderOptions`, or None for `FOOD10_OPTIONS`.
        **option_overrides: `LoaderOptions` fields, applied on top of `options`.

    Returns:
        `calibkeras.data.LabeledDataset`.

    Raises:
        ValueError: for an unknown split or a bad option.
        TypeError: for a keyword that is not an option.

    Example:
    ```python
    train = load_food10("train", shuffle=True, augment=True, seed=0)
    train.class_counts   # [57, 300, 29, 215, 15, 21, 79, 41, 110, 154]
    ```
    """
    csv_path = food10_csv(split)
    options = resolve_options(
        load_food10,
        options,
        option_overrides,
        unsupported=UNSUPPORTED_OPTIONS,
        default=FOOD10_OPTIONS,
    )
    return dataset_from_csv(csv_path, class_names=FOOD10_CLASS_NAMES, options=options)
