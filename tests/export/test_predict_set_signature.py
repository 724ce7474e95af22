"""The predict_set signatures: the model's conformal sets, served unchanged."""

import numpy as np

from calibkeras.export import read_export_metadata
from calibkeras.export.saved_model import SET_SEPARATOR


def test_served_sets_equal_the_models_sets(serving, classifier, sample_images):
    expected = classifier.prediction_sets(np.asarray(classifier.balanced_logits(sample_images)))
    out = serving.run("predict_set", images=sample_images)
    np.testing.assert_array_equal(out["in_set"], expected)
    np.testing.assert_array_equal(out["set_size"], expected.sum(axis=1))
    names = classifier.class_names
    assert [v.decode() for v in out["set_names"]] == [
        SET_SEPARATOR.join(n for n, k in zip(names, row, strict=True) if k) for row in expected
    ]
    assert 0 < expected.sum() < expected.size  # neither empty nor everything


def test_served_sets_equal_the_numpy_fit(tiny, serving, classifier, sample_images):
    fit_images, fit_labels = tiny.calibration_images()
    logits = np.asarray(classifier.balanced_logits(fit_images))
    from calibkeras.conformal import fit_conformal

    fit = fit_conformal(classifier.probabilities(logits, "uniform"), fit_labels, 0.25,
                        score="raps", penalty=0.05)
    np.testing.assert_allclose(np.asarray(classifier.prediction_set.thresholds),
                               fit.thresholds, rtol=1e-6)
    test_logits = np.asarray(classifier.balanced_logits(sample_images))
    numpy_sets = fit.predict_sets(classifier.probabilities(test_logits, "uniform"))
    np.testing.assert_array_equal(serving.run("predict_set", images=sample_images)["in_set"],
                                  numpy_sets)


def test_image_bytes_variant_matches_decoded_images(serving, classifier, sample_images):
    import tensorflow as tf

    from calibkeras.data.preprocessing import decode_images

    encoded = np.array([tf.io.encode_png(np.round(image).astype(np.uint8)).numpy()
                        for image in sample_images[:4]], dtype=object)
    decoded = decode_images(tf.constant(encoded), (16, 16)).numpy()
    served = serving.run("predict_set_image_bytes", image_bytes=encoded)
    expected = classifier.prediction_sets(np.asarray(classifier.balanced_logits(decoded)))
    np.testing.assert_array_equal(served["in_set"], expected)


def test_metadata_carries_the_thresholds_and_settings(exported, classifier):
    metadata = read_export_metadata(exported)
    np.testing.assert_array_equal(metadata["prediction_set_thresholds"],
                                  np.asarray(classifier.prediction_set.thresholds))
    assert metadata["prediction_set"] == {"score": "raps", "alpha": 0.25, "mode": "by_class",
                                          "penalty": 0.05, "k_reg": 1}
