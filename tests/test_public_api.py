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
