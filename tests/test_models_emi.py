import numpy as np
import pytest
import torch

from emimic.config import ModelConfig
from emimic.data import ModalityStats
from emimic.errors import ConfigError, DataError
from emimic.models import ENCODERS, build_model, resolve_spec
from emimic.models.emi import ModelSpec
from emimic.models.vad_prior import VADLatent, label_prior, vad_kl

DIMS = {"text_emb": 5, "vit": 7, "wav2vec2": 9}
TARGETS = np.random.default_rng(0).random((16, 6))
# audeering's column order, as `emimic extract --modalities vad` records it
EXTRACTED_VAD = {"vad": ["arousal", "dominance", "valence"]}


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


def as_float(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)


def identity_stats(d: int) -> ModalityStats:
    return ModalityStats(np.zeros(4 * d), np.ones(4 * d), np.zeros(d), np.ones(d))


def test_normalisation_statistics_are_buffers_saved_with_the_model():
    cfg = ModelConfig()
    spec = resolve_spec(cfg, DIMS)
    model = build_model(spec, cfg)
    model.set_statistics({m: ModalityStats(np.full(4 * d, 2.0), np.full(4 * d, 3.0), np.zeros(d), np.ones(d))
                          for m, d in DIMS.items()}, TARGETS)
    state = model.state_dict()
    assert torch.all(state["branches.vit.pooled_mean"] == 2.0)
    assert torch.all(state["branches.vit.pooled_std"] == 3.0)


def test_a_modality_named_like_no_torch_module_gets_an_escaped_key_and_others_keep_theirs():
    """A folder ``vit.b16`` (torch refuses a dot) or ``train`` (an attribute of the dict) is a modality like any."""
    torch.manual_seed(0)
    dims = {"train": 4, "vit": 7, "vit.b16": 5, "vit_b16": 3}
    cfg = ModelConfig.model_validate({"fusion": "tensor", "encoder": {"name": "gru", "hidden": 8}})
    spec = resolve_spec(cfg, dims)
    model = build_model(spec, cfg).eval()
    out = model(batch(spec, frames=True))
    assert set(out.aux) == set(dims) and list(model.branches) == list(spec.modalities)
    assert "vit.b16" in model.branches and model.branches["vit.b16"] is dict(model.branches.items())["vit.b16"]
    state = model.state_dict()
    # the names torch takes keep their keys (the checkpoints of earlier runs load); the others are escaped with '/',
    # which no folder name holds, so no two modalities share a key
    assert {"branches.vit.pooled_mean", "branches./vit/b16.pooled_mean", "aux_heads./train.weight"} <= set(state)
    torch.manual_seed(1)
    again = build_model(spec, cfg).eval()
    again.load_state_dict(state)
    assert torch.equal(again(batch(spec, frames=True)).pred, out.pred)


@pytest.mark.parametrize("encoder", ["meanstd", "attentive"])
def test_branches_standardise_with_the_stored_mean_and_std(encoder):
    """A model fed x with statistics (m, s) computes what it computes from (x - m) / s with (0, 1)."""
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"encoder": {"name": encoder, "hidden": 8, "heads": 2}})
    spec = resolve_spec(cfg, DIMS)
    model = build_model(spec, cfg).eval()
    with torch.no_grad():  # the frame correction starts at zero: give every weight a value, so frames count
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    frames = model.uses_frames
    rng = np.random.default_rng(0)
    stats = {m: ModalityStats(rng.normal(size=4 * d), rng.uniform(0.2, 5.0, 4 * d), rng.normal(size=d),
                      rng.uniform(0.2, 5.0, d)) for m, d in DIMS.items()}
    raw, standard = batch(spec, frames=frames), batch(spec, frames=frames)
    for m, entry in standard.items():
        s = stats[m]
        entry["pooled"] = (entry["pooled"] - as_float(s.pooled_mean)) / as_float(s.pooled_std)
        if frames:  # padding is masked again by the branch after standardising
            entry["frames"] = (entry["frames"] - as_float(s.frame_mean)) / as_float(s.frame_std)
    model.set_statistics(stats, TARGETS)
    with_stats = model(raw).pred
    model.set_statistics({m: identity_stats(d) for m, d in DIMS.items()}, TARGETS)
    assert torch.allclose(with_stats, model(standard).pred, atol=1e-5)


