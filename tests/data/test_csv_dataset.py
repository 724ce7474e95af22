import codecs
import os
import re

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from calibkeras.data import LabeledDataset, dataset_from_csv, dataset_from_dataframe

SIZE = (8, 8)


def collect(labeled, epochs=1):
    images, labels = [], []
    for _ in range(epochs):
        for x, y in labeled.dataset:
            images.append(x.numpy())
            labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# ---------------------------------------------------------------- good input


def test_string_labels_counts_prior_order_and_pixels(image_table):
    csv_path, rows = image_table
    data = dataset_from_csv(csv_path, image_size=SIZE, batch_size=3)
    assert isinstance(data, LabeledDataset)
    assert data.class_names == ("cat", "dog", "eel")
    reference = pd.read_csv(csv_path)["label"].value_counts()
    np.testing.assert_array_equal(data.class_counts, [reference[n] for n in data.class_names])
    np.testing.assert_allclose(data.prior, data.class_counts / 7)
    assert data.num_examples == 7 and data.sampling == "natural"
    assert data.file_paths == tuple(str(csv_path.parent / path) for path, _, _ in rows)
    images, labels = collect(data)
    assert images.shape == (7, 8, 8, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, data.labels)
    np.testing.assert_array_equal(labels, [data.class_names.index(r[1]) for r in rows])
    for image, (_, label, _) in zip(images, rows, strict=True):
        expected = {"cat": (200, 10, 10), "dog": (10, 200, 10), "eel": (10, 10, 200)}[label]
        np.testing.assert_array_equal(image, np.broadcast_to(expected, (8, 8, 3)))
    first = next(iter(data.dataset))
    assert first[0].shape == (3, 8, 8, 3) and first[1].shape == (3,)


def test_class_names_fix_the_order(image_table):
    csv_path, rows = image_table
    data = dataset_from_csv(csv_path, image_size=SIZE, class_names=["eel", "dog", "cat"])
    np.testing.assert_array_equal(data.class_counts, [1, 2, 4])
    np.testing.assert_array_equal(data.labels, [["eel", "dog", "cat"].index(r[1]) for r in rows])


def test_integer_labels_with_and_without_class_names(tmp_path, write_image, write_csv):
    for i in range(3):
        write_image(tmp_path / f"{i}.png")
    write_csv(tmp_path / "ints.csv", ["path", "y"], [["0.png", 2], ["1.png", 0], ["2.png", 1]])
    data = dataset_from_csv(tmp_path / "ints.csv", "path", "y", image_size=SIZE)
    assert data.class_names == ("0", "1", "2")
    np.testing.assert_array_equal(data.labels, [2, 0, 1])
    named = dataset_from_csv(
        tmp_path / "ints.csv", "path", "y", image_size=SIZE, class_names=["a", "b", "c"]
    )
    assert named.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(named.labels, [2, 0, 1])


def test_image_root_and_absolute_paths(tmp_path, write_image, write_csv):
    root = tmp_path / "pictures"
    write_image(root / "a.png")
    absolute = write_image(tmp_path / "elsewhere" / "b.png")
    csv_dir = tmp_path / "tables"
    csv_dir.mkdir()
    write_csv(csv_dir / "t.csv", ["filepath", "label"], [["a.png", "x"], [absolute, "y"]])
    data = dataset_from_csv(csv_dir / "t.csv", image_root=root, image_size=SIZE)
    assert data.file_paths == (str(root / "a.png"), str(absolute))


def test_same_seed_gives_same_order_and_epochs_reshuffle(tmp_path, write_image, write_csv):
    rows = []
    for i in range(40):
        write_image(tmp_path / f"{i}.png", color=(i, 0, 0))
        rows.append([f"{i}.png", f"c{i % 2}"])
    write_csv(tmp_path / "t.csv", ["filepath", "label"], rows)

    def red_values(seed):
        data = dataset_from_csv(
            tmp_path / "t.csv",
            image_size=(2, 2),
            batch_size=8,
            shuffle=True,
            seed=seed,
            validate_images=False,
        )
        images, _ = collect(data, epochs=2)
        return images[:, 0, 0, 0].astype(int)

    first, second = red_values(7), red_values(7)
    np.testing.assert_array_equal(first, second)
    assert sorted(first[:40]) == list(range(40))
    assert not np.array_equal(first[:40], first[40:])  # reshuffled each epoch
    assert not np.array_equal(first, red_values(8))


