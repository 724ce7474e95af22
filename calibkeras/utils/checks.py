"""Eager argument checks shared by the NumPy functions, layers, losses and metrics.

Every check raises ``ValueError`` whose message names the argument, shows the bad
value and says what is expected, e.g. "`num_bins` must be a positive integer, got 0".
"""

import numbers

import numpy as np

from calibkeras.choices import SCHEDULES
from calibkeras.utils.blocks import row_blocks

#: Rows of a probability matrix must sum to 1 within this absolute tolerance.
PROBABILITY_SUM_ATOL = 1e-4


def _show(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_positive_int(value, name):
    """Returns ``value`` as an int, or raises if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {_show(value)}")
    return int(value)


def check_int_at_least(value, name, minimum):
    """Returns ``value`` as an int, or raises if it is not an integer >= ``minimum``."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {_show(value)}")
    return int(value)


def check_bool(value, name):
    """Returns ``value`` as a bool, or raises if it is not True or False (NumPy bools pass)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False, got {_show(value)}")
    return bool(value)


def check_optional_int(value, name):
    """Returns ``value`` as an int, or None for None; raises for anything else."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer or None, got {_show(value)}")
    return int(value)


def check_positive_float(value, name):
    """Returns ``value`` as a float, or raises if it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a positive finite number, got {_show(value)}")
    if not np.isfinite(float(value)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive finite number, got {_show(value)}")
    return float(value)


def check_nonnegative_int(value, name, meaning=""):
    """Returns ``value`` as an int, or raises if it is not an integer >= 0.

    ``meaning`` is added to the message after "integer >= 0", e.g. " (0 for none)".
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0{meaning}, got {_show(value)}")
    return int(value)


def check_nonnegative_float(value, name):
    """Returns ``value`` as a float, or raises if it is not a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {_show(value)}")
    return float(value)


def check_fraction(value, name):
    """Returns ``value`` as a float, or raises if it is not a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"`{name}` must be a number in (0, 1], got {_show(value)}")
    return float(value)


#: How many items a message lists before it says how many there are in all.
MAX_LISTED = 10


def listing(items):
    """The first :data:`MAX_LISTED` of ``items`` (strings), comma-separated, and how
    many there are in all when there are more: ``"'a', 'b', ... (12 in all)"``."""
    items = list(items)
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else "")


#: What ``alpha`` of the conformal prediction sets means, for its messages.
MISCOVERAGE = "the allowed miscoverage (0.1 for 90 % coverage)"


def check_open_fraction(value, name, meaning=""):
    """Returns ``value`` as a float, or raises if it is not a number in (0, 1).

    ``meaning`` (e.g. ``"the allowed miscoverage (0.1 for 90 % coverage)"``) follows
    the range in the message.
    """
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0 < value < 1):
        meaning = f", {meaning}" if meaning else ""
        raise ValueError(f"`{name}` must be a number in (0, 1){meaning}; got {_show(value)}")
    return float(value)


