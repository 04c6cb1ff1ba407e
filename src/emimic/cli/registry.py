"""Command registry and entry point of the ``emimic`` CLI."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from emimic import __version__
from emimic.cli.arguments import OneLineParser
from emimic.errors import EmimicError

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], Handler]

# Modules whose import registers commands, in the order they appear in `emimic --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "emimic.cli.data",
    "emimic.cli.extract",
    "emimic.cli.train",
    "emimic.cli.crossval",
    "emimic.cli.report",
)

DEBUG_HELP = "on an error, show the full traceback instead of one sentence"

console = Console(stderr=True)
# Tables printed to a pipe or a log file are not squeezed into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    example: str
    configure: Configure


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, example: str) -> Callable[[Configure], Configure]:
    """Register a command: the decorated function adds its arguments and returns its handler."""

    def decorate(configure: Configure) -> Configure:
        if name in COMMANDS:
            raise ValueError(f"duplicate command {name!r}")
        COMMANDS[name] = Command(name, summary, example, configure)
        return configure

    return decorate


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    parser = OneLineParser(
        prog="emimic",
        description="Emotional Mimicry Intensity estimation: simulate, validate, pack, extract, train, evaluate.",
        epilog="Example: emimic demo --out runs/demo    (see docs/ for every command)",
    )
    parser.add_argument("--version", action="version", version=f"emimic {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for cmd in COMMANDS.values():
        child = sub.add_parser(
            cmd.name,
            help=cmd.summary,
            description=cmd.summary,
            epilog=f"Example:\n  {cmd.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Also accepted after the command name; SUPPRESS keeps the global flag's value when it is absent here.
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
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


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as exc:
        # An Interrupted from resumable work carries one sentence: what was kept, how to resume.
        console.print(f"[yellow]interrupted[/]{': ' + escape(str(exc)) if str(exc) else ''}", highlight=False,
                      soft_wrap=True)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        # soft_wrap: the sentence stays on one line however narrow the terminal is.
        console.print(f"[bold red]error:[/] {escape(one_sentence(exc))}", highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
