"""calibkeras.metrics.functional: large NumPy inputs are scored in row blocks, same values."""

import numpy as np
import pytest
from keras import ops
from sklearn.metrics import brier_score_loss, log_loss

from calibkeras.metrics import functional


def test_in_row_blocks_splits_large_numpy_inputs_in_order(monkeypatch):
    monkeypatch.setattr(functional, "BLOCK_BYTES", 3 * 4 * 8)  # 3 rows of 4 float64
    seen = []

    @functional.in_row_blocks
    def row_sums(y_true, y_pred, scale=1.0):
        seen.append((np.asarray(y_true).tolist(), np.asarray(y_pred).shape))
        return ops.sum(ops.convert_to_tensor(y_pred), axis=-1) * scale

    probs = np.arange(28, dtype="float64").reshape(7, 4)
    labels = np.arange(7)
    result = ops.convert_to_numpy(row_sums(labels, probs, scale=2.0))
    np.testing.assert_array_equal(result, probs.sum(axis=1) * 2.0)
    assert seen == [([0, 1, 2], (3, 4)), ([3, 4, 5], (3, 4)), ([6], (1, 4))]

    seen.clear()  # tensors and arrays up to BLOCK_BYTES are passed whole
    row_sums(labels[:3], probs[:3])
    row_sums(ops.convert_to_tensor(labels), ops.convert_to_tensor(probs))
    assert [shape for _, shape in seen] == [(3, 4), (7, 4)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_scores_equal_sklearn_and_the_whole_array(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, size=(1000, 7)).astype(dtype)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 7, size=1000)
    one_hot = np.eye(7, dtype=dtype)[labels]
    whole = {
        "brier": ops.convert_to_numpy(functional.brier_score(labels, probs)),
        "nll": ops.convert_to_numpy(functional.negative_log_likelihood(labels, probs)),
    }
    monkeypatch.setattr(functional, "BLOCK_BYTES", 64 * 7 * probs.itemsize)  # 16 blocks
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for y in (labels, labels[:, None], one_hot):
        brier = ops.convert_to_numpy(functional.brier_score(y, probs))
        nll = ops.convert_to_numpy(functional.negative_log_likelihood(y, probs))
        nll_logits = ops.convert_to_numpy(
            functional.negative_log_likelihood(y, logits, from_logits=True)
        )
        assert brier.shape == nll.shape == (1000,)
        np.testing.assert_allclose(brier, whole["brier"], rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(nll, whole["nll"], rtol=rtol)
        assert brier.mean() == pytest.approx(
            brier_score_loss(labels, probs, labels=range(7), scale_by_half=False), rel=rtol
        )
        assert nll.mean() == pytest.approx(log_loss(labels, probs, labels=range(7)), rel=rtol)
        assert nll_logits.mean() == pytest.approx(nll.mean(), rel=rtol)
