"""`LoaderOptions`: the one frozen, checked object for the options every data loader shares."""

import dataclasses
import inspect
import os

from calibkeras.data.image_checks import check_on_bad_image
from calibkeras.data.preprocessing import check_image_size
from calibkeras.data.sampling import check_sampling
from calibkeras.utils.checks import (
    _show,
    check_bool,
    check_optional_int,
    check_positive_int,
    check_zoom,
)


def _path_text(value):
    """`value` as a str path if it is a non-empty str or path-like of str, else None."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    return None


def _check_cache(cache):
    if cache is None or isinstance(cache, bool):
        return bool(cache)
    path = _path_text(cache)
    if path is None:
        raise ValueError(
            f"`cache` must be False, True (in memory) or a file path prefix, got {_show(cache)}"
        )
    return path


def _check_report_path(bad_image_report):
    if bad_image_report is None:
        return None
    path = _path_text(bad_image_report)
    if path is None:
        raise ValueError(
            "`bad_image_report` must be a file path (str or path-like) or None for the "
            f"loader's default place, got {_show(bad_image_report)}"
        )
    return path


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoaderOptions:
    """The pipeline options of the data loaders, checked once when built.

    `dataset_from_csv`, `dataset_from_dataframe`, `dataset_from_directory`,
    `dataset_from_tfds` and `calibkeras.datasets.load_food10` take their source
    arguments (a CSV path, a folder, a TFDS name ...) plus `options=` (a
    LoaderOptions) and/or these fields as keywords; keywords are applied on top
    of `options` with `dataclasses.replace`. To change a field of an existing
    object, use `dataclasses.replace(options, field=value)` (it checks again).
    Every field is checked here, so a bad value stops before any file is read,
    with a message naming the field, the value and what is expected.

    The defaults give the evaluation pipeline: every example once per pass, in
    source order, no augmentation, exactly the preprocessing used when serving
    (`calibkeras.data.decode_image`). For training set `shuffle=True`,
    `augment=True` and a `seed`.

    Sampling. `sampling="natural"` (default) keeps the data's class frequencies
    in the batches, and the result's `prior` reports them. `sampling="balanced"`
    draws every class equally often, so the model learns under a uniform prior,
    and `prior` is uniform. The file loaders mix one dataset per class with
    `tf.data.Dataset.sample_from_datasets`; `dataset_from_tfds` uses
    `tf.data.Dataset.rejection_resample` on the repeated split. Resampling
    silently changes the prior the model learns; calibkeras keeps the prior
    explicit instead and corrects it with PriorShift / the logit-adjusted loss,
    so natural sampling stays the default. If you use balanced sampling, give
    the reported (uniform) `prior` to calibration so that it can undo it. A
    balanced dataset is infinite: pass `steps_per_epoch=result.steps_per_epoch`
    (`ceil(N / batch_size)`) to `model.fit`. `shuffle` is ignored then (draws
    are random anyway).

    Not every loader supports every field: `shuffle_buffer_size` is used by
    `dataset_from_tfds` only; `on_bad_image`, `bad_image_report` and
    `validate_images` by the file loaders only (not TFDS); `confine_to_image_root`
    by the CSV and DataFrame loaders and `load_food10`. A loader given a
    non-default value for a field it does not support raises a ValueError
    naming the field.

    Attributes:
        image_size: `(height, width)` of the output images, a pair of positive
            ints (stored as a tuple). Default (224, 224); `load_food10` uses
            (160, 160) when called without `options`. Images are resized with
            bilinear interpolation, without keeping the aspect ratio.
        batch_size: positive int. Default 32.
        shuffle: bool, reshuffle the examples every epoch. Default False.
        seed: int or None. With a seed, shuffling, balanced draws and
            augmentation are reproducible and the element order is
            deterministic (`tf.data.Options.deterministic`). Default None.
        augment: bool, apply `build_augmentation(seed)` (horizontal flip,
            whole-pixel shift with mirrored borders, contrast) to each training
            batch. Default False; keep it False for validation, calibration and
            test data.
        zoom: number in [0, 1), with `augment=True` also zoom each training
            image in by up to this factor (`build_augmentation(seed, zoom=zoom)`:
            0.4 shows 36% to 100% of the area, resized back), a stronger
            augmentation for fine-tuning on few images. Default 0.0 (none); a
            positive zoom without `augment=True` raises.
        sampling: "natural" (default) or "balanced"; see above.
        cache: False (default), True (cache decoded, resized images in memory
            after the first epoch: `N * H * W * 3 * 4` bytes), or a str or
            path-like file path prefix for an on-disk cache (stored as a str).
            Augmentation runs after the cache. None counts as False.
        drop_remainder: bool, drop the last partial batch. Default False.
        shuffle_buffer_size: positive int, examples in the shuffle buffer of
            `dataset_from_tfds` (encoded images). Default 10,000. The file
            loaders shuffle the whole list of paths instead.
        on_bad_image: "raise" (default) or "skip". With "skip", examples whose
            image is missing, unreadable or undecodable are left out, a warning
            is issued and a CSV report of them (columns source, location, path,
            label, problem, reason) is written to `bad_image_report` (each
            loader has its default place). Label problems always raise.
        bad_image_report: str or path-like for the skip report (stored as a
            str), or None for the loader's default. Default None.
        validate_images: bool, decode every image once when building the dataset
            (about 0.7 s per 1,000 160-px JPEGs on 2 CPU cores). Default True.
            With False only file existence is checked and an undecodable image
            raises `tf.errors.InvalidArgumentError` mid-epoch.
        confine_to_image_root: bool. Default False. True (for a service that
            takes CSVs from others) refuses, naming the rows, every image path
            that leads outside the image root: an absolute path elsewhere, a path
            through "..", or one through a symbolic link; the pipeline then reads
            the resolved paths. The check runs when the dataset is built: keep
            the root's contents out of others' reach too.

    Raises:
        ValueError: for a bad value, naming the field.

    Example:
    >>> import dataclasses
    >>> evaluation = LoaderOptions(image_size=[96, 96], batch_size=8)
    >>> evaluation.image_size
    (96, 96)
    >>> training = dataclasses.replace(evaluation, shuffle=True, augment=True, seed=0)
    >>> training.shuffle, training.batch_size
    (True, 8)
    >>> LoaderOptions(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: `batch_size` must be a positive integer, got 0

    With a loader (`train = dataset_from_csv("train.csv", options=training)`),
    keywords still work and override `options`:
    `dataset_from_csv("val.csv", options=evaluation, cache=True)`.
    """

    image_size: tuple[int, int] = (224, 224)
    batch_size: int = 32
    shuffle: bool = False
    seed: int | None = None
    augment: bool = False
    zoom: float = 0.0
    sampling: str = "natural"
    cache: bool | str = False
    drop_remainder: bool = False
    shuffle_buffer_size: int = 10_000
    on_bad_image: str = "raise"
    bad_image_report: str | None = None
    validate_images: bool = True
    confine_to_image_root: bool = False

    def __post_init__(self):
        checked = {
            "image_size": check_image_size(self.image_size),
            "batch_size": check_positive_int(self.batch_size, "batch_size"),
            "shuffle": check_bool(self.shuffle, "shuffle"),
            "seed": check_optional_int(self.seed, "seed"),
            "augment": check_bool(self.augment, "augment"),
            "zoom": check_zoom(self.zoom),
            "sampling": check_sampling(self.sampling),
            "cache": _check_cache(self.cache),
            "drop_remainder": check_bool(self.drop_remainder, "drop_remainder"),
            "shuffle_buffer_size": check_positive_int(
                self.shuffle_buffer_size, "shuffle_buffer_size"
            ),
            "on_bad_image": check_on_bad_image(self.on_bad_image),
            "bad_image_report": _check_report_path(self.bad_image_report),
            "validate_images": check_bool(self.validate_images, "validate_images"),
            "confine_to_image_root": check_bool(
                self.confine_to_image_root, "confine_to_image_root"
            ),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        if self.zoom and not self.augment:
            raise ValueError(
                f"`zoom` {self.zoom!r} needs `augment=True` (it is part of the training "
                "augmentation); set augment=True or leave zoom at 0.0"
            )


OPTION_NAMES = tuple(field.name for field in dataclasses.fields(LoaderOptions))
"""The field names of `LoaderOptions`, in declaration order."""

_DEFAULTS = LoaderOptions()

_SUPPORTED_BY = {
    "shuffle_buffer_size": "only `dataset_from_tfds` has a shuffle buffer; the file loaders "
    "shuffle the whole list of paths",
    "on_bad_image": "only the file loaders (CSV, DataFrame, directory, food10) check image "
    "files when the dataset is built",
    "bad_image_report": "only the file loaders (CSV, DataFrame, directory, food10) skip and "
    "report bad images",
    "validate_images": "only the file loaders (CSV, DataFrame, directory, food10) check image "
    "files when the dataset is built",
    "confine_to_image_root": "only the CSV and DataFrame loaders and `load_food10` read image "
    "paths from a table",
}
"""For each field that some loaders do not support: which ones do."""


def resolve_options(loader, options, overrides, *, unsupported=(), default=_DEFAULTS):
    """The checked options a loader runs with.

    Args:
        loader: the public loader function, for messages.
        options: `LoaderOptions` or None (then `default`).
        overrides: dict of `LoaderOptions` field names to values, the loader's
            `**option_overrides`; applied on top with `dataclasses.replace`.
        unsupported: field names the loader does not support; each must keep its
            `LoaderOptions` default.
        default: `LoaderOptions` used when `options` is None.

    Returns:
        `LoaderOptions`.

    Raises:
        TypeError: for a keyword that is neither an argument of `loader` nor a field.
        ValueError: for an `options` that is not a LoaderOptions, a bad value, or a
            non-default value of an unsupported field.
    """
    name = loader.__name__
    unknown = [key for key in overrides if key not in OPTION_NAMES]
    if unknown:
        own = [
            parameter.name
            for parameter in inspect.signature(loader).parameters.values()
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        plural = "s" if len(unknown) > 1 else ""
        raise TypeError(
            f"{name}() got an unexpected keyword argument{plural} "
            f"{', '.join(repr(key) for key in unknown)}; valid keyword arguments are "
            f"{', '.join(own)} and the LoaderOptions fields {', '.join(OPTION_NAMES)}"
        )
    if options is None:
        options = default
    elif not isinstance(options, LoaderOptions):
        raise ValueError(
            f"`options` must be a calibkeras.data.LoaderOptions or None, got "
            f"{type(options).__name__} {_show(options)}; build one with "
            "LoaderOptions(image_size=..., batch_size=...) or pass the fields as keywords"
        )
    if overrides:
        options = dataclasses.replace(options, **overrides)
    for field in unsupported:
        value = getattr(options, field)
        if value != getattr(_DEFAULTS, field):
            raise ValueError(
                f"`{field}` is not supported by {name}(), got {_show(value)}: "
                f"{_SUPPORTED_BY[field]}. Leave it at its default {getattr(_DEFAULTS, field)!r}"
            )
    return options
