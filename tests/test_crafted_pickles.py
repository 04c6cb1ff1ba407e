"""Attacks on the dataset loader: crafted per-clip files must be refused without running code or
allocating more than they hold.

Every code-execution payload tries to create a marker file or set an environment variable; each
test asserts a :class:`DataError` (one line, naming the file), no marker, no variable, and a quick
return. The memory payloads declare 10^12 elements or more: had the loader materialised one, it
would raise MemoryError (not DataError) or take far longer than the time bound.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import subprocess
import time
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from emimic.cli import registry
from emimic.cli.registry import main
from emimic.data import open_dataset
from emimic.data.layout import read_mapping
from emimic.errors import DataError
from emimic.io import load_array
from emimic.safepickle import ALLOWED_GLOBALS

ENV_FLAG = "EMIMIC_CRAFTED_PICKLE_RAN"
PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))
HUGE = (10**6, 10**6)  # 10^12 elements: 4 TB as float32
SECONDS = 5.0
_reconstruct = np._core.multiarray._reconstruct
_frombuffer = np._core.numeric._frombuffer


class Call:
    """Pickles as ``func(*args)``, then ``BUILD`` with ``state``: any call a crafted file can ask for."""

    def __init__(self, func: object, *args: object, state: object = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)

    def __call__(self, *args: object) -> None:
        """Only so that pickle accepts a Call whose result is called in turn (a chain of gadgets)."""


def _text(value: str) -> bytes:
    raw = value.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def dotted_global_call(module: str, name: str, *calls: tuple[str, ...]) -> bytes:
    """Protocol 4: look up ``module``/``name`` by a dotted path, then call the result once per ``calls`` entry."""
    body = _text(module) + _text(name) + b"\x93"  # STACK_GLOBAL
    for args in calls:
        body += b"(" + b"".join(map(_text, args)) + b"tR"  # MARK ... TUPLE REDUCE
    return b"\x80\x04" + body + b"."


def legacy_torch_save(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def zip_torch_save(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def tensor_from_storage_bytes(storage_bytes: bytes, size: tuple[int, ...] = (1,)) -> Call:
    """What ``pickle.dumps(tensor)`` writes, with the storage payload replaced by ``storage_bytes``."""
    storage = Call(torch.storage._load_from_bytes, storage_bytes)
    return Call(torch._utils._rebuild_tensor_v2, storage, 0, size, (1,) * len(size), False, OrderedDict())


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    os.environ.pop(ENV_FLAG, None)
    yield path
    assert not path.exists(), "a crafted pickle ran code"
    assert ENV_FLAG not in os.environ, "a crafted pickle ran code"


def refused(path: Path, data: bytes, reader: Callable[[Path], object] = load_array, *, label: str = "") -> str:
    """Write ``data`` to ``path``, read it, and return the one-line DataError that must follow, quickly."""
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        reader(path)
    except DataError as exc:
        message = str(exc)
    except Exception as exc:
        pytest.fail(f"{label}: raised {type(exc).__name__} ({exc}), not DataError")
    else:
        pytest.fail(f"{label}: was loaded")
    elapsed = time.perf_counter() - start
    assert elapsed < SECONDS, f"{label}: took {elapsed:.1f} s"
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 400, f"{label}: {message}"
    return message


def code_payloads(marker: Path) -> dict[str, object]:
    """Objects whose unpickling creates ``marker`` or sets ENV_FLAG if the loader calls what they name."""
    touch = f"touch {marker}"
    python = f"open({str(marker)!r}, 'w'); import os; os.environ[{ENV_FLAG!r}] = '1'"
    npy_with_pickle = marker.with_name("inner.npy")
    np.save(npy_with_pickle, np.array([Call(os.system, touch)], dtype=object), allow_pickle=True)
    legacy_exploit = legacy_torch_save({"weight": Call(os.system, touch)})
    return {
        "os.system": Call(os.system, touch),
        "os.popen": Call(os.popen, touch),
        "subprocess.Popen": Call(subprocess.Popen, ["touch", str(marker)]),
        "subprocess.check_output": Call(subprocess.check_output, ["touch", str(marker)]),
        "builtins.exec": Call(exec, python),
        "builtins.eval": Call(eval, f"exec({python!r})"),
        "getattr(__import__('os'), 'system')": Call(Call(getattr, Call(__import__, "os"), "system"), touch),
        "numpy.load(allow_pickle=True)": Call(np.load, str(npy_with_pickle), None, True),
        "numpy.testing runstring": Call(np.testing._private.utils.runstring, python, {}),
        "numpy.ctypeslib.load_library": Call(np.ctypeslib.load_library, "libc", "/lib"),
        "torch.load": Call(torch.load, str(npy_with_pickle)),
        "storage bytes: legacy torch.save with a malicious reduce": tensor_from_storage_bytes(legacy_exploit),
        "storage bytes: zip torch.save with a malicious reduce": tensor_from_storage_bytes(
            zip_torch_save({"weight": Call(os.system, touch)})
        ),
        "storage bytes loaded alone": Call(torch.storage._load_from_bytes, legacy_exploit),
        "exploit inside a dict": {"feature": Call(os.system, touch)},
        "exploit inside a list": [np.ones(3), Call(exec, python)],
        "exploit as an array's dtype": Call(
            _reconstruct, np.ndarray, (0,), b"b", state=(1, (1,), Call(exec, python), False, b"x")
        ),
        "exploit as a tensor's storage": Call(
            torch._utils._rebuild_tensor_v2, Call(exec, python), 0, (1,), (1,), False, OrderedDict()
        ),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_code_payloads_are_refused_at_every_protocol(tmp_path: Path, marker: Path, protocol: int) -> None:
    for label, payload in code_payloads(marker).items():
        message = refused(tmp_path / "00001.pkl", pickle.dumps(payload, protocol=protocol), label=label)
        assert "refusing to load" in message, f"{label}: {message}"


def test_the_reported_storage_gadget_is_refused_by_name(tmp_path: Path, marker: Path) -> None:
    payload = tensor_from_storage_bytes(legacy_torch_save(Call(os.system, f"touch {marker}")))
    message = refused(tmp_path / "00001.pkl", pickle.dumps(payload), label="storage gadget")
    expected = "refusing to load posix.system (a dataset pickle may hold only numeric arrays; see docs/data.md)."
    assert message == f"{tmp_path / '00001.pkl'}: {expected}"


@pytest.mark.parametrize("suffix", [".pt", ".pkl"])
@pytest.mark.parametrize("writer", [legacy_torch_save, zip_torch_save])
def test_torch_save_files_with_a_malicious_reduce_are_refused(tmp_path: Path, marker: Path, suffix, writer) -> None:
    data = writer({"feature": torch.ones(2, 3), "hook": Call(os.system, f"touch {marker}")})
    message = refused(tmp_path / f"00001{suffix}", data, label=f"{writer.__name__}{suffix}")
    assert "refusing to load posix.system" in message


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy", "testing._private.utils.runstring"),  # a dotted name reaching past an allowed module
        ("numpy.dtypes", "__builtins__.get"),  # was admitted by a module-prefix rule: get("exec") -> exec
        ("torch", "load"),
        ("numpy", "load"),
    ],
)
def test_dotted_names_resolve_to_nothing(tmp_path: Path, marker: Path, module: str, name: str) -> None:
    python = f"open({str(marker)!r}, 'w')"
    data = dotted_global_call(module, name, ("exec",), (python,))
    assert "refusing to load" in refused(tmp_path / "00001.pkl", data, label=f"{module}.{name}")


def test_refused_allocation_gadgets_of_the_old_allow_list(tmp_path: Path) -> None:
    for label, payload in {
        "torch.FloatStorage(10**12)": Call(torch.FloatStorage, 10**12),
        "torch._utils._rebuild_tensor": Call(torch._utils._rebuild_tensor, None, 0, HUGE, (0, 0)),
        "numpy.ndarray(HUGE)": Call(np.ndarray, HUGE, np.dtype("f4")),
    }.items():
        assert "refusing to load" in refused(tmp_path / "00001.pkl", pickle.dumps(payload), label=label)


def _npy_with_declared_shape(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(24)


def _deflated(data: bytes) -> bytes:
    """The same zip archive with every member deflated: a small file that inflates to the declared sizes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _legacy_storage_declaring(numel: int) -> bytes:
    """A tensor's storage payload (legacy torch.save) that declares ``numel`` floats while holding 6."""
    with warnings.catch_warnings():  # TypedStorage is deprecated, but it is what pickled tensors hold
        warnings.simplefilter("ignore")
        data = torch.zeros(6).storage().__reduce__()[1][0]  # the bytes pickle.dumps(tensor) stores
    declared = b"X\x03\x00\x00\x00cpuq\x03K\x06"  # location "cpu", then BININT1 6
    assert data.count(declared) == 1
    return data.replace(declared, declared[:-2] + b"\x8a\x08" + numel.to_bytes(8, "little"))


