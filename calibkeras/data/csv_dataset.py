"""Loaders for a table of image paths and labels: a CSV file or a pandas DataFrame."""

import codecs
import csv
import io
import os
import tempfile
import warnings

import pandas as pd

from calibkeras.data.file_dataset import labeled_dataset_from_files
from calibkeras.data.labels import cell_text
from calibkeras.data.loader_options import resolve_options
from calibkeras.utils.checks import _show, check_class_names

UNSUPPORTED_OPTIONS = ("shuffle_buffer_size",)
"""The `LoaderOptions` fields the table loaders do not support (they shuffle all paths)."""


def dataset_from_csv(
    csv_path,
    image_column="filepath",
    label_column="label",
    *,
    image_root=None,
    class_names=None,
    allow_missing_classes=False,
    options=None,
    **option_overrides,
):
    """Builds a checked, batched image dataset from a CSV of image paths and labels.

    pandas reads the CSV; columns other than `image_column` and `label_column`
    are ignored. Every row is checked when the dataset is built, before any
    training starts: a missing, unreadable or undecodable image, an empty label,
    or a label not in `class_names` stops with an error that gives the CSV line
    (1-based file line, the header is line 1) and the path.

    Reading. The file must be UTF-8 (a byte-order mark is allowed; other bytes
    are reported by line and column). Lines are counted as an editor shows
    them: a quoted cell that spans lines counts all of them, and "\n", "\r\n"
    and "\r" each end a line. Every cell is read as text (nothing becomes NaN).
    A trailing comma on the rows is ignored; a row with more non-empty cells
    than the header has columns, or a header that names `image_column` or
    `label_column` twice, is refused.

    Labels. Surrounding spaces are removed. Refused, naming the lines: empty
    labels; missing-value markers ("NaN", "nan", "NA", "null", "None", "N/A" and
    pandas' other default NA texts, in any case) unless the text is one of
    `class_names`; labels longer than 256 characters; and, when the classes are
    inferred from names, one number written two ways ("1" and "1.0"), which
    would otherwise become two classes. Integer labels are class ids, so "01"
    and "1" are the same class. Messages quote at most about 80 characters of
    any cell.

    The pipeline is set by `options` (a `LoaderOptions`) and/or its fields as
    keywords: image_size, batch_size, shuffle, seed, augment, sampling, cache,
    drop_remainder, on_bad_image, bad_image_report, validate_images,
    confine_to_image_root (`shuffle_buffer_size` is not supported: all paths are
    shuffled). The defaults give the evaluation pipeline; for training pass
    `shuffle=True`, `augment=True` and a `seed`. See `LoaderOptions` for each
    field and for natural versus balanced sampling. Here, with
    `on_bad_image="skip"`, the report of skipped rows goes by default to
    `<csv stem>.skipped.csv` next to the CSV (in the system temporary folder if
    that folder is read-only), and `confine_to_image_root=True` confines the
    paths to `image_root`, or the CSV's folder.

    Args:
        csv_path: str or path-like, the CSV file. It needs a header line.
        image_column: str, column of image paths. Default "filepath". Relative
            paths resolve against `image_root`, or the CSV's folder when
            `image_root` is None; absolute paths are used as they are.
        label_column: str, column of labels: class names or integer class ids.
            Default "label".
        image_root: str or path-like folder, or None (the CSV's folder).
            By default image paths may leave it: a relative path may climb out
            with "..", an absolute path is used as it is and symbolic links are
            followed, which suits a local tool (whoever writes the CSV can read
            those files anyway). See `confine_to_image_root`.
        class_names: sequence of `K` distinct class names, or None. When given,
            it fixes the class order (label id `k` is `class_names[k]`; use the
            same list for train, validation and test), every label must be one
            of these names (or an integer id in `[0, K)`), and every class needs
            at least one example (see `allow_missing_classes`). When None:
            integer labels are ids and the classes are "0" .. max id; otherwise
            the sorted distinct labels.
        allow_missing_classes: bool. Default False: every class of `class_names`
            needs an example, as training and calibration data do. True (a test
            set scored on the classes it has) lets classes have no examples:
            their `class_counts` are 0. Natural sampling only.
        options: `LoaderOptions`, or None for its defaults.
        **option_overrides: `LoaderOptions` fields, applied on top of `options`.

    Returns:
        `LabeledDataset` with `dataset` yielding `(images, labels)`: images
        float32 `[B, H, W, 3]` in [0, 255] (not normalised: the model does
        that), labels int32 `[B]`; plus `class_names`, `class_counts`, `prior`
        (the prior seen in batches), `file_paths`, `labels`, `num_examples`.

    Raises:
        FileNotFoundError: if `csv_path` or `image_root` does not exist, or an
            image file is missing (with `on_bad_image="raise"`).
        ValueError: for an empty CSV or one without rows, a missing column (the
            message lists the columns there are), an empty path or label, a label
            not in `class_names`, an unreadable or undecodable image, a class
            with no examples, or a bad argument or option value.
        TypeError: for a keyword that is neither an argument nor an option.

    Example:
    ```python
    train = dataset_from_csv("train.csv", image_size=(160, 160), shuffle=True,
                             augment=True, seed=0)
    val = dataset_from_csv("val.csv", options=LoaderOptions(image_size=(160, 160)),
                           class_names=train.class_names)
    model.fit(train.dataset, validation_data=val.dataset, epochs=10)
    train.prior   # the training prior for PriorShift / the logit-adjusted loss
    ```
    """
    options = resolve_options(
        dataset_from_csv, options, option_overrides, unsupported=UNSUPPORTED_OPTIONS
    )
    class_names = check_class_names(class_names)
    if isinstance(csv_path, pd.DataFrame):
        raise ValueError(
            "`csv_path` must be a path to a CSV file, got a DataFrame; use "
            "`dataset_from_dataframe` for DataFrames"
        )
    csv_path = os.path.abspath(os.fspath(csv_path))
    source = os.path.basename(csv_path)
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"`csv_path` '{csv_path}' does not exist")
    if not os.path.isfile(csv_path):
        raise ValueError(f"`csv_path` '{csv_path}' is not a file")
    table, locations = _read_csv(csv_path, image_column, label_column)
    filled = (table != "").any(axis=1).to_numpy()
    table = table[filled]
    locations = [location for location, kept in zip(locations, filled, strict=True) if kept]
    root = _image_root(image_root, os.path.dirname(csv_path))
    hint = f"Relative image paths are resolved against '{root}' " + (
        "(`image_root`)."
        if image_root is not None
        else "(the CSV's folder; pass `image_root` to change it)."
    )
    stem = os.path.splitext(csv_path)[0]
    return _dataset_from_table(
        table,
        image_column,
        label_column,
        locations=locations,
        source=source,
        root=root,
        path_hint=hint,
        default_report_path=stem + ".skipped.csv",
        class_names=class_names,
        options=options,
        allow_missing_classes=allow_missing_classes,
    )


