import numpy as np
import pytest

from calibkeras.data import build_augmentation, dataset_from_csv


def test_keeps_shape_dtype_and_range_and_changes_pixels():
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    out = np.asarray(build_augmentation(seed=0)(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, images)


def test_inactive_outside_training():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(build_augmentation()(images, training=False)), images)


def test_loader_augments_only_when_asked(image_table):
    csv_path, _ = image_table
    plain = dataset_from_csv(csv_path, image_size=(8, 8), batch_size=7)
    augmented = dataset_from_csv(csv_path, image_size=(8, 8), batch_size=7, augment=True, seed=3)
    ((x_plain, y_plain),) = list(plain.dataset)
    ((x_aug, y_aug),) = list(augmented.dataset)
    np.testing.assert_array_equal(y_plain, y_aug)
    assert x_aug.dtype == x_plain.dtype and x_aug.shape == x_plain.shape
    assert float(np.min(x_aug)) >= 0.0 and float(np.max(x_aug)) <= 255.0


def test_zoom_enlarges_the_content():
    images = np.zeros((32, 32, 32, 3), np.float32)
    images[:, 12:20, 12:20, :] = 255.0  # an 8 x 8 white square in the middle
    bright = (images[..., 0] > 127.5).sum(axis=(1, 2))
    plain = np.asarray(build_augmentation(seed=0)(images, training=True))
    zoomed = np.asarray(build_augmentation(seed=0, zoom=0.5)(images, training=True))
    plain_bright = (plain[..., 0] > 127.5).sum(axis=(1, 2))
    zoomed_bright = (zoomed[..., 0] > 127.5).sum(axis=(1, 2))
    np.testing.assert_array_equal(plain_bright, bright)  # whole-pixel shifts keep the area
    assert zoomed_bright.min() >= 0.9 * 64 and zoomed_bright.mean() > 1.5 * 64
    assert zoomed.min() >= 0.0 and zoomed.max() <= 255.0


@pytest.mark.parametrize("zoom", [-0.1, 1.0, float("nan"), "0.4", True])
def test_bad_zoom(zoom):
    with pytest.raises(ValueError, match=r"`zoom` must be a number in \[0, 1\), such as 0.4"):
        build_augmentation(zoom=zoom)


def _square_table(tmp_path, rows=16):
    """A CSV of `rows` copies of a 32 x 32 PNG: black with an 8 x 8 white square in the middle."""
    import pandas as pd
    import tensorflow as tf

    image = np.zeros((32, 32, 3), np.uint8)
    image[12:20, 12:20, :] = 255
    (tmp_path / "square.png").write_bytes(tf.io.encode_png(image).numpy())
    csv_path = tmp_path / "squares.csv"
    pd.DataFrame({"filepath": ["square.png"] * rows, "label": ["a", "b"] * (rows // 2)}).to_csv(
        csv_path, index=False
    )
    return csv_path


@pytest.mark.parametrize("zoom", [0.0, 0.5])
def test_the_loaders_zoom_enlarges_the_content(tmp_path, zoom):
    csv_path = _square_table(tmp_path)
    data = dataset_from_csv(csv_path, image_size=(32, 32), batch_size=16, augment=True,
                            zoom=zoom, seed=0)
    ((images, _),) = list(data.dataset)
    bright = (np.asarray(images)[..., 0] > 127.5).sum(axis=(1, 2))
    if zoom:
        assert bright.min() >= 0.9 * 64 and bright.mean() > 1.5 * 64
    else:  # flips and whole-pixel shifts keep the square's area
        np.testing.assert_array_equal(bright, np.full(16, 64))


def test_a_zoom_without_augmentation_is_refused(tmp_path):
    csv_path = _square_table(tmp_path)
    with pytest.raises(ValueError, match=r"`zoom` 0.4 needs `augment=True`"):
        dataset_from_csv(csv_path, image_size=(32, 32), zoom=0.4)
