"""Start-up time of the command line: ``emimic --help`` and every ``emimic CMD --help``.

Each command runs in a fresh interpreter ``--repeat`` times; the median wall time is reported next
to the interpreter's own start (``python -c pass``), which no change to emimic can remove, and
whether torch / pandas / numpy got imported on the way. Goal: every line at most 0.3 s.

Run: ``python benchmarks/bench_startup.py [--repeat 5] [--src src]`` (``--src`` points at another
checkout's ``src`` to measure it the same way, e.g. before and after a change).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "pandas", "numpy")
_RUN = """
import sys
from emimic.cli.registry import main
try:
    main({argv!r})
except SystemExit:
    pass
print("HEAVY", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def timed(code: str, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    heavy = next((line.split(" ", 1)[1] for line in done.stderr.splitlines() if line.startswith("HEAVY ")), "?")
    return elapsed, heavy.strip() or "-"


def commands(env: dict[str, str]) -> list[str]:
    code = "from emimic.cli.registry import COMMANDS; COMMANDS.load(); print(' '.join(COMMANDS.names()))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--src", type=Path, default=Path(__file__).parents[1] / "src")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    rows = [("python -c pass", "pass")]
    rows += [("emimic --help", _RUN.format(argv=["--help"], heavy=HEAVY))]
    rows += [(f"emimic {c} --help", _RUN.format(argv=[c, "--help"], heavy=HEAVY)) for c in commands(env)]
    print(f"{'command':28s} {'median s':>9s}  imported")
    for label, code in rows:
        results = [timed(code, env) for _ in range(args.repeat)]
        median = statistics.median(seconds for seconds, _ in results)
        print(f"{label:28s} {median:9.3f}  {results[-1][1]}", flush=True)


if __name__ == "__main__":
    main()