def test_vad_branch_defaults_to_wav2vec2_and_adds_three_dims():
    cfg = ModelConfig()
    spec = resolve_spec(cfg, {**DIMS, "vad": 3}, EXTRACTED_VAD)
    assert spec.vad_modality == "wav2vec2" and spec.observed_vad == "vad"
    model = build_model(spec, cfg)
    assert model.fusion.out_dim == len(spec.modalities) * cfg.branch.embed + 3
    out = model(batch(spec))
    assert out.vad is not None and out.vad.observed is not None


def test_observed_vad_columns_are_matched_to_the_axes_by_their_recorded_names():
    cfg = ModelConfig()
    spec = resolve_spec(cfg, {**DIMS, "vad": 3}, {"vad": ["Arousal", "Dominance", "Valence"]})
    assert spec.observed_columns == (2, 0, 1)  # where valence, arousal, dominance are
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    model = build_model(spec, cfg).eval()
    inputs = batch(spec)
    out = model(inputs)
    file_columns = inputs["vad"]["pooled"][:, :3]  # the clip means, in the file's column order
    assert torch.equal(out.vad.observed, file_columns[:, [2, 0, 1]])


@pytest.mark.parametrize(("names", "message"), [
    (None, r"modality 'vad' has 3 columns but no recorded feature names.*vad/_extractor.json"),
    (["v", "a", "d"], r"vad/_extractor.json names the columns \['v', 'a', 'd'\].*valence, arousal and dominance"),
])
def test_an_observed_vad_whose_axes_are_not_named_is_refused(names, message):
    with pytest.raises(DataError, match=message):
        resolve_spec(ModelConfig(), {**DIMS, "vad": 3}, {"vad": names})
    off = ModelConfig.model_validate({"vad": {"observed": None}})
    assert resolve_spec(off, {**DIMS, "vad": 3}, {"vad": names}).observed_vad is None


def test_both_vad_priors_are_in_standard_units_of_the_training_clips():
    """Label-derived and observed priors: mean 0 and standard deviation 1 per axis over the training clips."""
    cfg = ModelConfig()
    spec = resolve_spec(cfg, {**DIMS, "vad": 3}, EXTRACTED_VAD)
    model = build_model(spec, cfg).eval()
    size = len(TARGETS)
    inputs = batch(spec, size=size)
    for entry in inputs.values():
        entry["present"][:] = True
    rng = np.random.default_rng(1)
    # arousal, dominance and valence on three different scales and offsets
    observed = rng.normal(size=(size, 12)) * np.tile([0.2, 3.0, 40.0], 4) + np.tile([0.5, -2.0, 10.0], 4)
    inputs["vad"]["pooled"] = torch.as_tensor(observed, dtype=torch.float32)
    stats = {m: identity_stats(d) for m, d in DIMS.items()}
    stats["vad"] = ModalityStats(observed.mean(0), observed.std(0), np.zeros(3), np.ones(3))
    model.set_statistics(stats, TARGETS)
    latent = model(inputs).vad
    targets = torch.as_tensor(TARGETS, dtype=torch.float32)
    for prior in (label_prior(latent, targets), latent.observed):
        torch.testing.assert_close(prior.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
        torch.testing.assert_close(prior.std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


def test_a_one_clip_training_split_keeps_the_label_prior_on_the_anchors_scale():
    """One training clip leaves every axis constant: the prior of other clips is in the anchors' unit (a fixed 1e-6
    floor put it 1e5 units away, a validation loss of 1e9)."""
    model = build_model(resolve_spec(ModelConfig(), DIMS), ModelConfig())
    model.set_statistics({m: identity_stats(d) for m, d in DIMS.items()}, TARGETS[:1])
    assert model.vad is not None
    torch.testing.assert_close(model.vad.label_std, torch.ones(3))
    latent = VADLatent(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(4, dtype=torch.bool), 1.0,
                       model.vad.label_mean, model.vad.label_std)
    assert vad_kl(latent, torch.as_tensor(TARGETS[1:5], dtype=torch.float32)).item() < 10


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


def test_spec_round_trips_through_a_plain_dict():
    spec = resolve_spec(ModelConfig(), {**DIMS, "vad": 3}, EXTRACTED_VAD)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
