"""Property-based tests (hypothesis) of the array loader, the split-CSV reader and the submission validator."""

from __future__ import annotations

import io
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emimic.errors import DataError
from emimic.io import ARRAY_SUFFIXES, decode_array, load_array, save_array
from emimic.labels import EMOTIONS, ID_COLUMN, read_split, write_split
from emimic.submission import to_submission, validate_submission

# Modest budgets: the whole module runs in seconds. tmp_path is shared across examples on purpose.
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SECONDS = 5.0

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]


@st.composite
def feature_arrays(draw: st.DrawFn) -> np.ndarray:
    """(T, D) or (D,) arrays of every dtype a dataset may ship, with values float32 can hold."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.sampled_from([(draw(st.integers(1, 12)),), (draw(st.integers(1, 12)), draw(st.integers(1, 9)))]))
    if dtype.kind == "f":
        elements = st.floats(-1e4, 1e4, allow_nan=False, width=8 * min(dtype.itemsize, 4))
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -(2**24)), min(info.max, 2**24))  # exact in float32
    return draw(arrays(dtype, shape, elements=elements))


def write_bytes(array: np.ndarray, how: str) -> tuple[bytes, str]:
    """``array`` as the bytes of a file and its suffix, written the way ``how`` names."""
    buffer = io.BytesIO()
    if how == "pickled tensor":
        return pickle.dumps(torch.from_numpy(array.copy())), ".pkl"
    if how.startswith("pickle"):
        return pickle.dumps(array, protocol=int(how[-1])), ".pkl"
    if how == "npy":
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), ".npy"
    torch.save(torch.from_numpy(array.copy()), buffer, _use_new_zipfile_serialization=how == "torch.save zip")
    return buffer.getvalue(), ".pt"


WRITERS = [f"pickle {p}" for p in range(pickle.HIGHEST_PROTOCOL + 1)] + [
    "pickled tensor",
    "npy",
    "torch.save zip",
    "torch.save legacy",
]


@PROPERTY
@given(array=feature_arrays(), how=st.sampled_from(WRITERS))
def test_valid_arrays_round_trip_through_every_format(array: np.ndarray, how: str) -> None:
    data, suffix = write_bytes(array, how)
    loaded = decode_array(data, suffix, source=f"00001{suffix}")
    expected = np.atleast_2d(array).astype(np.float32)
    assert loaded.dtype == np.float32 and loaded.shape == expected.shape
    np.testing.assert_array_equal(loaded, expected)


@PROPERTY
@given(array=feature_arrays(), suffix=st.sampled_from([".pkl", ".npy"]))
def test_save_array_round_trips(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    save_array(tmp_path / f"00001{suffix}", array)
    np.testing.assert_array_equal(load_array(tmp_path / f"00001{suffix}"), np.atleast_2d(array).astype(np.float32))


def assert_array_or_data_error(data: bytes, suffix: str) -> None:
    """Decoding anything gives a finite float32 (T, D) array or a DataError, never another exception or a hang."""
    start = time.perf_counter()
    try:
        frames = decode_array(data, suffix, source=f"00001{suffix}")
    except DataError as exc:
        assert str(exc).startswith(f"00001{suffix}: ") and "\n" not in str(exc)
    else:
        assert frames.dtype == np.float32 and frames.ndim == 2 and np.isfinite(frames).all()
    assert time.perf_counter() - start < SECONDS


@PROPERTY
@given(data=st.binary(max_size=600), suffix=st.sampled_from(ARRAY_SUFFIXES))
def test_random_bytes_raise_only_data_error(data: bytes, suffix: str) -> None:
    assert_array_or_data_error(data, suffix)


SEEDS = [
    write_bytes(np.arange(6, dtype=np.float32).reshape(2, 3), how)
    for how in ["pickle 0", "pickle 2", "pickle 4", "pickle 5", "pickled tensor", "npy", "torch.save legacy"]
] + [(pickle.dumps({3: np.ones((2, 2)), "feature": torch.ones(2)}), ".pkl")]


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid file with bytes overwritten, inserted, deleted or cut off."""
    data, suffix = draw(st.sampled_from(SEEDS))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["overwrite", "insert", "delete", "truncate"]))
        if edit == "overwrite" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 9))]
        else:
            del data[at:]
    return bytes(data), suffix


