"""Loader for a folder tree with one subfolder of images per class."""

import os

from calibkeras.data.file_dataset import labeled_dataset_from_files
from calibkeras.data.loader_options import resolve_options
from calibkeras.utils.checks import check_class_names

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
"""File name endings (case-insensitive) that `dataset_from_directory` picks up."""


def dataset_from_directory(
    directory, *, class_names=None, allow_missing_classes=False, options=None, **option_overrides
):
    """Builds a checked, batched image dataset from `directory/<class>/.../<image>`.

    Each immediate subfolder of `directory` is a class; its images are found
    recursively (endings in `IMAGE_EXTENSIONS`, case-insensitive; other files are
    ignored), in sorted path order. Checks and outputs are those of
    `dataset_from_csv`; messages name each image by its path relative to
    `directory`.

    The pipeline is set by `options` (a `LoaderOptions`) and/or its fields as
    keywords: image_size, batch_size, shuffle, seed, augment, sampling, cache,
    drop_remainder, on_bad_image, bad_image_report, validate_images (not
    supported here: `shuffle_buffer_size`, `confine_to_image_root`). The default
    skip report is `<directory>.skipped.csv` beside the folder.

    Args:
        directory: str or path-like, the root folder.
        class_names: sequence of subfolder names, or None for all subfolders in
            sorted order. When given, it fixes the class order, only those
            subfolders are read, and each must exist and hold at least one image
            (see `allow_missing_classes`).
        allow_missing_classes: bool. Default False. True (a test set scored on
            the classes it has) lets classes of `class_names` have no subfolder
            or no images (but not all of them): their `class_counts` are 0.
            Natural sampling only.
        options: `LoaderOptions`, or None for its defaults.
        **option_overrides: `LoaderOptions` fields, applied on top of `options`.

    Returns:
        `LabeledDataset`, as `dataset_from_csv`.

    Raises:
        FileNotFoundError: if `directory` or a subfolder named in `class_names`
            does not exist.
        ValueError: if there are no class subfolders, a class has no images, an
            image is unreadable or undecodable, or an argument or option is bad.
        TypeError: for a keyword that is neither an argument nor an option.

    Example:
    ```python
    data = dataset_from_directory("photos/", image_size=(160, 160))
    data.class_names, data.class_counts
    ```
    """
    options = resolve_options(
        dataset_from_directory,
        options,
        option_overrides,
        unsupported=("shuffle_buffer_size", "confine_to_image_root"),
    )
    class_names = check_class_names(class_names)
    root = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"`directory` '{root}' is not an existing folder")
    subfolders = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if class_names is None:
        if not subfolders:
            raise ValueError(
                f"`directory` '{root}' has no class subfolders; expected "
                "directory/<class_name>/<image files>"
            )
        class_names = tuple(subfolders)
    else:
        missing = [name for name in class_names if name not in subfolders]
        # Without any of the subfolders it is the wrong folder, missing classes or not.
        if missing and (not allow_missing_classes or len(missing) == len(class_names)):
            raise FileNotFoundError(
                f"`class_names` {missing} have no subfolder in '{root}'; subfolders are: "
                f"{', '.join(subfolders) or '(none)'}"
            )
    file_paths, labels = [], []
    for name in class_names:
        if name not in subfolders:
            continue
        for folder, dirnames, filenames in os.walk(os.path.join(root, name)):
            dirnames.sort()
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    file_paths.append(os.path.join(folder, filename))
                    labels.append(name)
    locations = [os.path.relpath(path, root) for path in file_paths]
    return labeled_dataset_from_files(
        file_paths,
        labels,
        locations,
        class_names=class_names,
        source=f"'{root}'",
        label_column="class folder",
        path_hint="",
        default_report_path=root.rstrip(os.sep) + ".skipped.csv",
        options=options,
        allow_missing_classes=allow_missing_classes,
    )