def memory_payloads() -> dict[str, tuple[str, bytes, str]]:
    """(suffix, bytes, expected message) of files that declare far more data than they hold."""
    shared = [0.0] * 1000
    for _ in range(3):
        shared = [shared] * 1000  # four levels sharing one list each: 10^12 floats from ~15 kB
    expanded = torch.zeros(1).expand(*HUGE)  # stride 0: 10^12 elements viewing one stored float
    repeats = "holds a tensor of shape (1000000, 1000000) that repeats its 1 stored value(s)"
    too_few_bytes = "an array of shape (1000000, 1000000) and dtype float32 (4000000000000 bytes) from 8 bytes"
    numpy_state = (1, HUGE, np.dtype("f4"), False, bytes(8))
    return {
        "tensor with zero strides (pickle)": (".pkl", pickle.dumps(expanded), repeats),
        "tensor with zero strides (torch.save zip)": (".pt", zip_torch_save(expanded), repeats),
        "tensor with zero strides (legacy torch.save)": (".pkl", legacy_torch_save(expanded), repeats),
        "numpy state with a huge shape": (
            ".pkl",
            pickle.dumps(Call(_reconstruct, np.ndarray, (0,), b"b", state=numpy_state)),
            too_few_bytes,
        ),
        "numpy _reconstruct with a huge shape": (
            ".pkl",
            pickle.dumps(Call(_reconstruct, np.ndarray, HUGE, b"b")),
            "is empty",  # the requested shape is ignored; no BUILD state follows
        ),
        "numpy protocol-5 buffer with a huge shape": (
            ".pkl",
            pickle.dumps(Call(_frombuffer, bytearray(8), np.dtype("f4"), HUGE, "C"), protocol=5),
            too_few_bytes,
        ),
        "legacy storage declaring 5e9 floats": (
            ".pkl",
            pickle.dumps(tensor_from_storage_bytes(_legacy_storage_declaring(5 * 10**9))),
            "storage has wrong byte size",  # torch's check, after an untouched (virtual) allocation
        ),
        ".npy header declaring 10^12 elements": (
            ".npy",
            _npy_with_declared_shape(HUGE),
            "declares shape (1000000, 1000000) (4000000000000 bytes) but holds 24",
        ),
        # Found before CPython's unpickler allocates the declared length: the data is missing.
        "BINBYTES8 declaring 8 GiB": (".pkl", b"\x80\x04\x8e" + (2**33).to_bytes(8, "little") + b".", "is truncated"),
        "nested lists sharing one inner list": (".pkl", pickle.dumps(shared), "holds a value of type list"),
        # Found by fuzzing: CPython's unpickler zero-fills a memo table up to the index a PUT names.
        "memo index of 2^31": (
            ".pkl",
            b"\x80\x02K\x01r" + (2**31).to_bytes(4, "little") + b".",
            "memo index 2147483648",
        ),
        "deflated torch.save zip": (
            ".pt",
            _deflated(zip_torch_save(torch.zeros(10**6))),
            "refusing to load compressed zip member",
        ),
        "out-of-band protocol-5 buffer": (
            ".pkl",
            pickle.dumps(np.ones((2, 3)), protocol=5, buffer_callback=lambda _buffer: False),
            "out-of-band",
        ),
    }