def check_choice(value, name, choices):
    """Returns ``value`` if it is one of ``choices``, else raises."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}; got {_show(value)}")
    return value


def check_zoom(zoom, name="zoom"):
    """Returns ``zoom`` as a float, or raises unless it is a number in [0, 1) (the
    augmentation's zoom-in factor; 0 for none)."""
    if isinstance(zoom, bool) or not isinstance(zoom, numbers.Real) or not 0 <= zoom < 1:
        raise ValueError(
            f"`{name}` must be a number in [0, 1), such as 0.4 (0: no zoom); got {_show(zoom)}"
        )
    return float(zoom)


def check_fine_tune_options(schedule, ema_momentum, *, prefix="", early_stopping_patience=None):
    """Checks the fine-tuning options: ``schedule`` one of :data:`SCHEDULES`,
    ``ema_momentum`` None or in (0, 1), ``early_stopping_patience`` None or an integer
    >= 0; ``prefix`` goes before the first two names in messages (``fine_tune_``)."""
    check_choice(schedule, f"{prefix}schedule", SCHEDULES)
    if ema_momentum is not None and (
        isinstance(ema_momentum, bool)
        or not isinstance(ema_momentum, numbers.Real)
        or not 0 < ema_momentum < 1
    ):
        raise ValueError(
            f"`{prefix}ema_momentum` must be None or a number in (0, 1), such as 0.99; "
            f"got {_show(ema_momentum)}"
        )
    if early_stopping_patience is not None:
        check_nonnegative_int(early_stopping_patience, "early_stopping_patience",
                              " or None (no early stopping)")


def _refuse_entries(array, bad, message):
    """Raises ``message`` naming the first entry of the 2-D ``array`` where ``bad``."""
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{message}; found {array[row, col]} at row {row}, column {col}")


def check_finite_matrix(values, name, num_columns=None):
    """Returns ``values`` as a 2-D float64 array with finite entries, else raises."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (num_samples, num_classes), "
            f"got shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}); pass at least one sample")
    if num_columns is not None and array.shape[1] != num_columns:
        raise ValueError(
            f"`{name}` must have {num_columns} columns, got shape {array.shape}"
        )
    _refuse_entries(array, ~np.isfinite(array), f"`{name}` must be finite")
    return array


def _low_precision_eps(values):
    """Machine epsilon of ``values``' float dtype when it is coarser than float32, else None."""
    dtype = getattr(values, "dtype", None)
    dtype = getattr(dtype, "as_numpy_dtype", dtype)  # a tf.DType
    if dtype is None:
        return None
    try:
        eps = float(np.finfo(dtype).eps)
    except (TypeError, ValueError):
        return None
    return eps if eps > np.finfo(np.float32).eps else None


def _probability_row_sums(array):
    """Row sums (float64) of a 2-D float ``array`` whose entries all lie in [0, 1]
    (so are finite), scanned in cache-sized row blocks; None when some entry does not
    (NaN fails both comparisons), or when the shape is not that of a probability matrix.

    A whole-array check of 1,000,000 x 100 float64 makes four 100 MB temporaries; this
    scan makes none (its time: BENCHMARKS.md, "calibration_errors in row blocks").
    """
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        return None
    sums = np.empty(array.shape[0])
    for start, stop in row_blocks(array.shape[0], array.shape[1] * array.itemsize):
        block = array[start:stop]
        if not (block.min() >= 0 and block.max() <= 1):
            return None
        block.sum(axis=1, dtype=np.float64, out=sums[start:stop])
    return sums


def check_probabilities(probs, name="probs", keep_float32=False):
    """Returns ``probs`` as a float64 (N, K) array of probability rows, else raises.

    Each row must lie in [0, 1] and sum to 1 within ``PROBABILITY_SUM_ATOL``; for
    arrays of a dtype coarser than float32 (float16, bfloat16) within 4 machine
    epsilons of that dtype (0.0039 for float16), which a softmax computed in that
    dtype meets. Rows are not renormalised.

    Args:
        probs: the probabilities, array-like ``(N, K)``.
        name: the argument's name in messages.
        keep_float32: return a float32 NumPy array as it is (checked, not copied)
            instead of a float64 copy, for callers that compute in float64 block by
            block; every float32 value is exact in float64, so nothing is lost.
    """
    eps = _low_precision_eps(probs)
    if keep_float32 and isinstance(probs, np.ndarray) and probs.dtype == np.float32:
        array = probs
    else:
        array = np.asarray(probs, dtype=np.float64)
    sums = _probability_row_sums(array)
    if sums is None:  # some check fails: the whole-array checks, in order, say which
        array = check_finite_matrix(array, name)
        if array.shape[1] < 2:
            raise ValueError(
                f"`{name}` must have at least 2 columns (one per class), got shape "
                f"{array.shape}"
            )
        outside = (array < 0) | (array > 1)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(
                f"`{name}` must hold probabilities in [0, 1]; found {array[row, col]} at "
                f"row {row}, column {col}. Pass softmax outputs, or logits to the "
                "`from_logits` API"
            )
        sums = array.sum(axis=1)
    atol = PROBABILITY_SUM_ATOL if eps is None else max(PROBABILITY_SUM_ATOL, 4 * eps)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        row = int(np.argmax(off))
        dtype = " for its dtype" if eps is not None else ""
        hint = (
            "Apply a softmax first"
            if abs(sums[row] - 1.0) > 0.01
            else "If these are rounded probabilities, renormalise them "
            "(`probs / probs.sum(axis=1, keepdims=True)`) or compute the softmax in float32"
        )
        raise ValueError(
            f"rows of `{name}` must sum to 1 (within {atol:.2g}{dtype}); row {row} "
            f"sums to {sums[row]:.6g}. {hint}"
        )
    return array


def check_labels(labels, num_classes, num_samples, name="labels", kind="class",
                 against="the predictions have {n} rows"):
    """Returns ``labels`` as a 1-D int64 array of ids in [0, num_classes), else raises.

    Args:
        labels: the ids (a ``(N, 1)`` column is accepted).
        num_classes: ids must be below this.
        num_samples: required length, or None for any non-empty length.
        name: the argument's name in messages.
        kind: what the ids are ("class", "action") in messages.
        against: what the length must match, in messages (``{n}``: ``num_samples``).
    """
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array of integer {kind} ids, got shape {array.shape}"
            + ("; for one-hot labels pass `labels.argmax(axis=1)`" if kind == "class" else "")
        )
    if num_samples is None and array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty; pass at least one sample")
    if num_samples is not None and array.shape[0] != num_samples:
        raise ValueError(
            f"`{name}` has {array.shape[0]} entries but {against.format(n=num_samples)}; "
            "they must have the same length"
        )
    python_ints = array.dtype == object and all(
        isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        for value in array.tolist()
    )
    if array.size and not python_ints and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(
            np.isfinite(array) & (array == np.round(array))
        ):
            raise ValueError(
                f"`{name}` must hold integer {kind} ids, got dtype {array.dtype} "
                f"(first values {_show(array[:5].tolist())})"
            )
    # Range-checked in the input's own dtype: casting first would wrap 2**63 (uint64)
    # or a large float to a negative int64.
    out_of_range = np.asarray((array < 0) | (array >= num_classes), dtype=bool)
    if out_of_range.any():
        index = int(np.argmax(out_of_range))
        value = int(array[index])  # integral here: checked above
        raise ValueError(
            f"`{name}` must be {kind} ids in [0, {num_classes}); found {_show(value)} at "
            f"position {index}"
        )
    return array.astype(np.int64)


