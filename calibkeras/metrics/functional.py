"""Proper scores and calibration statistics, each written once in ``keras.ops``.

The losses, the streaming metrics and the NumPy functions in
:mod:`calibkeras.calibration` all call these functions, so a quantity has one
definition in the package. Every function accepts NumPy arrays or tensors and returns
tensors (``keras.ops.convert_to_numpy`` turns them into arrays).

Definitions (pinned; see DESIGN.md):

* Brier score: per sample, ``sum_k (p_k - 1[y = k])**2``; range [0, 2].
* Negative log-likelihood: per sample, ``-ln p_y`` with ``p_y`` clipped at 1e-12 only
  inside the log (natural log).
* Calibration error from bins: equal-width bins on (0, 1]; bin ``b`` holds confidences
  in ``(b / B, (b + 1) / B]``, a confidence of exactly 1.0 falls in the last bin and one
  of exactly 0 in the first. ECE is ``sum_b (n_b / N) |acc_b - conf_b|`` (L1, bin weight
  = share of samples); MCE is ``max_b |acc_b - conf_b|`` over non-empty bins.
* Balanced accuracy: mean per-class recall over the classes present in ``y_true``.
"""

import functools
import numbers

import numpy as np
from keras import ops
from keras.backend import standardize_dtype

from calibkeras.utils.blocks import row_blocks

#: Probabilities are clipped at this value inside the log of the NLL.
LOG_CLIP = 1e-12

#: NumPy predictions larger than this many bytes are scored per sample in blocks of
#: rows of about this size instead of being copied into one tensor: on 1,000,000 x 100
#: the one copy took seconds, and 16 MB blocks were the fastest size (BENCHMARKS.md).
BLOCK_BYTES = 16 * 2**20


def in_row_blocks(per_sample_score):
    """Decorates ``score(y_true, y_pred, **kwargs) -> (N,)`` to take large NumPy inputs
    in row blocks of about ``BLOCK_BYTES``; tensors and small arrays pass unchanged.

    The score is computed row by row either way, so the result is the same tensor.
    """

    @functools.wraps(per_sample_score)
    def score(y_true, y_pred, **kwargs):
        if not (
            isinstance(y_pred, np.ndarray)
            and isinstance(y_true, np.ndarray)
            and y_pred.ndim == 2
            and y_pred.nbytes > BLOCK_BYTES
        ):
            return per_sample_score(y_true, y_pred, **kwargs)
        blocks = [
            per_sample_score(y_true[start:stop], y_pred[start:stop], **kwargs)
            for start, stop in row_blocks(
                y_pred.shape[0], y_pred.shape[1] * y_pred.itemsize, BLOCK_BYTES
            )
        ]
        return ops.concatenate(blocks, axis=0)

    return score


def labels_to_one_hot(y_true, y_pred):
    """Returns one-hot labels shaped like ``y_pred``.

    Args:
        y_true: integer class ids of shape ``(N,)`` or ``(N, 1)``, or one-hot / soft
            labels of shape ``(N, K)``.
        y_pred: predictions of shape ``(N, K)``; only its shape and dtype are used.

    Returns:
        A float tensor of shape ``(N, K)`` with the dtype of ``y_pred``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if _is_one_hot(y_true, y_pred):
        return ops.cast(y_true, y_pred.dtype)
    return ops.one_hot(_sparse_ids(y_true, y_pred), y_pred.shape[-1], dtype=y_pred.dtype)


def _is_one_hot(y_true, y_pred):
    """Whether ``y_true`` holds one-hot (or soft) rows, not class ids, for ``y_pred``."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1]


def _sparse_ids(y_true, y_pred):
    """Class ids ``(N,)`` int32 from sparse labels ``(N,)`` or ``(N, 1)``."""
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.cast(y_true, "int32")


def label_values(y_true, values):
    """Each sample's entry of ``values`` (N, K) at its class id: ``values[i, y_i]``."""
    ids = ops.expand_dims(labels_to_ids(y_true, values), -1)
    return ops.take_along_axis(values, ids, axis=-1)[..., 0]


