"""Tests for the torch-free reader of legacy PyTorch files.

Tiny legacy files are written here byte by byte (pickle opcodes, as
``torch.save(..., _use_new_zipfile_serialization=False)`` lays them out), so the tests
need neither torch nor the real weights file.
"""

import hashlib
import io
import pickle
import pickletools
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkeras.models.torch_legacy_reader import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    file_sha256,
    read_torch_legacy_file,
)

SYS_INFO = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
                 np.dtype("int64"): "LongStorage", np.dtype("int32"): "IntStorage",
                 np.dtype("uint8"): "ByteStorage", np.dtype("bool"): "BoolStorage"}


# --- a minimal pickle-opcode writer -------------------------------------------------
def op_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def op_int(value):
    return b"J" + struct.pack("<i", value)


def op_tuple(*items):
    return b"(" + b"".join(items) + b"t"


def op_ordered_dict():
    return op_global("collections", "OrderedDict") + b")R"


def op_tensor(storage_key, storage_name, numel, offset, size, stride, view=None):
    view_ops = b"N" if view is None else op_tuple(op_str(view[0]), op_int(view[1]),
                                                  op_int(view[2]))
    pid = op_tuple(op_str("storage"), op_global("torch", storage_name), op_str(storage_key),
                   op_str("cpu"), op_int(numel), view_ops)
    args = op_tuple(pid + b"Q", op_int(offset), op_tuple(*map(op_int, size)),
                    op_tuple(*map(op_int, stride)), b"\x89", op_ordered_dict())
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def legacy_file(entries, storages, *, main_prefix=b"", magic_pickle=None):
    """Bytes of a legacy torch file.

    Args:
        entries: list of (name, tensor opcodes) of an OrderedDict state dict.
        storages: list of (key, flat array) in the order the data follow.
        main_prefix: opcodes run inside the main pickle before the state dict.
        magic_pickle: replaces the magic-number pickle.
    """
    main = b"\x80\x02" + main_prefix + op_ordered_dict()
    for name, tensor in entries:
        main += op_str(name) + tensor + b"s"
    main += b"."
    pickletools.dis(main, out=io.StringIO())  # the opcodes are well formed
    parts = [magic_pickle or pickle.dumps(MAGIC_NUMBER, protocol=2),
             pickle.dumps(PROTOCOL_VERSION, protocol=2),
             pickle.dumps(SYS_INFO, protocol=2), main,
             pickle.dumps([key for key, _ in storages], protocol=2)]
    for _, flat in storages:
        parts.append(struct.pack("<q", flat.size) + flat.astype(flat.dtype.newbyteorder("<"))
                     .tobytes())
    return b"".join(parts)


def state_dict_file(arrays):
    """Legacy file of {name: array}, each array a contiguous tensor of its own storage."""
    entries, storages = [], []
    for index, (name, array) in enumerate(arrays.items()):
        key = str(1000 + index)
        array = array.copy(order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        strides = tuple(s // array.itemsize for s in array.strides)
        entries.append((name, op_tensor(key, STORAGE_NAMES[array.dtype], array.size, 0,
                                        array.shape, strides)))
        storages.append((key, array.ravel()))
    return legacy_file(entries, storages)


def write(tmp_path, data, name="tiny.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- reading -------------------------------------------------------------------------
def test_reads_contiguous_tensors_of_several_dtypes(tmp_path):
    arrays = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7,
              "bn.num_batches_tracked": np.array(12, dtype=np.int64),
              "mask": np.array([True, False, True]),
              "bias": np.array([1.5, -2.25], dtype=np.float64)}
    path = write(tmp_path, state_dict_file(arrays))
    state = read_torch_legacy_file(path, file_sha256(path))
    assert list(state) == list(arrays)
    for name, expected in arrays.items():
        assert state[name].dtype == expected.dtype
        assert state[name].shape == expected.shape
        np.testing.assert_array_equal(state[name], expected)
        assert state[name].flags.c_contiguous


def test_strides_offsets_shared_storages_and_views(tmp_path):
    # One storage holding a 3x4 matrix stored column-major, read as its transpose-
    # free (3, 4) tensor via strides (1, 3); a second tensor at offset 5 sharing it;
    # a third tensor through view metadata of a second storage.
    column_major = np.arange(12, dtype=np.float32)  # element (i, j) at i + 3 j
    expected = column_major.reshape(4, 3).T
    view_storage = np.arange(10, dtype=np.float32) * 10
    entries = [("matrix", op_tensor("a", "FloatStorage", 12, 0, (3, 4), (1, 3))),
               ("tail", op_tensor("a", "FloatStorage", 12, 5, (2, 2), (2, 1))),
               ("viewed", op_tensor("b", "FloatStorage", 10, 1, (3,), (2,),
                                    view=("b_view", 2, 7)))]
    data = legacy_file(entries, [("a", column_major), ("b", view_storage)])
    state = read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
    np.testing.assert_array_equal(state["matrix"], expected)
    np.testing.assert_array_equal(state["tail"], [[5, 6], [7, 8]])
    np.testing.assert_array_equal(state["viewed"], [30, 50, 70])  # view[1::2] of b[2:9]


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=4),
       order_seed=st.randoms(use_true_random=False))
