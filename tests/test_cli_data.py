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