def dataset_from_dataframe(
    dataframe,
    image_column="filepath",
    label_column="label",
    *,
    image_root=None,
    class_names=None,
    allow_missing_classes=False,
    options=None,
    **option_overrides,
):
    """Like `dataset_from_csv`, for a pandas DataFrame (e.g. from `stratified_split`).

    Messages name rows by their DataFrame index ("row 17"; for a frame read from
    a CSV with the default index, that is file line 19). Relative paths resolve
    against `image_root`, or the current working folder when it is None. The
    default skip report is `calibkeras_skipped_images.csv` in the system
    temporary folder.

    Args:
        dataframe: `pandas.DataFrame` with an image-path and a label column.
        image_column, label_column, image_root, class_names,
            allow_missing_classes: as in `dataset_from_csv` (the root is the
            working folder when `image_root` is None).
        options, **option_overrides: `LoaderOptions` and its fields, as in
            `dataset_from_csv`.

    Returns:
        `LabeledDataset`, as `dataset_from_csv`.

    Raises:
        FileNotFoundError, ValueError, TypeError: as `dataset_from_csv`.

    Example:
    ```python
    train_rows, val_rows = stratified_split("all.csv", val_fraction=0.2, seed=0)
    train = dataset_from_dataframe(train_rows, image_root="data/", shuffle=True)
    val = dataset_from_dataframe(val_rows, image_root="data/",
                                 class_names=train.class_names)
    ```
    """
    options = resolve_options(
        dataset_from_dataframe, options, option_overrides, unsupported=UNSUPPORTED_OPTIONS
    )
    if not isinstance(dataframe, pd.DataFrame):
        raise ValueError(f"`dataframe` must be a pandas DataFrame, got {type(dataframe).__name__}")
    class_names = check_class_names(class_names)
    root = _image_root(image_root, os.getcwd())
    hint = f"Relative image paths are resolved against '{root}' " + (
        "(`image_root`)."
        if image_root is not None
        else "(the working folder; pass `image_root` to change it)."
    )
    return _dataset_from_table(
        dataframe,
        image_column,
        label_column,
        locations=[f"row {index!r}" for index in dataframe.index],
        source="the DataFrame",
        root=root,
        path_hint=hint,
        default_report_path=os.path.join(tempfile.gettempdir(), "calibkeras_skipped_images.csv"),
        class_names=class_names,
        options=options,
        allow_missing_classes=allow_missing_classes,
    )