@pytest.mark.parametrize("label", list(memory_payloads()))
def test_declared_sizes_beyond_the_data_are_refused_quickly(tmp_path: Path, label: str) -> None:
    suffix, data, expected = memory_payloads()[label]
    assert len(data) < 2**20
    message = refused(tmp_path / f"00001{suffix}", data, label=label)
    assert expected in message, f"{label}: {message}"


def _nested(opcode_open: bytes, opcode_close: bytes, depth: int) -> bytes:
    """A protocol-2 pickle nesting ``depth`` containers, built without recursion."""
    return b"\x80\x02" + opcode_open * depth + opcode_close * (depth - 1) + b"."


def _two_keys_one_deep(depth: int) -> bytes:
    deep_tuple = b")" + b"\x85" * depth  # EMPTY_TUPLE, then TUPLE1 depth times
    return b"\x80\x02}" + deep_tuple + b"K\x01s" + b"K\x02K\x03s."


def test_non_numeric_and_nested_contents_are_refused(tmp_path: Path) -> None:
    for label, (data, expected) in {
        "object array state": (
            pickle.dumps(Call(_reconstruct, np.ndarray, (0,), b"b", state=(1, (2,), np.dtype("O"), False, [1, 2]))),
            "refusing to load dtype 'O8'",
        ),
        "object scalar": (pickle.dumps(Call(np._core.multiarray.scalar, np.dtype("O"), 1)), "dtype 'O8'"),
        "string array": (pickle.dumps(np.array(["a", "b"])), "dtype 'U1'"),
        "structured array": (pickle.dumps(np.zeros(2, dtype=[("a", "f4"), ("b", "O")])), "refusing to load dtype"),
        "another codec": (pickle.dumps(Call(codecs.encode, "x", "zlib_codec")), "_codecs.encode of str"),
        "a tensor over a numpy array": (
            pickle.dumps(Call(torch._utils._rebuild_tensor_v2, np.ones(3), 0, (3,), (1,), False, OrderedDict())),
            "refusing to load a tensor from _CheckedArray",
        ),
        "100000 nested lists": (_nested(b"]", b"a", 10**5), "holds a value of type list"),
        "100000 nested dicts": (b"\x80\x02}" + b"K\x01}" * 10**5 + b"s" * 10**5 + b".", "type dict"),
        "a key nested 100000 deep": (_two_keys_one_deep(10**5), "holds a dict with keys ['(((...),),)', '2']"),
        "a complex tensor": (pickle.dumps(torch.ones(2, 3, dtype=torch.complex64)), "not a dense real one"),
        "a sparse tensor": (zip_torch_save(torch.eye(3).to_sparse()), "not a dense real one"),
    }.items():
        message = refused(tmp_path / "00001.pkl", data, label=label)
        assert expected in message, f"{label}: {message}"