@pytest.mark.parametrize("cache", [True, "file"])
def test_cache_gives_the_same_data(image_table, tmp_path, cache):
    csv_path, _ = image_table
    if cache == "file":
        cache = str(tmp_path / "cache" / "food")
        os.makedirs(os.path.dirname(cache))
    plain = collect(dataset_from_csv(csv_path, image_size=SIZE))
    data = dataset_from_csv(csv_path, image_size=SIZE, cache=cache)
    for _ in range(2):
        cached = collect(data)
        np.testing.assert_array_equal(cached[0], plain[0])
        np.testing.assert_array_equal(cached[1], plain[1])


def test_drop_remainder(image_table):
    csv_path, _ = image_table
    data = dataset_from_csv(csv_path, image_size=SIZE, batch_size=3, drop_remainder=True)
    assert [int(y.shape[0]) for _, y in data.dataset] == [3, 3]


def test_blank_lines_keep_line_numbers_right(tmp_path, write_image):
    write_image(tmp_path / "a.png")
    (tmp_path / "t.csv").write_text("filepath,label\na.png,x\n\nmissing.png,x\n")
    with pytest.raises(FileNotFoundError, match=r"line 4: .*missing\.png: file not found"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_dataframe_loader(image_table):
    csv_path, rows = image_table
    frame = pd.read_csv(csv_path)
    data = dataset_from_dataframe(frame, image_root=csv_path.parent, image_size=SIZE)
    assert data.class_names == ("cat", "dog", "eel")
    np.testing.assert_array_equal(data.class_counts, [4, 2, 1])
    frame.loc[3, "label"] = None
    with pytest.raises(
        ValueError, match=r"`label_column` 'label' is empty on row 3 of the DataFrame"
    ):
        dataset_from_dataframe(frame, image_root=csv_path.parent, image_size=SIZE)
    with pytest.raises(ValueError, match="`dataframe` must be a pandas DataFrame"):
        dataset_from_dataframe(str(csv_path))


# ---------------------------------------------------------------- bad input


def test_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`csv_path` '.*nope\.csv' does not exist"):
        dataset_from_csv(tmp_path / "nope.csv")


def test_empty_csv(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"`csv_path` '.*empty\.csv' is empty"):
        dataset_from_csv(tmp_path / "empty.csv")


def test_header_without_rows(tmp_path):
    (tmp_path / "head.csv").write_text("filepath,label\n")
    with pytest.raises(ValueError, match="head.csv has a header but no rows"):
        dataset_from_csv(tmp_path / "head.csv")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            {"label_column": "lbl"},
            "`label_column` 'lbl' not found in train.csv; columns are: filepath, label, note",
        ),
        (
            {"image_column": "path"},
            "`image_column` 'path' not found in train.csv; columns are: filepath, label, note",
        ),
    ],
)
def test_missing_column_names_the_columns(image_table, arguments, message):
    csv_path, _ = image_table
    with pytest.raises(ValueError, match=message):
        dataset_from_csv(csv_path, **arguments)


def test_empty_label(tmp_path, write_image, write_csv):
    write_image(tmp_path / "a.png")
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", "x"], ["a.png", ""]])
    with pytest.raises(ValueError, match=r"`label_column` 'label' is empty on line 3 of t\.csv"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_empty_image_path(tmp_path, write_csv):
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["", "x"]])
    with pytest.raises(ValueError, match=r"`image_column` 'filepath' is empty on line 2 of t\.csv"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_label_not_in_class_names(image_table):
    csv_path, _ = image_table
    with pytest.raises(
        ValueError, match=r"labels in train\.csv are not in `class_names`: 'eel' \(line 5\)"
    ):
        dataset_from_csv(csv_path, image_size=SIZE, class_names=["cat", "dog"])


def test_integer_label_out_of_range(tmp_path, write_image, write_csv):
    write_image(tmp_path / "a.png")
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", 0], ["a.png", 5]])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\).*got 5 \(line 3\)"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE, class_names=["a", "b"])


