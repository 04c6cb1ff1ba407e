"""The lexical VAD of the transcripts (`lexicon_vad`) serves as the observed VAD prior (docs/method.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emimic.data.simulate import SimulationSettings, simulate

TRANSCRIPTS_ONLY = SimulationSettings(clips=60, seed=0, face_dim=8, audio_dim=8, text_dim=8, face_fps=4.0,
                                      audio_fps=10.0, transcripts_only=True)


@pytest.fixture(scope="module")
def lexicon_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus with transcripts only, and the `lexicon` extractor's outputs (lexicon, lexicon_vad)."""
    from emimic.features import extract

    root = tmp_path_factory.mktemp("lexicon") / "corpus"
    simulate(root, TRANSCRIPTS_ONLY, progress=False)
    extract(root, ["lexicon"], progress=False)
    return root


def test_the_lexical_vad_feeds_the_observed_prior_with_its_columns_matched_by_name(lexicon_root: Path,
                                                                                    tmp_path: Path) -> None:
    from emimic.training.inference import load_run
    from emimic.training.run import train

    train(lexicon_root, tmp_path / "run", seed=0, max_epochs=2, progress=False,
          overrides={"model.vad.observed": "lexicon_vad"})
    spec = load_run(tmp_path / "run").spec
    assert spec.vad_modality == "wav2vec2" and spec.observed_vad == "lexicon_vad"
    assert spec.observed_columns == (0, 1, 2)  # the extractor writes valence, arousal, dominance in that order
