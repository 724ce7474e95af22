"""tf.distribute strategies: ``make_strategy`` builds the one ``calibkeras train --strategy`` names.

- ``"default"``: no distribution (one device).
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over all local GPUs (or the CPU).
- ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the
  workers listed in the ``TF_CONFIG`` environment variable. ``TF_CONFIG`` is
  checked first (:func:`~calibkeras.distribute.cluster.validate_tf_config`), then
  every worker waits, for at most ``timeout_seconds``, until all its peers accept
  connections (:func:`~calibkeras.distribute.cluster.wait_for_workers`), so that a
  worker that never comes up is reported in a clear error instead of a hang.

:func:`describe_strategy` says in one line what a strategy runs on.
"""

import tensorflow as tf

from calibkeras.choices import STRATEGIES
from calibkeras.distribute.cluster import (
    DEFAULT_TIMEOUT_SECONDS,
    validate_tf_config,
    wait_for_workers,
)
from calibkeras.utils.checks import check_choice, check_positive_float


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
    check_choice(name, "name", STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    tf_config = validate_tf_config()
    if collective_timeout_seconds is not None:
        check_positive_float(collective_timeout_seconds, "collective_timeout_seconds")
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


def _short_device(name):
    """``"CPU:0"`` of ``"/job:localhost/replica:0/task:0/device:CPU:0"``."""
    spec = tf.DeviceSpec.from_string(name)
    return f"{spec.device_type}:{spec.device_index}" if spec.device_type else name


def describe_strategy(name, strategy):
    """One line saying what a strategy of :func:`make_strategy` runs on.

    Args:
        name: the name it was built from (``"default"``, ``"mirrored"``,
            ``"multi_worker"``).
        strategy: the ``tf.distribute.Strategy``.

    Returns:
        ``(line, on_gpu)``: e.g. ``("mirrored strategy: 1 replica (CPU:0)", False)``;
        ``on_gpu`` says whether any of this worker's devices is a GPU.

    Example:
        >>> describe_strategy("mirrored", make_strategy("mirrored"))[0]  # without a GPU
        'mirrored strategy: 1 replica (CPU:0)'
    """
    devices = [_short_device(device) for device in strategy.extended.worker_devices]
    replicas = strategy.num_replicas_in_sync
    line = (f"{name} strategy: {replicas} replica{'s' if replicas != 1 else ''} "
            f"({', '.join(devices)}")
    if name == "multi_worker":
        line += " on this worker"
    line += ")"
    return line, any(device.startswith("GPU") for device in devices)