def test_class_without_examples(image_table):
    csv_path, _ = image_table
    with pytest.raises(ValueError, match=r"classes 'fox' \(id 3\) have no examples in train\.csv"):
        dataset_from_csv(csv_path, image_size=SIZE, class_names=["cat", "dog", "eel", "fox"])


def test_allow_missing_classes_counts_them_as_zero(image_table):
    # A test set need not show every class: with allow_missing_classes its absent
    # classes keep their ids and count 0 (natural sampling only).
    csv_path, _ = image_table
    names = ["fox", "cat", "dog", "eel"]
    data = dataset_from_csv(csv_path, image_size=SIZE, class_names=names,
                            allow_missing_classes=True)
    assert data.class_names == tuple(names)
    np.testing.assert_array_equal(data.class_counts, [0, 4, 2, 1])
    np.testing.assert_allclose(data.prior, [0, 4 / 7, 2 / 7, 1 / 7])
    assert sorted(collect(data)[1].tolist()) == [1, 1, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match=r"classes 'fox' \(id 0\) have no examples in "
                                         r"train\.csv, and `sampling='balanced'` draws every"):
        dataset_from_csv(csv_path, image_size=SIZE, class_names=names,
                         allow_missing_classes=True, sampling="balanced")
    with pytest.raises(ValueError, match=r"`allow_missing_classes` must be True or False"):
        dataset_from_csv(csv_path, image_size=SIZE, allow_missing_classes="yes")


def test_bad_absolute_paths_do_not_explain_relative_ones(tmp_path, write_image, write_csv):
    # "Relative image paths are resolved against ..." explains only relative paths.
    write_image(tmp_path / "a.png")
    missing = tmp_path / "elsewhere" / "gone.png"
    write_csv(tmp_path / "t.csv", ["filepath", "label"],
              [[tmp_path / "a.png", "x"], [missing, "y"], ["b.png", "y"], ["a.png", "x"]])
    table = pd.read_csv(tmp_path / "t.csv")
    table.drop(index=2).to_csv(tmp_path / "absolute.csv", index=False)
    with pytest.raises(FileNotFoundError) as error:
        dataset_from_csv(tmp_path / "absolute.csv", image_size=SIZE)
    message = str(error.value)
    assert f"line 3: {missing}: file not found" in message
    assert "Relative image paths" not in message and "image_root" not in message
    assert message.endswith("Fix or remove these rows, or pass on_bad_image='skip' to skip "
                            "them and write a report of the skipped rows.")
    with pytest.raises(FileNotFoundError) as error:  # a relative one among them: explained
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)
    assert f"Relative image paths are resolved against '{tmp_path}'" in str(error.value)


def test_missing_image_file_names_line_path_and_root(image_table):
    csv_path, _ = image_table
    os.remove(csv_path.parent / "images/dog/1.png")  # line 7 of the CSV
    with pytest.raises(FileNotFoundError) as error:
        dataset_from_csv(csv_path, image_size=SIZE)
    message = str(error.value)
    assert "1 of 7 images listed in train.csv cannot be used" in message
    assert f"line 7: {csv_path.parent / 'images/dog/1.png'}: file not found" in message
    assert f"resolved against '{csv_path.parent}'" in message
    assert "on_bad_image='skip'" in message


def test_unreadable_image_path(image_table):
    csv_path, _ = image_table
    path = csv_path.parent / "images/dog/1.png"
    os.remove(path)
    os.mkdir(path)  # a folder where the file should be
    with pytest.raises(ValueError, match=r"line 7: .*1\.png: not a regular file"):
        dataset_from_csv(csv_path, image_size=SIZE)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not an image at all", "does not decode: Unknown image file format"),
        (b"", r"file is empty \(0 bytes\)"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "does not decode: .*jpeg"),
    ],
)
def test_undecodable_image(image_table, content, reason):
    csv_path, _ = image_table
    (csv_path.parent / "images/cat/2.png").write_bytes(content)  # line 6
    with pytest.raises(ValueError, match=rf"line 6: .*2\.png: {reason}"):
        dataset_from_csv(csv_path, image_size=SIZE)