def test_any_axis_order_roundtrips(tmp_path_factory, shape, order_seed):
    """A tensor stored with axes in any memory order reads back equal to NumPy's."""
    expected = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) - 3.5
    order = list(range(len(shape)))
    order_seed.shuffle(order)
    stored = np.ascontiguousarray(np.transpose(expected, order))
    strides = [0] * len(shape)
    for axis_in_storage, axis in enumerate(order):
        strides[axis] = stored.strides[axis_in_storage] // stored.itemsize
    data = legacy_file([("t", op_tensor("k", "FloatStorage", stored.size, 0, tuple(shape),
                                        tuple(strides)))], [("k", stored.ravel())])
    path = write(tmp_path_factory.mktemp("axes"), data)
    np.testing.assert_array_equal(read_torch_legacy_file(path, verify_digest=False)["t"],
                                  expected)


def test_out_of_bounds_tensor_is_refused(tmp_path):
    data = legacy_file([("t", op_tensor("k", "FloatStorage", 4, 2, (2, 2), (2, 1)))],
                       [("k", np.zeros(4, np.float32))])
    with pytest.raises(pickle.UnpicklingError, match="reads past the end of storage 'k'"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)


def test_count_mismatch_and_truncation_are_refused(tmp_path):
    entries = [("t", op_tensor("k", "FloatStorage", 5, 0, (4,), (1,)))]
    data = legacy_file(entries, [("k", np.zeros(4, np.float32))])
    with pytest.raises(pickle.UnpicklingError, match="holds 4 elements, its persistent id"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
    good = state_dict_file({"t": np.ones(4, np.float32)})
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        read_torch_legacy_file(write(tmp_path, good[:-3]), verify_digest=False)
    with pytest.raises(pickle.UnpicklingError, match="trailing bytes"):
        read_torch_legacy_file(write(tmp_path, good + b"\0"), verify_digest=False)


def test_non_legacy_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="zip-format torch file"):
        read_torch_legacy_file(write(tmp_path, b"PK\x03\x04rest"), verify_digest=False)
    bad_magic = state_dict_file({"t": np.ones(1, np.float32)})
    bad_magic = pickle.dumps(123, protocol=2) + bad_magic[len(pickle.dumps(MAGIC_NUMBER, 2)):]
    with pytest.raises(ValueError, match="bad magic number"):
        read_torch_legacy_file(write(tmp_path, bad_magic), verify_digest=False)


# --- refusals: digest and forbidden globals -----------------------------------------
def test_digest_is_required_and_checked(tmp_path):
    path = write(tmp_path, state_dict_file({"t": np.ones(3, np.float32)}))
    digest = file_sha256(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="`expected_sha256` must be the file's SHA-256"):
        read_torch_legacy_file(path)
    tampered = bytearray(path.read_bytes())
    tampered[-1] ^= 0xFF
    path.write_bytes(bytes(tampered))
    actual = hashlib.sha256(bytes(tampered)).hexdigest()
    with pytest.raises(ValueError) as error:
        read_torch_legacy_file(path, digest.upper())
    message = str(error.value)
    assert str(path) in message and digest in message and actual in message


def test_tampered_malicious_file_is_refused_before_unpickling(tmp_path):
    """With the digest of the genuine file, a malicious substitute is never unpickled."""
    genuine = write(tmp_path, state_dict_file({"t": np.ones(3, np.float32)}), "genuine.pth")
    sentinel = tmp_path / "pwned"
    payload = op_global("builtins", "exec") + op_tuple(
        op_str(f"open({str(sentinel)!r}, 'w').close()")) + b"R0"
    evil = write(tmp_path, legacy_file([], [], main_prefix=payload), "evil.pth")
    with pytest.raises(ValueError, match="refused to unpickle"):
        read_torch_legacy_file(evil, file_sha256(genuine))
    assert not sentinel.exists()


SENTINEL_CALLS = [
    ("os", "system", lambda s: f"echo x > {s}"),
    ("posix", "system", lambda s: f"echo x > {s}"),
    ("subprocess", "getoutput", lambda s: f"echo x > {s}"),
    ("builtins", "eval", lambda s: f"open({s!r}, 'w').close()"),
    ("builtins", "exec", lambda s: f"open({s!r}, 'w').close()"),
    ("collections", "OrderedDict.__init__", lambda s: s),  # dotted name, allowed module
    ("torch", "load", lambda s: s),  # torch, but not a storage
]


@pytest.mark.parametrize(("module", "name", "argument"), SENTINEL_CALLS,
                         ids=[f"{m}.{n}" for m, n, _ in SENTINEL_CALLS])
@pytest.mark.parametrize("where", ["main", "magic", "storage_type"])
def test_forbidden_global_is_refused_without_running(tmp_path, module, name, argument,
                                                     where):
    sentinel = tmp_path / "pwned"
    call = op_global(module, name) + op_tuple(op_str(argument(str(sentinel)))) + b"R"
    if where == "main":
        data = legacy_file([("t", call)], [])
    elif where == "magic":
        data = legacy_file([], [], magic_pickle=b"\x80\x02" + call + b".")
    else:  # a forbidden global in place of the storage type of a persistent id
        tensor = op_tensor("k", "FloatStorage", 1, 0, (1,), (1,)).replace(
            op_global("torch", "FloatStorage"), op_global(module, name))
        data = legacy_file([("t", tensor)], [("k", np.ones(1, np.float32))])
    path = write(tmp_path, data)
    with pytest.raises(pickle.UnpicklingError, match=f"refused to load global '{module}.{name}'"):
        read_torch_legacy_file(path, file_sha256(path))  # right digest, wrong content
    assert not sentinel.exists()


def test_forbidden_persistent_id_is_refused(tmp_path):
    bad = (b"(" + op_str("module") + op_str("x") + b"tQ")
    data = legacy_file([("t", bad)], [])
    with pytest.raises(pickle.UnpicklingError, match="unsupported persistent id"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
