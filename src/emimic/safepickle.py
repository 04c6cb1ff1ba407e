"""Decode untrusted dataset pickles without running code and without unbounded memory.

A pickle is a program: ``GLOBAL`` names a callable and ``REDUCE``/``BUILD`` call it with arguments
the file chooses. :func:`loads` answers every ``GLOBAL`` from :data:`ALLOWED_GLOBALS`, which maps
the few names that pickled numpy arrays and torch tensors use to emimic's own checked
constructors; any other name (``os.system``, ``numpy.load``, ``torch.load`` ...) is refused before
anything is imported or called. The checked constructors accept numeric dtypes only and build an
array only from bytes that are in the file, so a declared shape can never allocate more than the
file holds. Tensor storages (``torch.storage._load_from_bytes``) load through
``torch.load(weights_only=True)``. docs/data.md lists the allow-list and why each entry is safe.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import reprlib
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import numpy as np

if TYPE_CHECKING:
    import torch

# bool, signed and unsigned integers of 1-8 bytes, float16/32/64, either byte order. No objects,
# strings, records, sub-arrays, datetimes, complex or platform-dependent long doubles.
_NUMERIC_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248])")
# Far beyond any per-clip array, small enough that shape arithmetic stays cheap on crafted values.
_MAX_DIM = 2**48
_MAX_NDIM = 32
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_PROTO = pickle.PROTO
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel = 2


def short_repr(value: object) -> str:
    """A one-line description of a value from a crafted file, which can be deeply nested or huge."""
    try:
        return _repr.repr(value)
    except ValueError:  # an integer too long to print
        return f"<{type(value).__name__}>"


class RefusedPickle(pickle.UnpicklingError):
    """A dataset file asks for something a file of numeric arrays never needs."""


class TruncatedFile(pickle.UnpicklingError):
    """A dataset file ends before the data it declares does: a copy or an extraction was cut short."""


def _refuse(what: str) -> NoReturn:
    raise RefusedPickle(f"refusing to load {what} (a dataset pickle may hold only numeric arrays; see docs/data.md)")


class _DtypeSpec:
    """What ``numpy.dtype`` stands for here: a numeric type code whose ``BUILD`` may set only the byte order.

    numpy's own ``dtype.__setstate__`` is never reached: fuzzing showed it crashes the process on a
    malformed state. ``__slots__`` leaves ``BUILD`` nothing else to set.
    """

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        self.code = code

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            _refuse(f"dtype state {short_repr(state)}")
        self.code = state[1] + self.code.lstrip("<>|=")


def numeric_dtype(value: object) -> np.dtype:
    """The numpy dtype of ``value`` (a type code or :class:`_DtypeSpec`) if it is numeric; else refuse."""
    code = value.code if isinstance(value, _DtypeSpec) else value
    if not isinstance(code, str) or not _NUMERIC_DTYPE.fullmatch(code):
        _refuse(f"dtype {short_repr(code)}")
    return np.dtype(code)


def _checked_shape(value: object) -> tuple[int, ...]:
    if (
        not isinstance(value, tuple)
        or len(value) > _MAX_NDIM
        or not all(type(dim) is int and 0 <= dim <= _MAX_DIM for dim in value)
    ):
        _refuse(f"shape {short_repr(value)}")
    return value


def _checked_buffer(buffer: object, shape: tuple[int, ...], dtype: np.dtype) -> memoryview:
    """The bytes of an array, refused unless they are exactly what ``shape`` and ``dtype`` declare."""
    try:
        data = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        _refuse(f"array data of type {type(buffer).__name__}")
    declared = math.prod(shape) * dtype.itemsize
    if data.nbytes != declared:
        _refuse(f"an array of shape {shape} and dtype {dtype} ({declared} bytes) from {data.nbytes} bytes")
    return data


class _CheckedArray(np.ndarray):
    """The array ``_reconstruct`` hands to the pickle's ``BUILD``: its state is checked before numpy sees it."""

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            _refuse(f"array state {short_repr(state)}")
        shape, dtype, fortran, raw = state[-4:]
        shape, dtype = _checked_shape(shape), numeric_dtype(dtype)
        if not isinstance(raw, bytes | bytearray):
            _refuse(f"array data of type {type(raw).__name__}")
        _checked_buffer(raw, shape, dtype)
        super().__setstate__((1, shape, dtype, bool(fortran), raw))


