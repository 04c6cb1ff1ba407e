import io
import os
import pickle
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from emimic.data.layout import read_mapping
from emimic.errors import DataError, EmptyFeatures
from emimic.features.runner import save_images
from emimic.io import atomic_path, current_umask, load_array, remove_leftovers, save_array, write_text


@pytest.mark.parametrize("suffix", [".pkl", ".npy", ".pt"])
def test_round_trip_of_every_supported_format(tmp_path: Path, suffix: str) -> None:
    frames = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    path = tmp_path / f"00001{suffix}"
    if suffix == ".pt":
        torch.save(torch.from_numpy(frames), path)
    else:
        save_array(path, frames)
    np.testing.assert_array_equal(load_array(path), frames)


def test_pickled_torch_tensor_and_float64_and_vector(tmp_path: Path) -> None:
    torch.save(torch.ones(3, 4, dtype=torch.float64), tmp_path / "a.pkl")  # torch.save under a .pkl name
    with open(tmp_path / "b.pkl", "wb") as handle:
        pickle.dump(torch.arange(6.0).reshape(2, 3), handle)  # pickled tensor, not torch.save
    with open(tmp_path / "c.pkl", "wb") as handle:
        pickle.dump(np.arange(4, dtype=np.float64), handle)
    assert load_array(tmp_path / "a.pkl").shape == (3, 4)
    np.testing.assert_array_equal(load_array(tmp_path / "b.pkl"), np.arange(6.0).reshape(2, 3))
    vector = load_array(tmp_path / "c.pkl")
    assert vector.shape == (1, 4) and vector.dtype == np.float32


LEGITIMATE_ARRAYS = {
    "float32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "float16 vector": np.arange(4, dtype=np.float16),
    "float64 Fortran order": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big-endian float32": np.arange(6, dtype=">f4").reshape(3, 2),
    "int16": np.arange(6, dtype=np.int16).reshape(3, 2),
    "bool": np.eye(2, dtype=bool),
}
LEGITIMATE_TENSORS = {
    "float32": torch.arange(6.0).reshape(2, 3),
    "float16": torch.ones(3, 2, dtype=torch.float16),
    "bfloat16": torch.ones(2, 2, dtype=torch.bfloat16),
    "int64": torch.arange(4),
    "strided view": torch.arange(12.0).reshape(3, 4)[:, ::2],
}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_arrays_and_tensors_load_at_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "00001.pkl"
    for name, value in {**LEGITIMATE_ARRAYS, **{f"tensor {k}": v for k, v in LEGITIMATE_TENSORS.items()}}.items():
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        expected = np.atleast_2d(np.asarray(value.float() if isinstance(value, torch.Tensor) else value))
        np.testing.assert_array_equal(load_array(path), expected.astype(np.float32), err_msg=name)
    path.write_bytes(pickle.dumps(np.zeros((0, 3), np.float32), protocol=protocol))
    with pytest.raises(EmptyFeatures):
        load_array(path)  # zero frames: masked, not refused
    ids = {np.int64(3): np.ones((2, 4)), 5: torch.ones(1, 4)}  # ids from a numpy column are numpy scalars
    path.write_bytes(pickle.dumps(ids, protocol=protocol))
    assert {k: v.shape for k, v in read_mapping(path).items()} == {3: (2, 4), 5: (1, 4)}


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("suffix", [".pt", ".pkl"])
def test_torch_save_files_load_under_either_name(tmp_path: Path, zip_format: bool, suffix: str) -> None:
    path = tmp_path / f"00001{suffix}"
    torch.save({"feature": torch.ones(3, 2)}, path, _use_new_zipfile_serialization=zip_format)
    np.testing.assert_array_equal(load_array(path), np.ones((3, 2), np.float32))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/emimic-pwned",))


def test_crafted_pickle_never_runs_code(tmp_path: Path) -> None:
    path = tmp_path / "00001.pkl"
    path.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(DataError, match=r"00001\.pkl.*refusing to load posix\.system"):
        load_array(path)
    assert not Path("/tmp/emimic-pwned").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([[1.0, np.nan]]), "NaN/Inf"),
        (np.zeros((0, 3)), "holds no frames"),
        (np.zeros((3, 0)), "empty"),
        (np.zeros((2, 3, 4)), "shape"),
        (np.array(["a", "b"]), "refusing to load dtype 'U1'"),
        ({"a": np.ones(3), "b": np.ones(3)}, "holds a dict with keys ['a', 'b']"),
        ({"a": "text"}, "holds a value of type str, not a numpy array or torch tensor; expected a numeric array"),
        ([[1.0, 2.0]], "holds a value of type list, not a numpy array"),
    ],
)
def test_invalid_contents_name_the_file(tmp_path: Path, value: object, message: str) -> None:
    path = tmp_path / "00042.pkl"
    path.write_bytes(pickle.dumps(value))
    with pytest.raises(DataError, match=r"00042\.pkl") as info:
        load_array(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("bad", "counts", "first"),
    [
        ((slice(None), 3), (6, 6, 1), (0, 3)),
        ((slice(2, 4), slice(None)), (10, 2, 5), (2, 0)),
        ((4, 1), (1, 1, 1), (4, 1)),
    ],
    ids=["a column", "frames", "one value"],
)
def test_non_finite_values_are_located(tmp_path: Path, bad: tuple, counts: tuple, first: tuple) -> None:
    """A broken feature (a column), dropped frames (rows) and a single glitch are told apart, and the first named."""
    frames = np.ones((6, 5), np.float32)
    frames[bad] = np.nan
    path = tmp_path / "00042.pkl"
    path.write_bytes(pickle.dumps(frames))
    with pytest.raises(DataError) as info:
        load_array(path)
    values, rows, columns = counts
    assert str(info.value) == (
        f"{path}: holds {values} NaN/Inf value(s) in {rows} of 6 frame(s) and {columns} of 5 column(s) (the first at"
        f" frame {first[0]}, column {first[1]}, counting from 0); fix or extract it again, or delete it to mask the"
        " clip."
    )


