"""Read legacy (non-zip) PyTorch ``.pth`` files into NumPy arrays, without torch.

``torch.save(obj, f, _use_new_zipfile_serialization=False)`` (and every ``torch.save``
before PyTorch 1.6) writes one stream:

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``,
2. a pickle of the protocol version ``1001``,
3. a pickle of ``sys_info`` (a dict: ``protocol_version``, ``little_endian``,
   ``type_sizes``),
4. the pickle of the object itself, in which every storage is a persistent id
   ``('storage', storage_type, key, location, numel, view_metadata)`` and every tensor
   is ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
   requires_grad, backward_hooks)``,
5. a pickle of the list of storage keys, in the order their data follow,
6. for each key, the element count as a little-endian int64, then the raw elements.

Unpickling can run arbitrary code, so this reader (a) checks the SHA-256 of the bytes
it parses against an expected digest before it unpickles anything, and (b) unpickles
with a restricted unpickler that resolves only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types, each mapped to an
inert stand-in defined here; any other global raises :class:`pickle.UnpicklingError`
before anything is called. Tensors become NumPy arrays built from the raw storages with
explicit bounds checks on offset, size and stride.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import os
import pickle
import re
import struct
from typing import Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""The first pickle in every legacy torch file."""

PROTOCOL_VERSION = 1001
"""The only legacy serialization protocol version torch ever wrote."""

_ZIP_MAGIC = b"PK\x03\x04"

# Storage type name -> little-endian NumPy dtype of its elements.
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    """Inert stand-in for a ``torch.*Storage`` class: only names a dtype."""

    name: str
    dtype: str


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageRef:
    """A storage named by a persistent id; its data are read after the main pickle."""

    key: str
    dtype: str
    numel: int
    view: tuple[str, int, int] | None