def labels_to_ids(y_true, y_pred):
    """Returns integer class ids of shape ``(N,)`` from sparse or one-hot labels."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if _is_one_hot(y_true, y_pred):
        return ops.cast(ops.argmax(y_true, axis=-1), "int32")
    return _sparse_ids(y_true, y_pred)


def to_probabilities(y_pred, from_logits):
    """Returns softmax(``y_pred``) when ``from_logits`` else ``y_pred`` as a tensor."""
    y_pred = ops.convert_to_tensor(y_pred)
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


@in_row_blocks
def brier_score(y_true, y_pred, from_logits=False):
    """Per-sample multiclass Brier score ``sum_k (p_k - 1[y = k])**2``.

    Args:
        y_true: class ids ``(N,)`` / ``(N, 1)`` or one-hot labels ``(N, K)``.
        y_pred: probabilities ``(N, K)``, or logits when ``from_logits=True``.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Tensor ``(N,)`` with values in [0, 2]; lower is better.

    References:
        Brier (1950), Verification of forecasts expressed in terms of probability.
    """
    probs = to_probabilities(y_pred, from_logits)
    y_true = ops.convert_to_tensor(y_true)
    if not _is_one_hot(y_true, probs):  # sum_k p_k^2 - 2 p_y + 1, without a one-hot matrix
        # Elementwise, not einsum: oneDNN's einsum/matmul kernels refuse the empty
        # batches that tf.distribute hands to replicas on AVX-512 CPUs.
        squares = ops.sum(ops.square(probs), axis=-1)
        return brier_score_from_label_probability(squares, label_values(y_true, probs))
    one_hot = labels_to_one_hot(y_true, probs)
    return ops.sum(ops.square(probs - one_hot), axis=-1)


@in_row_blocks
def negative_log_likelihood(y_true, y_pred, from_logits=False):
    """Per-sample negative log-likelihood ``-ln p_y`` (natural log).

    With probabilities, ``p_y`` is clipped at ``LOG_CLIP`` = 1e-12 inside the log only;
    with logits, the exact ``log_softmax`` is used.

    Args:
        y_true: class ids ``(N,)`` / ``(N, 1)`` or one-hot labels ``(N, K)``.
        y_pred: probabilities ``(N, K)``, or logits when ``from_logits=True``.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Tensor ``(N,)`` with values in [0, inf); lower is better.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    clip = ops.cast(LOG_CLIP, y_pred.dtype)
    if not _is_one_hot(y_true, y_pred):  # pick each sample's own entry: no one-hot matrix
        if from_logits:
            return ops.logsumexp(y_pred, axis=-1) - label_values(y_true, y_pred)
        return negative_log_likelihood_from_label_probability(label_values(y_true, y_pred))
    if from_logits:
        log_probs = ops.log_softmax(y_pred, axis=-1)
    else:
        log_probs = ops.log(ops.maximum(y_pred, clip))
    return -ops.sum(labels_to_one_hot(y_true, y_pred) * log_probs, axis=-1)


def brier_score_from_label_probability(squared_norm, label_probability):
    """Per-sample Brier score from its two pieces: ``sum_k p_k**2 - 2 p_y + 1``.

    The sparse-label form of :func:`brier_score`, for callers that already hold the
    pieces (:func:`calibkeras.calibration.calibration_errors` gathers them in one pass).
    Rounding can make the sum a hair below 0 for a one-hot prediction; it is clipped
    at 0.

    Args:
        squared_norm: ``(N,)`` the sums ``sum_k p_k**2``.
        label_probability: ``(N,)`` each sample's probability of its label, ``p_y``.

    Returns:
        Tensor ``(N,)`` with values in [0, 2], in the dtype of ``squared_norm``.
    """
    squared_norm = ops.convert_to_tensor(squared_norm)
    label_probability = ops.cast(label_probability, squared_norm.dtype)
    score = squared_norm - 2 * label_probability + 1
    return ops.maximum(score, ops.zeros_like(score))


