"""The docs agree with the code: links and anchors resolve, the registries' names are the ones documented, the
example of every command's ``--help`` is a command line its parser accepts, and every option the docs quote is one
emimic has."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from emimic.cli.registry import COMMANDS, build_parser
from emimic.config import list_presets
from emimic.data.simulate import SimulationSettings
from emimic.registry import ENCODERS, EXTRACTORS, FUSIONS, LOSS_TERMS, Registry
from test_docs_examples import PAGES, REPO, joined_lines

DOCS = REPO / "docs"
HTML_ANCHOR = re.compile(r'<a (?:id|name)="([^"]+)"')
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
# A note after an example (`   (other --folds ...: add --overwrite)`, `  # in a second terminal`) is not typed.
OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
EXAMPLE_NOTE = re.compile(r"\s{2,}[(#].*$")


def tokens(page: Path) -> list[Token]:
    return MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))


def heading_slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces made ``-``."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a link may name on ``page``: its headings' slugs (a repeated one numbered) and HTML ids."""
    found = set(HTML_ANCHOR.findall(page.read_text(encoding="utf-8")))
    seen: dict[str, int] = {}
    for opening, inline in pairwise(tokens(page)):
        if opening.type == "heading_open":
            text = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
            slug = heading_slug(text)
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def local_links(page: Path) -> Iterator[str]:
    for token in tokens(page):
        for child in token.children or []:
            target = child.attrs.get("href") or child.attrs.get("src")
            if isinstance(target, str) and not EXTERNAL.match(target):
                yield target


def test_heading_slugs_follow_github() -> None:
    assert heading_slug("VAD latent prior (emimic/models/vad_prior.py)") == "vad-latent-prior-emimicmodelsvad_priorpy"
    assert heading_slug("Options beyond the paper: clip weights, EMA") == "options-beyond-the-paper-clip-weights-ema"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_reaches_a_file_and_an_anchor_that_exist(page: Path) -> None:
    broken = []
    for link in local_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
            broken.append(link)
    assert broken == [], f"{page.name}: links to nothing"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(REPO / link.partition("#")[0]).resolve() for link in local_links(REPO / "README.md")}
    assert sorted(page.name for page in DOCS.glob("*.md") if page.resolve() not in linked) == []


