"""The ``emimic`` command line: a thin layer that parses arguments and calls the library.

Each command lives in a small module of this package and registers itself with
:func:`emimic.cli.registry.command`; :func:`main` builds the parser from that registry, so the
list of commands, ``--help`` and the docs never drift apart.
"""

from emimic.cli.registry import main

__all__ = ["main"]
