"""Every example in docs/ runs in a test.

Each ```python and ```bash block of docs/*.md and README.md is either run here or names, in an HTML comment
on the line before its fence, the test that runs it: ``<!-- executed by tests/test_x.py::test_name -->``. Here,
the blocks of one page run in order as one session in a fresh folder, as a user would type them: ``emimic``
lines in-process through :func:`emimic.cli.main`, other shell lines through bash, python blocks with ``exec``.
A shell line expected to fail says so in its comment (``# exit 1: ...``). A ```yaml block is a config example:
``<!-- file: NAME -->`` before it names the file it is saved as before the session starts, and the page's
examples must use that file (so a command of the page loads it). Other languages (output samples) are skipped.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from emimic.cli import main

REPO = Path(__file__).parents[1]
PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
EXAMPLE_LANGUAGES = ("python", "bash")
EXECUTED_BY = re.compile(r"<!-- executed by (?P<file>tests/[\w/]+\.py)::(?P<test>\w+) -->")
SAVED_AS = re.compile(r"<!-- file: (?P<name>[\w.-]+) -->")
EXPECTED_EXIT = re.compile(r"#.*\bexit (\d+)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, its code and the line right before its fence."""

    page: Path
    line: int
    language: str
    code: str
    note: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def executed_by(self) -> re.Match[str] | None:
        return EXECUTED_BY.fullmatch(self.note)


def code_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, indented ones (inside list items) included."""
    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "fence" and token.map is not None:
            start = token.map[0]
            note = lines[start - 1].strip() if start > 0 else ""
            blocks.append(Block(page, start + 1, token.info.strip().split(" ")[0], token.content, note))
    return blocks


def examples(page: Path) -> list[Block]:
    return [block for block in code_blocks(page) if block.language in EXAMPLE_LANGUAGES]


def joined_lines(code: str) -> list[str]:
    """The lines of a shell block, a line ending in ``\\`` joined to the next: one command per line."""
    return code.replace("\\\n", " ").splitlines()


def shell_commands(code: str) -> list[tuple[str, int]]:
    """The commands of a bash block, continuation lines joined, each with the exit status its comment expects."""
    commands = []
    for line in joined_lines(code):
        if line.strip() and not line.lstrip().startswith("#"):
            expected = EXPECTED_EXIT.search(line)
            commands.append((line, int(expected.group(1)) if expected else 0))
    return commands


def emimic_in_process(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # --help, and argparse's refusals, end by exiting
        return int(exit_.code or 0)


def run_shell_block(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    for line, expected in shell_commands(block.code):
        argv = shlex.split(line, comments=True)
        if argv[0] == "emimic":
            status = emimic_in_process(argv[1:])
            output = " ".join(" ".join(capsys.readouterr()).split())
        else:
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=False)
            status, output = done.returncode, done.stdout + done.stderr
        assert status == expected, f"{block.where}: `{line.strip()}` exited {status}, not {expected}: {output[-800:]}"


def run_python_block(block: Block) -> None:
    exec(compile(block.code, block.where, "exec"), {"__name__": "__main__"})


def save_config_files(page: Path) -> list[str]:
    """Write the page's ```yaml blocks under the names their notes give; every yaml block must name one,
    unless it names the test that runs it."""
    names = []
    for block in code_blocks(page):
        if block.language == "yaml" and block.executed_by is None:
            saved_as = SAVED_AS.fullmatch(block.note)
            assert saved_as, f"{block.where}: a yaml block is a config example; put <!-- file: NAME --> before it"
            Path(saved_as["name"]).write_text(block.code, encoding="utf-8")
            names.append(saved_as["name"])
    return names


def pages_with_sessions() -> list[Path]:
    return [page for page in PAGES if any(block.executed_by is None for block in examples(page))]


def test_shell_lines_join_continuations_and_read_the_exit_status_their_comment_expects() -> None:
    code = "# a comment\nemimic evaluate --run r \\\n    --split test   # exit 1: no labels\n\nrm x  # exit code 0\n"
    assert shell_commands(code) == [("emimic evaluate --run r      --split test   # exit 1: no labels", 1),
                                    ("rm x  # exit code 0", 0)]


# A python example that warns shows the reader a warning the page does not explain (the commands print theirs).
@pytest.mark.filterwarnings("error::emimic.errors.EmimicWarning")
@pytest.mark.parametrize("page", pages_with_sessions(), ids=lambda page: page.name)
def test_the_examples_of_the_page_run_in_order(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tests").symlink_to(REPO / "tests")  # the repository's test videos (tests/media) stand in for a user's
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # `python`: this one
    session = [block for block in examples(page) if block.executed_by is None]
    for name in save_config_files(page):
        assert any(name in block.code for block in session), f"{page.name}: no example of the page uses {name}"
    for block in session:
        if block.language == "bash":
            run_shell_block(block, capsys)
        else:
            run_python_block(block)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_a_misspelt_annotation_is_not_taken_for_an_example_to_run(page: Path) -> None:
    for block in code_blocks(page):
        if "executed by" in block.note:
            assert block.executed_by, f"{block.where}: write it as <!-- executed by tests/test_x.py::test_name -->"


def annotated_examples() -> list[Block]:
    return [block for page in PAGES for block in examples(page) if block.executed_by is not None]


@pytest.mark.parametrize("block", annotated_examples(), ids=lambda block: block.where)
def test_an_annotated_example_names_a_test_that_reads_its_page(block: Block) -> None:
    annotation = block.executed_by
    assert annotation is not None
    test_file = REPO / annotation["file"]
    assert test_file.is_file(), f"{block.where}: {annotation['file']} does not exist"
    source = test_file.read_text(encoding="utf-8")
    tests = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    assert annotation["test"] in tests, f"{block.where}: {annotation['file']} has no test {annotation['test']}"
    assert block.page.name in source, f"{block.where}: {annotation['file']} never mentions {block.page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_the_parser_sees_every_fence_of_the_page(page: Path) -> None:
    """A fence the markdown parser missed would be an example nobody runs; count the fences another way."""
    fences = re.findall(r"^ *```(\w*)", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    opening = [language for index, language in enumerate(fences) if index % 2 == 0]
    assert [block.language for block in code_blocks(page)] == opening


def test_readme_make_targets_run_the_demo_and_the_tests() -> None:
    """README.md's ``make demo`` / ``make test`` (a dry run: building the venv needs the network; ``-B``: every
    step is listed, also where the venv is already built)."""
    done = subprocess.run(["make", "-n", "-B", "-C", str(REPO), "demo", "test"], capture_output=True, text=True,
                          check=True)
    assert "emimic demo --out runs/demo\n" in done.stdout
    assert "pytest -q" in done.stdout and "pip install --quiet torch==2.13.0" in done.stdout