@dataclasses.dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor waiting for its storage's data."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, *unused_metadata):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: validates and records."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(
            f"_rebuild_tensor_v2 expects a storage persistent id, got {type(storage).__name__}"
        )
    if not (_is_int(storage_offset) and storage_offset >= 0):
        raise pickle.UnpicklingError(f"invalid tensor storage offset {storage_offset!r}")
    for label, values in (("size", size), ("stride", stride)):
        if not (isinstance(values, tuple) and all(_is_int(v) and v >= 0 for v in values)):
            raise pickle.UnpicklingError(f"invalid tensor {label} {values!r}")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in length")
    return _TensorRef(storage, storage_offset, size, stride)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{
        ("torch", name): _StorageType(name, dtype)
        for name, dtype in _STORAGE_DTYPES.items()
    },
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a legacy torch state dict needs."""

    def __init__(self, file, storages: dict[str, _StorageRef] | None = None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global '{module}.{name}': a legacy torch weights file "
                "may only reference collections.OrderedDict, "
                "torch._utils._rebuild_tensor_v2 and torch.*Storage"
            ) from None

    def persistent_load(self, pid):
        if self._storages is None:
            raise pickle.UnpicklingError("unexpected persistent id in a header pickle")
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if not (isinstance(key, str) and _is_int(numel) and numel >= 0):
            raise pickle.UnpicklingError(f"invalid storage key or size in {pid!r}")
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                    and all(_is_int(v) and v >= 0 for v in view[1:])):
                raise pickle.UnpicklingError(f"invalid storage view metadata {view!r}")
        known = self._storages.get(key)
        if known is not None and (known.dtype, known.numel) != (storage_type.dtype, numel):
            raise pickle.UnpicklingError(f"storage '{key}' is declared twice, differently")
        self._storages.setdefault(key, _StorageRef(key, storage_type.dtype, numel, None))
        return _StorageRef(key, storage_type.dtype, numel, view)


def file_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file.

    Args:
        path: the file to hash.

    Returns:
        The digest as 64 lowercase hexadecimal characters.

    Example:
        >>> digest = file_sha256(path)  # doctest: +SKIP
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(path, data: bytes, expected_sha256: str | None, verify_digest: bool) -> None:
    if not verify_digest:
        return
    if not (isinstance(expected_sha256, str) and _SHA256_PATTERN.match(expected_sha256.lower())):
        raise ValueError(
            "`expected_sha256` must be the file's SHA-256 as 64 hexadecimal characters, "
            f"got {expected_sha256!r}; pass verify_digest=False only for files you made "
            "yourself"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise ValueError(
            f"refused to unpickle '{os.fspath(path)}': its SHA-256 is {actual}, expected "
            f"{expected_sha256.lower()}. The file is damaged or not the one expected; "
            "reinstall it from its source."
        )


def _load_pickle(stream: io.BytesIO, storages=None, what: str = "pickle") -> Any:
    try:
        return _RestrictedUnpickler(stream, storages).load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:  # truncated or malformed stream
        raise pickle.UnpicklingError(f"malformed legacy torch file ({what}): {error}") from error


def _read_storages(stream: io.BytesIO, keys: list, declared: dict[str, _StorageRef]):
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise pickle.UnpicklingError("malformed legacy torch file: storage key list expected")
    if len(set(keys)) != len(keys) or set(keys) != set(declared):
        raise pickle.UnpicklingError(
            "malformed legacy torch file: the storage key list does not match the storages "
            "the object references"
        )
    arrays = {}
    for key in keys:
        ref = declared[key]
        header = stream.read(8)
        if len(header) != 8:
            raise pickle.UnpicklingError(f"truncated legacy torch file at storage '{key}'")
        (numel,) = struct.unpack("<q", header)
        if numel != ref.numel:
            raise pickle.UnpicklingError(
                f"storage '{key}' holds {numel} elements, its persistent id says {ref.numel}"
            )
        dtype = np.dtype(ref.dtype)
        raw = stream.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(f"truncated legacy torch file at storage '{key}'")
        arrays[key] = np.frombuffer(raw, dtype=dtype)
    return arrays


def _materialize(ref: _TensorRef, arrays: dict[str, np.ndarray]) -> np.ndarray:
    storage = arrays[ref.storage.key]
    if ref.storage.view is not None:
        _view_key, view_offset, view_size = ref.storage.view
        if view_offset + view_size > storage.size:
            raise pickle.UnpicklingError(
                f"storage view {ref.storage.view} exceeds storage '{ref.storage.key}'"
            )
        storage = storage[view_offset:view_offset + view_size]
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=storage.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor (offset {ref.offset}, size {ref.size}, stride {ref.stride}) reads past "
            f"the end of storage '{ref.storage.key}' ({storage.size} elements)"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset:],
        shape=ref.size,
        strides=tuple(s * storage.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def _resolve(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        return _materialize(obj, arrays)
    if isinstance(obj, dict):
        return type(obj)((key, _resolve(value, arrays)) for key, value in obj.items())
    if isinstance(obj, list):
        return [_resolve(value, arrays) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(value, arrays) for value in obj)
    if isinstance(obj, _StorageRef):
        raise pickle.UnpicklingError("bare storages are not supported, only tensors")
    return obj


def read_torch_legacy_file(
    path: str | os.PathLike,
    expected_sha256: str | None = None,
    *,
    verify_digest: bool = True,
) -> Any:
    """Read a legacy (non-zip) PyTorch file, such as a state dict, into NumPy arrays.

    The whole file is read once; its SHA-256 is checked on those bytes, then the same
    bytes are parsed, so the file cannot change between check and use. No torch import
    is needed and no code from the file is run: only ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2`` and ``torch.*Storage`` are resolved, to inert
    stand-ins.

    Args:
        path: the ``.pth`` file, written by ``torch.save`` in the legacy format.
        expected_sha256: the SHA-256 (64 hex characters) the file must have. Required
            unless ``verify_digest=False``.
        verify_digest: set to False to skip the digest check, only for files you wrote
            yourself (the restricted unpickler still applies).

    Returns:
        The saved object with every tensor replaced by a C-contiguous, native-endian
        ``np.ndarray`` of the tensor's shape and dtype; for a state dict, an
        ``OrderedDict[str, np.ndarray]``.

    Raises:
        ValueError: the digest is missing, malformed or does not match (the message
            names the path, the expected and the actual digest), or the file is not in
            the legacy format (e.g. a zip-format file from torch >= 1.6).
        pickle.UnpicklingError: the file references a global other than the allowed
            ones (the message names it; nothing is executed), or it is malformed or
            truncated.

    Example:
        >>> state = read_torch_legacy_file(  # doctest: +SKIP
        ...     "efficientnet-lite0-57934424.pth",
        ...     expected_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ... )
        >>> state["_conv_stem.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)

    References:
        PyTorch ``torch/serialization.py`` (``_legacy_save`` / ``_legacy_load``).
    """
    with open(path, "rb") as handle:
        data = handle.read()
    _check_digest(path, data, expected_sha256, verify_digest)
    if data.startswith(_ZIP_MAGIC):
        raise ValueError(
            f"'{os.fspath(path)}' is a zip-format torch file (torch >= 1.6 default); this "
            "reader reads only the legacy format (_use_new_zipfile_serialization=False)"
        )
    stream = io.BytesIO(data)
    magic = _load_pickle(stream, what="magic number")
    if magic != MAGIC_NUMBER:
        raise ValueError(f"'{os.fspath(path)}' is not a legacy torch file (bad magic number)")
    protocol = _load_pickle(stream, what="protocol version")
    if protocol != PROTOCOL_VERSION:
        raise ValueError(
            f"'{os.fspath(path)}' uses torch serialization protocol {protocol!r}, "
            f"expected {PROTOCOL_VERSION}"
        )
    sys_info = _load_pickle(stream, what="sys_info")
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise ValueError(f"'{os.fspath(path)}' is not a little-endian legacy torch file")
    declared: dict[str, _StorageRef] = {}
    obj = _load_pickle(stream, declared, what="object")
    keys = _load_pickle(stream, what="storage keys")
    arrays = _read_storages(stream, keys, declared)
    if stream.read(1):
        raise pickle.UnpicklingError(f"'{os.fspath(path)}' has trailing bytes after storages")
    return _resolve(obj, arrays)