@settings(PROPERTY, max_examples=150)
@given(file=mutated_files())
def test_mutated_files_raise_only_data_error(file: tuple[bytes, str]) -> None:
    assert_array_or_data_error(*file)


@st.composite
def label_frames(draw: st.DrawFn) -> pd.DataFrame:
    ids = draw(st.lists(st.integers(0, 10**7), min_size=1, max_size=30, unique=True))
    values = draw(arrays(np.float64, (len(ids), len(EMOTIONS)), elements=st.floats(0.0, 1.0)))
    return pd.DataFrame(values, index=pd.Index(ids, name=ID_COLUMN), columns=list(EMOTIONS))


ID_SPELLINGS = {"plain": str, "float": lambda i: f"{i}.0", "zero-padded": lambda i: str(i).zfill(5)}


@settings(PROPERTY, max_examples=30)  # each example writes and reads two CSVs
@given(labels=label_frames(), spelling=st.sampled_from(list(ID_SPELLINGS)))
def test_split_csv_round_trips(tmp_path: Path, labels: pd.DataFrame, spelling: str) -> None:
    path = tmp_path / "train_split.csv"
    write_split(labels, path)
    again = read_split(path)
    assert again.index.tolist() == sorted(labels.index)
    np.testing.assert_allclose(again.to_numpy(), labels.sort_index().to_numpy(), atol=1e-6)
    # Published files spell ids as 10, 10.0 or 00010: all read as the same ids.
    spelled = labels.reset_index()
    spelled[ID_COLUMN] = spelled[ID_COLUMN].map(ID_SPELLINGS[spelling])
    spelled.to_csv(path, index=False)
    assert read_split(path).index.tolist() == labels.index.tolist()


invalid_ids = st.one_of(
    st.integers(max_value=-1).map(str),
    st.integers(-(10**6), 10**6).map(lambda i: f"{i}.5"),
    st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=8),  # letters never form an id
)


@PROPERTY
@given(labels=label_frames(), bad=invalid_ids, row=st.integers(0, 29))
def test_split_csv_rejects_invalid_ids(tmp_path: Path, labels: pd.DataFrame, bad: str, row: int) -> None:
    frame = labels.reset_index().astype({ID_COLUMN: object})
    frame.loc[row % len(frame), ID_COLUMN] = bad
    frame.to_csv(tmp_path / "train_split.csv", index=False)
    with pytest.raises(DataError, match=r"train_split\.csv"):
        read_split(tmp_path / "train_split.csv")


@st.composite
def predictions(draw: st.DrawFn) -> tuple[list[int], np.ndarray]:
    ids = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=30, unique=True))
    values = st.floats(allow_nan=False)  # anything, infinities included: to_submission clips
    return ids, draw(arrays(np.float64, (len(ids), len(EMOTIONS)), elements=values))


@PROPERTY
@given(made=predictions())
def test_submission_validator_accepts_what_to_submission_makes(made: tuple[list[int], np.ndarray]) -> None:
    ids, preds = made
    validate_submission(to_submission(ids, preds), expected_ids=ids)


DEFECTS = ["above 1", "below 0", "NaN", "unsorted", "duplicate"]  # each must make validate_submission raise


@PROPERTY
@given(made=predictions(), defect=st.sampled_from(DEFECTS), data=st.data())
def test_submission_validator_rejects_defects(made: tuple[list[int], np.ndarray], defect: str, data) -> None:
    ids, preds = made
    frame = to_submission(ids, preds)
    row = data.draw(st.integers(0, len(frame) - 1))
    column = data.draw(st.sampled_from(EMOTIONS))
    if defect in ("unsorted", "duplicate"):
        if len(frame) < 2:
            return
        other = data.draw(st.integers(0, len(frame) - 1).filter(lambda r: r != row))
        if defect == "unsorted":
            order = list(range(len(frame)))
            order[row], order[other] = other, row  # ids are distinct and ascending: a swap unsorts them
            frame = frame.iloc[order].reset_index(drop=True)
        else:
            frame.loc[row, "Filename"] = frame.loc[other, "Filename"]
    elif defect == "NaN":
        frame.loc[row, column] = np.nan
    elif defect == "above 1":
        frame.loc[row, column] = data.draw(st.floats(1.0, 1e9, exclude_min=True))
    else:
        frame.loc[row, column] = data.draw(st.floats(-1e9, 0.0, exclude_max=True))
    with pytest.raises(DataError, match="submission"):
        validate_submission(frame)
