import numpy as np
import pytest

from calibkeras.data import dataset_from_directory


@pytest.fixture
def tree(tmp_path, write_image):
    root = tmp_path / "photos"
    for i in range(3):
        write_image(root / "dog" / f"{i}.png", color=(0, 100, 0))
    write_image(root / "cat" / "a.JPG", color=(100, 0, 0), image_format="JPEG")
    write_image(root / "cat" / "nested" / "b.bmp", color=(100, 0, 0))
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_classes_counts_and_labels(tree):
    data = dataset_from_directory(tree, image_size=(4, 4), batch_size=2)
    assert data.class_names == ("cat", "dog")
    np.testing.assert_array_equal(data.class_counts, [2, 3])
    assert data.file_paths[:2] == (str(tree / "cat" / "a.JPG"), str(tree / "cat/nested/b.bmp"))
    labels = np.concatenate([y.numpy() for _, y in data.dataset])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1])
    np.testing.assert_allclose(data.prior, [0.4, 0.6])


def test_class_names_select_and_order(tree):
    data = dataset_from_directory(tree, class_names=["dog"], image_size=(4, 4))
    np.testing.assert_array_equal(data.class_counts, [3])
    with pytest.raises(FileNotFoundError, match=r"`class_names` \['eel'\] have no subfolder"):
        dataset_from_directory(tree, class_names=["dog", "eel"], image_size=(4, 4))


def test_allow_missing_classes_reads_the_subfolders_there_are(tree):
    data = dataset_from_directory(tree, class_names=["eel", "dog", "cat"], image_size=(4, 4),
                                  allow_missing_classes=True)
    np.testing.assert_array_equal(data.class_counts, [0, 3, 2])
    # But not all of them: a folder without any of the subfolders is the wrong folder.
    with pytest.raises(FileNotFoundError, match=r"`class_names` \['eel', 'fox'\] have no "
                                                r"subfolder"):
        dataset_from_directory(tree, class_names=["eel", "fox"], image_size=(4, 4),
                               allow_missing_classes=True)
    (tree / "eel").mkdir()
    with pytest.raises(ValueError, match=r"has no examples of any class: the classes are "
                                         r"'eel' \(id 0\), 'fox' \(id 1\)"):
        dataset_from_directory(tree, class_names=["eel", "fox"], image_size=(4, 4),
                               allow_missing_classes=True)


def test_webp_images_are_read(tmp_path, write_image):
    from PIL import features

    if not features.check("webp"):
        pytest.skip("this PIL cannot write WebP")
    write_image(tmp_path / "d" / "cat" / "a.webp", color=(120, 0, 0), size=(6, 6))
    write_image(tmp_path / "d" / "dog" / "b.WEBP", color=(0, 120, 0), size=(6, 6))
    data = dataset_from_directory(tmp_path / "d", image_size=(4, 4))
    np.testing.assert_array_equal(data.class_counts, [1, 1])
    images = np.concatenate([x.numpy() for x, _ in data.dataset])
    assert images.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(images[:, :, :, 0].mean(axis=(1, 2)), [120, 0], atol=3)


def test_errors(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="`directory` '.*nowhere' is not an existing"):
        dataset_from_directory(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="has no class subfolders"):
        dataset_from_directory(tmp_path / "flat")
    (tree / "eel").mkdir()
    with pytest.raises(ValueError, match=r"classes 'eel' \(id 2\) have no examples"):
        dataset_from_directory(tree, image_size=(4, 4))
    (tree / "eel" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"eel/bad\.png: .*does not decode"):
        dataset_from_directory(tree, image_size=(4, 4))


def test_skip_report_beside_the_folder(tree):
    (tree / "dog" / "9.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Skipped 1 rows"):
        data = dataset_from_directory(tree, image_size=(4, 4), on_bad_image="skip")
    assert data.bad_image_report == str(tree) + ".skipped.csv"
    np.testing.assert_array_equal(data.class_counts, [2, 3])