def test_container_pickles_are_read_through_the_same_gate(tmp_path: Path, marker: Path) -> None:
    for label, value in {
        "exploit as a value": {1: Call(os.system, f"touch {marker}")},
        "deep key": None,
        "huge integer key": {10**5000: np.ones(3)},
        "list key": {(1, 2): np.ones(3)},
    }.items():
        data = _two_keys_one_deep(10**5) if value is None else pickle.dumps(value)
        refused(tmp_path / "vit.pkl", data, read_mapping, label=label)


@pytest.fixture
def crafted_root(make_root, marker: Path) -> tuple[Path, Path]:
    """A valid root whose vit/00003.pkl is the reported attack: a tensor whose storage bytes run os.system."""
    root = make_root()
    payload = tensor_from_storage_bytes(legacy_torch_save(Call(os.system, f"touch {marker}")))
    crafted = root / "vit" / "00003.pkl"
    crafted.write_bytes(pickle.dumps(payload))
    return root, crafted


def test_validate_and_pack_refuse_the_crafted_file_by_name(crafted_root, capsys, monkeypatch) -> None:
    root, crafted = crafted_root
    for console in (registry.out, registry.console):
        monkeypatch.setattr(console, "width", 1000)  # one row per problem, so the sentence can be matched whole
    for command in (["validate", str(root), "--quiet"], ["pack", str(root), "--quiet"]):
        assert main(command) == 1, command
        printed = "".join(capsys.readouterr())
        # validate names files relative to the root, pack by their full path
        assert f"{crafted.relative_to(root)}: refusing to load posix.system" in printed, printed
        assert "Traceback" not in printed


def test_training_data_path_refuses_the_crafted_file(crafted_root) -> None:
    root, crafted = crafted_root
    with pytest.raises(DataError, match=rf"{crafted}: refusing to load posix\.system"):
        open_dataset(root).store(progress=False)


def test_docs_list_every_allowed_global() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "data.md").read_text()
    section = docs.split("## What a dataset pickle may contain", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert listed == {f"{module}.{name}" for module, name in ALLOWED_GLOBALS}
