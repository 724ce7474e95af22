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

The restricted unpickler (the pure-Python ``pickle._Unpickler``, so that single opcodes
can be refused) also refuses every opcode that would change the state of an existing
object unless that object is a container the same pickle created: BUILD only on an
``OrderedDict`` instance (with a dict of ``str`` keys, as torch writes a state dict's
``_metadata``), SETITEM(S) only on a dict, APPEND(S) only on a list; sets are refused.
So a file can never change the allow-listed stand-ins, which this module shares between
reads. Dict keys must be atomic (``str``, ``int``, ``float``, ``bytes``, ``bool``,
``None``), so that hashing a key is cheap.

A file that is not a checksum-verified one may still be crafted to exhaust time or
memory; the reader bounds both and raises :class:`pickle.UnpicklingError` instead:

- objects the pickle shares (memo references) are resolved once and stay shared, so a
  small pickle of a deep DAG costs time linear in its size; reference cycles are
  refused;
- containers may nest at most :data:`MAX_NESTING` levels deep;
- all arrays returned together may hold at most :data:`MAX_OUTPUT_FACTOR` times the
  bytes of the file's storages, plus :data:`OUTPUT_SLACK_BYTES` (a stride-0 or
  overlapping view is copied, so it would otherwise blow up);
- sizes, strides and element counts too large for NumPy or for the file are refused.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import math
import os
import pickle
import re
import reprlib
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

MAX_NESTING = 64
"""Most levels of dicts, lists and tuples below the saved object (a state dict: 1)."""

MAX_OUTPUT_FACTOR = 4
"""The arrays read from a file may hold at most this many times its storages' bytes."""

OUTPUT_SLACK_BYTES = 1 << 20
"""Bytes allowed beyond ``MAX_OUTPUT_FACTOR`` times the storages' bytes (1 MiB)."""

_ATOMIC_KEY_TYPES = (str, int, float, bytes, bool, type(None))


class _ShortRepr(reprlib.Repr):
    """``reprlib`` limits for error messages, OrderedDicts included."""

    def repr_OrderedDict(self, obj, level):  # noqa: N802 (reprlib's naming scheme)
        return self.repr_dict(obj, level)


_SHORT_REPR = _ShortRepr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxother = 80


def _short(value: Any) -> str:
    """A repr of bounded length and cost (a crafted object may be a huge shared DAG)."""
    return _SHORT_REPR.repr(value)


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


_MAX_DIMENSIONS = 64  # NumPy's limit
_MAX_INDEX = 2**63  # sizes, strides and offsets must fit NumPy's int64


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, *unused_metadata):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: validates and records."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(
            f"_rebuild_tensor_v2 expects a storage persistent id, got {type(storage).__name__}"
        )
    if not (_is_int(storage_offset) and 0 <= storage_offset < _MAX_INDEX):
        raise pickle.UnpicklingError(f"invalid tensor storage offset {_short(storage_offset)}")
    for label, values in (("size", size), ("stride", stride)):
        # At most NumPy's 64 dimensions, each below 2**63: checked before any arithmetic
        # on them (a product of huge ints would take quadratic time).
        if not (
            isinstance(values, tuple)
            and len(values) <= _MAX_DIMENSIONS
            and all(_is_int(v) and 0 <= v < _MAX_INDEX for v in values)
        ):
            raise pickle.UnpicklingError(f"invalid tensor {label} {_short(values)}")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(
            f"tensor size {_short(size)} and stride {_short(stride)} differ in length"
        )
    return _TensorRef(storage, storage_offset, size, stride)


def _ordered_dict(*args, **kwargs):
    """Stand-in for ``collections.OrderedDict``: an empty one (torch fills it by SETITEMS).

    Arguments are refused: building from pairs would hash keys of any type.
    """
    if args or kwargs:
        raise pickle.UnpicklingError(
            "collections.OrderedDict may only be called without arguments in a legacy "
            f"torch file, got {len(args)} positional and {len(kwargs)} keyword arguments"
        )
    return collections.OrderedDict()


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{
        ("torch", name): _StorageType(name, dtype)
        for name, dtype in _STORAGE_DTYPES.items()
    },
}


def _refuse_state_change(opcode: str, target: Any, allowed: str) -> None:
    raise pickle.UnpicklingError(
        f"refused the pickle opcode {opcode} on a {type(target).__name__}: in a legacy "
        f"torch file it may only fill {allowed} created by the same pickle (it must never "
        "change an allow-listed global)"
    )


