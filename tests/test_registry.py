"""The one Registry class: torch-free names, lazy implementations, did-you-mean errors, fast `--help`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from emimic.cli.registry import COMMANDS, main
from emimic.errors import ConfigError
from emimic.registry import ENCODERS, EXTRACTORS, FUSIONS, LOSS_TERMS

BUILT_INS = {"encoder": ENCODERS, "fusion": FUSIONS, "loss term": LOSS_TERMS, "extractor": EXTRACTORS}

# Runs in a fresh interpreter: every `--help` and a config validation, then reports the heavy
# modules that got imported along the way.
_PROBE = """
import json, sys
from emimic.cli.registry import COMMANDS, main
loaded = {}
def heavy():
    return sorted(m for m in ("torch", "lightning", "pandas", "numpy") if m in sys.modules)
COMMANDS.load()  # the names, not yet the commands' modules' heavy imports
# Heavy modules stay imported, so each entry counts what the steps up to it imported: `simulate --help`
# comes right after `--help` (which imports nothing heavy) to be judged on its own.
others = [name for name in COMMANDS.names() if name != "simulate"]
for argv in (["--help"], ["simulate", "--help"], *([name, "--help"] for name in others)):
    try:
        main(argv)
    except SystemExit:
        pass
    loaded[" ".join(argv)] = heavy()
from emimic.config import load_config
load_config(overrides={"model.fusion": "concat", "model.encoder.name": "gru", "loss.terms": {"ccc": 1.0}})
loaded["load_config"] = heavy()
print(json.dumps(loaded))
"""


@pytest.fixture(scope="module")
def heavy_imports() -> dict[str, list[str]]:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_and_config_validation_import_no_torch(heavy_imports: dict[str, list[str]]) -> None:
    assert heavy_imports["--help"] == []  # nor numpy or pandas: `emimic --help` is instant
    assert heavy_imports["simulate --help"] == []  # its flags come from plain data, not from the generator
    for step, modules in heavy_imports.items():
        assert "torch" not in modules and "lightning" not in modules, step


@pytest.mark.parametrize("kind", sorted(BUILT_INS))
def test_declared_names_match_the_registered_implementations(kind: str) -> None:
    registry = BUILT_INS[kind]
    registry.load()
    assert registry.undeclared() == [], f"declare these {kind} names in emimic/registry.py"
    for name in registry.names():
        assert registry[name] is not None  # every declared name has an implementation


def test_unknown_names_get_a_did_you_mean_in_every_registry() -> None:
    for registry, typo, meant in (
        (FUSIONS, "concta", "concat"),
        (ENCODERS, "Transfomer", "transformer"),
        (LOSS_TERMS, "mse_", "mse"),
        (EXTRACTORS, "text-emb", "text_emb"),
        (COMMANDS, "trian", "train"),
    ):
        with pytest.raises(ConfigError, match=rf"unknown {registry.kind} {typo!r} \(did you mean {meant!r}\?\)"):
            registry.check(typo)


def test_a_mistyped_command_is_one_sentence_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian", "--data", "x"]) == 2
    assert "unknown command 'trian' (did you mean 'train'?)" in capsys.readouterr().err


def test_lookup_is_case_insensitive_and_follows_aliases() -> None:
    assert EXTRACTORS.check(" FaceMesh ") == "face" and "ASR" in EXTRACTORS
    assert FUSIONS.check("CONCAT") == "concat"


def test_a_plugin_name_is_found_after_loading_the_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "widget_names.py").write_text(
        "from emimic.registry import Registry\nWIDGETS = Registry('widget', modules=('widget_impl',))\n"
    )
    (tmp_path / "widget_impl.py").write_text("from widget_names import WIDGETS\nWIDGETS.register('plug')(7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    widgets = importlib.import_module("widget_names").WIDGETS
    assert widgets.names() == []  # nothing declared, nothing imported yet
    assert widgets.check("Plug") == "plug" and widgets["plug"] == 7
    with pytest.raises(ValueError, match="duplicate widget 'plug'"):
        widgets.register("plug")(8)
