import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from calibkeras.losses import BrierScore


def test_matches_sklearn_for_sparse_and_one_hot(small_record):
    probs, labels = small_record
    probs, labels = probs[:512].astype("float32"), labels[:512]
    one_hot = np.eye(10)[labels]
    expected = brier_score_loss(one_hot.ravel(), probs.ravel()) * 10
    for y in (labels, labels[:, None], one_hot):
        assert float(BrierScore()(y, probs)) == pytest.approx(expected, rel=1e-5)


def test_from_logits_and_round_trip():
    logits = np.array([[2.0, 0.0, -1.0]], "float32")
    probs = np.exp(logits) / np.exp(logits).sum()
    expected = ((probs - [0, 1, 0]) ** 2).sum()
    loss = BrierScore(from_logits=True)
    assert float(loss([1], logits)) == pytest.approx(expected, rel=1e-6)
    assert float(BrierScore.from_config(loss.get_config())([1], logits)) == float(
        loss([1], logits)
    )
