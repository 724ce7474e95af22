"""Stratified train/validation split of one table of labelled images."""

import numbers
import os

import numpy as np
import pandas as pd

from calibkeras.data.labels import cell_text


def stratified_split(csv_path_or_dataframe, val_fraction=0.2, seed=0, label_column="label"):
    """Splits rows into training and validation rows, class by class.

    Each class with `n >= 2` rows puts `round(n * val_fraction)` of them, but at
    least 1 and at most `n - 1`, into validation, chosen at random; a class with
    a single row stays in training. So every class with two or more rows is
    present in both parts, and both parts keep roughly the class prior of the
    whole table (the validation prior is the one temperature scaling is fitted
    under). The draw depends only on `seed` and the rows.

    Args:
        csv_path_or_dataframe: str or path-like CSV file (read with pandas), or a
            `pandas.DataFrame`.
        val_fraction: float in (0, 1), the share of each class that goes to
            validation. Default 0.2.
        seed: int, the random seed. Default 0.
        label_column: str, the column holding the labels. Default "label".

    Returns:
        `(train_rows, val_rows)`: two DataFrames with all the input's columns,
        their rows in the original order and their original index (for a CSV
        read here, index `i` is file line `i + 2`).

    Raises:
        FileNotFoundError: if the CSV does not exist.
        ValueError: if `val_fraction` is not in (0, 1), `seed` is not an int,
            `label_column` is missing (the message lists the columns), a label
            is empty, or the table has no rows.

    Example:
    >>> rows = pd.DataFrame({"filepath": list("abcdef"), "label": list("xxxyyy")})
    >>> train_rows, val_rows = stratified_split(rows, val_fraction=0.34)
    >>> sorted(val_rows["label"])
    ['x', 'y']
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise ValueError(f"`val_fraction` must be a number in (0, 1), got {val_fraction!r}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    if isinstance(csv_path_or_dataframe, pd.DataFrame):
        table, source = csv_path_or_dataframe, "the DataFrame"
    else:
        path = os.fspath(csv_path_or_dataframe)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`csv_path_or_dataframe` '{path}' is not an existing file")
        try:
            table = pd.read_csv(path, encoding="utf-8-sig")
        except pd.errors.EmptyDataError:
            raise ValueError(f"`csv_path_or_dataframe` '{path}' is empty") from None
        source = os.path.basename(path)
    if label_column not in table.columns:
        raise ValueError(
            f"`label_column` '{label_column}' not found in {source}; columns are: "
            f"{', '.join(str(column) for column in table.columns)}"
        )
    if len(table) == 0:
        raise ValueError(f"{source} has no rows to split")
    labels = np.array([cell_text(value) for value in table[label_column]], dtype=object)
    empty = np.flatnonzero(labels == "")
    if empty.size:
        raise ValueError(
            f"`label_column` '{label_column}' is empty in {empty.size} rows of {source} "
            f"(index {table.index[empty[0]]!r} first); every row needs a label"
        )
    rng = np.random.default_rng(int(seed))
    is_val = np.zeros(len(table), dtype=bool)
    for label in sorted(set(labels)):
        members = np.flatnonzero(labels == label)
        n = members.size
        if n < 2:
            continue
        n_val = min(max(int(round(n * float(val_fraction))), 1), n - 1)
        is_val[rng.choice(members, size=n_val, replace=False)] = True
    return table[~is_val].copy(), table[is_val].copy()
