"""The public surface: every subpackage lists its names, and moved names still work."""

import importlib

import pytest

import calibkeras

SUBPACKAGES = [name for name in calibkeras.__all__ if name != "__version__"]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_has_an_explicit_public_surface(name):
    module = importlib.import_module(f"calibkeras.{name}")
    assert isinstance(module.__all__, list | tuple), name
    for public in module.__all__:
        assert not public.startswith("_"), (name, public)
        assert hasattr(module, public), (name, public)


@pytest.mark.parametrize(
    "package, name, target",
    [
        ("calibkeras.data", "decode_images", "calibkeras.data.preprocessing"),
        ("calibkeras.data", "decode_rgb", "calibkeras.data.preprocessing"),
        ("calibkeras.export", "METADATA_COLLECTIONS", "calibkeras.export.saved_model"),
        ("calibkeras.export", "find_version_dir", "calibkeras.export.serving_session"),
    ],
)
def test_moved_names_warn_and_still_resolve(package, name, target):
    module = importlib.import_module(package)
    assert name not in module.__all__
    with pytest.warns(DeprecationWarning, match=rf"{package}\.{name} is deprecated.*{target}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(target), name)


def test_unknown_names_are_still_attribute_errors():
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):
        calibkeras.export.nonexistent  # noqa: B018


def test_logits_model_is_deprecated_for_the_method():
    import keras

    from calibkeras.models import CalibratedClassifier, logits_model

    inputs = keras.Input((4,))
    model = CalibratedClassifier(keras.Model(inputs, keras.layers.Identity()(inputs)), 2)
    with pytest.warns(DeprecationWarning, match="use model.balanced_logits_model"):
        sub = logits_model(model)
    assert sub.outputs[0].shape == model.balanced_logits_model().outputs[0].shape


def _probs_and_labels():
    import numpy as np

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=40)
    return probs, rng.integers(0, 3, size=40)


def test_labels_come_first_and_the_old_order_warns_with_the_same_result():
    import numpy as np

    from calibkeras.calibration import calibration_errors, reliability_curve

    probs, labels = _probs_and_labels()
    new = calibration_errors(labels, probs)
    with pytest.warns(DeprecationWarning, match=r"calibration_errors\(probs, labels\) is "
                                                r"calibkeras 0.1's argument order"):
        old = calibration_errors(probs, labels)
    assert old == new
    with pytest.warns(DeprecationWarning):
        old_column = reliability_curve(probs, labels[:, None])
    np.testing.assert_array_equal(old_column["count"], reliability_curve(labels, probs)["count"])


def test_keyword_calls_and_write_reports_pair_position(tmp_path):
    import warnings

    from calibkeras.calibration import calibration_test
    from calibkeras.reports import evaluation_summary, write_report

    probs, labels = _probs_and_labels()
    names = ["a", "b", "c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        calibration_test(probs=probs, labels=labels, n_resamples=20, seed=0)
        summary = evaluation_summary(labels, probs, names, n_resamples=20)
    with pytest.warns(DeprecationWarning, match=r"write_report\(probs, labels\)"):
        write_report(tmp_path / "r", summary, probs, labels, names)
    assert (tmp_path / "r" / "report.html").is_file()


def test_the_efficientnet_lite_family_is_public_and_registered():
    from calibkeras import models
    from calibkeras.models import efficientnet_lite, efficientnet_lite0

    for variant in ("0", "1", "2"):
        constructor = getattr(efficientnet_lite, f"EfficientNetLite{variant}")
        assert f"EfficientNetLite{variant}" in models.__all__
        assert getattr(models, f"EfficientNetLite{variant}") is constructor
        assert models.BACKBONES[f"efficientnet_lite{variant}"] is constructor
    assert efficientnet_lite0.EfficientNetLite0 is models.EfficientNetLite0  # the 0.1 module
    assert models.imagenet_weights_path is efficientnet_lite.imagenet_weights_path
