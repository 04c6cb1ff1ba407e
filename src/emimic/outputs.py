"""Where emimic may write what a user asks for (a run folder, a submission, a scores file).

Two rules, the same for the CLI and the library:

- nothing is written inside a dataset root, except the feature store and extracted modalities
  (which their own commands put there on purpose): a dataset is input, and a file written into it
  can be mistaken for data (``predict --out DATA/train_split.csv`` would replace the labels);
- an existing file is never replaced unless the user passes ``--overwrite`` (``overwrite=True``):
  a submission or a scores file from an earlier run is kept unless the user says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emimic.errors import ConfigError, OutputConflict


def refuse_inside_dataset(path: str | Path, root: str | Path) -> None:
    """Raise :class:`OutputConflict` if ``path`` lies inside the dataset root ``root``."""
    if Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise OutputConflict(
            f"{path} is inside the dataset root {root}, where emimic writes only feature stores and extracted"
            " features; choose a path outside it."
        )


def check_output_file(path: str | Path, *, dataset_root: str | Path, overwrite: bool = False) -> None:
    """Refuse an output file inside ``dataset_root``, or one that exists already unless ``overwrite``."""
    refuse_inside_dataset(path, dataset_root)
    if Path(path).exists() and not overwrite:
        raise OutputConflict(f"{path} already exists; pass --overwrite to replace it, or choose another path.")


def check_settings(out: Path, record: str, settings: Mapping[str, Any], *, kind: str) -> None:
    """Refuse to add to the folder ``out`` (a CV or sweep folder) with other ``settings`` than its file ``record``
    holds, and to fill a non-empty folder that has no such record."""
    path = out / record
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in settings if stored.get(k) != settings[k])
        if changed:
            raise ConfigError(f"{out} was made with other {', '.join(changed)} (see {path}); rerun it with the same"
                              f" options, or choose a new --out.")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not an emimic {kind} folder; choose a new --out.")
