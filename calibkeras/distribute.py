"""tf.distribute strategies for calibkeras, and strategy-aware inference on batches.

``make_strategy`` builds the strategy ``calibkeras train --strategy`` names:

- ``"default"``: no distribution (one device).
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over all local GPUs (or the CPU).
- ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the
  workers listed in the ``TF_CONFIG`` environment variable. ``TF_CONFIG`` is
  checked first (:func:`validate_tf_config`), then every worker waits, for at most
  ``timeout_seconds``, until all its peers accept connections
  (:func:`wait_for_workers`), so that a worker that never comes up is reported in a
  clear error instead of a hang.

Under any strategy the model's batch size is the *global* batch: each batch of a
``tf.data`` pipeline is split across the replicas. :func:`batch_predictor` runs a
model on one batch in the same way (split, run on every replica, gather in order),
which is what the calibkeras callbacks use; ``model.predict_on_batch`` is not safe
there (under a strategy with several replicas every replica would run the whole
batch and the outputs would come back duplicated).
"""

import json
import os
import socket
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

#: The names :func:`make_strategy` accepts.
STRATEGIES = ("default", "mirrored", "multi_worker")

#: The TF_CONFIG cluster jobs MultiWorkerMirroredStrategy trains with.
CLUSTER_JOBS = ("chief", "worker")

#: Default seconds a worker waits for its peers before giving up.
DEFAULT_TIMEOUT_SECONDS = 120.0


def _show(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_address(address):
    """Splits a ``"host:port"`` cluster address into ``(host, port)``.

    IPv6 hosts are written in brackets: ``"[::1]:2222"``.

    Raises:
        ValueError: naming the address, when it is not ``host:port`` with a port in
            1..65535.
    """
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"address must be a 'host:port' string, got {_show(address)}")
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"address {address!r} has no valid host before ':port'")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(
            f"address {address!r} needs a port number in 1..65535 after the last ':', "
            f"got {port_text!r}"
        )
    return host, int(port_text)


def validate_tf_config(text_or_env=None):
    """Checks a ``TF_CONFIG`` for MultiWorkerMirroredStrategy; returns it parsed.

    ``TF_CONFIG`` must be a JSON object with a ``"cluster"`` (job name -> list of
    ``"host:port"`` addresses; jobs ``"worker"`` and optionally one ``"chief"``) and a
    ``"task"`` (``{"type": job, "index": i}`` with ``0 <= i < len(cluster[job])``),
    e.g. for the first of two workers::

        {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
         "task": {"type": "worker", "index": 0}}

    Args:
        text_or_env: the JSON text of ``TF_CONFIG``; or a mapping of environment
            variables holding ``"TF_CONFIG"``; or None (default) to read
            ``os.environ``.

    Returns:
        dict ``{"cluster": {job: [address, ...]}, "task": {"type": str, "index": int}}``.

    Raises:
        ValueError: whose message starts with ``TF_CONFIG`` and says what is wrong
            (not set, not JSON, missing ``cluster`` or ``task``, an unknown job, a task
            index out of range, a bad or repeated ``host:port``).
    """
    if text_or_env is None or isinstance(text_or_env, Mapping):
        environ = os.environ if text_or_env is None else text_or_env
        text = environ.get("TF_CONFIG")
        if text is None or not str(text).strip():
            raise ValueError(
                "TF_CONFIG is not set; --strategy multi_worker reads the cluster and this "
                "worker's task from it, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
                "\"index\": 0}}'"
            )
    elif isinstance(text_or_env, str):
        text = text_or_env
    else:
        raise ValueError(
            "`text_or_env` must be the TF_CONFIG JSON text, a mapping of environment "
            f"variables, or None, got {type(text_or_env).__name__}"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {_show(text)}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {_show(config)}")
    for key in ("cluster", "task"):
        if key not in config:
            raise ValueError(
                f"TF_CONFIG has no \"{key}\" entry; it needs \"cluster\" and \"task\", got "
                f"keys {sorted(config)}"
            )
    cluster = config["cluster"]
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(
            "TF_CONFIG \"cluster\" must be a non-empty object of job name -> list of "
            f"'host:port' addresses, got {_show(cluster)}"
        )
    unknown = sorted(set(cluster) - set(CLUSTER_JOBS))
    if unknown:
        raise ValueError(
            f"TF_CONFIG \"cluster\" has jobs {unknown} that MultiWorkerMirroredStrategy does "
            f"not train with; use only {list(CLUSTER_JOBS)}"
        )
    if "worker" not in cluster:
        raise ValueError(
            f"TF_CONFIG \"cluster\" has no \"worker\" job, got jobs {sorted(cluster)}"
        )
    seen = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(
                f"TF_CONFIG \"cluster\" job {job!r} must be a non-empty list of 'host:port' "
                f"addresses, got {_show(addresses)}"
            )
        if job == "chief" and len(addresses) > 1:
            raise ValueError(
                f"TF_CONFIG \"cluster\" job 'chief' must have one address, got {addresses}"
            )
        for index, address in enumerate(addresses):
            try:
                parse_address(address)
            except ValueError as error:
                raise ValueError(f"TF_CONFIG \"cluster\" {job}[{index}]: {error}") from None
            if address in seen:
                raise ValueError(
                    f"TF_CONFIG \"cluster\" lists address {address!r} twice ({seen[address]} "
                    f"and {job}[{index}]); every task needs its own host:port"
                )
            seen[address] = f"{job}[{index}]"
    task = config["task"]
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            f"TF_CONFIG \"task\" must be an object with \"type\" and \"index\", e.g. "
            f"{{\"type\": \"worker\", \"index\": 0}}, got {_show(task)}"
        )
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ValueError(
            f"TF_CONFIG \"task\" type {_show(task_type)} is not a job of the cluster "
            f"{sorted(cluster)}"
        )
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(
            f"TF_CONFIG \"task\" index must be an integer, got {_show(index)}"
        )
    if not 0 <= index < len(cluster[task_type]):
        raise ValueError(
            f"TF_CONFIG \"task\" index {index} is out of range: the cluster has "
            f"{len(cluster[task_type])} {task_type!r} address(es), so the index must be in "
            f"[0, {len(cluster[task_type])})"
        )
    return {
        "cluster": {job: list(addresses) for job, addresses in cluster.items()},
        "task": {"type": task_type, "index": index},
    }


