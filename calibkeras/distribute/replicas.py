"""Splitting one batch across the replicas of a strategy, and gathering it back.

:func:`batch_predictor` runs a model on one batch this way (split, run on every
replica, gather in order); ``model.predict_on_batch`` is not safe under a strategy
with several replicas (every replica would run the whole batch and the outputs would
come back duplicated).
"""

import numpy as np
import tensorflow as tf


def replica_bounds(size, num_replicas):
    """Contiguous ``(start, stop)`` pieces of a batch of ``size``, one per replica.

    The sizes differ by at most one, the larger first (as ``numpy.array_split``);
    pieces may be empty when ``size < num_replicas``: callers that run a network or
    a metric on the pieces pad such a batch first (:func:`pad_rows`,
    :func:`pad_weighted_rows`).
    """
    quotient, remainder = divmod(int(size), int(num_replicas))
    stops = np.cumsum([quotient + (r < remainder) for r in range(num_replicas)])
    starts = np.concatenate([[0], stops[:-1]])
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def split_across_replicas(strategy, value):
    """Gives each replica of ``strategy`` its contiguous piece of one batch.

    Replica ``r`` (``replica_id_in_sync_group``, counted over all workers) gets rows
    ``replica_bounds(len(value), R)[r]``. Every worker must call it with the same
    batch. :func:`gather_from_replicas` puts the pieces back in order.

    Args:
        strategy: a ``tf.distribute.Strategy``.
        value: an array or tensor whose first axis is the batch, or a nest of them
            (all with the same batch size).

    Returns:
        A distributed value to pass to ``strategy.run``.
    """
    flat = tf.nest.flatten(value)
    size = int(flat[0].shape[0])
    bounds = replica_bounds(size, strategy.num_replicas_in_sync)

    def piece(context):
        start, stop = bounds[context.replica_id_in_sync_group]
        return tf.nest.map_structure(lambda v: tf.convert_to_tensor(v[start:stop]), value)

    return strategy.experimental_distribute_values_from_function(piece)


def gather_from_replicas(strategy, value):
    """Concatenates per-replica results along the batch axis, in replica order.

    Inverse of :func:`split_across_replicas`; works for one worker (local results)
    and for several (``strategy.gather``, an all-gather: every worker gets the
    whole batch). Call it in cross-replica context.
    """

    def gather(item):
        local = strategy.experimental_local_results(item)
        if len(local) == strategy.num_replicas_in_sync:
            return local[0] if len(local) == 1 else tf.concat(local, axis=0)
        return strategy.gather(item, axis=0)

    return tf.nest.map_structure(gather, value)


def pad_rows(value, num_rows):
    """Pads a batch (an array, tensor or nest of them) to ``num_rows`` rows.

    The last row is repeated (zeros for an empty batch), so every padded row is a valid
    input; a batch with at least ``num_rows`` rows is returned unchanged. Used to keep
    empty batches away from the network: oneDNN, TensorFlow's CPU path, rejects
    zero-row inputs to some kernels on AVX-512 CPUs ("Matrix size-incompatible: In[0]:
    [0,3] ..."), and a replica gets an empty piece whenever a batch has fewer rows than
    there are replicas.

    Returns:
        The padded value (tensors), same structure.
    """

    def pad(item):
        item = tf.convert_to_tensor(item)
        missing = num_rows - int(item.shape[0])
        if missing <= 0:
            return item
        if item.shape[0] == 0:
            filler = tf.zeros([missing, *item.shape[1:]], item.dtype)
        else:
            filler = tf.repeat(item[-1:], missing, axis=0)
        return tf.concat([item, filler], axis=0)

    return tf.nest.map_structure(pad, value)


def pad_weighted_rows(num_rows, y_true, y_pred, sample_weight=None):
    """Pads ``(y_true, y_pred, sample_weight)`` to ``num_rows`` rows of weight zero.

    For metric updates split across replicas (:func:`split_across_replicas`): no
    replica gets an empty piece (see :func:`pad_rows`), and the padded rows, with
    weight 0, change no weighted sum. A batch with at least ``num_rows`` rows is
    returned unchanged.

    Returns:
        ``(y_true, y_pred)`` when nothing was padded and ``sample_weight`` is None,
        else ``(y_true, y_pred, sample_weight)``.
    """
    size = int(tf.nest.flatten(y_pred)[0].shape[0])
    if size >= num_rows:
        return (y_true, y_pred) if sample_weight is None else (y_true, y_pred, sample_weight)
    if sample_weight is None:
        sample_weight = tf.ones([size], tf.float32)
    sample_weight = tf.convert_to_tensor(sample_weight)
    sample_weight = tf.concat(
        [sample_weight, tf.zeros([num_rows - size, *sample_weight.shape[1:]],
                                 sample_weight.dtype)],
        axis=0,
    )
    return pad_rows(y_true, num_rows), pad_rows(y_pred, num_rows), sample_weight


def batch_predictor(model):
    """A function ``predict(x) -> outputs`` running ``model`` on one batch, in inference
    mode, correctly under the model's strategy.

    The batch is split across the replicas of ``model.distribute_strategy``, each
    replica runs its piece, and the outputs are gathered back in the batch's order,
    so the result equals single-device inference (every worker gets all of it). Use
    it instead of ``model.predict_on_batch``, which under a strategy with several
    replicas runs the whole batch on every replica and returns it several times.

    The network never runs on an empty batch or piece: a batch with fewer rows than
    replicas (or none) is padded with copies of its last row (:func:`pad_rows`) and
    the outputs are cut back to the batch's size, so an empty batch gives empty
    outputs of the right shape.

    Args:
        model: a Keras model (built in the strategy's scope if it has one).

    Returns:
        A function from a batch of inputs (array, tensor or nest of them) to NumPy
        outputs (same structure as the model's outputs).
    """
    strategy = model.distribute_strategy
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        # One replica: Keras' own predict_on_batch is exact (what runs on one device).
        run = model.predict_on_batch
    else:

        @tf.function(reduce_retracing=True)
        def run_on_replicas(pieces):
            outputs = strategy.run(lambda x: model(x, training=False), args=(pieces,))
            return gather_from_replicas(strategy, outputs)

        def run(x):
            return run_on_replicas(split_across_replicas(strategy, x))

    def predict(x):
        size = int(tf.nest.flatten(x)[0].shape[0])
        outputs = run(pad_rows(x, max(size, replicas)))
        return tf.nest.map_structure(lambda t: np.asarray(t)[:size], outputs)

    return predict
