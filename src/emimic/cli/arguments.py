"""Argument types shared by the commands: each refuses a bad value with one sentence naming it.

argparse reports an ``ArgumentTypeError`` as ``emimic CMD: error: argument --seed: ...``, so a
range or path problem is caught before any work starts and nothing is half-written.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emimic.defaults import GROUP_COLUMNS, RUNNER_BACKENDS, SEED_MAX
from emimic.errors import OutputPathError

# The namespace attribute that holds, during a parse, how each option given so far was written (per dest).
_GIVEN = "_emimic_options_given"


class _GivenOnce(argparse.Action):
    """Refuses an option given twice, naming both values (both spellings of a switch): argparse would keep the last
    silently (``--data A ... --data B`` would train on B, ``--seeds 0 1 2 --seeds 3`` train seed 3 only). Options
    sharing a dest count as one (``--transcripts-only`` then ``--no-transcripts-only``). Mixed into every action of
    :class:`OneLineParser` but the ones meant to gather values (``append``, ``extend``). What was given is kept in
    the namespace being filled, so it works on any parser, for one parse; :class:`OneLineParser` drops it after."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string is not None:
            given: dict[str, str] = vars(namespace).setdefault(_GIVEN, {})
            shown = option_string if self.nargs == 0 else _shown(values)
            if self.dest in given:
                parser.error(f"argument {option_string}: given twice ({given[self.dest]}, then {shown}); give it once")
            given[self.dest] = shown
        super().__call__(parser, namespace, values, option_string)  # type: ignore[misc]


def _shown(values: Any) -> str:
    """An option's values as written on the command line: a list as its words."""
    return " ".join(map(str, values)) if isinstance(values, list) else str(values)


class StoreOnce(_GivenOnce, argparse._StoreAction):
    pass


class StoreConstOnce(_GivenOnce, argparse._StoreConstAction):
    pass


class StoreTrueOnce(_GivenOnce, argparse._StoreTrueAction):
    pass


class StoreFalseOnce(_GivenOnce, argparse._StoreFalseAction):
    pass


class BooleanOptionalOnce(_GivenOnce, argparse.BooleanOptionalAction):
    pass


# Each action argparse would let a second use overwrite, and the one refusing it instead (an action given as a class,
# ``action=argparse.BooleanOptionalAction``, is looked up by the class).
_ONCE_ACTIONS: dict[object, type[argparse.Action]] = {
    None: StoreOnce, "store": StoreOnce, "store_const": StoreConstOnce, "store_true": StoreTrueOnce,
    "store_false": StoreFalseOnce, argparse.BooleanOptionalAction: BooleanOptionalOnce,
}


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer.") from None


def seed_value(text: str) -> int:
    """A random seed numpy and torch both accept: an integer in [0, 2**32 - 1]."""
    value = _integer(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range; give a seed from 0 to {SEED_MAX}.")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, workers, clips)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; give an integer of at least 1.")
    return value


def fraction(text: str) -> float:
    """A share strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number.") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction; give a number between 0 and 1, e.g. 0.2.")
    return value


def output_file(text: str) -> Path:
    """A file emimic will write: its folder must exist and be writable, and it must not be a folder."""
    from emimic.io import check_output_path  # numpy: not for --help
    try:
        return check_output_path(text)
    except OutputPathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_folder(text: str) -> Path:
    """A folder emimic will create or fill (missing parents are created): it must be creatable and writable."""
    from emimic.io import check_output_path  # numpy: not for --help
    try:
        return check_output_path(text, folder=True, create_parents=True)
    except OutputPathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_valid_fraction_arg(parser: argparse.ArgumentParser) -> None:
    """``--valid-fraction``, shared by ``train``, ``validate``, ``ablate`` and ``sweep`` so all judge a corpus the
    same way."""
    parser.add_argument(
        "--valid-fraction", type=fraction, default=None, metavar="F",
        help="when the corpus has no valid_split.csv, hold out this share of train for validation, at least 2"
             " clips (e.g. 0.2); whole groups, as near the share as they allow, when train_split.csv has a"
             f" {' / '.join(GROUP_COLUMNS)} column",
    )


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line pointing to ``--help``, not the whole usage block, and whose
    options refuse to be given twice, but those meant to gather values (:class:`_GivenOnce`; its subcommands' parsers
    are of this class too, so every command refuses alike)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for action, once in _ONCE_ACTIONS.items():
            self.register("action", action, once)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        vars(parsed).pop(_GIVEN, None)  # the options given: a record of this parse, not an option
        self._refuse_shared_outputs(parsed)
        return parsed, rest

    def _refuse_shared_outputs(self, parsed: argparse.Namespace) -> None:
        """Refuse two outputs of this command that name one path (``--json x --predictions ./x``, or a symlink to
        it): the second write would replace the first, and the command would report both written."""
        seen: dict[Path, tuple[str, Path]] = {}
        for action in self._actions:
            value = getattr(parsed, action.dest, None) if action.type in (output_file, output_folder) else None
            if value is None:
                continue
            option = "/".join(action.option_strings)
            first_option, first_value = seen.setdefault(Path(value).resolve(), (option, value))
            if first_option != option:
                self.error(f"argument {option}: {value} is also the path of {first_option} {first_value}; give each"
                           " output its own path")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message.rstrip('.')}; see `{self.prog} --help`.\n")


def add_runner_args(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--jobs``, ``--backend`` and ``--ray-address``: where the independent trainings of ``cv`` and ``ablate`` run
    (see :mod:`emimic.training.jobs`)."""
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help=f"{what} trained at once: local processes, or the CPUs of a Ray started here (default: 1)")
    parser.add_argument("--backend", choices=RUNNER_BACKENDS, default="local",
                        help="local: processes on this machine (default); ray: one Ray task of 1 CPU per model")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="with --backend ray: join this cluster (HOST:PORT, ray://HOST:PORT or auto) instead of"
                        " starting a Ray here")
