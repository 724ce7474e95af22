"""Shared helpers of the tf.distribute tests: the tiny image data, free loopback
ports, and running a check script in a fresh Python process with a hard time limit.

The checks run in subprocesses because the logical CPU devices and the
multi-worker strategy must be set up before TensorFlow starts, which in the pytest
process it already has.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _load_tiny_setup():
    spec = importlib.util.spec_from_file_location("tiny_setup", HERE / "tiny_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_setup = _load_tiny_setup()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Folder with the tiny PNGs and train.csv / val.csv."""
    folder = tmp_path_factory.mktemp("tiny_images")
    tiny_setup.write_images(folder)
    return folder


def _free_ports(count):
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def free_ports():
    """``free_ports(count)``: distinct loopback ports that were free a moment ago."""
    return _free_ports


@pytest.fixture(scope="session")
def scripts():
    """``scripts.start(name, *args, tf_config=None, log=None)`` starts a check script in
    a fresh process; ``scripts.wait_all(processes, timeout, log_paths)`` waits for them
    with a hard limit."""
    return types.SimpleNamespace(start=start_script, wait_all=wait_all)


def script_env(tf_config=None):
    """The environment of a check script: quiet TensorFlow, no GPU, TF_CONFIG as given."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
                "CUDA_VISIBLE_DEVICES": ""})
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def start_script(name, *args, tf_config=None, log=None):
    """Starts ``tests/distribute/<name>`` with ``sys.executable``; output goes to ``log``."""
    return subprocess.Popen(
        [sys.executable, str(HERE / name), *map(str, args)],
        cwd=HERE, env=script_env(tf_config),
        stdout=log if log is not None else subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )


def wait_all(processes, timeout, logs):
    """Waits for every process for at most ``timeout`` s in all; on a time-out or a
    failure kills them all (SIGKILL: TensorFlow's collective runtime catches SIGTERM)
    and fails the test with the end of their logs."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a check process ran longer than {timeout} s\n" + _tails(logs))
        codes = [process.returncode for process in processes]
        if any(codes):
            pytest.fail(f"check processes exited with {codes}\n" + _tails(logs))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _tails(logs, characters=4000):
    parts = []
    for path in logs:
        text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
        parts.append(f"--- {Path(path).name} ---\n{text[-characters:]}")
    return "\n".join(parts)
