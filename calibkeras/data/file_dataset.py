"""From a list of image files and their labels to a checked LabeledDataset.

Shared by the CSV, DataFrame and directory loaders: label encoding, eager image
checks (raise or skip and report), class counts, the sampling prior and the
tf.data pipeline.
"""

import numpy as np

from calibkeras.data.image_checks import (
    find_bad_images,
    raise_for_bad_images,
    write_bad_image_report,
)
from calibkeras.data.labeled_dataset import LabeledDataset
from calibkeras.data.labels import encode_labels
from calibkeras.data.pipeline import file_pipeline
from calibkeras.data.sampling import sampling_prior
from calibkeras.priors import class_counts
from calibkeras.utils.checks import _show, check_bool


def labeled_dataset_from_files(
    file_paths,
    label_values,
    locations,
    *,
    class_names,
    source,
    label_column,
    path_hint,
    default_report_path,
    options,
    allow_missing_classes=False,
    relative_paths=None,
):
    """Checks the rows, then builds the pipeline and its LabeledDataset.

    Args:
        file_paths: sequence of `N` absolute str paths.
        label_values: sequence of `N` label cells (names or integer ids).
        locations: sequence of `N` str, where each row comes from ("line 7").
        class_names: checked tuple of str, or None to infer.
        source: str, what the rows were read from ("train.csv"), for messages.
        label_column: str, for messages.
        path_hint: str, how relative paths were resolved, for messages.
        default_report_path: str, where the skip report goes by default.
        options: `LoaderOptions` (checked), for the image checks and the pipeline.
        allow_missing_classes: bool, let classes of `class_names` have no examples
            (natural sampling only). Default False.
        relative_paths: sequence of `N` bools, whether each row's path was given
            relative (then `path_hint` says how it was resolved), or None (every
            row as `path_hint` says). The hint is left out of a message whose bad
            rows all had absolute paths.

    Returns:
        `LabeledDataset`.

    Raises:
        ValueError, FileNotFoundError: see `dataset_from_csv`.
    """
    allow_missing_classes = check_bool(allow_missing_classes, "allow_missing_classes")
    ids, names = encode_labels(label_values, class_names, locations, source, label_column)
    file_paths = list(file_paths)
    bad = find_bad_images(file_paths, validate_images=options.validate_images)
    report_path = None
    if relative_paths is not None and not any(relative_paths[item["index"]] for item in bad):
        path_hint = ""  # no bad path was resolved against a folder: nothing to explain
    if bad and options.on_bad_image == "raise":
        raise_for_bad_images(bad, locations, source, len(file_paths), path_hint)
    if bad:
        report_path = write_bad_image_report(
            bad,
            locations,
            list(label_values),
            source,
            options.bad_image_report,
            default_report_path,
        )
    keep = np.ones(len(file_paths), dtype=bool)
    keep[[item["index"] for item in bad]] = False
    if bad and not keep.any():
        raise ValueError(
            f"all {len(file_paths)} images listed in {source} are bad and were skipped "
            f"(report: {report_path}). {path_hint}".strip()
        )
    kept_paths = [path for path, kept in zip(file_paths, keep, strict=True) if kept]
    kept_ids = ids[keep]
    counts = class_counts(kept_ids, len(names))
    empty = [f"{_show(names[k])} (id {k})" for k in range(len(names)) if counts[k] == 0]
    some_present = len(empty) < len(names)
    if empty and not (allow_missing_classes and options.sampling == "natural" and some_present):
        skipped = f" after skipping {len(bad)} bad images" if bad else ""
        listed = ", ".join(empty[:10]) + (f", ... ({len(empty)} in all)" if len(empty) > 10 else "")
        if allow_missing_classes and not some_present:
            raise ValueError(
                f"{source} has no examples of any class{skipped}: the classes are {listed}"
            )
        if allow_missing_classes:
            raise ValueError(
                f"classes {listed} have no examples in {source}{skipped}, and "
                "`sampling='balanced'` draws every class: add rows for them, or use "
                "`sampling='natural'`"
            )
        raise ValueError(
            f"classes {listed} have no examples in {source}{skipped}; every class "
            "needs at least one example: add rows for them or remove them from "
            "`class_names`"
        )
    return LabeledDataset(
        dataset=file_pipeline(kept_paths, kept_ids, len(names), options),
        class_names=names,
        class_counts=counts,
        prior=sampling_prior(counts, options.sampling),
        file_paths=kept_paths,
        labels=kept_ids,
        num_examples=len(kept_paths),
        batch_size=options.batch_size,
        image_size=options.image_size,
        sampling=options.sampling,
        num_skipped=len(bad),
        bad_image_report=report_path,
    )
