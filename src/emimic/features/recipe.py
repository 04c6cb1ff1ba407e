"""The ``_extractor.json`` sidecar beside each output folder: the recipe its features were made with.

It records the extractor, its parameters (plus the frame sampling of video extractors), the
versions of the libraries that ran and the output's feature names. A later extraction into the
same folder with other parameters is refused, so one folder never mixes two recipes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from emimic.errors import ConfigError
from emimic.features.base import Extractor
from emimic.features.runner import ExtractSpec
from emimic.io import atomic_path

SIDECAR = "_extractor.json"


def sidecar_params(extractor: Extractor, spec: ExtractSpec) -> dict[str, Any]:
    params = dict(extractor.params)
    if "video" in extractor.needs:
        params.update(fps=spec.fps, max_side=spec.max_side)
    return params


def params_digest(extractor: Extractor, spec: ExtractSpec) -> str:
    return hashlib.sha256(json.dumps(sidecar_params(extractor, spec), sort_keys=True).encode()).hexdigest()[:12]


def check_sidecars(root: Path, extractors: list[Extractor], spec: ExtractSpec, overwrite: bool) -> None:
    """Refuse to add clips to a folder extracted with other parameters (unless ``overwrite``)."""
    for extractor in extractors:
        for output in extractor.outputs():
            path = root / output.name / SIDECAR
            if overwrite or not path.is_file():
                continue
            previous = json.loads(path.read_text(encoding="utf-8"))
            current = sidecar_params(extractor, spec)
            if previous.get("extractor") == extractor.name and previous.get("params") != current:
                raise ConfigError(
                    f"{output.name}/ was extracted with {previous.get('params')}, not {current};"
                    " pass --overwrite to re-extract every clip, or write to another dataset root."
                )


def write_sidecars(
    root: Path, extractors: list[Extractor], spec: ExtractSpec, columns: dict[str, list[str]], *, missing_only=False
) -> None:
    """Write each output folder's sidecar; ``columns`` are feature names seen this run (else the old ones kept)."""
    for extractor in extractors:
        for output in extractor.outputs():
            path = root / output.name / SIDECAR
            if missing_only and path.is_file():
                continue
            previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            record = {
                **extractor.describe(),
                "params": sidecar_params(extractor, spec),
                "output": output.name,
                "level": output.level,
                "description": output.description,
                "feature_names": columns.get(output.name, previous.get("feature_names")),
            }
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
