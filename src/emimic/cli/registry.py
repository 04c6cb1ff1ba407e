"""Command registry and entry point of the ``emimic`` CLI."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from emimic import __version__
from emimic.errors import EmimicError

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], Handler]

# Modules whose import registers commands, in the order they appear in `emimic --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "emimic.cli.data",
    "emimic.cli.extract",
    "emimic.cli.train",
)

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
    parser = argparse.ArgumentParser(
        prog="emimic",
        description="Emotional Mimicry Intensity estimation: simulate, validate, pack, extract, train, evaluate.",
        epilog="Example: emimic demo --out runs/demo    (see docs/ for every command)",
    )
    parser.add_argument("--version", action="version", version=f"emimic {__version__}")
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
        handlers[cmd.name] = cmd.configure(child)
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except EmimicError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt as exc:  # an emimic.errors.Interrupted says what was kept and how to resume
        console.print(f"[yellow]interrupted:[/] {exc}" if str(exc) else "[yellow]interrupted[/]", highlight=False,
                      soft_wrap=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
