"""``python -m emimic``: the command line (also what DDP's launcher re-runs in each added process)."""

from emimic.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