def _reconstruct(*_ignored: object) -> _CheckedArray:
    # numpy pickles call _reconstruct(ndarray, (0,), b"b") and then BUILD the real state; the
    # arguments are ignored so that no attacker-chosen shape or subtype is ever allocated.
    return _CheckedArray(0, np.uint8)


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> _CheckedArray:
    """numpy's protocol-5 constructor, from in-band data only (no out-of-band buffers are passed)."""
    dtype, shape = numeric_dtype(dtype), _checked_shape(shape)
    data = _checked_buffer(buffer, shape, dtype)
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if order == "F" else "C")
    return array.view(_CheckedArray)  # so that a BUILD on it is checked too


def _scalar(dtype: object, data: object = b"") -> int | float | bool:
    """A numpy scalar (e.g. an ``np.int64`` dict key) from exactly ``itemsize`` bytes, as a Python number."""
    dtype = numeric_dtype(dtype)
    return np.frombuffer(_checked_buffer(data, (), dtype), dtype=dtype)[0].item()


def _dtype(spec: object, *_align_copy: object) -> _DtypeSpec:
    numeric_dtype(spec)
    return _DtypeSpec(spec)  # type: ignore[arg-type]


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    """Protocols 0-2 store bytes as ``_codecs.encode(text, "latin1")``; no other codec is run."""
    if not isinstance(text, str) or encoding != "latin1":
        _refuse(f"_codecs.encode of {type(text).__name__} with {short_repr(encoding)}")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """Protocols 0-2 store ``b""`` (the data of a zero-frame array) as a call of ``bytes()``."""
    return b""


def _check_uncompressed_zip(data: bytes) -> None:
    # torch.save stores zip members uncompressed; a compressed member could inflate ~1000x.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        # A zip's table of contents is its last part: a zip file without one was cut short.
        raise TruncatedFile(f"ends after {len(data)} bytes, before the end of its zip archive") from None
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        _refuse(f"compressed zip member {short_repr(packed[0])} (torch.save writes them uncompressed)")
    if sum(m.file_size for m in members) > len(data):
        _refuse("zip members larger than the file")


# torch.save without the zip format starts with this pickled magic number (torch.serialization.MAGIC_NUMBER).
_LEGACY_TORCH_PREFIX = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)


def is_torch_save(data: bytes) -> bool:
    """Whether ``data`` was written by ``torch.save`` (zip or legacy format), whatever the file is called."""
    return data[:2] == b"PK" or data.startswith(_LEGACY_TORCH_PREFIX)


def torch_load(data: bytes) -> object:
    """``torch.load(weights_only=True)`` of a zip or legacy ``torch.save`` payload, mapped to the CPU."""
    import torch

    if data[:2] == b"PK":
        _check_uncompressed_zip(data)
    try:
        with warnings.catch_warnings():  # torch warns about odd protocols in corrupt files; the error says enough
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False, exactly what must not be done with dataset files.
        found = re.search(r"GLOBAL (\S+)", str(exc))
        _refuse(found.group(1) if found else "an object torch's weights-only loader does not allow")
    except (EOFError, RuntimeError) as exc:
        # The legacy format is pickles then raw storages: either can be what the bytes ran out in.
        if isinstance(exc, EOFError) or str(exc).startswith("unexpected EOF"):
            raise TruncatedFile(f"ends after {len(data)} bytes, before its tensor data does") from None
        raise


class _LoadedStorage:
    """A tensor storage from :func:`_storage_from_bytes`; ``__slots__`` leave the pickle's BUILD nothing to set."""

    __slots__ = ("storage",)

    def __init__(self, storage: object) -> None:
        self.storage = storage


def _storage_from_bytes(data: object) -> _LoadedStorage:
    """``torch.storage._load_from_bytes``, but through ``weights_only=True``: a tensor storage or refuse."""
    import torch

    if not isinstance(data, bytes):
        _refuse(f"a tensor storage from {type(data).__name__}")
    storage = torch_load(data)
    if not isinstance(storage, torch.storage.TypedStorage):
        _refuse(f"a tensor storage payload holding {type(storage).__name__}")
    return _LoadedStorage(storage)


