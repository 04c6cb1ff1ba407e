"""The ``_extractor.json`` sidecar beside each output folder: the recipe its features were made with.

It records the extractor, the options it was built with, its resulting parameters (plus the frame
sampling of video extractors), the extraction seed, a SHA-256 of its local model directory
(``model_sha256``, None for model-free extractors), the versions of the libraries that ran, the
output's feature names and, for an extractor that reads transcripts, the recipe of those
transcripts (``transcript``: the ``text/`` sidecar, None when the dataset shipped them). A later
extraction into the same folder with other parameters is refused, so one folder never mixes two
recipes; the feature store and the runs trained on it carry the recipe, so ``emimic infer`` can
extract new videos exactly the same way.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from emimic.data.layout import FEATURE_SIDECAR as SIDECAR
from emimic.data.layout import TRANSCRIPT_DIR, read_recipe
from emimic.errors import ConfigError, DataError
from emimic.features.base import Extractor
from emimic.features.media import DECODER_CHANGES, DECODER_VERSION
from emimic.features.runner import ExtractSpec
from emimic.io import atomic_path


def sidecar_params(extractor: Extractor, spec: ExtractSpec) -> dict[str, Any]:
    params = dict(extractor.params)
    if extractor.needs & {"audio", "video"}:
        params["decoder"] = DECODER_VERSION
    if "video" in extractor.needs:
        params.update(fps=spec.fps, max_side=spec.max_side)
    return params


def decoder_change(previous: dict[str, Any], current: dict[str, Any], *, older: str, newer: str) -> str | None:
    """What to say when two recipes differ only in the media decoder's version: features of an older emimic (what
    it did differently, then the remedy ``older``) or of a newer one, which this one cannot match (then ``newer``)."""
    def rest(params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k != "decoder"}

    before = previous.get("decoder", 1)
    if "decoder" not in current or before == current["decoder"] or rest(previous) != rest(current):
        return None
    now = current["decoder"]
    if before > now:
        return f"was extracted by a newer emimic (decoder {before}; this one is decoder {now}); {newer}"
    changes = "; ".join(DECODER_CHANGES[version] for version in range(before + 1, now + 1))
    return f"was extracted by an older emimic (decoder {before}: {changes}; this one is decoder {now}); {older}"


def params_digest(extractor: Extractor, spec: ExtractSpec) -> str:
    return hashlib.sha256(json.dumps(sidecar_params(extractor, spec), sort_keys=True).encode()).hexdigest()[:12]


def model_digest(folder: Path) -> str:
    """SHA-256 over the relative names and contents of every file under ``folder`` (a model directory)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    signature = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest(str(folder), signature)


@functools.lru_cache(maxsize=16)
def _digest(folder: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    # Keyed by every file's size and mtime, so a model is read once per process, not at every sidecar write.
    digest = hashlib.sha256()
    for name, _, _ in signature:
        digest.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def extractor_model_digest(extractor: Extractor) -> str | None:
    location = extractor.model_location()
    return model_digest(location) if location is not None else None


def check_sidecars(root: Path, extractors: list[Extractor], spec: ExtractSpec, overwrite: bool) -> None:
    """Refuse to add clips to a folder extracted with other parameters (unless ``overwrite``), or to one emimic did
    not extract at all: its files would be taken for this extractor's (their clips skipped) and the sidecar would
    then claim the whole folder, which is the recipe ``emimic infer`` repeats. ``overwrite`` would not help there:
    a clip this extractor masks keeps its old file."""
    for extractor in extractors:
        for output in extractor.outputs():
            path = root / output.name / SIDECAR
            if not path.is_file():
                _refuse_foreign(root / output.name, extractor.name)
                continue
            if overwrite:
                continue
            previous = json.loads(path.read_text(encoding="utf-8"))
            current = sidecar_params(extractor, spec)
            if previous.get("extractor") == extractor.name and previous.get("params") != current:
                if change := decoder_change(
                    previous.get("params") or {}, current,
                    older="pass --overwrite to re-extract every clip, or write to another dataset root",
                    newer="upgrade emimic (pip install -U emimic) to add to it, or write to another dataset root",
                ):
                    raise ConfigError(f"{output.name}/ {change}.")
                raise ConfigError(
                    f"{output.name}/ was extracted with {previous.get('params')}, not {current};"
                    " pass --overwrite to re-extract every clip, or write to another dataset root."
                )


def _refuse_foreign(folder: Path, extractor: str) -> None:
    """Refuse the output folder ``folder`` when it holds files but no sidecar: emimic did not extract them."""
    if not folder.is_dir():
        return
    held = sum(1 for p in folder.iterdir() if not p.name.startswith((".", "_")))
    if held:
        kept = ("" if folder.name == TRANSCRIPT_DIR else
                " (a renamed feature folder is read as a modality of its own)")
        raise DataError(f"{folder}/ holds {held} entries that emimic did not extract (it has no {SIDECAR});"
                        f" {extractor} would mix its own with them; move or rename that folder first{kept}, or extract"
                        " into another dataset root.")


def write_sidecars(
    root: Path, extractors: list[Extractor], spec: ExtractSpec, columns: dict[str, list[str]], *, missing_only=False
) -> None:
    """Write each output folder's sidecar; ``columns`` are feature names seen this run (else the old ones kept)."""
    options = {name: json.loads(text) for name, text in spec.options}
    for extractor in extractors:
        model_sha256 = extractor_model_digest(extractor)
        # Read per extractor: `whisper` runs before `text_emb`, so its transcript recipe is on disk by then.
        transcript = read_recipe(root / TRANSCRIPT_DIR) if "text" in extractor.needs else None
        for output in extractor.outputs():
            path = root / output.name / SIDECAR
            if missing_only and path.is_file():
                continue
            previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            record = {
                **extractor.describe(),
                "options": options.get(extractor.name, {}),
                "params": sidecar_params(extractor, spec),
                "seed": spec.seed,
                "model_sha256": model_sha256,
                "transcript": transcript,
                "output": output.name,
                "level": output.level,
                "description": output.description,
                "feature_names": columns.get(output.name, previous.get("feature_names")),
            }
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
