import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from emimic.data.layout import read_mapping
from emimic.errors import DataError
from emimic.features.ledger import LEDGER_FIELDS, read_ledger
from emimic.labels import EMOTIONS, clip_stem, is_clip_stem, read_clip_id, read_split, write_split

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
        ("1,0,0,0,0,0,\n", HEADER, r"'Joy' for Filename 1 is empty; labels must be finite and in \[0, 1\]\.$"),
        ("1,0,0,0,0,0,inf", HEADER, r"'Joy' for Filename 1 is inf; labels must be finite"),
        ("1\t0\t0\t0\t0\t0\t0", HEADER.replace(",", "\t"),
         r"its columns are separated by tabs; save it comma-separated, as the challenge ships\.$"),
        ("1,0,0,0,0,0,abc", HEADER, "'Joy' row 2 holds 'abc'"),
        ("1,0,0,0,0,0,0\n1,0,0,0,0,0,0", HEADER, "column 'Filename' lists clip id 1 in rows 2, 3; keep one row per"),
        ("2,0,0,0,0,0,0\n1,0,0,0,0,0,0\n02,0,0,0,0,0,0\n1,0,0,0,0,0,0\n2.0,0,0,0,0,0,0", HEADER,
         r"lists clip id 2 in rows 2, 4, 6 \(1 more id\(s\) are listed twice too\); keep one row per clip\.$"),
        ("x1,0,0,0,0,0,0", HEADER, "'Filename' row 2 holds 'x1', which is not a clip id"),
        # rows are the lines of the file: blank lines and rows of empty cells count, and are skipped
        ("1,0,0,0,0,0,0\n\n,,,,,,\n1,0,0,0,0,0,0", HEADER, "lists clip id 1 in rows 2, 5; keep one row per"),
        ("1,0,0,0,0,0,0\n\nx2,0,0,0,0,0,0", HEADER, "'Filename' row 4 holds 'x2'"),
        ("1,0,0,0,0,0,0\n\n2,0,0,0,0,0,abc", HEADER, "'Joy' row 4 holds 'abc'"),
        ("1.5,0,0,0,0,0,0", HEADER, "'Filename' row 2 holds '1.5', which is not a clip id"),
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


# What float() / pd.to_numeric read as a number but no challenge file writes as an id, then out-of-range ids.
NOT_CLIP_IDS = ["1e1", "1_0", "+3", "-1", "-0", "-0.0", "0x1", "1.5", ".0", "\uff11", "\u0663", "1\u00b2", "1 0", "",
                "9" * 19, str(10**18)]
CLIP_IDS = {"10": 10, "00010": 10, "10.0": 10, "10.000": 10, "10.": 10, " 10 ": 10, "\t7\t": 7, "10\xa0": 10,
            "\u3000 10\u2003": 10, "0": 0, "000": 0, "9" * 18: 10**18 - 1, "0" * 18 + "10": 10,
            "00" + "9" * 18: 10**18 - 1}


@pytest.mark.parametrize("text", NOT_CLIP_IDS)
def test_one_rule_refuses_what_float_reads_but_no_challenge_file_writes(tmp_path: Path, text: str) -> None:
    assert read_clip_id(text) is None and not is_clip_stem(text)
    with pytest.raises(DataError, match=rf"train_split\.csv: column 'Filename' row 3 holds {re.escape(repr(text))},"
                       r" which is not a clip id; write each id in ASCII digits \(10, 00010, or 10\.0 as spreadsheets"
                       r" save it\)\.$"):
        read_split(_csv(tmp_path, f"1,0,0,0,0,0,0\n{text},0,0,0,0,0,0"))
    container = tmp_path / "vit.pkl"
    container.write_bytes(pickle.dumps({4: np.ones(3), text: np.ones(3)}))
    with pytest.raises(DataError, match="which is not a clip id; the keys of a one-pickle modality must be the clips'"
                       r" ids in ASCII digits"):
        read_mapping(container)
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(",".join(LEDGER_FIELDS) + f"\n{text},face,done,,0.1,key\n5,face,done,,0.1,key\n")
    assert list(read_ledger(ledger)) == [(5, "face")]


@pytest.mark.parametrize(("text", "clip_id"), CLIP_IDS.items())
def test_one_rule_keeps_the_ids_spreadsheets_write(tmp_path: Path, text: str, clip_id: int) -> None:
    assert read_clip_id(text) == clip_id
    assert list(read_split(_csv(tmp_path, f"1,0,0,0,0,0,0\n{text},0,0,0,0,0,0")).index) == [1, clip_id]
    container = tmp_path / "vit.pkl"
    container.write_bytes(pickle.dumps({text: np.ones(3), clip_id: np.zeros(3)}))
    with pytest.raises(DataError, match=f"holds two keys for clip id {clip_id};"):  # both keys name the clip
        read_mapping(container)
    assert is_clip_stem(text) == text.isdigit()  # a file name holds the digits alone


def test_a_float_key_as_pandas_writes_an_id_names_its_clip(tmp_path: Path) -> None:
    container = tmp_path / "vit.pkl"
    container.write_bytes(pickle.dumps({10.0: np.ones(3), np.float32(11): np.ones(3)}))
    assert sorted(read_mapping(container)) == [10, 11]