def negative_log_likelihood_from_label_probability(label_probability):
    """Per-sample ``-ln p_y`` from each sample's probability of its label.

    ``p_y`` is clipped at ``LOG_CLIP`` = 1e-12 inside the log only. The probability
    form of :func:`negative_log_likelihood`, for callers that hold ``p_y`` already.

    Args:
        label_probability: ``(N,)`` the probabilities ``p_y``.

    Returns:
        Tensor ``(N,)`` with values in [0, -ln 1e-12], in the dtype of the input.
    """
    label_probability = ops.convert_to_tensor(label_probability)
    clip = ops.cast(LOG_CLIP, label_probability.dtype)
    return -ops.log(ops.maximum(label_probability, clip))


def top_label_outcomes(y_true, probs):
    """Returns top-label ``(confidence, correct)``, each of shape ``(N, 1)``.

    ``confidence`` is ``max_k p_k`` and ``correct`` is 1.0 where the argmax equals the
    label (ties go to the lowest class index, as ``argmax`` does).
    """
    probs = ops.convert_to_tensor(probs)
    predicted = ops.cast(ops.argmax(probs, axis=-1), "int32")
    correct = ops.cast(ops.equal(predicted, labels_to_ids(y_true, probs)), probs.dtype)
    # `initial` (probabilities are >= 0) lets an empty batch through eagerly too, where
    # ops.max refuses an empty tensor.
    confidence = ops.max(probs, axis=-1, initial=0.0)
    return ops.expand_dims(confidence, -1), ops.expand_dims(correct, -1)


def bin_indices(confidences, num_bins):
    """Equal-width bin index of each confidence: ``(b/B, (b+1)/B]`` is bin ``b``.

    Args:
        confidences: tensor of probabilities, any shape.
        num_bins: number of bins ``B``.

    Returns:
        int32 tensor of the same shape with values in ``[0, B)``; a confidence of 1.0
        is in the last bin and one of 0.0 in the first.
    """
    confidences = ops.convert_to_tensor(confidences)
    bins = ops.cast(ops.ceil(confidences * num_bins), "int32") - 1
    return ops.clip(bins, 0, num_bins - 1)


def bin_statistics(confidences, outcomes, num_bins, sample_weight=None):
    """Per-bin sums for equal-width calibration bins on (0, 1].

    Args:
        confidences: ``(N, G)`` predicted probabilities of an event, one column per
            group (``G = 1`` for top-label calibration, ``G = K`` for classwise).
        outcomes: ``(N, G)`` the events, 1.0 where it happened, else 0.0.
        num_bins: number of equal-width bins ``B``.
        sample_weight: optional ``(N,)`` non-negative weights.

    Returns:
        ``(counts, confidence_sums, outcome_sums)``, each ``(G, B)``: the (weighted)
        number of samples, the sum of their confidences and the sum of their outcomes
        in each bin.
    """
    confidences = ops.convert_to_tensor(confidences)
    dtype = confidences.dtype
    outcomes = ops.cast(outcomes, dtype)
    num_groups = confidences.shape[-1]
    bins = bin_indices(confidences, num_bins)
    flat = ops.reshape(bins + ops.arange(num_groups, dtype="int32") * num_bins, (-1,))
    length = num_groups * num_bins

    def total(values):
        # segment_sum with a fixed num_segments, not bincount, whose output length
        # depends on the data: XLA (jit_compile=True, Keras' default on one GPU) needs
        # a compile-time shape.
        values = ops.ones_like(flat, dtype=dtype) if values is None else ops.reshape(values, (-1,))
        sums = ops.segment_sum(values, flat, num_segments=length)
        return ops.reshape(ops.cast(sums, dtype), (num_groups, num_bins))

    if sample_weight is None:
        return total(None), total(confidences), total(outcomes)
    weights = ops.ones_like(confidences) * ops.expand_dims(ops.cast(sample_weight, dtype), -1)
    return total(weights), total(weights * confidences), total(weights * outcomes)