def test_bad_images_skipped_with_report(image_table, tmp_path):
    csv_path, _ = image_table
    (csv_path.parent / "images/cat/2.png").write_bytes(b"garbage")  # line 6
    os.remove(csv_path.parent / "images/dog/1.png")  # line 7
    with pytest.warns(UserWarning, match="Skipped 2 rows of train.csv"):
        data = dataset_from_csv(csv_path, image_size=SIZE, on_bad_image="skip")
    assert data.num_examples == 5 and data.num_skipped == 2
    np.testing.assert_array_equal(data.class_counts, [3, 1, 1])
    assert data.bad_image_report == str(tmp_path / "train.skipped.csv")
    report = pd.read_csv(data.bad_image_report)
    assert list(report["location"]) == ["line 6", "line 7"]
    assert list(report["problem"]) == ["undecodable", "missing"]
    assert list(report["label"]) == ["cat", "dog"]
    assert report["reason"][0].startswith("does not decode")
    assert len(collect(data)[1]) == 5

    custom = tmp_path / "reports" / "skipped.csv"
    with pytest.warns(UserWarning, match=str(custom)):
        data = dataset_from_csv(
            csv_path, image_size=SIZE, on_bad_image="skip", bad_image_report=custom
        )
    assert data.bad_image_report == str(custom) and custom.exists()


def test_skipping_the_only_example_of_a_class_is_an_error(image_table):
    csv_path, _ = image_table
    os.remove(csv_path.parent / "images/eel/0.png")
    with (
        pytest.warns(UserWarning),
        pytest.raises(
            ValueError, match=r"'eel' \(id 2\) have no examples in train\.csv after skipping 1 bad"
        ),
    ):
        dataset_from_csv(
            csv_path, image_size=SIZE, class_names=["cat", "dog", "eel"], on_bad_image="skip"
        )


def test_without_validation_a_bad_image_fails_when_reached(image_table):
    csv_path, _ = image_table
    (csv_path.parent / "images/cat/2.png").write_bytes(b"garbage")
    data = dataset_from_csv(csv_path, image_size=SIZE, validate_images=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        collect(data)


def test_missing_image_root(image_table, tmp_path):
    csv_path, _ = image_table
    with pytest.raises(FileNotFoundError, match=r"`image_root` '.*nowhere' is not an existing"):
        dataset_from_csv(csv_path, image_root=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            {"sampling": "oversample"},
            "`sampling` must be one of 'natural', 'balanced'; got 'oversample'",
        ),
        ({"on_bad_image": "ignore"}, "`on_bad_image` must be 'raise' or 'skip', got 'ignore'"),
        ({"batch_size": 0}, "`batch_size` must be a positive integer, got 0"),
        ({"cache": 3}, "`cache` must be False, True"),
        ({"shuffle": "yes"}, "`shuffle` must be True or False, got 'yes'"),
        ({"seed": 1.5}, "`seed` must be an integer or None, got 1.5"),
        ({"class_names": "cat"}, "`class_names` must be a sequence of names"),
        ({"class_names": ["a", "a"]}, r"`class_names` must be distinct, got duplicates: \['a'\]"),
        ({"image_size": (0, 8)}, "`image_size` must be a pair of positive integers"),
    ],
)
def test_bad_arguments(image_table, arguments, message):
    csv_path, _ = image_table
    arguments = {"image_size": SIZE, **arguments}
    with pytest.raises(ValueError, match=message):
        dataset_from_csv(csv_path, **arguments)


def test_all_images_bad_is_an_error_even_when_skipping(image_table):
    csv_path, _ = image_table
    with (
        pytest.warns(UserWarning),
        pytest.raises(
            ValueError, match=r"all 7 images listed in train\.csv are bad and were skipped"
        ),
    ):
        dataset_from_csv(
            csv_path, image_size=SIZE, image_root=csv_path.parent / "images", on_bad_image="skip"
        )


# ------------------------------------------- labels and lines that must not pass silently


def _two_images(tmp_path, write_image):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")


