"""MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1, and the
errors of a bad set-up, each in bounded time.

Both workers run `multi_worker_check.py` (TF_CONFIG names both; each its own task)
and train the tiny model of `test_mirrored.py` for 8 SGD steps; the chief also runs
the single-device reference. Tolerances as in `test_mirrored.py`; between the two
workers the all-reduce hands both the same sums, so they must agree exactly.
"""

import csv
import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 150
WEIGHT_TOLERANCE = 1e-5
SCORE_TOLERANCE = 1e-5
MISSING_PEER_TIMEOUT = 3.0


def cluster_config(ports, index):
    return {
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    }


@pytest.fixture(scope="module")
def workers(tiny_data, tmp_path_factory, free_ports, scripts):
    folder = tmp_path_factory.mktemp("multi_worker")
    ports = free_ports(2)
    outputs = [folder / f"worker{index}.json" for index in range(2)]
    log_paths = [folder / f"worker{index}.log" for index in range(2)]
    logs = [open(path, "w") for path in log_paths]
    try:
        processes = [
            scripts.start("multi_worker_check.py", tiny_data, outputs[index], 60,
                         tf_config=cluster_config(ports, index), log=logs[index])
            for index in range(2)
        ]
        scripts.wait_all(processes, TIMEOUT_SECONDS, log_paths)
    finally:
        for log in logs:
            log.close()
    return [json.loads(path.read_text()) for path in outputs]


def max_difference(a, b):
    pairs = zip(a, b, strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def test_two_workers_one_replica_each_and_worker_0_is_chief(workers):
    assert [w["num_replicas"] for w in workers] == [2, 2]
    assert [w["is_chief"] for w in workers] == [True, False]


def test_class_counts_are_those_of_the_whole_csv_on_every_worker(workers, tiny_data):
    with open(tiny_data / "train.csv") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    expected = [labels.count(name) for name in ("a", "b", "c")]
    assert workers[0]["class_counts"] == workers[1]["class_counts"] == expected


def test_each_worker_gets_its_half_of_every_global_batch(workers):
    """Sharding by data: the global batch is the pipeline's batch (16); worker w
    gets the w-th half of it, and together they see exactly the single-device
    batches, epoch after epoch of the seeded shuffle."""
    assert workers[0]["shards_by_data"] and workers[1]["shards_by_data"]
    order = workers[0]["single_order"]
    shards = [w["shards"] for w in workers]
    for epoch in range(2):
        assert len(shards[0][epoch]) == len(shards[1][epoch]) == len(order[epoch]) == 4
        for step, batch in enumerate(order[epoch]):
            (first,), (second,) = shards[0][epoch][step], shards[1][epoch][step]
            assert len(first) == len(second) == 8
            assert first + second == batch


def test_both_workers_end_with_identical_weights_and_scores(workers):
    first, second = workers
    for a, b in zip(first["train"]["weights"], second["train"]["weights"], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert first["train"]["history"] == second["train"]["history"]
    assert first["train"]["fit_temperature"] == second["train"]["fit_temperature"]
    for section in ("evaluate", "monitor", "monitor_weighted", "temperature"):
        assert first["score"][section] == second["score"][section], section
    for key in ("outputs", "balanced_logits"):
        np.testing.assert_array_equal(first["score"][key], second["score"][key])


def test_multi_worker_training_gives_the_single_device_numbers(workers):
    chief = workers[0]
    assert max_difference(chief["train"]["weights"], chief["single_train"]["weights"]) < (
        WEIGHT_TOLERANCE
    )
    history, single = chief["train"]["history"], chief["single_train"]["history"]
    assert set(history) == set(single)
    for key in history:
        assert history[key] == pytest.approx(single[key], abs=SCORE_TOLERANCE), key
    assert chief["train"]["fit_temperature"] == pytest.approx(
        chief["single_train"]["fit_temperature"], rel=1e-4
    )
    for section in ("evaluate", "monitor", "monitor_weighted"):
        for key, value in chief["single_score"][section].items():
            assert chief["score"][section][key] == pytest.approx(value, abs=SCORE_TOLERANCE)
    assert chief["score"]["temperature"] == pytest.approx(
        chief["single_score"]["temperature"], rel=1e-5
    )
    for key in ("outputs", "balanced_logits"):
        np.testing.assert_allclose(chief["score"][key], chief["single_score"][key],
                                   rtol=1e-6, atol=1e-5)


def test_missing_worker_and_late_strategy_are_clear_errors_in_bounded_time(
    tmp_path, free_ports, scripts
):
    """TF_CONFIG names two workers but only worker 0 starts: a TimeoutError naming
    TF_CONFIG and the missing worker after the wait's timeout, not a hang. Then, in
    the same process, creating the strategy after TensorFlow has run an operation:
    a RuntimeError that says to create it first."""
    import time

    ports = free_ports(2)
    output, log_path = tmp_path / "bad.json", tmp_path / "bad.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = scripts.start("multi_worker_check.py", "--bad-setups", output,
                                MISSING_PEER_TIMEOUT, tf_config=cluster_config(ports, 0),
                                log=log)
        scripts.wait_all([process], 60, [log_path])
    assert time.monotonic() - started < 60
    results = json.loads(output.read_text())
    missing = results["missing_peer"]
    assert missing["error_type"] == "TimeoutError"
    assert missing["message"].startswith(
        f"TF_CONFIG task worker 0: worker 1 at 127.0.0.1:{ports[1]} did not come up within "
        f"{MISSING_PEER_TIMEOUT:g} s"
    )
    assert MISSING_PEER_TIMEOUT <= missing["elapsed"] < MISSING_PEER_TIMEOUT + 2
    late = results["late"]
    assert late["error_type"] == "RuntimeError"
    assert "make_strategy('multi_worker') must be called before TensorFlow runs any " \
        "operation" in late["message"]