def test_complex_values_are_refused_not_cut_to_their_real_part(tmp_path: Path) -> None:
    path = tmp_path / "00042.npy"
    np.save(path, np.ones((2, 3), np.complex64) * 1j)
    with pytest.raises(DataError) as info:
        load_array(path)
    assert str(info.value) == f"{path}: holds complex values (dtype complex64); save real features (e.g. magnitudes)."


def _saved_bytes(suffix: str, protocol: int, frames: np.ndarray) -> bytes:
    """``frames`` as a ``.pkl`` (pickle ``protocol``), ``.npy`` or ``.pt`` file (legacy format for protocol 2)."""
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, frames)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(frames), buffer, _use_new_zipfile_serialization=protocol != 2)
    else:
        pickle.dump({"feature": frames}, buffer, protocol=protocol)
    return buffer.getvalue()


@pytest.mark.parametrize(("suffix", "protocol"), [(".pkl", 2), (".pkl", 5), (".npy", 0), (".pt", 2), (".pt", 5)])
@pytest.mark.parametrize("kept", [0.02, 0.5, 0.99])
def test_a_truncated_file_is_called_truncated(tmp_path: Path, suffix: str, protocol: int, kept: float) -> None:
    data = _saved_bytes(suffix, protocol, np.ones((50, 8), dtype=np.float32))
    path = tmp_path / f"00007{suffix}"
    path.write_bytes(data[: max(1, int(len(data) * kept))])
    with pytest.raises(DataError, match=rf"^{path}: is truncated \(.*\); extract or copy it again\.$"):
        load_array(path)


def test_bytes_that_are_no_pickle_are_not_called_truncated(tmp_path: Path) -> None:
    path = tmp_path / "00007.pkl"
    path.write_bytes(b"garbage")  # 'g' reads as an opcode whose argument never ends
    with pytest.raises(DataError, match=r"00007\.pkl: cannot be read \(ValueError"):
        load_array(path)


def test_atomic_path_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.fixture
def group_umask() -> Iterator[int]:
    """A lab's umask: group may read, others nothing."""
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_follow_the_umask(tmp_path: Path, group_umask: int) -> None:
    assert current_umask() == group_umask
    write_text(tmp_path / "scores.json", "{}")
    save_array(tmp_path / "00001.npy", np.ones((2, 3), np.float32))
    save_images(tmp_path / "face_images" / "00001", {0: np.zeros((4, 4, 3), np.uint8)})
    assert mode(tmp_path / "scores.json") == mode(tmp_path / "00001.npy") == 0o640
    assert mode(tmp_path / "face_images" / "00001") == 0o750
    assert mode(tmp_path / "face_images" / "00001" / "0.jpg") == 0o640
    (tmp_path / "scores.json").chmod(0o600)  # a file the user restricted keeps its mode when replaced
    write_text(tmp_path / "scores.json", "{}")
    assert mode(tmp_path / "scores.json") == 0o600


def test_leftovers_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".00001.npy.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".00002.xyz.tmp").mkdir()
    (tmp_path / "00003.npy").write_bytes(b"kept")
    assert len(remove_leftovers(tmp_path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["00003.npy"]


@pytest.mark.parametrize(("key", "named"), [("clip_3", "the key 'clip_3'"), (-2, "the key -2"), (3.5, "the key 3.5"),
                                            ((1, 2), "a tuple key"), (b"003", "a bytes key"), (True, "the key True"),
                                            (float("nan"), "the key nan"), (np.float32("inf"), "the key inf"),
                                            (10**18, f"the key {10**18}"), (np.float64(1e18), "the key 1e+18")])
def test_a_bad_key_of_a_one_pickle_modality_is_named_with_what_keys_must_be(tmp_path: Path, key: object,
                                                                            named: str) -> None:
    container = tmp_path / "vit.pkl"
    container.write_bytes(pickle.dumps({4: np.ones(3), key: np.ones(3)}))
    expected = rf"^{container}: holds {re.escape(named)}, which is not a clip id; the keys of a one-pickle modality"
    with pytest.raises(DataError, match=expected + r" must be the clips' ids in ASCII digits"):
        read_mapping(container)


def test_a_numeric_key_is_judged_by_its_value_not_as_str_writes_it(tmp_path: Path) -> None:
    container = tmp_path / "vit.pkl"  # str(): '1e+03', '1e+06', '1e+17'
    keys = [np.float16(1000.0), np.float32(1e6), 1e17, np.int64(7), np.uint8(9), 10**18 - 1]
    container.write_bytes(pickle.dumps({key: np.ones(3) for key in keys}))
    assert sorted(read_mapping(container)) == [7, 9, 1000, 10**6, 10**17, 10**18 - 1]


def test_two_keys_of_one_clip_in_a_one_pickle_modality_are_refused(tmp_path: Path) -> None:
    container = tmp_path / "vit.pkl"
    container.write_bytes(pickle.dumps({3: np.ones(3), "00003": np.zeros(3)}))
    with pytest.raises(DataError, match=rf"^{container}: holds two keys for clip id 3; keep one array per clip\.$"):
        read_mapping(container)
