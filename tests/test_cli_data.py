import pickle

import numpy as np
import pytest

from emimic.cli.registry import COMMANDS, build_parser, main


def test_every_command_has_help_with_an_example(capsys) -> None:
    build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "Example:" in capsys.readouterr().out, name


def test_validate_exit_status(make_root, capsys) -> None:
    root = make_root()
    assert main(["validate", str(root), "--quiet"]) == 0
    assert "ready to train" in capsys.readouterr().out
    (root / "vit" / "00003.pkl").write_bytes(b"junk")
    assert main(["validate", str(root), "--quiet"]) == 1
    assert "00003.pkl" in capsys.readouterr().out


def test_validate_prints_whole_median_lengths_as_integers(make_root, capsys) -> None:
    """A median of frame counts printed as 7.0000; one between two counts keeps its half."""
    root = make_root()
    for path in (root / "vit").glob("*.pkl"):
        path.write_bytes(pickle.dumps(np.ones((7, 8), np.float32)))
    wav2vec2 = sorted((root / "wav2vec2").glob("*.pkl"))
    assert len(wav2vec2) % 2 == 0  # so that 4 and 5 frames, alternating, have a median of 4.5
    for k, path in enumerate(wav2vec2):
        path.write_bytes(pickle.dumps(np.ones((4 + k % 2, 12), np.float32)))
    assert main(["validate", str(root), "--quiet"]) == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in capsys.readouterr().out.splitlines()]
    assert {row[0]: row[5] for row in rows if row and row[0] in ("vit", "wav2vec2")} == {"vit": "7", "wav2vec2": "4.5"}


def test_pack_then_noop(make_root, capsys) -> None:
    root = make_root()
    assert main(["pack", str(root), "--quiet", "--dtype", "float16"]) == 0
    assert "packed" in capsys.readouterr().out
    assert main(["pack", str(root), "--quiet", "--dtype", "float16"]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_user_errors_are_one_line_and_exit_1(tmp_path, capsys) -> None:
    assert main(["pack", str(tmp_path / "missing"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "not a folder" in err and "Traceback" not in err