@pytest.mark.parametrize("marker", ["NaN", "nan", "NA", "null", "None", "N/A"])
def test_missing_value_markers_are_refused_naming_the_line(
    tmp_path, write_image, write_csv, marker
):
    _two_images(tmp_path, write_image)
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", "cat"], ["b.png", marker]])
    with pytest.raises(
        ValueError,
        match=rf"`label_column` 'label' of t\.csv holds missing-value markers instead of "
        rf"labels: '{re.escape(marker)}' \(line 3\); every row needs a real label",
    ):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_missing_value_marker_is_a_class_when_listed_in_class_names(
    tmp_path, write_image, write_csv
):
    _two_images(tmp_path, write_image)
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", "cat"], ["b.png", "None"]])
    data = dataset_from_csv(tmp_path / "t.csv", image_size=SIZE, class_names=["None", "cat"])
    np.testing.assert_array_equal(data.labels, [1, 0])


def test_one_number_written_two_ways_is_refused(tmp_path, write_image, write_csv):
    _two_images(tmp_path, write_image)
    rows = [["a.png", "0"], ["b.png", "1"], ["a.png", "dog"], ["b.png", "1.0"]]
    write_csv(tmp_path / "t.csv", ["filepath", "label"], rows)
    with pytest.raises(
        ValueError,
        match=r"writes one number two ways: '1' \(line 3\) and '1\.0' \(line 5\) would become "
        r"two classes\. Write every label the same way",
    ):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_duplicated_label_header_is_refused(tmp_path, write_image, write_csv):
    _two_images(tmp_path, write_image)
    rows = [["a.png", "x", "y"], ["b.png", "y", "x"]]
    write_csv(tmp_path / "t.csv", ["filepath", "label", "label"], rows)
    with pytest.raises(
        ValueError,
        match=r"`label_column` 'label' names 2 columns of '.*t\.csv' \(columns 2, 3\); the "
        r"header must name each column once",
    ):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_duplicated_dataframe_column_is_refused(tmp_path, write_image):
    _two_images(tmp_path, write_image)
    frame = pd.DataFrame([["a.png", "x", "y"]], columns=["filepath", "label", "label"])
    with pytest.raises(ValueError, match=r"`label_column` 'label' names 2 columns of the DataFr"):
        dataset_from_dataframe(frame, image_root=tmp_path, image_size=SIZE)


def test_huge_label_cell_is_refused_with_a_short_message(tmp_path, write_image, write_csv):
    _two_images(tmp_path, write_image)
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", "x"], ["b.png", "y" * 10**6]])
    with pytest.raises(ValueError) as error:
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE, class_names=["x", "y"])
    message = str(error.value)
    assert "longer than 256 characters on line 3 (1,000,000 characters)" in message
    assert len(message) < 400


def test_huge_path_cell_gives_a_short_message(tmp_path, write_image, write_csv):
    _two_images(tmp_path, write_image)
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", "x"], ["z" * 10**6, "x"]])
    with pytest.raises(FileNotFoundError) as error:
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)
    message = str(error.value)
    assert "line 3: '" in message and "...: file not found" in message
    assert len(message) < 800


def test_integer_labels_far_beyond_the_rows_are_refused(tmp_path, write_image, write_csv):
    _two_images(tmp_path, write_image)
    write_csv(tmp_path / "t.csv", ["filepath", "label"], [["a.png", 0], ["b.png", 2**63]])
    with pytest.raises(
        ValueError, match=rf"integer label {2**63} \(line 3\) of t\.csv is not below the number "
        r"of rows \(2\)"
    ):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)
    with pytest.raises(ValueError, match=rf"must lie in \[0, 2\).*got {2**63} \(line 3\)"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE, class_names=["a", "b"])


def test_trailing_comma_on_every_row(tmp_path, write_image):
    _two_images(tmp_path, write_image)
    (tmp_path / "t.csv").write_text("filepath,label\na.png,x,\nb.png,y,\na.png,,\n")
    with pytest.raises(ValueError, match=r"'label' is empty on line 4 of t\.csv; every row"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)
    (tmp_path / "t.csv").write_text("filepath,label\na.png,x,\nb.png,y,\n")
    data = dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)
    assert data.class_names == ("x", "y")
    assert data.file_paths == (str(tmp_path / "a.png"), str(tmp_path / "b.png"))


