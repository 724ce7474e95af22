"""Tests for the torch-free reader of legacy PyTorch files.

Tiny legacy files are written here byte by byte (pickle opcodes, as
``torch.save(..., _use_new_zipfile_serialization=False)`` lays them out), so the tests
need neither torch nor the real weights file.
"""

import contextlib
import hashlib
import io
import pickle
import pickletools
import signal
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkeras.models.efficientnet_lite.torch_legacy_reader import (
    MAGIC_NUMBER,
    MAX_NESTING,
    MAX_OUTPUT_FACTOR,
    OUTPUT_SLACK_BYTES,
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


def legacy_file(entries, storages, *, main_prefix=b"", main_suffix=b"", magic_pickle=None):
    """Bytes of a legacy torch file.

    Args:
        entries: list of (name, tensor opcodes) of an OrderedDict state dict.
        storages: list of (key, flat array) in the order the data follow.
        main_prefix: opcodes run inside the main pickle before the state dict.
        main_suffix: opcodes run on the filled state dict, before STOP.
        magic_pickle: replaces the magic-number pickle.
    """
    main = b"\x80\x02" + main_prefix + op_ordered_dict()
    for name, tensor in entries:
        main += op_str(name) + tensor + b"s"
    main += main_suffix + b"."
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


# --- crafted files: allow-listed globals stay unchanged ------------------------------
def op_long(value):
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def op_put(index):
    return b"r" + struct.pack("<I", index)


def op_get(index):
    return b"j" + struct.pack("<I", index)


def dag(depth, leaf, closer=b"t"):
    """Opcodes of a container DAG: level i holds level i - 1 twice (2**depth paths)."""
    ops = leaf + op_put(0) + b"0"
    for level in range(1, depth + 1):
        ops += b"(" + op_get(level - 1) + op_get(level - 1) + closer + op_put(level) + b"0"
    return ops + op_get(depth)


@pytest.fixture
def genuine_float_file(tmp_path):
    """A verified float32 file and the values it holds."""
    expected = np.array([1.5, -2.0, 3.25], np.float32)
    return write(tmp_path, state_dict_file({"t": expected}), "genuine.pth"), expected


FLOAT_STORAGE = op_global("torch", "FloatStorage")
STATE_CHANGES = {
    # BUILD with the field values of the frozen dataclass: FloatStorage read as int32
    "BUILD FloatStorage": FLOAT_STORAGE + op_tuple(op_str("FloatStorage"), op_str("<i4"))
    + b"b0",
    "BUILD _rebuild_tensor_v2": op_global("torch._utils", "_rebuild_tensor_v2")
    + op_tuple(b"N", b"}" + op_str("__qualname__") + op_str("pwned") + b"s") + b"b0",
    "BUILD OrderedDict": op_global("collections", "OrderedDict") + b"}" + op_str("x")
    + op_int(1) + b"sb0",
    "SETITEMS FloatStorage": FLOAT_STORAGE + b"(" + op_str("dtype") + op_str("<i4") + b"u0",
    "APPEND FloatStorage": FLOAT_STORAGE + op_str("x") + b"a0",
}


@pytest.mark.parametrize("change", STATE_CHANGES.values(), ids=STATE_CHANGES.keys())
def test_state_changing_opcode_on_allow_listed_global_is_refused(tmp_path, change,
                                                                 genuine_float_file):
    """No file can change the shared stand-ins; a genuine file then still reads right."""
    crafted = legacy_file([], [], main_prefix=change)
    with pytest.raises(pickle.UnpicklingError, match="refused the pickle opcode"):
        read_torch_legacy_file(write(tmp_path, crafted), verify_digest=False)
    path, expected = genuine_float_file
    state = read_torch_legacy_file(path, file_sha256(path))
    assert state["t"].dtype == np.float32
    np.testing.assert_array_equal(state["t"], expected)


def test_build_on_a_tensor_record_is_refused(tmp_path):
    """BUILD would rewrite a checked tensor record (storage, offset, size, stride)."""
    tensor = op_tensor("k", "FloatStorage", 1, 0, (1,), (1,))
    state = op_tuple(op_str("not a storage"), op_int(0), op_tuple(op_int(1)),
                     op_tuple(op_int(1)))
    data = legacy_file([("t", tensor + state + b"b")], [("k", np.ones(1, np.float32))])
    with pytest.raises(pickle.UnpicklingError, match="refused the pickle opcode BUILD"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)


def test_state_dict_metadata_build_still_reads(tmp_path):
    """torch writes a state dict's _metadata with BUILD on the OrderedDict: allowed."""
    metadata = op_ordered_dict() + op_str("") + b"}" + op_str("version") + op_int(1) + b"ss"
    build = b"}" + op_str("_metadata") + metadata + b"sb"
    entries = [("t", op_tensor("k", "FloatStorage", 2, 0, (2,), (1,)))]
    data = legacy_file(entries, [("k", np.array([4.0, 5.0], np.float32))],
                       main_suffix=build)
    state = read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
    np.testing.assert_array_equal(state["t"], [4.0, 5.0])


# --- crafted files: bounded time and memory -------------------------------------------
@contextlib.contextmanager
def time_limit(seconds):
    """Raise TimeoutError in the test if the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_shared_references_are_read_once(tmp_path):
    """A 40-level DAG (2**40 paths, in a ~1 kB file) reads at once and stays shared."""
    leaf = op_tensor("k", "FloatStorage", 3, 0, (3,), (1,))
    data = legacy_file([("t", dag(40, leaf, closer=b"l"))],
                       [("k", np.array([1, 2, 3], np.float32))])
    assert len(data) < 1200
    with time_limit(3):
        state = read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
    node = state["t"]
    for _ in range(40):
        assert isinstance(node, list) and len(node) == 2 and node[0] is node[1]
        node = node[0]
    np.testing.assert_array_equal(node, [1, 2, 3])


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 5000])
def test_deep_nesting_is_refused(tmp_path, depth):
    nested = b"]" * depth + b"a" * (depth - 1)  # [[[...]]], depth lists
    data = legacy_file([("t", nested)], [])
    with pytest.raises(pickle.UnpicklingError, match=f"deeper than MAX_NESTING = {MAX_NESTING}"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
    shallow = legacy_file([("t", b"]" * MAX_NESTING + b"a" * (MAX_NESTING - 1))], [])
    node = read_torch_legacy_file(write(tmp_path, shallow), verify_digest=False)["t"]
    for _ in range(MAX_NESTING - 1):
        node = node[0]
    assert node == []


def test_reference_cycle_is_refused(tmp_path):
    data = legacy_file([("t", b"]" + op_put(0) + op_get(0) + b"a")], [])  # x = [x]
    with pytest.raises(pickle.UnpicklingError, match="reference cycle"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)


def test_stride_zero_view_is_bounded_by_the_storage_bytes(tmp_path):
    """One float, 4 bytes: at most 4 * 4 + 1 MiB bytes of arrays may come out of it."""
    limit = (MAX_OUTPUT_FACTOR * 4 + OUTPUT_SLACK_BYTES) // 4  # float32 elements
    storages = [("k", np.array([7.0], np.float32))]
    fits = legacy_file([("t", op_tensor("k", "FloatStorage", 1, 0, (limit,), (0,)))],
                       storages)
    np.testing.assert_array_equal(
        read_torch_legacy_file(write(tmp_path, fits), verify_digest=False)["t"],
        np.full(limit, 7.0, np.float32))
    for size in [(limit + 1,), (2000, 2000)]:  # 2000 x 2000: 16 MB from 4 bytes
        data = legacy_file([("t", op_tensor("k", "FloatStorage", 1, 0, size,
                                            (0,) * len(size)))], storages)
        with pytest.raises(pickle.UnpicklingError, match="MAX_OUTPUT_FACTOR = 4"):
            read_torch_legacy_file(write(tmp_path, data), verify_digest=False)


def tensor_with(size, stride, numel=1):
    pid = op_tuple(op_str("storage"), FLOAT_STORAGE, op_str("k"), op_str("cpu"),
                   op_long(numel), b"N")
    args = op_tuple(pid + b"Q", op_int(0), op_tuple(*map(op_long, size)),
                    op_tuple(*map(op_long, stride)), b"\x89", op_ordered_dict())
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


HUGE = {
    "numel 2**62": (tensor_with((1,), (1,), numel=2**62),
                    struct.pack("<q", 2**62), "truncated"),
    "stride 2**70": (tensor_with((1, 2), (2**70, 0)), None, "invalid tensor stride"),
    "size 2**62": (tensor_with((2**62,), (0,)), None, "MAX_OUTPUT_FACTOR"),
    "size 2**93": (tensor_with((2**31,) * 3, (0,) * 3), None, "MAX_OUTPUT_FACTOR"),
    "65 dims": (tensor_with((1,) * 65, (1,) * 65), None, "invalid tensor size"),
}


@pytest.mark.parametrize(("tensor", "storage_bytes", "message"), HUGE.values(),
                         ids=HUGE.keys())
def test_huge_counts_and_sizes_are_refused(tmp_path, tensor, storage_bytes, message):
    data = legacy_file([("t", tensor)], [("k", np.ones(1, np.float32))])
    if storage_bytes is not None:  # replace the storage's count and data
        data = data[:-12] + storage_bytes
    with pytest.raises(pickle.UnpicklingError, match=message):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)


def test_non_atomic_dict_keys_and_sets_are_refused(tmp_path):
    """Hashing a shared tuple DAG key would take 2**depth steps."""
    key = dag(24, op_int(1))
    for ops, message in [(b"}" + key + op_int(1) + b"s0", "dict key of type tuple"),
                         (b"(" + key + op_int(1) + b"d0", "dict key of type tuple"),
                         (op_global("collections", "OrderedDict") + op_tuple(op_tuple(
                             op_tuple(key, op_int(1)))) + b"R0", "without arguments"),
                         (b"\x8f(" + op_int(1) + b"\x900", "refused a set")]:
        data = legacy_file([], [], main_prefix=ops)
        with time_limit(3), pytest.raises(pickle.UnpicklingError, match=message):
            read_torch_legacy_file(write(tmp_path, data), verify_digest=False)


def test_error_messages_stay_short_for_shared_structures(tmp_path):
    """A 20-level DAG as a tensor size: its full repr would be millions of characters."""
    tensor = op_tensor("k", "FloatStorage", 1, 0, (1,), (1,))
    tensor = tensor.replace(op_tuple(op_int(1)) + op_tuple(op_int(1)),
                            dag(20, op_int(1)) + op_tuple(op_int(1)))
    data = legacy_file([("t", tensor)], [("k", np.ones(1, np.float32))])
    with time_limit(3), pytest.raises(pickle.UnpicklingError,
                                      match="invalid tensor size") as error:
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
    assert len(str(error.value)) < 500


def test_a_long_size_of_huge_shared_ints_is_refused_at_once(tmp_path):
    # 20,000 memo references to 2**62 as one tensor's size: multiplying them out would
    # take seconds (quadratic in the digits) and overflow str() in the message.
    big = op_long(2**62) + op_put(0) + b"0"
    size = b"(" + op_get(0) * 20_000 + b"t"
    pid = op_tuple(op_str("storage"), FLOAT_STORAGE, op_str("k"), op_str("cpu"),
                   op_long(1), b"N")
    args = op_tuple(pid + b"Q", op_int(0), size, size, b"\x89", op_ordered_dict())
    tensor = big + op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    data = legacy_file([("t", tensor)], [("k", np.ones(1, np.float32))])
    with time_limit(2), pytest.raises(pickle.UnpicklingError, match="invalid tensor size"):
        read_torch_legacy_file(write(tmp_path, data), verify_digest=False)
