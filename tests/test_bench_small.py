"""benchmarks/bench_small.py: its corpora are what it says (one acoustic modality, 75/20 % splits) and a row runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from emimic.data import open_dataset

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_small():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling ridge.py, as when run
        spec = importlib.util.spec_from_file_location("bench_small", BENCHMARKS / "bench_small.py")
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, "bench_small", module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


def test_a_variant_is_a_preset_with_dotted_overrides(bench_small) -> None:
    variant = bench_small.Variant.parse("bs32=paper+optim.batch_size=32+train.ema.warmup=none")
    assert (variant.label, variant.config) == ("bs32", "paper")
    assert variant.overrides == {"optim.batch_size": 32, "train.ema.warmup": "none"}
    assert bench_small.Variant.parse("mine=").config is None  # the default configuration


def test_the_acoustic_only_corpus_has_one_eGeMAPS_wide_modality_and_a_row_runs(bench_small, tmp_path: Path) -> None:
    variant = bench_small.Variant("default", None, {"train.max_epochs": 2})
    table = bench_small.bench("acoustic_only", [60], [0], [variant], tmp_path)
    dataset = open_dataset(tmp_path / "acoustic_only-60")
    assert dataset.modalities == ["wav2vec2"] and dataset.store(progress=False).dim("wav2vec2") == 88
    assert (len(dataset.split("train")), len(dataset.split("valid"))) == (45, 12)
    assert set(table[60]) == {"ridge", "oracle", "default"} and len(table[60]["default"]) == 1
