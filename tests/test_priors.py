import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkeras.priors import class_counts, prior_from_counts


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1)))))
def test_class_counts_match_pandas_value_counts(case):
    num_classes, labels = case
    counts = class_counts(labels, num_classes)
    reference = (
        pd.Series(labels, dtype=int).value_counts().reindex(range(num_classes), fill_value=0)
    )
    np.testing.assert_array_equal(counts, reference.to_numpy())
    assert counts.dtype == np.int64


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1).filter(lambda c: sum(c) > 0))
def test_prior_sums_to_one_and_is_proportional(counts):
    prior = prior_from_counts(counts)
    assert prior.dtype == np.float64
    assert prior.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(prior * sum(counts), counts, rtol=1e-9, atol=1e-9)


def test_class_counts_rejects_out_of_range_and_bad_num_classes():
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 3\).*got 3"):
        class_counts([0, 3], 3)
    with pytest.raises(ValueError, match="`num_classes` must be a positive integer, got 0"):
        class_counts([0], 0)
    with pytest.raises(ValueError, match="`labels` must be 1-D"):
        class_counts([[0]], 2)


def test_prior_from_counts_rejects_bad_counts():
    with pytest.raises(ValueError, match="must not all be zero"):
        prior_from_counts([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        prior_from_counts([1, -1])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        prior_from_counts([])