def first_column(page: Path, header: str) -> list[str]:
    """The names in backticks in the first column of the table of ``page`` whose first header cell is ``header``
    (an ``(alias `x`)`` left out)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"| {header} |")), None)
    assert start is not None, f"{page.name}: no table whose header begins with '| {header} |'"
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`([\w.-]+)`", line.split("|")[1].split("(alias")[0])
    return names


# Each table lists the whole registry: a name added, renamed or removed in the code must be added, renamed or
# removed there too.
TABLES: dict[str, tuple[Path, str, list[str]]] = {
    "fusions": (DOCS / "method.md", "fusion", FUSIONS.names()),
    "extractors": (DOCS / "extract.md", "name", EXTRACTORS.names()),
    "presets": (DOCS / "method.md", "preset", list(list_presets())),
}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_a_table_of_the_docs_lists_every_registered_name_and_no_other(kind: str) -> None:
    page, header, names = TABLES[kind]
    assert sorted(first_column(page, header)) == sorted(names), f"{page.name}: the table of {kind}"


def test_the_preset_table_shows_each_presets_own_description() -> None:
    page = (DOCS / "method.md").read_text(encoding="utf-8")
    missing = [name for name, text in list_presets().items() if f"| `{name}` | {text} |" not in page]
    assert missing == [], "method.md: the description of these presets differs from their YAML"


def test_the_simulator_page_lists_every_setting_with_its_default_and_description() -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", (DOCS / "simulator.md").read_text(encoding="utf-8"),
                      flags=re.MULTILINE)
    documented = {name: (default.strip(), meaning.strip().replace("`", "")) for name, default, meaning in rows}
    expected = {name: (json.dumps(field.default), (field.description or "").replace("`", ""))
                for name, field in SimulationSettings.model_fields.items()}
    assert documented == expected


@pytest.mark.parametrize(("registry", "page"), [(ENCODERS, "method.md"), (LOSS_TERMS, "method.md")],
                         ids=lambda value: getattr(value, "kind", value))
def test_every_registered_name_is_documented(registry: Registry, page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert [name for name in registry.names() if f"`{name}`" not in text] == []


def test_the_method_diagram_names_every_encoder() -> None:
    page = (DOCS / "method.md").read_text(encoding="utf-8")
    diagram = re.search(r"^modality m ──normalise──▶ encoder \(([^)]*)\)", page, flags=re.M)
    assert diagram and sorted(diagram[1].split(" | ")) == ENCODERS.names()


def test_every_command_is_used_in_the_docs() -> None:
    text = " ".join(page.read_text(encoding="utf-8") for page in PAGES)
    assert [name for name in COMMANDS.names() if not re.search(rf"\bemimic {name}\b", text)] == []


def command_lines(page: Path) -> Iterator[str]:
    """The ``emimic CMD ...`` command lines of ``page``: in code spans (table cells too), shell and text blocks."""
    for token in tokens(page):
        texts = [child.content for child in token.children or [] if child.type == "code_inline"]
        if token.type == "fence" and token.info.strip() in ("bash", "text", ""):
            texts = joined_lines(token.content)
        for text in texts:
            yield from re.findall(r"\bemimic (?:--debug )?[a-z]+\b[^#`]*", text)


def test_command_lines_join_continuation_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```bash\nemimic evaluate --run r \\\n    --labelz x.csv   # a note\n```\n", encoding="utf-8")
    assert [OPTION.findall(line) for line in command_lines(page)] == [["--run", "--labelz"]]


def command_options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """The option strings of each command of the ``emimic`` ``parser``."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {name: set(subparser._option_string_actions) for name, subparser in subparsers.items()}


def test_every_option_the_docs_give_a_command_is_one_of_its_options() -> None:
    options_of = command_options(build_parser()[0])
    unknown = []
    for page in PAGES:
        for line in command_lines(page):
            name, _, rest = line.removeprefix("emimic ").removeprefix("--debug ").partition(" ")
            if name in options_of:
                unknown += [(page.name, name, option) for option in OPTION.findall(rest)
                            if option not in options_of[name]]
    assert unknown == []


# Programs besides emimic whose command lines a code span of the docs may quote (alone, or in an error message
# that tells the user to run one), with the options this file does not check.
OTHER_PROGRAMS = {
    "hf": "Hugging Face's CLI, downloading a model for --model-dir",
    "ray": "Ray's CLI, starting the cluster a --ray-address names",
    "optuna": "Optuna's CLI, deleting the study of a --storage",
    "srun": "SLURM's launcher of multi-node training",
    "chromium-headless-shell": "the browser a report test renders the HTML with",
}
# Such a command line runs to the end of the span, of its clause (;) or of the parenthesis around it, or up to an
# emimic command it launches (`srun ... emimic train --overwrite`), which is checked like any other.
OTHER_COMMAND = re.compile(rf"(?<![\w/.-])(?:{'|'.join(map(re.escape, OTHER_PROGRAMS))}) (?:(?!\bemimic )[^;)`])*")
BENCHMARK_SCRIPT = re.compile(r"\bbenchmarks/\w+\.py")


def test_another_programs_command_line_is_left_out_up_to_the_emimic_command_it_launches() -> None:
    assert OTHER_COMMAND.sub("", "chromium-headless-shell --dump-dom") == ""
    assert OTHER_COMMAND.sub("", "srun --kill-on-bad-exit=1 emimic train --bogus") == "emimic train --bogus"
    assert OTHER_COMMAND.sub("", "run it (optuna delete-study --study-name emimic-8c0b), or give another --storage") \
        == "run it (), or give another --storage"
    assert OTHER_COMMAND.sub("", "hf download m --local-dir d; then emimic extract --model-dir d") \
        == "; then emimic extract --model-dir d"
    assert OTHER_COMMAND.sub("", "emimic train --ray-address a (no ray-start --head)") == \
        "emimic train --ray-address a (no ray-start --head)"