def test_extra_cells_are_refused_naming_the_line(tmp_path, write_image):
    _two_images(tmp_path, write_image)
    (tmp_path / "t.csv").write_text("filepath,label\na.png,x\nb.png,dog, cat\n")
    with pytest.raises(
        ValueError, match=r"line 3 of '.*t\.csv' has 3 cells but the header has 2 columns"
    ):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_lines_after_a_multi_line_cell_are_the_editors_lines(tmp_path, write_image, newline):
    _two_images(tmp_path, write_image)
    lines = ["filepath,label,note", 'a.png,x,"first', 'second"', "b.png,y,z", "missing.png,x,z"]
    (tmp_path / "t.csv").write_bytes(newline.join(lines).encode() + newline.encode())
    assert lines[4].startswith("missing.png")  # line 5 in an editor
    with pytest.raises(FileNotFoundError, match=r"\n  line 5: .*missing\.png: file not found"):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


def test_non_utf8_bytes_are_reported_by_line_and_column(tmp_path):
    content = b"filepath,label\r\na.png,x\r\nb.png,caf\xe9\r\n"
    (tmp_path / "t.csv").write_bytes(codecs.BOM_UTF8 + content)
    with pytest.raises(
        ValueError,
        match=r"`csv_path` '.*t\.csv' is not UTF-8 text: line 3, column 10 holds the byte "
        r"0xe9, which is not UTF-8\. Save the file as UTF-8",
    ):
        dataset_from_csv(tmp_path / "t.csv", image_size=SIZE)


# ------------------------------------------------------- paths that leave the image root


@pytest.fixture
def escaping_table(tmp_path, write_image):
    """A root with one image inside, and rows that reach outside by '..', an absolute
    path and a symbolic link."""
    root = tmp_path / "root"
    write_image(root / "inside.png")
    outside = write_image(tmp_path / "secret" / "outside.png")
    (root / "link.png").symlink_to(outside)
    (root / "alias.png").symlink_to(root / "inside.png")  # a link that stays inside
    rows = [
        ["inside.png", "x"],
        ["../secret/outside.png", "x"],
        [str(outside), "y"],
        ["link.png", "y"],
        ["alias.png", "x"],
    ]
    lines = ["filepath,label"] + [",".join(row) for row in rows]
    (root / "t.csv").write_text("\n".join(lines) + "\n")
    return root, outside


def test_paths_may_leave_the_root_by_default(escaping_table):
    root, outside = escaping_table
    data = dataset_from_csv(root / "t.csv", image_size=SIZE)
    assert data.file_paths == (
        str(root / "inside.png"), str(outside), str(outside), str(root / "link.png"),
        str(root / "alias.png"),
    )


def test_confine_to_image_root_refuses_paths_that_leave_it(escaping_table):
    root, outside = escaping_table
    with pytest.raises(ValueError) as error:
        dataset_from_csv(root / "t.csv", image_size=SIZE, confine_to_image_root=True)
    assert str(error.value).splitlines() == [
        f"3 image paths in t.csv leave the image root '{root}', which "
        "`confine_to_image_root=True` forbids:",
        "  line 3: '../secret/outside.png' leads outside through '..'",
        f"  line 4: '{outside}' is an absolute path outside it",
        "  line 5: 'link.png' leads outside through a symbolic link",
        "Use paths relative to the root that stay inside it, or pass "
        "confine_to_image_root=False if the CSV comes from someone allowed to read any file "
        "this program can",
    ]


def test_confined_paths_inside_the_root_are_read_resolved(tmp_path, escaping_table):
    root, _ = escaping_table
    frame = pd.DataFrame(
        {"filepath": ["inside.png", "alias.png", str(root / "inside.png"), "sub/../inside.png"],
         "label": ["x", "y", "x", "y"]}
    )
    data = dataset_from_dataframe(frame, image_root=root, image_size=SIZE,
                                  confine_to_image_root=True)
    assert data.file_paths == (os.path.realpath(root / "inside.png"),) * 4
    with pytest.raises(ValueError, match=r"`confine_to_image_root` must be True or False, got 1"):
        dataset_from_dataframe(frame, image_root=root, confine_to_image_root=1)
