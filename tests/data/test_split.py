import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkeras.data import stratified_split


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    val_fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 10),
)
def test_every_class_with_two_rows_is_in_both_parts(counts, val_fraction, seed):
    labels = [f"c{k}" for k, count in enumerate(counts) for _ in range(count)]
    table = pd.DataFrame({"filepath": [f"{i}.jpg" for i in range(len(labels))], "label": labels})
    train, val = stratified_split(table, val_fraction=val_fraction, seed=seed)
    assert sorted(train.index.tolist() + val.index.tolist()) == list(range(len(table)))
    assert set(train.index).isdisjoint(val.index)
    for k, count in enumerate(counts):
        n_val = int((val["label"] == f"c{k}").sum())
        if count >= 2:
            assert 1 <= n_val <= count - 1
            assert n_val == min(max(round(count * val_fraction), 1), count - 1)
        else:
            assert n_val == 0
    assert list(train.index) == sorted(train.index)


def test_reads_a_csv_and_is_reproducible(tmp_path):
    table = pd.DataFrame(
        {
            "filepath": [f"{i}.jpg" for i in range(20)],
            "label": [i % 2 for i in range(20)],
            "extra": range(20),
        }
    )
    table.to_csv(tmp_path / "all.csv", index=False)
    train, val = stratified_split(tmp_path / "all.csv", val_fraction=0.2, seed=3)
    again_train, again_val = stratified_split(tmp_path / "all.csv", val_fraction=0.2, seed=3)
    pd.testing.assert_frame_equal(val, again_val)
    assert list(val.columns) == ["filepath", "label", "extra"]
    assert val["label"].value_counts().to_dict() == {0: 2, 1: 2}


def test_errors(tmp_path):
    table = pd.DataFrame({"filepath": ["a", "b"], "label": ["x", None]})
    with pytest.raises(ValueError, match=r"`val_fraction` must be in \(0, 1\), got 1.0"):
        stratified_split(table, val_fraction=1.0)
    with pytest.raises(
        ValueError,
        match="`label_column` 'y' not found in the DataFrame; columns are: filepath, label",
    ):
        stratified_split(table, label_column="y")
    with pytest.raises(ValueError, match="`label_column` 'label' is empty in 1 rows"):
        stratified_split(table)
    with pytest.raises(FileNotFoundError, match="is not an existing file"):
        stratified_split(tmp_path / "none.csv")