def _tensor_from_storage(storage: object, offset: object, size: object, stride: object, *_ignored: object) -> object:
    """``torch._utils._rebuild_tensor_v2`` on a storage from :func:`_storage_from_bytes`, as a float32 array.

    requires_grad, backward hooks and metadata are dropped: features need none of them. torch
    checks that the view fits in the storage; :func:`tensor_to_numpy` refuses views that repeat
    stored elements (zero strides) before anything is copied.
    """
    import torch

    if not isinstance(storage, _LoadedStorage) or type(offset) is not int or offset < 0:
        _refuse(f"a tensor from {type(storage).__name__} at offset {short_repr(offset)}")
    tensor = torch._utils._rebuild_tensor_v2(
        storage.storage, offset, _checked_shape(size), _checked_shape(stride), False, OrderedDict()
    )
    return tensor_to_numpy(tensor).view(_CheckedArray)


def tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A dense real tensor as a float32 array; a view that repeats stored elements is refused before any copy."""
    import torch

    if tensor.layout != torch.strided or tensor.is_complex():
        raise TypeError(f"holds a {tensor.layout} {tensor.dtype} tensor, not a dense real one")
    stored = tensor.untyped_storage().nbytes() // tensor.element_size()
    if tensor.numel() > stored:
        raise ValueError(f"holds a tensor of shape {tuple(tensor.shape)} that repeats its {stored} stored value(s)")
    return tensor.detach().cpu().float().numpy()


def _ndarray_placeholder(*_ignored: object) -> NoReturn:
    _refuse("a call of numpy.ndarray")


class _Constructor:
    """An allowed global: callable, but with no ``__dict__`` and frozen attributes, so a pickle's BUILD
    cannot alter it (a plain function's ``__defaults__`` could be replaced for every later load)."""

    __slots__ = ("_build",)

    def __init__(self, build: Callable[..., object]) -> None:
        object.__setattr__(self, "_build", build)

    def __call__(self, *args: object) -> object:
        return self._build(*args)

    def __setattr__(self, name: str, value: object) -> None:
        _refuse(f"a change to {name!r} of an allowed global")


# Every (module, name) a dataset pickle may name, and what emimic calls in its place. numpy 1.x
# writes numpy.core.*, numpy 2.x numpy._core.*; protocols 0-2 add _codecs.encode and bytes().
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., object]] = {
    key: _Constructor(build)
    for key, build in {
        ("numpy", "ndarray"): _ndarray_placeholder,  # only ever an argument of _reconstruct, which ignores it
        ("numpy", "dtype"): _dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): _scalar,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("_codecs", "encode"): _latin1,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _tensor_from_storage,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    }.items()
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Callable[..., object]:
        # An exact lookup: nothing is imported, and dotted names ("testing.os.system") never resolve.
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            what = f"{module}.{name}"[:120]
            _refuse(what if what.isprintable() else repr(what))


def _check_memo_indices(data: bytes) -> None:
    # CPython's unpickler grows its memo table to the largest index a PUT names and zero-fills it: a
    # 10-byte file could claim gigabytes. Real pickles number their memo entries from 0, one per object.
    stream = io.BytesIO(data)
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name in _MEMO_PUTS and arg >= len(data):
                _refuse(f"memo index {arg} in a file of {len(data)} bytes")
    except ValueError:
        # A pickle (its protocol header says so: every writer since Python 3.0 puts one) whose next opcode, argument
        # or STOP was still to come when the bytes ran out was cut short. Other bytes (text, a malformed opcode)
        # stay an unreadable file.
        if data[:1] == _PROTO and stream.tell() >= len(data):
            raise TruncatedFile(f"ends after {len(data)} bytes, before the pickle does") from None
        raise


def loads(data: bytes) -> object:
    """Unpickle ``data`` with only :data:`ALLOWED_GLOBALS`; raise :class:`RefusedPickle` for anything else."""
    _check_memo_indices(data)
    return _ArrayUnpickler(io.BytesIO(data)).load()
