import re
from pathlib import Path

import numpy as np
import pytest

from emimic.errors import DataError
from emimic.labels import EMOTIONS, clip_stem, read_split, write_split

HEADER = "Filename," + ",".join(EMOTIONS)


def _csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "train_split.csv"
    path.write_text(header + "\n" + body + "\n")
    return path


def test_ids_written_as_float_or_zero_padded_parse_to_integers(tmp_path: Path) -> None:
    labels = read_split(_csv(tmp_path, "10.0,0,0,0,0,0,1\n00011,.5,.5,.5,.5,.5,.5"))
    assert list(labels.index) == [10, 11]
    assert clip_stem(10) == "00010"


def test_round_trip(tmp_path: Path) -> None:
    labels = read_split(_csv(tmp_path, "3,0.1,0.2,0.3,0.4,0.5,0.6"))
    write_split(labels, tmp_path / "copy.csv")
    again = read_split(tmp_path / "copy.csv")
    np.testing.assert_allclose(again.to_numpy(), labels.to_numpy())
    assert (tmp_path / "copy.csv").read_text().startswith(HEADER + "\n3,")


def test_test_split_without_labels(tmp_path: Path) -> None:
    labels = read_split(_csv(tmp_path, "5\n6", header="Filename"), require_labels=False)
    assert labels.shape == (2, 6) and labels.isna().all().all()


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        ("1,0,0,0,0,0,1.5", HEADER, "Joy.*1.5.*in \\[0, 1\\]"),
        ("1,0,0,0,0,0,\n", HEADER, "Joy.*nan"),
        ("1,0,0,0,0,0,abc", HEADER, "'Joy' row 2 holds 'abc'"),
        ("1,0,0,0,0,0,0\n1,0,0,0,0,0,0", HEADER, "duplicate Filename id"),
        ("x1,0,0,0,0,0,0", HEADER, "Filename 'x1' is not an integer"),
        ("1.5,0,0,0,0,0,0", HEADER, "not a non-negative integer"),
        ("1,0,0,0,0,0,0", HEADER.replace("Joy", "Happiness"), "unknown column"),
        ("1,0,0,0,0,0", HEADER.replace(",Joy", ""), "missing label column"),
        ("1,0,0,0,0,0,0", HEADER.replace("Filename", "id"), "no 'Filename' column"),
    ],
)
def test_bad_csvs_name_the_file_and_value(tmp_path: Path, body: str, header: str, message: str) -> None:
    with pytest.raises(DataError, match=r"train_split\.csv") as info:
        read_split(_csv(tmp_path, body, header))
    assert re.search(message, str(info.value)), str(info.value)


def test_byte_order_mark_from_spreadsheet_exports(tmp_path: Path) -> None:
    path = tmp_path / "valid_split.csv"
    path.write_bytes(("\ufeff" + HEADER + "\n7,0,0,0,0,0,0.5\n").encode("utf-8"))
    assert read_split(path).loc[7, "Joy"] == 0.5
