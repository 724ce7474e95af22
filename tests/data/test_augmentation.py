import numpy as np

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
