"""Command registry and entry point of the ``emimic`` CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from emimic import installed_version
from emimic.cli.arguments import OneLineParser
from emimic.errors import EmimicError, EmimicWarning, emimic_warnings_to
from emimic.progress import drawn_console
from emimic.registry import Registry

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], Handler]

# Modules whose import registers commands, in the order they appear in `emimic --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "emimic.cli.data",
    "emimic.cli.extract",
    "emimic.cli.train",
    "emimic.cli.infer",
    "emimic.cli.crossval",
    "emimic.cli.ablate",
    "emimic.cli.sweep",
    "emimic.cli.report",
)

DEBUG_HELP = "on an error, show the full traceback instead of one sentence"

console = Console(stderr=True)
# Tables printed to a pipe or a log file are not squeezed into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)


class VersionAction(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser.exit(message=f"emimic {installed_version()}\n")


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    example: str
    configure: Configure


COMMANDS: Registry[Command] = Registry("command", modules=COMMAND_MODULES)


def command(name: str, summary: str, example: str) -> Callable[[Configure], Configure]:
    """Register a command: the decorated function adds its arguments and returns its handler."""
    register = COMMANDS.register(name)

    def decorate(configure: Configure) -> Configure:
        register(Command(name, summary, example, configure))
        return configure

    return decorate


def build_parser(only: Collection[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser of every command, with the arguments of the commands in ``only`` (default: all).

    :func:`main` configures just the command it runs: ``emimic CMD --help`` then pays for no
    other command's imports, and ``emimic --help`` for none.
    """
    COMMANDS.load()
    parser = OneLineParser(
        prog="emimic",
        description="Emotional Mimicry Intensity estimation: simulate, validate, pack, extract, train, evaluate.",
        epilog="Example: emimic demo --out runs/demo    (see docs/ for every command)",
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for cmd in COMMANDS.values():
        child = sub.add_parser(
            cmd.name,
            help=cmd.summary.replace("%", "%%"),  # argparse %-formats help strings ("95%" would crash)
            description=cmd.summary,
            epilog=f"Example:\n  {cmd.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Also accepted after the command name; SUPPRESS keeps the global flag's value when it is absent here.
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        if only is None or cmd.name in only:
            handlers[cmd.name] = cmd.configure(child)
    return parser, handlers


def one_sentence(exc: Exception) -> str:
    """The message the CLI prints for ``exc``: an :class:`EmimicError`'s own sentence, else a one-line summary.

    Bad input that slips past emimic's own checks usually surfaces as an ``OSError`` naming a path;
    anything else is most likely a bug, so the sentence asks for the ``--debug`` traceback.
    """
    if isinstance(exc, EmimicError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}; check this path (rerun with --debug for the traceback)."
    detail = " ".join(str(exc).split()) or "no details"
    return f"unexpected {type(exc).__name__} ({detail}); rerun with --debug for the traceback and report it."


def print_warning(warning: EmimicWarning) -> None:
    """An :class:`EmimicWarning` as one ``warning:`` line on stderr (see :func:`~emimic.errors.emimic_warnings_to`),
    above the progress bar drawn now (a damaged clip's, sent back by extract's workers)."""
    (drawn_console() or console).print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False, soft_wrap=True)


def once_each(show: Callable[[EmimicWarning], None]) -> Callable[[EmimicWarning], None]:
    """``show`` for each distinct warning once: a command of many runs (an ablation's cells and seeds, a sweep's
    trials, warnings sent back by workers) raises the same one per run, which says nothing new after the first."""
    shown: set[tuple[type, str]] = set()

    def show_new(warning: EmimicWarning) -> None:
        key = (type(warning), str(warning))
        if key not in shown:
            shown.add(key)
            show(warning)

    return show_new


def selected_command(argv: list[str]) -> list[str]:
    """The command ``argv`` names (none for ``emimic --help``); a mistyped one raises with a did-you-mean."""
    COMMANDS.load()
    first = command_word(argv)
    return [] if first is None else [COMMANDS.check(first)]


def command_word(argv: list[str]) -> str | None:
    """The word of ``argv`` that names its command, as typed (none for ``emimic --help``)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except KeyboardInterrupt as exc:
        # An Interrupted from resumable work carries one sentence: what was kept, how to resume. Any other Ctrl-C
        # (start-up's imports take seconds) names the command, as a bare 'interrupted' did not.
        command = " ".join(["emimic", *filter(None, [command_word(argv)])])
        said = str(exc) or f"{command} stopped before it finished; run the same command again."
        console.print(f"[yellow]interrupted:[/] {escape(said)}", highlight=False, soft_wrap=True)
        return 130


def _run(argv: list[str]) -> int:
    try:
        only = selected_command(argv)
    except EmimicError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    parser, handlers = build_parser(only)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with emimic_warnings_to(once_each(print_warning)):
            return handlers[args.command](args)
    except Exception as exc:
        if args.debug:
            raise
        # soft_wrap: the sentence stays on one line however narrow the terminal is.
        console.print(f"[bold red]error:[/] {escape(one_sentence(exc))}", highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