def _check_key(key: Any) -> Any:
    if type(key) not in _ATOMIC_KEY_TYPES:
        raise pickle.UnpicklingError(
            f"refused a dict key of type {type(key).__name__}: keys in a legacy torch file "
            "must be str, int, float, bytes, bool or None"
        )
    return key


class _RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 (opcodes need the Python one)
    """Unpickler that resolves only the globals a legacy torch state dict needs.

    It is the pure-Python unpickler with the state-changing opcodes replaced: BUILD only
    on an ``OrderedDict`` instance, with a dict of ``str`` keys; SETITEM(S) only on a
    dict, and DICT, with atomic keys; APPEND(S) only on a list; no sets.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def __init__(self, file, storages: dict[str, _StorageRef] | None = None):
        super().__init__(file)
        self._storages = storages

    def _load_build(self):
        inst, state = self.stack[-2], self.stack[-1]
        if type(inst) is not collections.OrderedDict:
            _refuse_state_change("BUILD", inst, "an OrderedDict")
        if not (type(state) is dict and all(type(key) is str for key in state)):
            raise pickle.UnpicklingError(
                f"refused the pickle opcode BUILD with a state of type {type(state).__name__}"
                ": an OrderedDict in a legacy torch file takes only a dict of str keys"
            )
        pickle._Unpickler.load_build(self)  # noqa: SLF001

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items([key, value])

    def _load_setitems(self):
        self._set_items(self.pop_mark())

    def _load_dict(self):
        items = self.pop_mark()
        self.append({})
        self._set_items(items)

    def _set_items(self, items):
        target = self.stack[-1]
        if not isinstance(target, dict):  # dict and OrderedDict instances only
            _refuse_state_change("SETITEM(S)", target, "a dict")
        if len(items) % 2:
            raise pickle.UnpicklingError("SETITEMS needs key-value pairs, got an odd count")
        for i in range(0, len(items), 2):
            target[_check_key(items[i])] = items[i + 1]

    def _load_append(self):
        value = self.stack.pop()
        self._append_items([value])

    def _load_appends(self):
        self._append_items(self.pop_mark())

    def _append_items(self, items):
        target = self.stack[-1]
        if type(target) is not list:
            _refuse_state_change("APPEND(S)", target, "a list")
        target.extend(items)

    def _load_set(self):
        raise pickle.UnpicklingError("refused a set: a legacy torch state dict holds none")

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.DICT[0]] = _load_dict
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends
    for _opcode in (pickle.EMPTY_SET, pickle.ADDITEMS, pickle.FROZENSET):
        dispatch[_opcode[0]] = _load_set
    del _opcode

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
            raise pickle.UnpicklingError(f"unsupported persistent id {_short(pid)}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {_short(storage_type)}")
        if not (isinstance(key, str) and _is_int(numel) and numel >= 0):
            raise pickle.UnpicklingError(f"invalid storage key or size in {_short(pid)}")
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                    and all(_is_int(v) and v >= 0 for v in view[1:])):
                raise pickle.UnpicklingError(f"invalid storage view metadata {_short(view)}")
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
    position = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(position)
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
        nbytes = numel * dtype.itemsize
        if nbytes > end - stream.tell():  # checked before reading: numel may be 2**62
            raise pickle.UnpicklingError(
                f"truncated legacy torch file at storage '{key}': {numel} elements of "
                f"{dtype.itemsize} bytes declared, {end - stream.tell()} bytes left"
            )
        raw = stream.read(nbytes)
        arrays[key] = np.frombuffer(raw, dtype=dtype)
    return arrays


class _Resolver:
    """Replaces tensor records by arrays: shared objects once, nesting and bytes bounded."""

    def __init__(self, arrays: dict[str, np.ndarray], max_bytes: int):
        self._arrays = arrays
        self._bytes_left = max_bytes
        self._max_bytes = max_bytes
        self._done: dict[int, Any] = {}  # id(object) -> result; the objects stay alive
        self._active: set[int] = set()

    def resolve(self, obj: Any, depth: int = 0) -> Any:
        if isinstance(obj, _StorageRef):
            raise pickle.UnpicklingError("bare storages are not supported, only tensors")
        if not isinstance(obj, (_TensorRef, dict, list, tuple)):
            return obj
        key = id(obj)
        if key in self._done:
            return self._done[key]
        if key in self._active:
            raise pickle.UnpicklingError(
                "the object refers to itself (a reference cycle); a legacy torch state "
                "dict has none"
            )
        if depth > MAX_NESTING:
            raise pickle.UnpicklingError(
                f"the object is nested deeper than MAX_NESTING = {MAX_NESTING} levels"
            )
        self._active.add(key)
        if isinstance(obj, _TensorRef):
            result = self._materialize(obj)
        elif isinstance(obj, dict):
            result = type(obj)()
            for item_key, value in obj.items():
                result[item_key] = self.resolve(value, depth + 1)
        else:
            items = [self.resolve(value, depth + 1) for value in obj]
            result = items if isinstance(obj, list) else tuple(items)
        self._active.discard(key)
        self._done[key] = result
        return result

    def _materialize(self, ref: _TensorRef) -> np.ndarray:
        storage = self._arrays[ref.storage.key]
        if ref.storage.view is not None:
            _view_key, view_offset, view_size = ref.storage.view
            if view_offset + view_size > storage.size:
                raise pickle.UnpicklingError(
                    f"storage view {ref.storage.view} exceeds storage '{ref.storage.key}'"
                )
            storage = storage[view_offset:view_offset + view_size]
        nbytes = math.prod(ref.size) * storage.itemsize  # < 2**(63 * 64): bounded cost
        if nbytes > self._bytes_left:
            raise pickle.UnpicklingError(
                f"tensor of size {_short(ref.size)} on storage '{ref.storage.key}' needs "
                f"{_short(nbytes)} bytes: the arrays of this file would exceed "
                f"{self._max_bytes} "
                f"bytes, MAX_OUTPUT_FACTOR = {MAX_OUTPUT_FACTOR} times its storages' bytes "
                f"plus OUTPUT_SLACK_BYTES = {OUTPUT_SLACK_BYTES} (a stride-0 or "
                "overlapping view?)"
            )
        self._bytes_left -= nbytes
        dtype = storage.dtype.newbyteorder("=")
        try:
            if nbytes == 0:
                return np.zeros(ref.size, dtype=dtype)
            last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride,
                                                                 strict=True))
            if last >= storage.size:
                raise pickle.UnpicklingError(
                    f"tensor (offset {ref.offset}, size {_short(ref.size)}, stride "
                    f"{_short(ref.stride)}) reads past the end of storage "
                    f"'{ref.storage.key}' ({storage.size} elements)"
                )
            view = np.lib.stride_tricks.as_strided(
                storage[ref.offset:],
                shape=ref.size,
                strides=tuple(s * storage.itemsize for s in ref.stride),
                writeable=False,
            )
            return np.array(view, dtype=dtype, order="C")
        except (OverflowError, ValueError, MemoryError) as error:  # sizes NumPy refuses
            raise pickle.UnpicklingError(
                f"tensor (offset {ref.offset}, size {_short(ref.size)}, stride "
                f"{_short(ref.stride)}) on storage '{ref.storage.key}' cannot be built: "
                f"{error}"
            ) from error


def _resolve(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    storage_bytes = sum(array.nbytes for array in arrays.values())
    resolver = _Resolver(arrays, MAX_OUTPUT_FACTOR * storage_bytes + OUTPUT_SLACK_BYTES)
    try:
        return resolver.resolve(obj)
    except RecursionError as error:  # MAX_NESTING keeps well below the limit; a fallback
        raise pickle.UnpicklingError(
            f"the object is nested too deeply to read: {error}"
        ) from error


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
        ``OrderedDict[str, np.ndarray]`` (attributes such as ``_metadata`` are dropped).
        Objects the pickle shares are read once and stay shared.

    Raises:
        ValueError: the digest is missing, malformed or does not match (the message
            names the path, the expected and the actual digest), or the file is not in
            the legacy format (e.g. a zip-format file from torch >= 1.6).
        pickle.UnpicklingError: the file references a global other than the allowed
            ones (the message names it; nothing is executed); it uses a state-changing
            opcode on anything but a container it created itself (BUILD on an
            allow-listed global, say); it is malformed or truncated; or it exceeds a
            limit: nesting deeper than :data:`MAX_NESTING`, a reference cycle, arrays
            of more than :data:`MAX_OUTPUT_FACTOR` times the storages' bytes plus
            :data:`OUTPUT_SLACK_BYTES`, or sizes NumPy cannot hold. This is the one
            error type for every bad file content, also with ``verify_digest=False``.

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
            f"'{os.fspath(path)}' uses torch serialization protocol {_short(protocol)}, "
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