def check_sample_weight(sample_weight, num_samples, name="sample_weight"):
    """Returns a 1-D float64 array of non-negative weights (ones when None), else raises."""
    if sample_weight is None:
        return np.ones(num_samples)
    array = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if array.shape[0] != num_samples:
        raise ValueError(
            f"`{name}` has {array.shape[0]} entries but there are {num_samples} samples"
        )
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"`{name}` must be finite and non-negative, got {_show(array[:5])}")
    if array.sum() <= 0:
        raise ValueError(f"`{name}` must have a positive sum, got {array.sum()}")
    return array


def check_prior(prior, num_classes=None, name="prior"):
    """Returns ``prior`` as a 1-D float64 probability vector, else raises.

    Every entry must be > 0 (a zero prior would make a class impossible, and its log
    infinite) and the entries must sum to 1 within ``PROBABILITY_SUM_ATOL``.
    """
    array = _positive_class_vector(prior, num_classes, name, "probability")
    if abs(array.sum() - 1.0) > PROBABILITY_SUM_ATOL:
        raise ValueError(
            f"`{name}` must sum to 1, got sum {array.sum():.6g} for {_show(array.tolist())}; "
            "normalise it, or pass class counts to the `class_counts` argument"
        )
    return array


def check_class_counts(class_counts, num_classes=None, name="class_counts"):
    """Returns ``class_counts`` as a 1-D float64 array of positive counts, else raises."""
    return _positive_class_vector(
        class_counts, num_classes, name, "count",
        "; a class with no training examples cannot be given a prior",
    )


