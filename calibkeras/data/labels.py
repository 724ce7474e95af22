"""Turning label cells (class names or integer ids) into integer class ids."""

import decimal
import math
import numbers
import re

import numpy as np

from calibkeras.utils.checks import _show, listing

_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

#: Longest class name (in characters) a label cell may hold. A longer cell is
#: almost always the wrong column or a broken file, not a class.
MAX_CLASS_NAME_LENGTH = 256

#: Label texts that mean "missing" (pandas' default NA markers), compared without
#: regard to case. They are refused as labels unless listed in `class_names`.
MISSING_LABELS = frozenset(
    [
        "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan",
        "<na>", "n/a", "na", "nan", "null", "none",
    ]
)


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


def encode_labels(values, class_names, locations, source, label_column):
    """Maps label cells to class ids.

    Rules:
    - A label must not be empty, must not look missing (one of
      `MISSING_LABELS`, e.g. "NaN", "NA", "null", "None", "N/A", in any case)
      unless it is one of `class_names`, and may have at most
      `MAX_CLASS_NAME_LENGTH` (256) characters. Surrounding spaces are removed.
    - With `class_names`: a label equal to a class name gets that name's index.
      Otherwise, if every label is an integer, the labels are taken as ids and
      must lie in `[0, len(class_names))`.
    - Without `class_names`: integer labels are ids ("1", "01" and "+1" are all
      id 1) and the classes are "0" .. "max"; any other labels are names and the
      classes are the sorted distinct names (as
      `keras.utils.image_dataset_from_directory` does). Names that are the same
      number written two ways ("1" and "1.0") are refused as ambiguous rather
      than made into two classes: write every label the same way.

    Args:
        values: sequence of `N` label cells (str or numbers).
        class_names: tuple of str or None (already checked).
        locations: sequence of `N` str, where each row comes from ("line 7").
        source: str, what the rows were read from, for messages.
        label_column: str, the column name, for messages.

    Returns:
        `(ids, class_names)`: int32 array `[N]` and tuple of str.

    Raises:
        ValueError: for an empty, missing-looking or over-long label, a label
            not in `class_names`, an integer label out of range or negative, or
            one number written two ways. Messages name the rows and quote at
            most 80 characters of any cell.
    """
    column = _show(label_column)
    texts = [cell_text(value) for value in values]
    empty = [locations[i] for i, text in enumerate(texts) if text == ""]
    if empty:
        raise ValueError(
            f"`label_column` {column} is empty on {listing(empty)} of {source}; "
            "every row needs a label (fill it in or remove the row)"
        )
    long = [
        f"{locations[i]} ({len(text):,} characters)"
        for i, text in enumerate(texts)
        if len(text) > MAX_CLASS_NAME_LENGTH
    ]
    if long:
        raise ValueError(
            f"`label_column` {column} of {source} holds labels longer than "
            f"{MAX_CLASS_NAME_LENGTH} characters on {listing(long)}; a class name must be "
            "short: check that `label_column` is the label column and that the file's "
            "quotes are balanced"
        )
    known = set(class_names or ())
    missing = [
        f"{_show(text)} ({locations[i]})"
        for i, text in enumerate(texts)
        if text.lower() in MISSING_LABELS and text not in known
    ]
    if missing:
        raise ValueError(
            f"`label_column` {column} of {source} holds missing-value markers instead of "
            f"labels: {listing(missing)}; every row needs a real label (fill it in or "
            "remove the row; if such a text really is a class name, list it in "
            "`class_names`)"
        )
    all_integers = all(_INTEGER.match(text) for text in texts)
    if class_names is not None:
        index = {name: i for i, name in enumerate(class_names)}
        if all(text in index for text in texts):
            return np.array([index[text] for text in texts], dtype=np.int32), class_names
        if not all_integers:
            unknown = [
                f"{_show(text)} ({locations[i]})"
                for i, text in enumerate(texts)
                if text not in index
            ]
            raise ValueError(
                f"labels in {source} are not in `class_names`: {listing(unknown)}. "
                f"`class_names` is {_show(list(class_names), 120)}; add the missing names "
                "to `class_names` or fix the labels"
            )
        ids = [int(text) for text in texts]
        bad = [
            f"{_show(ids[i])} ({locations[i]})"
            for i in range(len(ids))
            if not 0 <= ids[i] < len(class_names)
        ]
        if bad:
            raise ValueError(
                f"integer labels in {source} must lie in [0, {len(class_names)}) for the "
                f"{len(class_names)} `class_names`, got {listing(bad)}"
            )
        return np.array(ids, dtype=np.int32), class_names
    if all_integers:
        ids = [int(text) for text in texts]
        negative = [f"{_show(ids[i])} ({locations[i]})" for i in range(len(ids)) if ids[i] < 0]
        if negative:
            raise ValueError(
                f"integer labels in {source} must be non-negative class ids, "
                f"got {listing(negative)}"
            )
        largest = max(range(len(ids)), key=ids.__getitem__)
        if ids[largest] >= len(ids):
            raise ValueError(
                f"integer label {_show(ids[largest])} ({locations[largest]}) of {source} is "
                f"not below the number of rows ({len(ids)}): integer labels are class ids "
                "0 .. K-1 and every class needs an example; number the classes from 0, "
                "or pass `class_names`"
            )
        names = tuple(str(i) for i in range(ids[largest] + 1))
        return np.array(ids, dtype=np.int32), names
    _refuse_numbers_written_two_ways(texts, locations, source, column)
    names = tuple(sorted(set(texts)))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[text] for text in texts], dtype=np.int32), names


def _refuse_numbers_written_two_ways(texts, locations, source, column):
    """Raises if two different label texts are the same number ("1" and "1.0")."""
    first = {}
    for i, text in enumerate(texts):
        if not _NUMBER.match(text):
            continue
        value = decimal.Decimal(text)
        if value not in first:
            first[value] = i
        elif texts[first[value]] != text:
            j = first[value]
            raise ValueError(
                f"`label_column` {column} of {source} writes one number two ways: "
                f"{_show(texts[j])} ({locations[j]}) and {_show(text)} ({locations[i]}) "
                "would become two classes. Write every label the same way (integers "
                "0, 1, 2, ... are class ids), or use class names"
            )
