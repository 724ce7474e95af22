"""TF_CONFIG checks, the bounded wait for workers, and make_strategy's arguments
(in-process: nothing here starts a multi-worker strategy)."""

import json
import threading
import time

import numpy as np
import pytest

from calibkeras.distribute import (
    is_chief,
    make_strategy,
    validate_tf_config,
    wait_for_workers,
)
from calibkeras.distribute.cluster import parse_address
from calibkeras.distribute.replicas import replica_bounds


def config(cluster=None, task=None):
    return json.dumps({
        "cluster": cluster or {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
        "task": task or {"type": "worker", "index": 0},
    })


def test_valid_tf_config_from_text_and_from_environment():
    text = config(task={"type": "worker", "index": 1})
    expected = {
        "cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
        "task": {"type": "worker", "index": 1},
    }
    assert validate_tf_config(text) == expected
    assert validate_tf_config({"TF_CONFIG": text, "OTHER": "x"}) == expected


def test_valid_tf_config_with_chief_and_ipv6():
    parsed = validate_tf_config(config(
        cluster={"chief": ["[::1]:3000"], "worker": ["host-a:3001"]},
        task={"type": "chief", "index": 0},
    ))
    assert is_chief(parsed)
    assert parse_address("[::1]:3000") == ("::1", 3000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"TF_CONFIG is not valid JSON"),
        ("[1, 2]", r"TF_CONFIG must be a JSON object, got \[1, 2\]"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), r'TF_CONFIG has no "cluster"'),
        (json.dumps({"cluster": {"worker": ["h:1"]}}), r'TF_CONFIG has no "task"'),
        (config(cluster={"worker": "h:1"}), r"job 'worker' must be a non-empty list"),
        (config(cluster={"worker": []}), r"job 'worker' must be a non-empty list"),
        (config(cluster={"worker": ["h:1"], "ps": ["h:2"]}), r"jobs \['ps'\] that"),
        (config(cluster={"chief": ["h:1"]}, task={"type": "chief", "index": 0}),
         r'has no "worker" job'),
        (config(cluster={"chief": ["h:1", "h:2"], "worker": ["h:3"]}),
         r"'chief' must have one address"),
        (config(cluster={"worker": ["h:1", "localhost"]}),
         r"worker\[1\]: address must be a 'host:port' string, got 'localhost'"),
        (config(cluster={"worker": ["h:1", "h:0"]}), r"worker\[1\]: .*port number in 1..65535"),
        (config(cluster={"worker": ["h:1", "h:70000"]}), r"got '70000'"),
        (config(cluster={"worker": ["h:1", ":5"]}), r"worker\[1\]: address ':5' has no valid host"),
        (config(cluster={"worker": ["h:1", "h:1"]}), r"lists address 'h:1' twice"),
        (config(task={"type": "worker"}), r'"task" must be an object with "type" and "index"'),
        (config(task={"type": "evaluator", "index": 0}),
         r"\"task\" type 'evaluator' is not a job of the cluster \['worker'\]"),
        (config(task={"type": "worker", "index": 2}),
         r"\"task\" index 2 is out of range: the cluster has 2 'worker' address\(es\), so "
         r"the index must be in \[0, 2\)"),
        (config(task={"type": "worker", "index": -1}), r"index -1 is out of range"),
        (config(task={"type": "worker", "index": "0"}), r"index must be an integer, got '0'"),
        (config(task={"type": "worker", "index": True}), r"index must be an integer, got True"),
    ],
)
def test_malformed_tf_config_names_tf_config_and_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        validate_tf_config(text)


def test_missing_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        validate_tf_config()
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        validate_tf_config({"TF_CONFIG": "  "})
    with pytest.raises(ValueError, match="`text_or_env` must be"):
        validate_tf_config(42)


def test_make_strategy_checks_tf_config_before_starting_anything(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", config(task={"type": "worker", "index": 5}))
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"TF_CONFIG \"task\" index 5 is out of range"):
        make_strategy("multi_worker", timeout_seconds=30)
    assert time.monotonic() - started < 2


def test_make_strategy_arguments(monkeypatch):
    with pytest.raises(ValueError, match="`name` must be one of 'default', 'mirrored', "
                                         "'multi_worker'; got 'tpu'"):
        make_strategy("tpu")
    monkeypatch.setenv("TF_CONFIG", config())
    with pytest.raises(ValueError, match="`collective_timeout_seconds` must be a positive "
                                         "finite number, got -1"):
        make_strategy("multi_worker", collective_timeout_seconds=-1)


def test_default_and_mirrored_strategies():
    import tensorflow as tf

    assert make_strategy("default") is tf.distribute.get_strategy()
    mirrored = make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync >= 1


def test_is_chief():
    two = {"worker": ["h:1", "h:2"]}
    assert is_chief(None)
    assert is_chief({"cluster": two, "task": {"type": "worker", "index": 0}})
    assert not is_chief({"cluster": two, "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["h:0"], **two}
    assert not is_chief({"cluster": with_chief, "task": {"type": "worker", "index": 0}})


def test_workers_waiting_for_each_other_both_get_through(free_ports):
    """Two workers started half a second apart both get through. As with
    MultiWorkerMirroredStrategy, each one's own server listens on its port once it
    is through (TensorFlow's server, here a plain socket)."""
    import socket

    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    errors, servers = [], []

    def worker(index, delay):
        time.sleep(delay)
        try:
            wait_for_workers({"cluster": cluster, "task": {"type": "worker", "index": index}},
                             timeout_seconds=10, poll_seconds=0.05)
        except Exception as error:  # noqa: BLE001
            errors.append(error)
            return
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", ports[index]))
        server.listen(4)
        servers.append(server)

    threads = [threading.Thread(target=worker, args=(0, 0.0)),
               threading.Thread(target=worker, args=(1, 0.5))]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
    finally:
        for server in servers:
            server.close()
    assert not errors
    assert time.monotonic() - started < 5


def test_a_worker_that_never_comes_up_is_a_clear_error_in_bounded_time(free_ports):
    ports = free_ports(3)
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": 0},
    }
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=(
        rf"TF_CONFIG task worker 0: worker 1 at 127.0.0.1:{ports[1]}, worker 2 at "
        rf"127.0.0.1:{ports[2]} did not come up within 0.5 s"
    )):
        wait_for_workers(tf_config, timeout_seconds=0.5, poll_seconds=0.05)
    assert time.monotonic() - started < 3


def test_own_port_in_use_and_bad_timeout():
    import socket

    busy = socket.socket()
    busy.bind(("", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}", "127.0.0.1:1"]},
                     "task": {"type": "worker", "index": 0}}
        with pytest.raises(OSError, match=rf"TF_CONFIG task worker 0 \(127.0.0.1:{port}\): "
                                          rf"port {port} cannot be used"):
            wait_for_workers(tf_config, timeout_seconds=1)
    finally:
        busy.close()
    message = "`timeout_seconds` must be a positive finite number, got 0"
    with pytest.raises(ValueError, match=message):
        wait_for_workers(tf_config, timeout_seconds=0)


@pytest.mark.parametrize(("size", "replicas"), [(16, 2), (1, 2), (0, 2), (7, 3), (49, 4)])
def test_replica_bounds_cover_the_batch_in_order(size, replicas):
    bounds = replica_bounds(size, replicas)
    assert len(bounds) == replicas
    assert bounds[0][0] == 0 and bounds[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    sizes = np.diff([0] + [stop for _, stop in bounds])
    assert sizes.max() - sizes.min() <= 1