def _read_csv(csv_path, image_column, label_column):
    """Reads a CSV as text cells and finds the line on which each row starts.

    Returns:
        `(table, locations)`: a DataFrame of str cells (blank lines kept as rows
        of "") and, per row, "line N" with N the 1-based line an editor shows
        (the header is line 1; a quoted cell spanning lines counts all its lines;
        "\n", "\r\n" and "\r" each end a line).
    """
    shown = _show(csv_path, 160)
    with open(csv_path, "rb") as file:
        content = file.read()
    if content.startswith(codecs.BOM_UTF8):
        content = content[len(codecs.BOM_UTF8) :]
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _line_and_column(content, error.start)
        raise ValueError(
            f"`csv_path` {shown} is not UTF-8 text: line {line}, column {column} holds the "
            f"byte 0x{content[error.start]:02x}, which is not UTF-8. Save the file as UTF-8 "
            "(e.g. 'CSV UTF-8' in a spreadsheet program) or convert it with "
            "`iconv -f <its encoding> -t utf-8`"
        ) from None
    records = _csv_records(text)
    if records is not None:
        starts, header, widths = records
        for argument, column in (("image_column", image_column), ("label_column", label_column)):
            positions = [i + 1 for i, name in enumerate(header) if name == column]
            if len(positions) > 1:
                raise ValueError(
                    f"`{argument}` {_show(column)} names {len(positions)} columns of {shown} "
                    f"(columns {', '.join(map(str, positions))}); the header must name each "
                    "column once: rename or remove the duplicates"
                )
        for row, (width, extra) in enumerate(widths):
            if extra:
                raise ValueError(
                    f"line {starts[row + 1]} of {shown} has {width} cells but the header has "
                    f"{len(header)} columns; put quotes around cells that contain a comma "
                    '("a, b"), or add the missing column names to the header'
                )
    try:
        with warnings.catch_warnings():
            # index_col=False: a trailing comma on every row must not turn the
            # first column into the index. Extra non-empty cells are refused
            # below, so pandas' warning that it drops them is not needed.
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            table = pd.read_csv(
                io.StringIO(text),
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                index_col=False,
            )
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"`csv_path` {shown} is empty; expected a header line with the columns "
            f"{_show(image_column)} and {_show(label_column)}, then one row per image"
        ) from None
    except pd.errors.ParserError as error:
        raise ValueError(
            f"`csv_path` {shown} is not a readable CSV: {_show(str(error).strip(), 200)}"
        ) from None
    if records is None or len(records[0]) != len(table) + 1:
        # The two readers disagree (should not happen): name rows by position.
        return table, [f"data row {i + 1}" for i in range(len(table))]
    return table, [f"line {start}" for start in starts[1:]]


