"""benchmarks/mutations.py stays runnable: every mutation still finds, once, the code it breaks (a refactor that
moves that code must update the mutation, or the rule it guards goes unchecked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def test_every_mutation_still_finds_the_code_it_breaks() -> None:
    done = subprocess.run([sys.executable, "benchmarks/mutations.py", "--list"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.splitlines()
    assert len(listed) >= 25 and all(":" in line and "tests/" in line for line in listed)
