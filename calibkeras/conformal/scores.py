"""Conformity scores of prediction sets: LAC, APS and RAPS, for every class at once.

Written once in ``keras.ops``, so that the NumPy fit (:func:`fit_conformal`, on float64
arrays) and the served layer (:class:`calibkeras.layers.PredictionSet`, in the graph)
compute the same function.
"""

from keras import ops

from calibkeras.choices import CONFORMITY_SCORES


def conformity_scores(probs, *, score="lac", u=1.0, penalty=0.0, k_reg=1):
    """The ``(N, K)`` conformity score of every class of every row (larger: stranger).

    * ``"lac"`` (least ambiguous set-valued classifier, Sadinle et al. 2019):
      ``1 - p_y``.
    * ``"aps"`` (adaptive prediction sets, Romano et al. 2020): the probability of the
      classes ranked above ``y`` plus ``u * p_y``, ``u`` in [0, 1].
    * ``"raps"`` (regularised APS, Angelopoulos et al. 2021): APS plus
      ``penalty * max(0, rank(y) - k_reg)``, ``rank`` 1-based. A non-randomised set
      charges a class its own rank's penalty; Angelopoulos et al.'s code admits a class
      when the penalised mass up to the rank before it is within the threshold, which
      gives slightly larger sets (both keep the guarantee).

    A calibration example scores with ``u ~ U(0, 1)`` (:func:`fit_conformal`); a
    prediction set admits ``y`` when its score with ``u = 0`` (non-randomised: the class
    that crosses the threshold is included) or with a fresh ``u`` (randomised) is at
    most the threshold. Ties between probabilities
    are ranked by class id (a stable sort). The inputs are not checked here.

    Args:
        probs: ``(N, K)`` probabilities (array or tensor; the result has its dtype).
        score: one of ``CONFORMITY_SCORES``.
        u: a number or ``(N, 1)`` values in [0, 1] (APS and RAPS only).
        penalty: the RAPS penalty per rank beyond ``k_reg``.
        k_reg: the number of top ranks RAPS leaves unpenalised.

    Returns:
        ``(N, K)`` scores, a tensor (``keras.ops.convert_to_numpy`` for an array).
    """
    probs = ops.convert_to_tensor(probs)
    if score == "lac":
        return 1.0 - probs
    if score not in CONFORMITY_SCORES:
        raise ValueError(f"`score` must be one of {CONFORMITY_SCORES}, got {score!r}")
    order = ops.argsort(-probs, axis=-1)  # classes by decreasing probability
    ranked = ops.take_along_axis(probs, order, axis=-1)
    # Mass strictly above each rank: an exclusive cumulative sum.
    above = ops.concatenate(
        [ops.zeros_like(ranked[:, :1]), ops.cumsum(ranked[:, :-1], axis=-1)], axis=-1
    )
    rank = ops.argsort(order, axis=-1)  # 0-based rank of each class
    scores = ops.take_along_axis(above, rank, axis=-1) + ops.cast(u, probs.dtype) * probs
    if score == "raps":
        beyond = ops.maximum(ops.cast(rank + 1 - k_reg, probs.dtype), 0.0)
        scores = scores + ops.cast(penalty, probs.dtype) * beyond
    return scores