def _line_and_column(content, offset):
    """The 1-based line and character column of byte `offset` of valid UTF-8 before it."""
    before = content[:offset]
    line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
    start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1
    return line, len(before[start:].decode("utf-8")) + 1


def _csv_records(text):
    """The start line of each record, the header cells and each row's width.

    Python's csv module tracks lines; it splits records as pandas does. Returns
    `(starts, header, widths)` with `widths[i] = (cells, has_extra)` for data row
    `i`, where `has_extra` says that the row has non-empty cells beyond the
    header's columns; None if the csv module cannot read the text.
    """
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        starts, widths, header, previous = [], [], None, 0
        for record in reader:
            starts.append(previous + 1)
            previous = reader.line_num
            if header is None:
                header = record
            else:
                extra = any(cell.strip() for cell in record[len(header) :])
                widths.append((len(record), extra))
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(limit)
    return starts, header or [], widths


def _image_root(image_root, default):
    if image_root is None:
        return default
    root = os.path.abspath(os.fspath(image_root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"`image_root` '{root}' is not an existing folder")
    return root


def _confine(relative, file_paths, locations, source, root):
    """Refuses paths that leave `root`; returns the resolved paths inside it."""
    real_root = os.path.realpath(root)
    resolved, outside = [], []
    for location, text, path in zip(locations, relative, file_paths, strict=True):
        real = os.path.realpath(path)
        resolved.append(real)
        if os.path.commonpath([root, os.path.normpath(path)]) != root:
            reason = "is an absolute path outside it" if os.path.isabs(text) else (
                "leads outside through '..'"
            )
        elif os.path.commonpath([real_root, real]) != real_root:
            reason = "leads outside through a symbolic link"
        else:
            continue
        outside.append(f"  {location}: {_show(text, 120)} {reason}")
    if outside:
        more = [f"  ... and {len(outside) - 10} more"] if len(outside) > 10 else []
        listed = outside[:10] + more
        raise ValueError(
            f"{len(outside)} image paths in {source} leave the image root "
            f"{_show(root, 160)}, which `confine_to_image_root=True` forbids:\n"
            + "\n".join(listed)
            + "\nUse paths relative to the root that stay inside it, or pass "
            "confine_to_image_root=False if the CSV comes from someone allowed to read "
            "any file this program can"
        )
    return resolved


def _dataset_from_table(
    table,
    image_column,
    label_column,
    *,
    locations,
    source,
    root,
    path_hint,
    default_report_path,
    class_names,
    options,
    allow_missing_classes=False,
):
    listed = ", ".join(str(column) for column in table.columns)
    for argument, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in table.columns:
            raise ValueError(
                f"`{argument}` {_show(column)} not found in {source}; columns are: "
                f"{listed if len(listed) <= 200 else _show(listed, 200)}"
            )
        if list(table.columns).count(column) > 1:
            raise ValueError(
                f"`{argument}` {_show(column)} names {list(table.columns).count(column)} "
                f"columns of {source}; each column name must appear once: rename or remove "
                "the duplicates"
            )
    if len(table) == 0:
        raise ValueError(f"{source} has a header but no rows; it needs one row per image")
    relative = [cell_text(value) for value in table[image_column]]
    empty = [locations[i] for i, path in enumerate(relative) if path == ""]
    if empty:
        listed = ", ".join(empty[:10]) + (f", ... ({len(empty)} in all)" if len(empty) > 10 else "")
        raise ValueError(
            f"`image_column` {_show(image_column)} is empty on {listed} of {source}; every row "
            "needs an image path (fill it in or remove the row)"
        )
    file_paths = [
        path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))
        for path in relative
    ]
    if options.confine_to_image_root:
        file_paths = _confine(relative, file_paths, locations, source, root)
    return labeled_dataset_from_files(
        file_paths,
        list(table[label_column]),
        locations,
        class_names=class_names,
        source=source,
        label_column=label_column,
        path_hint=path_hint,
        default_report_path=default_report_path,
        options=options,
        allow_missing_classes=allow_missing_classes,
        relative_paths=[not os.path.isabs(path) for path in relative],
    )
