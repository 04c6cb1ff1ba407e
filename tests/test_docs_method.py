"""The examples of docs/method.md run as written (in one fresh interpreter: one of them registers a fusion)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).parents[1] / "docs" / "method.md"


def test_every_python_example_of_the_method_page_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) >= 4
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(2, 0, 1)" in done.stdout
    assert "trained: missing embedding True missing token True" in done.stdout  # attention reads absent branches
