import numpy as np
import pytest
import torch

from emimic.config import ModelConfig
from emimic.errors import ConfigError
from emimic.models import ENCODERS, FUSIONS, build_model, resolve_spec
from emimic.models.emi import ModelSpec

DIMS = {"text_emb": 5, "vit": 7, "wav2vec2": 9}


def batch(spec: ModelSpec, size: int = 6, frames: bool = False, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for m in spec.inputs:
        d = spec.dims.get(m, 3)
        lengths = torch.randint(1, 8, (size,), generator=g)
        lengths[0] = 0  # the first clip lacks every modality
        entry = {"pooled": torch.randn(size, 4 * d, generator=g), "present": lengths > 0, "lengths": lengths}
        if frames:
            entry["frames"] = torch.randn(int(lengths.sum()), d, generator=g)
        entry["pooled"][0] = 0
        inputs[m] = entry
    return inputs


@pytest.mark.parametrize("encoder", ENCODERS.names())
def test_every_encoder_gives_six_outputs_in_unit_range(encoder):
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"encoder": {"name": encoder, "hidden": 8, "heads": 2}})
    spec = resolve_spec(cfg, DIMS)
    model = build_model(spec, cfg)
    out = model(batch(spec, frames=model.uses_frames))
    assert out.pred.shape == (6, 6)
    assert torch.isfinite(out.pred).all() and (out.pred >= 0).all() and (out.pred <= 1).all()
    assert set(out.aux) == set(DIMS) and all(a.shape == (6, 6) for a in out.aux.values())
    out.pred.sum().backward()


def test_absent_clip_uses_the_missing_embedding_whatever_its_features():
    torch.manual_seed(0)
    cfg = ModelConfig()
    spec = resolve_spec(cfg, DIMS)
    model = build_model(spec, cfg).eval()
    inputs = batch(spec)
    before = model(inputs).pred[0].clone()
    for entry in inputs.values():
        entry["pooled"][0] = 1e3  # garbage in an absent row must not leak
    assert torch.equal(model(inputs).pred[0], before)
    assert not torch.equal(model(inputs).pred[1], before)


def test_normalisation_statistics_are_buffers_saved_with_the_model():
    cfg = ModelConfig()
    spec = resolve_spec(cfg, DIMS)
    model = build_model(spec, cfg)

    class Stats:
        def __init__(self, d):
            self.pooled_mean, self.pooled_std = np.full(4 * d, 2.0), np.full(4 * d, 3.0)
            self.frame_mean, self.frame_std = np.zeros(d), np.ones(d)

    model.set_statistics({m: Stats(d) for m, d in DIMS.items()})
    state = model.state_dict()
    assert torch.all(state["branches.vit.pooled_mean"] == 2.0)
    assert torch.all(state["branches.vit.pooled_std"] == 3.0)


def test_vad_branch_defaults_to_wav2vec2_and_adds_three_dims():
    cfg = ModelConfig()
    spec = resolve_spec(cfg, {**DIMS, "vad": 3})
    assert spec.vad_modality == "wav2vec2" and spec.observed_vad == "vad"
    model = build_model(spec, cfg)
    assert model.fusion.out_dim == len(spec.modalities) * cfg.branch.embed + 3
    out = model(batch(spec))
    assert out.vad is not None and out.vad.observed is not None


def test_vad_modality_is_the_first_audio_like_one_or_none():
    cfg = ModelConfig()
    assert resolve_spec(cfg, {"vit": 4, "egemaps": 88}).vad_modality == "egemaps"
    assert resolve_spec(cfg, {"vit": 4}).vad_modality is None
    off = ModelConfig.model_validate({"vad": {"enabled": False}})
    assert resolve_spec(off, DIMS).vad_modality is None


def test_unknown_modalities_are_a_clear_error():
    cfg = ModelConfig.model_validate({"modalities": ["vit", "audio"]})
    with pytest.raises(ConfigError, match=r"'audio'.*available: text_emb, vit, wav2vec2"):
        resolve_spec(cfg, DIMS)


def test_clip_head_is_linear_in_training_and_clipped_at_inference():
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"head": {"output": "clip"}})
    spec = resolve_spec(cfg, DIMS)
    model = build_model(spec, cfg)
    inputs = batch(spec)
    with torch.no_grad():
        model.head[-1][-1].bias.fill_(5.0)
        assert (model.train()(inputs).pred > 1).any()
        assert (model.eval()(inputs).pred <= 1).all()


def test_concat_fusion_contract():
    fusion = FUSIONS.get("concat")([2, 3], ModelConfig())
    assert fusion.out_dim == 5
    assert fusion([torch.zeros(4, 2), torch.ones(4, 3)]).shape == (4, 5)


def test_spec_round_trips_through_a_plain_dict():
    spec = resolve_spec(ModelConfig(), {**DIMS, "vad": 3})
    assert ModelSpec.from_dict(spec.to_dict()) == spec
