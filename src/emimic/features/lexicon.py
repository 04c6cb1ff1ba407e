"""Lexical affect of a transcript from offline lexicons: sentiment, emotion categories and VAD.

Two clip-level outputs, both from the clip's transcript (``text/<id>.txt``), no model download:

- ``lexicon`` ``(14,)``: VADER sentiment (``vader_neg``, ``vader_neu``, ``vader_pos``,
  ``vader_compound``; the ``vaderSentiment`` package) and the share of the transcript's affect
  words in each NRC emotion category (``nrc_fear`` ... ``nrc_joy``; the lexicon inside ``nrclex``);
- ``lexicon_vad`` ``(3,)``: ``valence``, ``arousal``, ``dominance`` in [0, 1], in that order
  (the sidecar's ``feature_names`` records it). With ``vad_lexicon=PATH`` (a word/valence/
  arousal/dominance table such as the NRC VAD lexicon, which is licensed and not shipped) they are
  the mean ratings of the transcript's rated words. Without it, valence is VADER's compound score
  mapped to [0, 1], and arousal and dominance are *coarse*: the mean of emimic's prototype
  coordinates (:data:`CATEGORY_AROUSAL_DOMINANCE`, set from the circumplex quadrants, not measured
  ratings) over the NRC categories of the transcript's words. A transcript without rated words
  sits at the neutral 0.5.

An empty or missing transcript masks the clip (as for ``text_emb``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from emimic.errors import ConfigError
from emimic.features.base import ClipInput, Extractor, NoSignal, Output, Result, clip_frame, register_extractor

VAD_AXES: tuple[str, ...] = ("valence", "arousal", "dominance")
VADER_COLUMNS: tuple[str, ...] = ("neg", "neu", "pos", "compound")
NRC_CATEGORIES: tuple[str, ...] = (
    "fear", "anger", "anticipation", "trust", "surprise", "positive", "negative", "sadness", "disgust", "joy",
)
# (arousal, dominance) prototypes per NRC category on a [0, 1] scale: high-arousal categories
# (anger, fear, surprise) high, sadness low; fear and sadness submissive, anger and joy dominant.
CATEGORY_AROUSAL_DOMINANCE: dict[str, tuple[float, float]] = {
    "fear": (0.8, 0.2),
    "anger": (0.85, 0.65),
    "anticipation": (0.6, 0.55),
    "trust": (0.4, 0.65),
    "surprise": (0.85, 0.45),
    "positive": (0.5, 0.6),
    "negative": (0.5, 0.4),
    "sadness": (0.25, 0.2),
    "disgust": (0.6, 0.45),
    "joy": (0.7, 0.7),
}
NEUTRAL = 0.5
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes kept inside words: "that's")."""
    return _WORD.findall(text.lower())


def read_vad_lexicon(path: Path) -> dict[str, tuple[float, float, float]]:
    """A ``word<TAB>valence<TAB>arousal<TAB>dominance`` table (a header line is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"lexicon: vad_lexicon {path} cannot be read ({exc.strerror}).") from None
    table: dict[str, tuple[float, float, float]] = {}
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        try:
            table[fields[0].strip().lower()] = (float(fields[1]), float(fields[2]), float(fields[3]))
        except (IndexError, ValueError):
            continue  # the header, or a blank line
    if not table:
        raise ConfigError(
            f"lexicon: vad_lexicon {path} holds no word<TAB>valence<TAB>arousal<TAB>dominance lines;"
            " give the NRC VAD lexicon's tab-separated file."
        )
    return table


@register_extractor("lexicon")
class LexiconExtractor(Extractor):
    """VADER sentiment, NRC emotion-category shares (``lexicon``) and lexical valence/arousal/dominance
    (``lexicon_vad``) of the clip's transcript, from offline lexicons."""

    needs = frozenset({"text"})
    packages = ("vaderSentiment", "nrclex")
    remember_masked = False  # the transcript may be written later (by a `whisper` run)

    def __init__(self, *, model_dir: str | Path | None = None, vad_lexicon: str | Path | None = None) -> None:
        super().__init__(model_dir=model_dir)
        self.vad_lexicon = Path(vad_lexicon).expanduser() if vad_lexicon is not None else None

    def outputs(self) -> tuple[Output, ...]:
        source = f"mean ratings of {self.vad_lexicon.name}" if self.vad_lexicon else "VADER valence, NRC prototypes"
        return (
            Output("lexicon", "clip", "VADER sentiment and NRC emotion-category shares of the transcript"),
            Output("lexicon_vad", "clip", f"valence, arousal, dominance in [0, 1] ({source})"),
        )

    @property
    def params(self) -> dict[str, Any]:
        return {"vad_lexicon": str(self.vad_lexicon) if self.vad_lexicon else None}

    def check(self) -> None:
        if self.vad_lexicon is not None:
            read_vad_lexicon(self.vad_lexicon)

    def _load(self) -> None:
        from nrclex import NRCLex
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()
        self._nrc = NRCLex(lexicon_file=None)  # the lexicon bundled in the package
        self._ratings = read_vad_lexicon(self.vad_lexicon) if self.vad_lexicon else None

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        text = (clip.transcript or "").strip()
        if not text:
            raise NoSignal("empty transcript" if clip.transcript is not None else "no transcript")
        tokens = words(text)
        sentiment = self._vader.polarity_scores(text)
        self._nrc.load_token_list(tokens)
        shares = [float(self._nrc.affect_frequencies.get(c, 0.0)) for c in NRC_CATEGORIES]
        features = [float(sentiment[c]) for c in VADER_COLUMNS] + shares
        names = [f"vader_{c}" for c in VADER_COLUMNS] + [f"nrc_{c}" for c in NRC_CATEGORIES]
        return {
            "lexicon": clip_frame(np.asarray(features), clip.duration, names),
            "lexicon_vad": clip_frame(self._vad(tokens, sentiment["compound"]), clip.duration, list(VAD_AXES)),
        }

    def _vad(self, tokens: list[str], compound: float) -> np.ndarray:
        if self._ratings is not None:
            rated = [self._ratings[t] for t in tokens if t in self._ratings]
            return np.mean(rated, axis=0) if rated else np.full(3, NEUTRAL)
        tags = [tag for tag in self._nrc.affect_list if tag in CATEGORY_AROUSAL_DOMINANCE]
        arousal, dominance = (
            np.mean([CATEGORY_AROUSAL_DOMINANCE[t] for t in tags], axis=0) if tags else (NEUTRAL, NEUTRAL)
        )
        return np.array([(compound + 1.0) / 2.0, arousal, dominance])
