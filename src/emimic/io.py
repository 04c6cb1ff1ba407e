"""Safe reading of per-clip arrays and atomic writing of every file emimic produces.

Dataset files are untrusted: :func:`load_array` reads pickles through
:mod:`emimic.safepickle` (numeric arrays, tensors and dicts of them, nothing else; a crafted
pickle cannot run code or allocate more than it holds), ``.npy`` without pickles and ``.pt`` with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import pickle
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emimic import safepickle
from emimic.errors import DataError, EmptyFeatures, OutputPathError

ARRAY_SUFFIXES: tuple[str, ...] = (".pkl", ".npy", ".pt")
TEMP_SUFFIX = ".tmp"


def decode_object(data: bytes, suffix: str, *, source: str) -> object:
    """Decode the bytes of a ``.pkl``/``.npy``/``.pt`` file into Python objects without executing code."""
    suffix = suffix.lower()
    if not data:  # a writer killed before its first byte (emimic's own writes are atomic)
        raise DataError(f"{source}: is an empty file (0 bytes); extract it again, or delete it to mask the clip.")
    if suffix == ".npy":
        return _load_npy(data, source=source)
    # torch.save() output also arrives under a .pkl name.
    if suffix == ".pt" or (suffix == ".pkl" and safepickle.is_torch_save(data)):
        return safepickle.torch_load(data)
    if suffix == ".pkl":
        return safepickle.loads(data)
    raise DataError(f"{source}: unsupported array file type {suffix!r} (expected one of {list(ARRAY_SUFFIXES)}).")


def _load_npy(data: bytes, *, source: str) -> np.ndarray:
    """``np.load`` without pickles, once the header's shape is known to fit in the bytes that follow it."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):  # 3.0 exists only for record dtypes with unicode field names
            raise DataError(f"{source}: is a version {version} .npy file; expected a numeric array (version 1 or 2).")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(stream)
    except ValueError:
        if stream.tell() >= len(data):  # the header was still to come when the bytes ran out
            raise DataError(truncated_sentence(source, f"ends after {len(data)} bytes, within its header")) from None
        raise
    declared = math.prod(shape) * dtype.itemsize
    if declared > len(data) - stream.tell():
        raise DataError(truncated_sentence(source, f"declares shape {shape} ({declared} bytes) but holds"
                                                   f" {len(data) - stream.tell()}"))
    return np.load(io.BytesIO(data), allow_pickle=False)


def read_object(path: Path) -> object:
    """Read a ``.pkl``/``.npy``/``.pt`` file into Python objects without executing code."""
    return decode_object(path.read_bytes(), path.suffix, source=str(path))


def decode_frames(data: bytes, suffix: str, *, source: str) -> np.ndarray:
    """Decode and validate one per-clip feature file's bytes as a ``(T, D)`` array of the file's own dtype
    (:func:`frame_array`)."""
    try:
        value = decode_object(data, suffix, source=source)
    except Exception as exc:  # a corrupt file can fail anywhere inside pickle, numpy or torch
        raise read_error(source, exc) from None
    return frame_array(value, source=source)


def decode_array(data: bytes, suffix: str, *, source: str) -> np.ndarray:
    """Decode and validate one per-clip feature file's bytes as a float32 ``(T, D)`` array."""
    return single_precision(decode_frames(data, suffix, source=source), source=source)


def truncated_sentence(source: str, how: str) -> str:
    """What every reader says of a file that ends before its data does (``how``: where it ends)."""
    return f"{source}: is truncated ({how}); extract or copy it again."


def read_error(source: str, exc: Exception) -> DataError:
    """The one-sentence :class:`DataError` for a file that failed to decode: a refusal, or where it broke."""
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, safepickle.RefusedPickle):
        return DataError(f"{source}: {exc}.")
    if isinstance(exc, safepickle.TruncatedFile):
        return DataError(truncated_sentence(source, str(exc)))
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]  # crafted files make long messages
    return DataError(f"{source}: cannot be read ({type(exc).__name__}: {first_line}).")


def to_numpy(value: object) -> np.ndarray:
    """A numpy array or torch tensor as a plain numpy array; anything else is a :class:`TypeError`.

    Lists are refused: nested lists sharing one inner list would turn a small pickle into a huge
    array. A tensor whose view repeats stored elements (zero strides) is a :class:`ValueError`,
    raised before anything is copied.
    """
    if isinstance(value, np.ndarray):
        return np.asarray(value)
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported to load it
    if torch is None or not isinstance(value, torch.Tensor):
        raise TypeError(f"holds a value of type {type(value).__name__}, not a numpy array or torch tensor")
    return safepickle.tensor_to_numpy(value)