def code_spans(page: Path) -> Iterator[str]:
    """The code spans of ``page`` in prose and tables."""
    for token in tokens(page):
        yield from (child.content for child in token.children or [] if child.type == "code_inline")


def script_options(script: str) -> set[str]:
    """The options of the benchmark ``script`` (``benchmarks/x.py``; none if there is no such file)."""
    path = REPO / script
    return set(re.findall(r'"(--[a-z][\w-]*)"', path.read_text(encoding="utf-8"))) if path.is_file() else set()


def benchmark_options(page: Path) -> set[str]:
    """The options of the benchmark scripts ``page`` names: prose about a measurement quotes them alone."""
    return set().union(*map(script_options, set(BENCHMARK_SCRIPT.findall(page.read_text(encoding="utf-8")))))


def test_every_option_a_code_span_of_the_docs_quotes_is_an_option_of_emimic() -> None:
    """An option quoted in prose or a table (pass `--valid-fraction`, `train --overwrite`, an error message) is one of
    the benchmark script the span names (``benchmarks/x.py``), else of the command it names (``emimic CMD``, or a
    command's name first), else of at least one command (or of a benchmark script the page names); a command line of
    another program (:data:`OTHER_PROGRAMS`) is left out up to the emimic command it launches."""
    parser, _ = build_parser()
    options_of = command_options(parser)
    any_command = set(parser._option_string_actions).union(*options_of.values())  # and emimic's own
    unknown = []
    for page in PAGES:
        benchmarks = benchmark_options(page)
        for quoted in code_spans(page):
            span = OTHER_COMMAND.sub("", quoted)
            first = next(iter(span.split()), "")
            named = re.search(r"\bemimic (?:--debug )?([a-z]+)\b", span)
            command = named[1] if named and named[1] in options_of else first if first in options_of else None
            scripts = BENCHMARK_SCRIPT.findall(span)
            allowed = set().union(*map(script_options, scripts)) if scripts else \
                options_of[command] if command else any_command | benchmarks
            unknown += [(page.name, span, option) for option in OPTION.findall(span) if option not in allowed]
    assert unknown == []


def test_every_benchmark_command_of_the_docs_names_a_script_and_options_it_has() -> None:
    """A measured figure names the command that measures it (``python benchmarks/x.py --seeds 0 1``)."""
    wrong = []
    for page in PAGES:
        for script, arguments in re.findall(r"python (benchmarks/\w+\.py)([^`)\n]*)", page.read_text(encoding="utf-8")):
            if not (REPO / script).is_file():
                wrong.append((page.name, script, "no such script"))
                continue
            source = (REPO / script).read_text(encoding="utf-8")
            wrong += [(page.name, script, option) for option in OPTION.findall(arguments)
                      if f'"{option}"' not in source]
    assert wrong == []


def help_examples() -> list[tuple[str, str]]:
    """(command, example line) for every line of every command's ``--help`` example, and ``emimic --help``'s."""
    parser, _ = build_parser(only=())
    examples = [("", (parser.epilog or "").removeprefix("Example:"))]
    examples += [(command.name, line) for command in COMMANDS.values() for line in command.example.splitlines()]
    return [(name, EXAMPLE_NOTE.sub("", line).strip()) for name, line in examples]


@pytest.mark.parametrize(("name", "example"), help_examples(), ids=lambda value: value or "emimic")
def test_every_help_example_is_a_command_line_its_parser_accepts(name: str, example: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # parsing checks output paths and may create their folders
    argv = shlex.split(example)
    assert argv[0] == "emimic" and (not name or argv[1] == name), example
    parser, _ = build_parser(only=[argv[1]])
    assert parser.parse_args(argv[1:]).command == argv[1]
