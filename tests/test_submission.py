import numpy as np
import pandas as pd
import pytest

from emimic.errors import DataError
from emimic.labels import EMOTIONS
from emimic.submission import COLUMNS, to_submission, validate_submission, write_submission


def frame(ids=(5, 1, 3)):
    preds = np.array([[0.2] * 6, [1.4] * 6, [-0.1] * 6])[: len(ids)]
    return to_submission(list(ids), preds)


def test_sorted_clipped_integer_ids_in_official_columns():
    f = frame()
    assert tuple(f.columns) == COLUMNS
    assert f["Filename"].tolist() == [1, 3, 5]
    assert f.loc[0, list(EMOTIONS)].tolist() == [1.0] * 6  # id 1 had 1.4
    assert f.loc[1, list(EMOTIONS)].tolist() == [0.0] * 6  # id 3 had -0.1
    validate_submission(f, expected_ids=[1, 3, 5])


def test_written_file_reads_back(tmp_path):
    path = write_submission(frame(), tmp_path / "sub" / "pred.csv", expected_ids=[1, 3, 5])
    back = pd.read_csv(path)
    assert tuple(back.columns) == COLUMNS and back["Filename"].dtype.kind == "i"
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("expected", "message"),
    [([1, 3, 5, 7], "lacks 1 clip.*7"), ([1, 3], "1 clip\\(s\\) not in the split: 5")],
)
def test_wrong_ids(expected, message):
    with pytest.raises(DataError, match=message):
        validate_submission(frame(), expected_ids=expected)


def test_nan_and_out_of_range_values_are_refused(tmp_path):
    f = frame()
    f.loc[1, "Joy"] = np.nan
    with pytest.raises(DataError, match="'Joy' for Filename 3 is nan"):
        write_submission(f, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    f.loc[1, "Joy"] = 1.5
    with pytest.raises(DataError, match="outside \\[0, 1\\]"):
        validate_submission(f)


def test_columns_order_duplicates_and_sorting():
    f = frame()
    with pytest.raises(DataError, match="columns"):
        validate_submission(f[list(reversed(COLUMNS))])
    with pytest.raises(DataError, match="duplicate"):
        validate_submission(pd.concat([f, f.iloc[:1]]).sort_values("Filename"))
    with pytest.raises(DataError, match="sorted"):
        validate_submission(f.iloc[::-1])
    with pytest.raises(DataError, match="integers"):
        validate_submission(f.astype({"Filename": float}))