def calibration_error_from_bins(counts, confidence_sums, outcome_sums, norm="l1"):
    """Calibration error of each group from its bin sums.

    Args:
        counts, confidence_sums, outcome_sums: ``(G, B)`` from :func:`bin_statistics`.
        norm: ``"l1"`` for the expected calibration error (bins weighted by their
            share of samples) or ``"max"`` for the maximum calibration error over
            non-empty bins.

    Returns:
        Tensor ``(G,)`` with values in [0, 1]; 0 for a group with no samples.
    """
    counts = ops.convert_to_tensor(counts)
    gaps = ops.abs(confidence_sums - outcome_sums)
    if norm == "l1":
        totals = ops.sum(counts, axis=-1)
        return ops.divide_no_nan(ops.sum(gaps, axis=-1), totals)
    if norm == "max":
        return ops.max(ops.divide_no_nan(gaps, counts), axis=-1)
    raise ValueError(f"`norm` must be 'l1' or 'max', got {norm!r}")


def class_recall_counts(y_true, y_pred, sample_weight=None):
    """Per-class (weighted) support and correctly predicted counts.

    Args:
        y_true: class ids or one-hot labels.
        y_pred: ``(N, K)`` probabilities or logits (only the argmax is used).
        sample_weight: optional ``(N,)`` weights.

    Returns:
        ``(support, correct)``, each ``(K,)``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    num_classes = y_pred.shape[-1]
    labels = labels_to_ids(y_true, y_pred)
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    dtype = y_pred.dtype if "float" in str(y_pred.dtype) else "float32"
    if sample_weight is None:
        weights = ops.ones_like(labels, dtype=dtype)
    else:
        weights = ops.cast(ops.reshape(sample_weight, (-1,)), dtype)
    hits = weights * ops.cast(ops.equal(labels, predicted), dtype)
    support = ops.segment_sum(weights, labels, num_segments=num_classes)  # XLA: fixed shape
    correct = ops.segment_sum(hits, labels, num_segments=num_classes)
    return ops.cast(support, dtype), ops.cast(correct, dtype)


def balanced_accuracy_from_counts(support, correct):
    """Mean per-class recall over the classes with positive support; 0 when none."""
    support = ops.convert_to_tensor(support)
    present = ops.cast(support > 0, support.dtype)
    recall = ops.divide_no_nan(correct, support)
    return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))


def action_expected_costs(probs, cost_matrix, abstain_cost=None):
    """Expected cost of every action: ``probs @ C.T``, plus an abstain column.

    The one definition shared by the layer, the export and the NumPy functions. No
    argument checks (it runs inside models and SavedModels); the callers check. An
    empty batch gives an empty result without a matrix product (oneDNN refuses one on
    some CPUs).

    Args:
        probs: ``(..., K)`` probabilities (array or tensor).
        cost_matrix: ``(A, K)`` costs ``C[action, true_class]`` (array, tensor or
            variable); cast to the dtype of ``probs``.
        abstain_cost: None, or a scalar (number, tensor or variable): the cost of the
            extra abstain action, whatever the class.

    Returns:
        Tensor ``(..., A)``, or ``(..., A + 1)`` with the abstain action last, in the
        dtype of ``probs``.
    """
    probs = ops.convert_to_tensor(probs)
    transposed = ops.transpose(_cast(cost_matrix, probs.dtype))
    # oneDNN (TensorFlow's CPU path) rejects a transposed matmul of zero rows on AVX-512
    # CPUs, and tf.distribute hands empty batches to replicas: the empty case is the
    # same product written as a broadcast, which every kernel takes.
    costs = ops.cond(
        ops.size(probs) > 0,
        lambda: ops.matmul(probs, transposed),
        lambda: ops.sum(ops.expand_dims(probs, -1) * transposed, axis=-2),
    )
    if abstain_cost is not None:
        abstain = ops.ones_like(costs[..., :1]) * _cast(abstain_cost, probs.dtype)
        costs = ops.concatenate([costs, abstain], axis=-1)
    return costs


def _cast(value, dtype):
    # Python numbers and lists go through NumPy in the target dtype: keras.ops would
    # first make them float32, and lose digits of a float64 computation.
    if isinstance(value, (numbers.Number, list, tuple, np.ndarray)):
        return ops.convert_to_tensor(np.asarray(value, dtype=standardize_dtype(dtype)))
    return ops.cast(value, dtype)