def _positive_class_vector(values, num_classes, name, kind, hint=""):
    """``values`` as a 1-D float64 array of at least 2 positive finite entries, one per
    class (``num_classes`` if given), else a ValueError naming ``name``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] < 2:
        raise ValueError(
            f"`{name}` must be a 1-D vector with one {kind} per class, got shape {array.shape}"
        )
    if num_classes is not None and array.shape[0] != num_classes:
        raise ValueError(
            f"`{name}` must have {num_classes} entries (one per class), got {array.shape[0]}"
        )
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        adjective = "positive" if kind == "count" else "positive finite"
        raise ValueError(
            f"every entry of `{name}` must be a {adjective} {kind}, got "
            f"{_show(array.tolist())}{hint}"
        )
    return array


def check_cost_matrix(cost_matrix, num_classes=None, name="cost_matrix"):
    """Returns ``cost_matrix`` as a float64 ``(A, K)`` array, else raises ``ValueError``.

    Args:
        cost_matrix: ``(A, K)`` costs ``C[action, true_class]``; at least 2 actions and
            2 classes, every entry finite and ``>= 0``.
        num_classes: if given, the number of columns ``K`` it must have.
        name: the argument name used in error messages.

    Returns:
        ``np.ndarray`` of dtype float64 and shape ``(A, K)``.
    """
    try:
        array = np.asarray(cost_matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a 2-D array of numbers of shape (num_actions, num_classes), "
            f"got {_show(cost_matrix)}"
        ) from None
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (num_actions, num_classes), got shape "
            f"{array.shape}"
        )
    if array.shape[0] < 2:
        raise ValueError(
            f"`{name}` must have at least 2 rows (one per action), got shape {array.shape}"
        )
    if array.shape[1] < 2:
        raise ValueError(
            f"`{name}` must have at least 2 columns (one per class), got shape {array.shape}"
        )
    if num_classes is not None and array.shape[1] != num_classes:
        raise ValueError(
            f"`{name}` must have {num_classes} columns (one per class of the model), got "
            f"shape {array.shape}"
        )
    _refuse_entries(array, ~np.isfinite(array), f"`{name}` must be finite")
    _refuse_entries(array, array < 0, f"`{name}` must be non-negative (a cost, not a gain)")
    return array


def check_abstain_cost(abstain_cost, name="abstain_cost"):
    """Returns ``abstain_cost`` as a float (or None), else raises ``ValueError``.

    Args:
        abstain_cost: None (no abstain action) or a finite number ``>= 0``.
        name: the argument name used in error messages.
    """
    if abstain_cost is None:
        return None
    if isinstance(abstain_cost, bool) or not isinstance(abstain_cost, numbers.Real):
        raise ValueError(
            f"`{name}` must be None or a non-negative finite number, got {_show(abstain_cost)}"
        )
    value = float(abstain_cost)
    if not np.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be None or a non-negative finite number, got {_show(abstain_cost)}"
        )
    return value


def check_class_names(class_names, num_classes=None, name="class_names"):
    """Checks class names: a non-empty sequence of distinct names (``num_classes`` of them).

    Returns:
        tuple of str, or None when ``class_names`` is None.

    Raises:
        ValueError: naming ``name``: a plain string, empty, duplicates, or not
            ``num_classes`` names.
    """
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)):
        raise ValueError(
            f"`{name}` must be a sequence of names, got the string {_show(class_names)}"
        )
    names = tuple(str(class_name) for class_name in class_names)
    if not names:
        raise ValueError(f"`{name}` must not be empty; pass None to infer the classes")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(
            f"`{name}` must have {num_classes} entries (one per column of the "
            f"probabilities), got {len(names)}: {_show(list(names), 120)}"
        )
    duplicates = sorted({class_name for class_name in names if names.count(class_name) > 1})
    if duplicates:
        raise ValueError(f"`{name}` must be distinct, got duplicates: {_show(duplicates, 120)}")
    return names



def check_dirichlet(value, name="dirichlet"):
    """Returns a Dirichlet concentration as a float, or raises unless it is finite and >= 1."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a finite number >= 1 (1 is maximum likelihood), got "
            f"{_show(value)}"
        )
    return float(value)