def unwrap(value: object, *, source: str) -> object:
    """The array inside a single-entry dict (``{"feature": x}``); anything else unchanged."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        # Keys come from the file: a crafted one can be deeply nested or huge, so show a short form.
        keys = sorted(k[:60] if isinstance(k, str) else safepickle.short_repr(k) for k in itertools.islice(value, 5))
        raise DataError(f"{source}: holds a dict with keys {keys}; expected one array per clip.")
    return next(iter(value.values()))


def frame_array(value: object, *, source: str) -> np.ndarray:
    """Validate one clip's features and return them as a ``(T, D)`` array of their own real dtype.

    A 1-D vector is one clip-level frame (T = 1); a dict holding a single array (``{"feature":
    x}``, as some extraction scripts save) is that array. Zero frames raise
    :class:`EmptyFeatures`, which callers treat as a missing clip. Anything non-numeric, of
    width 0, of rank > 2 or holding NaN/Inf is a :class:`DataError` naming ``source``. The dtype is kept so that
    what the cast to float32 rounds can be judged (:func:`float32_rounds`).
    """
    try:
        array = to_numpy(unwrap(value, source=source))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: {exc}; expected a numeric array.") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{source}: holds {type(value).__name__} of dtype {array.dtype}, not a numeric array.")
    if np.iscomplexobj(array):  # float32 would silently drop the imaginary part (a .npy may hold complex values)
        raise DataError(f"{source}: holds complex values (dtype {array.dtype}); save real features (e.g. magnitudes).")
    if array.ndim == 1:
        array = array[None, :]
    elif array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # a batch of one, as HF models emit
    if array.ndim != 2:
        raise DataError(f"{source}: has shape {array.shape}; expected (frames, features) or (features,).")
    if array.shape[1] == 0:
        raise DataError(f"{source}: is empty (shape {array.shape}).")
    if array.shape[0] == 0:
        raise EmptyFeatures(f"{source}: holds no frames (shape {array.shape}).")
    if not np.isfinite(array).all():
        raise DataError(non_finite_sentence(source, ~np.isfinite(array)))
    return array


def float32_rounds(dtype: np.dtype) -> bool:
    """Whether the cast to float32 may round values of ``dtype`` (float64, int32 and int64 above 2^24 ...): whether
    what it does to a modality's columns must be judged (see :mod:`emimic.data.store`)."""
    return not np.can_cast(dtype, np.float32)


def single_precision(frames: np.ndarray, *, source: str) -> np.ndarray:
    """Validated ``(T, D)`` frames (:func:`frame_array`) as the contiguous float32 array emimic computes in; values
    beyond float32's range are a :class:`DataError` naming ``source``."""
    with np.errstate(over="ignore"):  # an overflow is reported below, as one sentence
        single = frames.astype(np.float32, copy=False)
    if single is not frames and not np.isfinite(single).all():  # float64 values past float32's 3.4e38
        raise DataError(f"{source}: holds values up to {float(np.abs(frames).max()):.3g}, beyond the float32 range"
                        " emimic computes in; rescale them.")
    return np.ascontiguousarray(single)


def non_finite_sentence(source: str, bad: np.ndarray) -> str:
    """What a reader says of a clip whose ``(T, D)`` mask ``bad`` marks NaN/Inf values: how many, in how many frames
    and columns (a dropped frame fills a row, a broken feature a column) and where the first one is."""
    frame, column = (int(index[0]) for index in np.nonzero(bad))
    frames, columns = int(bad.any(1).sum()), int(bad.any(0).sum())
    return (f"{source}: holds {int(bad.sum())} NaN/Inf value(s) in {frames} of {bad.shape[0]} frame(s) and {columns}"
            f" of {bad.shape[1]} column(s) (the first at frame {frame}, column {column}, counting from 0); fix or"
            " extract it again, or delete it to mask the clip.")


def load_array(path: str | Path) -> np.ndarray:
    """Load one per-clip feature file as a validated float32 ``(T, D)`` array."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}).") from None
    return decode_array(data, path.suffix, source=str(path))


def read_transcript(path: Path) -> str:
    """A transcript file as text: UTF-8, a leading byte-order mark dropped; other bytes are a :class:`DataError`."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start});"
                        " save it as UTF-8.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}).") from None


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def write_failure(folder: Path) -> OSError | None:
    """Why a file cannot be written in ``folder`` (None: it can). Tried with a scratch file, not inferred from
    permission bits: ``os.access`` says yes to root on read-only mounts such as /sys."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc
    return None


def _probe_writable(folder: Path, *, target: Path) -> None:
    failure = write_failure(folder)
    if failure is not None:
        raise OutputPathError(
            f"{target}: cannot write in folder {folder} ({failure.strerror}); choose a writable location."
        )


def check_output_path(path: str | Path, *, folder: bool = False, create_parents: bool = False) -> Path:
    """Refuse, before any work starts, an output path that cannot be written, naming the path as given.

    ``folder`` says the output is a folder (a run folder, a corpus, a store) rather than a file.
    Missing parent folders are an error unless ``create_parents`` (emimic creates them later), in
    which case the nearest existing ancestor must be a writable folder.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: is a file, not a folder; choose a folder path.")
    if not folder and path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give the path of a file to write.")
    parent = path if folder else path.parent
    existing = _nearest_existing(parent.absolute())
    if existing != parent.absolute() and not create_parents:
        raise OutputPathError(f"{path}: folder {parent} does not exist; create it first or choose another path.")
    if not existing.is_dir():
        raise OutputPathError(f"{path}: {existing} is a file, not a folder; choose another path.")
    _probe_writable(existing, target=path)
    return path


def current_umask() -> int:
    """The process umask, read from ``/proc`` where possible: setting it to read it races with other threads."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(*, directory: bool = False) -> int:
    """The mode ``open()``/``mkdir()`` would give a new file or folder under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    Missing parent folders are created. The result gets the mode a plain ``open(path, "w")`` would give
    it: that of the file it replaces, else ``0666`` less the umask (``mkstemp`` alone would leave ``0600``,
    unreadable to a lab's group). A path that cannot be written is an :class:`OutputPathError` naming
    ``path``, never the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputPathError(f"{path}: cannot be written ({exc.strerror}); choose a writable location.") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = default_mode()
        os.chmod(tmp, mode)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputPathError(f"{path}: cannot be written ({exc.strerror}); choose another path.") from None
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files and folders (``.<name>.*.tmp``) that a killed writer left in ``folder``."""
    leftovers = sorted(folder.glob(f".*{TEMP_SUFFIX}")) if folder.is_dir() else []
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Atomically write a float32 array as ``.npy`` (or pickle, when ``path`` ends in ``.pkl``)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        if path.suffix == ".pkl":
            pickle.dump(array, handle, protocol=4)
        else:
            np.save(handle, array, allow_pickle=False)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a UTF-8 text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
