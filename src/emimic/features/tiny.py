"""Tiny random-initialised models of the real architectures, for tests and demos without downloads.

:func:`save_tiny_models` writes a ``--model-dir`` with one sub-folder per extractor that needs
external weights (``wav2vec2``, ``hubert``, ``wavlm``, ``vad``, ``face_emb``, plus ``clip``, a
CLIP vision tower usable as ``--option face_emb.model=DIR/clip``). The classes and loading path
are the ones real checkpoints use; only the sizes are small and the weights random, so the
features carry no meaning but have the real shapes and frame rates (50 Hz for the speech models:
the convolution strides multiply to 320 samples, as in wav2vec2-base).
"""

from __future__ import annotations

from pathlib import Path

HIDDEN = 16
SPEECH_MODELS: tuple[str, ...] = ("wav2vec2", "hubert", "wavlm")


def save_tiny_models(root: str | Path, *, seed: int = 0) -> Path:
    """Write the tiny models under ``root`` (created if needed) and return it."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        HubertConfig,
        HubertModel,
        ViTConfig,
        ViTModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    from emimic.features.base import quiet_transformers
    from emimic.features.vad import dimensional_model_class

    quiet_transformers()
    torch.manual_seed(seed)
    root = Path(root)
    speech = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "conv_dim": (8, 8),
        "conv_stride": (10, 32),
        "conv_kernel": (10, 32),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
    }
    vision = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "image_size": 32,
        "patch_size": 8,
    }
    Wav2Vec2Model(Wav2Vec2Config(**speech)).save_pretrained(root / "wav2vec2")
    HubertModel(HubertConfig(**speech)).save_pretrained(root / "hubert")
    WavLMModel(WavLMConfig(**speech)).save_pretrained(root / "wavlm")
    dimensional_model_class()(Wav2Vec2Config(num_labels=3, **speech)).save_pretrained(root / "vad")
    ViTModel(ViTConfig(**vision)).save_pretrained(root / "face_emb")
    CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(root / "clip")
    return root
