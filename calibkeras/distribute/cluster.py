"""The ``TF_CONFIG`` cluster of a multi-worker run: checks, the chief, the wait for peers.

Nothing here needs TensorFlow: a ``TF_CONFIG`` can be checked before TensorFlow
starts (:func:`calibkeras.distribute.strategies.make_strategy` does so first).
"""

import json
import os
import socket
import time
from collections.abc import Mapping

from calibkeras.utils.checks import _show, check_positive_float

#: The TF_CONFIG cluster jobs MultiWorkerMirroredStrategy trains with.
CLUSTER_JOBS = ("chief", "worker")

#: Default seconds a worker waits for its peers before giving up.
DEFAULT_TIMEOUT_SECONDS = 120.0


def parse_address(address):
    """Splits a ``"host:port"`` cluster address into ``(host, port)``.

    IPv6 hosts are written in brackets: ``"[::1]:2222"``.

    Raises:
        ValueError: naming the address, when it is not ``host:port`` with a port in
            1..65535.
    """
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"address must be a 'host:port' string, got {_show(address, 120)}")
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
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {_show(text, 120)}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {_show(config, 120)}")
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
            f"'host:port' addresses, got {_show(cluster, 120)}"
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
                f"addresses, got {_show(addresses, 120)}"
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
            f"{{\"type\": \"worker\", \"index\": 0}}, got {_show(task, 120)}"
        )
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ValueError(
            f"TF_CONFIG \"task\" type {_show(task_type, 120)} is not a job of the cluster "
            f"{sorted(cluster)}"
        )
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(
            f"TF_CONFIG \"task\" index must be an integer, got {_show(index, 120)}"
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
    timeout_seconds = check_positive_float(timeout_seconds, "timeout_seconds")
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
