"""Turning label cells (class names or integer ids) into integer class ids."""

import math
import numbers
import re

import numpy as np

_INTEGER = re.compile(r"^[+-]?\d+$")
_MAX_LISTED = 10


def cell_text(value):
    """A label or path cell as stripped text; "" for empty cells (None, NaN, "")."""
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return ""
        if float(value).is_integer():
            return str(int(value))
    return str(value).strip()


def check_class_names(class_names):
    """Checks a `class_names` argument: a non-empty sequence of distinct names.

    Returns:
        tuple of str, or None when `class_names` is None.

    Raises:
        ValueError: if it is a plain string, empty, or has duplicates.
    """
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)):
        raise ValueError(
            f"`class_names` must be a sequence of names, got the string {class_names!r}"
        )
    names = tuple(str(name) for name in class_names)
    if not names:
        raise ValueError("`class_names` must not be empty; pass None to infer the classes")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"`class_names` must be distinct, got duplicates: {duplicates}")
    return names


def _listing(items):
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def encode_labels(values, class_names, locations, source, label_column):
    """Maps label cells to class ids.

    Rules:
    - With `class_names`: a label equal to a class name gets that name's index.
      Otherwise, if every label is an integer, the labels are taken as ids and
      must lie in `[0, len(class_names))`.
    - Without `class_names`: integer labels are ids and the classes are
      "0" .. "max"; any other labels are names and the classes are the sorted
      distinct names (as `keras.utils.image_dataset_from_directory` does).

    Args:
        values: sequence of `N` label cells (str or numbers).
        class_names: tuple of str or None (already checked).
        locations: sequence of `N` str, where each row comes from ("line 7").
        source: str, what the rows were read from, for messages.
        label_column: str, the column name, for messages.

    Returns:
        `(ids, class_names)`: int32 array `[N]` and tuple of str.

    Raises:
        ValueError: for an empty label, a label not in `class_names`, an integer
            label out of range or negative.
    """
    texts = [cell_text(value) for value in values]
    empty = [locations[i] for i, text in enumerate(texts) if text == ""]
    if empty:
        raise ValueError(
            f"`label_column` '{label_column}' is empty on {_listing(empty)} of {source}; "
            "every row needs a label (fill it in or remove the row)"
        )
    all_integers = all(_INTEGER.match(text) for text in texts)
    if class_names is not None:
        index = {name: i for i, name in enumerate(class_names)}
        if all(text in index for text in texts):
            return np.array([index[text] for text in texts], dtype=np.int32), class_names
        if not all_integers:
            unknown = [
                f"{text!r} ({locations[i]})" for i, text in enumerate(texts) if text not in index
            ]
            raise ValueError(
                f"labels in {source} are not in `class_names`: {_listing(unknown)}. "
                f"`class_names` is {list(class_names)}; add the missing names to "
                "`class_names` or fix the labels"
            )
        ids = np.array([int(text) for text in texts], dtype=np.int64)
        bad = [
            f"{ids[i]} ({locations[i]})"
            for i in range(len(ids))
            if not 0 <= ids[i] < len(class_names)
        ]
        if bad:
            raise ValueError(
                f"integer labels in {source} must lie in [0, {len(class_names)}) for the "
                f"{len(class_names)} `class_names`, got {_listing(bad)}"
            )
        return ids.astype(np.int32), class_names
    if all_integers:
        ids = np.array([int(text) for text in texts], dtype=np.int64)
        negative = [f"{ids[i]} ({locations[i]})" for i in range(len(ids)) if ids[i] < 0]
        if negative:
            raise ValueError(
                f"integer labels in {source} must be non-negative class ids, "
                f"got {_listing(negative)}"
            )
        names = tuple(str(i) for i in range(int(ids.max()) + 1))
        return ids.astype(np.int32), names
    names = tuple(sorted(set(texts)))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[text] for text in texts], dtype=np.int32), names