def is_chief(tf_config):
    """Whether the task of a checked ``TF_CONFIG`` is the chief.

    The chief is the ``"chief"`` task if the cluster has one, else worker 0. Only
    the chief should write the run's outputs; the other workers do the same work (a
    save under a strategy may need every worker) into a temporary folder.

    Args:
        tf_config: a dict from :func:`validate_tf_config`, or None (single process:
            the chief).
    """
    if tf_config is None:
        return True
    task = tf_config["task"]
    if "chief" in tf_config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def wait_for_workers(tf_config, timeout_seconds=DEFAULT_TIMEOUT_SECONDS, poll_seconds=0.2):
    """Waits until every other task of the cluster accepts TCP connections.

    While it waits, this task listens on its own port (without accepting), so that
    its peers, waiting in the same way, see it as up; the port is freed before it
    returns, for TensorFlow's server to take. Call it just before creating
    MultiWorkerMirroredStrategy: when a worker is missing, that constructor otherwise
    blocks silently (TF 2.21: still waiting after 12 minutes, and deaf to SIGTERM).

    Args:
        tf_config: a dict from :func:`validate_tf_config`.
        timeout_seconds: the longest wait in seconds, a positive number (default 120).
        poll_seconds: pause between connection attempts (default 0.2).

    Raises:
        ValueError: when ``timeout_seconds`` is not a positive number.
        OSError: when this task's own port is in use on this machine.
        TimeoutError: naming the tasks and addresses that did not come up.
    """
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or (
        not np.isfinite(timeout_seconds) or timeout_seconds <= 0
    ):
        raise ValueError(
            f"`timeout_seconds` must be a positive number, got {_show(timeout_seconds)}"
        )
    task = tf_config["task"]
    own_address = tf_config["cluster"][task["type"]][task["index"]]
    own_name = f"{task['type']} {task['index']}"
    peers = {
        f"{job} {index}": address
        for job, addresses in tf_config["cluster"].items()
        for index, address in enumerate(addresses)
        if address != own_address
    }
    own_host, own_port = parse_address(own_address)
    listener = socket.socket(socket.AF_INET6 if ":" in own_host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("", own_port))
        except OSError as error:
            raise OSError(
                f"TF_CONFIG task {own_name} ({own_address}): port {own_port} cannot be used "
                f"on this machine ({error}); is another worker or program using it?"
            ) from None
        listener.listen(len(peers) + 8)
        deadline = time.monotonic() + timeout_seconds
        waiting = dict(peers)
        while waiting:
            for name, address in list(waiting.items()):
                host, port = parse_address(address)
                try:
                    with socket.create_connection((host, port), timeout=poll_seconds + 0.5):
                        del waiting[name]
                except OSError:
                    pass
            if not waiting:
                break
            if time.monotonic() >= deadline:
                missing = ", ".join(f"{name} at {address}" for name, address in waiting.items())
                raise TimeoutError(
                    f"TF_CONFIG task {own_name}: {missing} did not come up within "
                    f"{timeout_seconds:g} s (no connection to its host:port). Start every "
                    "task of TF_CONFIG's cluster, each with the same cluster and its own "
                    "task, or raise the timeout"
                )
            time.sleep(poll_seconds)
    finally:
        listener.close()


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose ``reduce`` works the way Keras 3 calls it.

    Keras 3.15's ``fit`` fails under the stock MultiWorkerMirroredStrategy of TF 2.21
    (keras-team/keras#20585), at two ``strategy.reduce`` calls:

    - the first ``(images, labels)`` batch is reduced as one nest to build the model;
      MirroredStrategy reduces each element of a nest, MultiWorkerMirroredStrategy
      tries to make one tensor of the tuple ("Attempt to convert a value
      (PerReplica ...) to a Tensor");
    - every step's scalar logs (loss, metric results) are reduced with ``axis=0``,
      which does not exist for a scalar ("Invalid reduction dimension 0 for input
      with 0 dimensions").

    This subclass reduces a nest element by element, and a scalar across the
    replicas only (``axis=None``); everything else is the stock strategy.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(item):
            local = self.experimental_local_results(item)[0]
            scalar = getattr(local, "shape", None) is not None and len(local.shape) == 0
            return parent.reduce(reduce_op, item, None if scalar else axis)

        return tf.nest.map_structure(reduce_one, value)


def make_strategy(
    name, timeout_seconds=DEFAULT_TIMEOUT_SECONDS, collective_timeout_seconds=None, devices=None
):
    """Builds the tf.distribute strategy named ``name``.

    Build the model and compile it inside ``strategy.scope()``; ``model.fit`` then
    splits every batch of the dataset across the replicas (the dataset's batch size
    is the global batch size).

    Args:
        name: ``"default"`` (no distribution), ``"mirrored"`` (all local GPUs, or the
            CPU: ``tf.distribute.MirroredStrategy``) or ``"multi_worker"``
            (``tf.distribute.MultiWorkerMirroredStrategy`` over the workers of the
            ``TF_CONFIG`` environment variable).
        timeout_seconds: ``"multi_worker"`` only: the longest wait, in seconds, for the
            other workers to come up before a TimeoutError (default 120).
        collective_timeout_seconds: ``"multi_worker"`` only: optional timeout of each
            cross-worker communication (``tf.distribute.experimental.
            CommunicationOptions(timeout_seconds=...)``). Default None: no timeout,
            a worker that dies during training is detected by TensorFlow's own health
            checks. Set it well above the longest step and the slowest first epoch.
        devices: ``"mirrored"`` only: optional list of device names (default: all
            local GPUs, or the CPU when there is none).

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        ValueError: for an unknown ``name``, or a malformed ``TF_CONFIG`` (the
            message names TF_CONFIG and what is wrong).
        TimeoutError: when a worker of ``TF_CONFIG`` did not come up in time.
        OSError: when this worker's port (from ``TF_CONFIG``) is in use.
        RuntimeError: when ``"multi_worker"`` is asked for after TensorFlow has run
            operations (it must be created first in the program).

    Example:
        >>> strategy = make_strategy("mirrored")
        >>> with strategy.scope():
        ...     model = build_classifier(...)
        ...     model.compile(...)
        >>> model.fit(train.dataset, epochs=5)
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`name` must be one of {', '.join(repr(s) for s in STRATEGIES)}, got {_show(name)}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    tf_config = validate_tf_config()
    if collective_timeout_seconds is not None and (
        isinstance(collective_timeout_seconds, bool)
        or not isinstance(collective_timeout_seconds, (int, float))
        or not collective_timeout_seconds > 0
    ):
        raise ValueError(
            "`collective_timeout_seconds` must be None or a positive number, got "
            f"{_show(collective_timeout_seconds)}"
        )
    wait_for_workers(tf_config, timeout_seconds)
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=collective_timeout_seconds
    )
    try:
        return _MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise RuntimeError(
            "make_strategy('multi_worker') must be called before TensorFlow runs any "
            "operation (before loading data or building a model): create the strategy "
            f"first in the program. TensorFlow said: {error}"
        ) from None


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
