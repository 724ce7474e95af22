import calibration_reference as ref
import numpy as np
import pytest

from calibkeras.calibration import reliability_curve


def test_bins_match_reference_loop(small_record):
    probs, labels = small_record
    curve = reliability_curve(labels, probs, num_bins=10)
    confidences = probs.max(1).tolist()
    outcomes = (probs.argmax(1) == labels).astype(float).tolist()
    counts, conf_sums, hit_sums = ref.binned_gaps(confidences, outcomes, 10)
    np.testing.assert_array_equal(curve["count"], counts)
    for b in range(10):
        if counts[b]:
            assert curve["confidence"][b] == pytest.approx(conf_sums[b] / counts[b], abs=1e-12)
            assert curve["accuracy"][b] == pytest.approx(hit_sums[b] / counts[b], abs=1e-12)
        else:
            assert np.isnan(curve["confidence"][b]) and np.isnan(curve["accuracy"][b])
    np.testing.assert_allclose(curve["bin_lower"], np.arange(10) / 10)
    np.testing.assert_allclose(curve["bin_upper"], np.arange(1, 11) / 10)
    assert curve["count"].sum() == len(labels)
