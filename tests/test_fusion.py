"""The fusion registry: every fusion builds from the model's widths, stays finite whatever is missing, never
reads an absent modality, trains its parameters and learns from generated data with signal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from emimic.config import ModelConfig
from emimic.data import open_dataset
from emimic.errors import ConfigError
from emimic.metrics import mean_pcc
from emimic.models import FUSIONS, build_model, resolve_spec
from emimic.models.emi import EMIModel
from emimic.models.fusion import MAX_TENSOR_WIDTH, BranchOutput, BranchShape
from emimic.training.inference import load_run, predict_ids, torch_threads

if TYPE_CHECKING:
    from emimic.training.run import TrainResult

# Each modality expresses two of the six dimensions (vit: 0-1, wav2vec2: 2-3, text_emb: 4-5).
DIMS = {"text_emb": 6, "vit": 8, "wav2vec2": 10}
CARRIES = {"vit": [0, 1], "wav2vec2": [2, 3], "text_emb": [4, 5]}
FRAMES = 4  # steps per clip
SMALL = {"branch": {"hidden": 32, "embed": 16, "dropout": 0.0}, "head": {"hidden": 32, "dropout": 0.0},
         "fusion_options": {"width": 16, "heads": 2, "dropout": 0.0, "tensor_width": 4},
         "encoder": {"hidden": 16, "heads": 2, "dropout": 0.0}}
ENCODERS = ("meanstd", "attentive")  # pooled tokens, and frame states for the sequence fusions
# A modality alone predicts at most its two dimensions: mean PCC <= 2/6 (and <= 4/6 for two). Above this
# threshold a fusion must combine all three modalities; concat reaches about 0.85 with this training.
LEARNED_PCC = 0.7


@dataclass
class Corpus:
    """Generated clips: targets ``(N, 6)`` and per modality frames ``(N, FRAMES, D)`` and presence ``(N,)``."""

    targets: torch.Tensor
    frames: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]

    def batch(self, rows: torch.Tensor, *, sequences: bool) -> dict:
        """The model inputs of ``rows``, as :class:`~emimic.data.ClipDataset` gives them (absent: length 0)."""
        inputs = {}
        for m, frames in self.frames.items():
            x, present = frames[rows], self.present[m][rows]
            pooled = torch.cat([x.mean(1), x.std(1), x.amin(1), x.amax(1)], dim=1)
            entry = {"pooled": torch.where(present[:, None], pooled, 0.0), "present": present,
                     "lengths": torch.where(present, FRAMES, 0)}
            if sequences:
                entry["frames"] = x[present].reshape(-1, x.shape[-1])
            inputs[m] = entry
        return inputs


# How each modality expresses its dimensions: the same for every generated set (one "feature extractor").
MIXING = {m: torch.randn(2, dim, generator=torch.Generator().manual_seed(i)) for i, (m, dim) in enumerate(DIMS.items())}


def generate(n: int, seed: int, missing: float = 0.1) -> Corpus:
    g = torch.Generator().manual_seed(seed)
    targets = torch.rand(n, 6, generator=g)
    frames, present = {}, {}
    for m, dim in DIMS.items():
        signal = (targets[:, CARRIES[m]] - 0.5) @ MIXING[m] * 4.0
        frames[m] = signal[:, None, :] + 0.5 * torch.randn(n, FRAMES, dim, generator=g)
        present[m] = torch.rand(n, generator=g) >= missing
    return Corpus(targets, frames, present)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small matrices on a shared machine: one thread is several times faster than two."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return generate(400, seed=0)


@pytest.fixture(scope="module")
def held_out() -> Corpus:
    return generate(300, seed=1)


def build(fusion: str, encoder: str = "meanstd", **changes: object) -> EMIModel:
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({**SMALL, "fusion": fusion, "encoder": {**SMALL["encoder"], "name": encoder},
                                      **changes})
    return build_model(resolve_spec(cfg, DIMS), cfg)


def mixed_rows(corpus: Corpus) -> torch.Tensor:
    """Rows with every modality, rows with some absent and rows with none (made so)."""
    rows = torch.arange(12)
    for m in DIMS:
        corpus.present[m][rows[:4]] = True
        corpus.present[m][rows[8:]] = False
    corpus.present["vit"][rows[4:6]] = False
    corpus.present["wav2vec2"][rows[5:8]] = False
    return rows


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_every_fusion_builds_from_the_model_widths_and_stays_finite_whatever_is_missing(fusion: str,
                                                                                       encoder: str) -> None:
    model = build(fusion, encoder)
    widths = {s.name: s.width for s in model.fusion.shapes}
    assert widths == {"text_emb": 16, "vit": 16, "wav2vec2": 16 + 3}  # the VAD latent widens the acoustic branch
    data = generate(12, seed=2)
    inputs = data.batch(mixed_rows(data), sequences=model.uses_frames)
    out = model(inputs)
    assert out.pred.shape == (12, 6) and torch.isfinite(out.pred).all()
    out.pred.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.eval()(inputs).pred).all()
    with torch.no_grad():  # without autograd (as predict_ids) torch runs its fused transformer kernels
        assert torch.isfinite(model(inputs).pred).all()


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_the_features_of_an_absent_modality_never_reach_the_output(fusion: str, encoder: str) -> None:
    """Rows flagged absent keep their features (as after modality dropout): changing those features changes
    nothing, changing those of present rows changes their predictions."""
    model = build(fusion, encoder).eval()
    data = generate(12, seed=3)
    rows = mixed_rows(data)
    flags = {m: data.present[m].clone() for m in DIMS}
    for m in DIMS:
        data.present[m][:] = True  # every row gets features (and frames) ...
    inputs = data.batch(rows, sequences=model.uses_frames)
    for m, entry in inputs.items():
        entry["present"] = flags[m][rows]  # ... and the absent ones are flagged so
    before = model(inputs).pred
    for entry in inputs.values():
        absent = ~entry["present"]
        entry["pooled"][absent] += 100.0
        if "frames" in entry:
            entry["frames"].view(len(rows), FRAMES, -1)[absent] += 100.0
    assert torch.equal(model(inputs).pred, before)
    for entry in inputs.values():
        entry["pooled"][entry["present"]] *= -1.0
    changed = (model(inputs).pred != before).any(1)
    assert changed[:8].all()  # every row with a present modality


@pytest.mark.parametrize("fusion", ["concat", "attention", "text_anchored"])
def test_fusions_that_read_absent_branches_as_learned_tokens_train_them(fusion: str) -> None:
    """These fusions read an absent branch as its learned missing embedding (and missing token, when they
    read frames): on clips where another branch is present, the loss reaches every one of them."""
    model = build(fusion, "attentive")
    data = generate(12, seed=9)
    rows = mixed_rows(data)[4:8]  # each lacks vit or wav2vec2 (or both), and has a present branch
    data.present["text_emb"][rows[0]] = False  # a clip without transcript, with wav2vec2
    model(data.batch(rows, sequences=True)).pred.sum().backward()
    for modality in DIMS:
        branch = model.branches[modality]
        assert (branch.missing_frames is not None) == (modality in model.fusion.frame_branches)
        learned = {"missing": branch.missing, "missing_frames": branch.missing_frames}
        untrained = [name for name, p in learned.items() if p is not None and not (p.grad is not None
                                                                                   and p.grad.abs().sum() > 0)]
        assert untrained == [], f"{fusion}: no gradient reaches {modality}'s {untrained}"


@pytest.mark.parametrize("fusion", ["attention", "text_anchored"])
def test_a_clip_gets_the_same_prediction_whatever_padding_its_batch_adds(fusion: str) -> None:
    """Padded steps are masked out as keys: a clip whose sequence (or missing token) is shorter than the
    batch's longest gets, with autograd (training) and without it (torch's fused kernels), what it gets alone."""
    model = build(fusion, "attentive").eval()
    data = generate(12, seed=10)
    rows = mixed_rows(data)  # absent rows: the one-step missing token, then padding
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            batched = model(data.batch(rows, sequences=True)).pred
            alone = torch.cat([model(data.batch(rows[i : i + 1], sequences=True)).pred for i in range(len(rows))])
        torch.testing.assert_close(batched, alone)


@pytest.mark.parametrize("fusion", ["gated", "tensor", "low_rank", "late"])
def test_fusions_that_leave_absent_branches_out_ignore_their_missing_embeddings(fusion: str) -> None:
    """On a clip with a present branch, these fusions give absent ones no weight: the learned missing
    embeddings change nothing there (concat, attention and text_anchored use them by design)."""
    model = build(fusion, "attentive").eval()
    data = generate(12, seed=9)
    inputs = data.batch(mixed_rows(data), sequences=True)
    before = model(inputs).pred
    with torch.no_grad():
        for branch in model.branches.values():
            branch.missing.add_(1.0)
    after = model(inputs).pred
    assert torch.equal(after[:8], before[:8])  # rows with at least one present branch
    assert not torch.equal(after[8:], before[8:])  # rows with none are fused from the missing embeddings


def test_modality_dropout_sends_a_clip_down_the_path_of_missing_data() -> None:
    """In training, a dropped branch is what an absent one is: the model trained with dropout on (all other
    randomness off) predicts exactly what it predicts in evaluation for data flagged as its mask says."""
    model = build("text_anchored", "attentive", modality_dropout=0.5, vad={"enabled": False})
    data = generate(32, seed=4, missing=0.0)
    inputs = data.batch(torch.arange(32), sequences=True)
    torch.manual_seed(5)
    with torch.no_grad():
        trained = model.train()(inputs)
    dropped = sum(int((~mask).sum()) for mask in trained.present.values())
    assert 0 < dropped < 3 * 32
    for m, entry in inputs.items():
        entry["present"] = trained.present[m]
    torch.testing.assert_close(model.eval()(inputs).pred, trained.pred)


def test_an_absent_clip_s_sequence_is_the_learned_missing_token() -> None:
    model = build("attention", "attentive").eval()
    data = generate(6, seed=6, missing=0.0)
    inputs = data.batch(torch.arange(6), sequences=True)
    present = torch.tensor([True, False, True, False, True, True])
    branch = model.branches["vit"]
    out = branch(inputs["vit"], present)
    assert out.mask is not None and out.frames is not None
    assert out.mask[~present].tolist() == [[True] + [False] * (FRAMES - 1)] * 2
    assert torch.equal(out.frames[~present, 0], branch.missing_frames.expand(2, -1))
    assert out.mask[present].all()


@pytest.mark.parametrize("fusion", ["concat", "gated", "late", "tensor", "low_rank"])
def test_pooled_fusions_read_no_frames_and_add_no_missing_tokens(fusion: str) -> None:
    model = build(fusion, "attentive")
    assert model.fusion.frame_branches == frozenset()
    assert all(branch.missing_frames is None for branch in model.branches.values())


def test_the_concat_model_keeps_the_parameters_of_earlier_versions() -> None:
    """Checkpoints of the reference method still load: concat adds no parameter, no missing token."""
    names = [name for name, _ in build("concat", "attentive").named_parameters()]
    assert not [name for name in names if name.startswith("fusion.") or "missing_frames" in name]


def test_low_rank_factors_are_registered_saved_and_trained() -> None:
    """MultiBench's LowRankTensorFusion keeps its factors in a plain list: never saved, never trained."""
    model = build("low_rank")
    factors = [name for name in model.state_dict() if name.startswith("fusion.factors.")]
    assert len(factors) == len(DIMS)
    data = generate(16, seed=7)
    model(data.batch(torch.arange(16), sequences=False)).pred.sum().backward()
    for name, parameter in model.fusion.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_text_anchored_queries_with_the_text_branch_or_a_learned_vector_without_one() -> None:
    anchored = build("text_anchored")
    assert anchored.fusion.text == list(DIMS).index("text_emb")
    assert anchored.fusion.out_dim == 16 + 2 * 16  # [text, attended vit, attended wav2vec2]
    without_text = build("text_anchored", modalities=["vit", "wav2vec2"])
    assert without_text.fusion.text is None and without_text.fusion.out_dim == 2 * 16
    data = generate(4, seed=8)
    assert torch.isfinite(without_text(data.batch(torch.arange(4), sequences=False)).pred).all()
    with pytest.raises(ConfigError, match=r"model.fusion_options.text_modality: 'transcript' is not a branch;"
                                          r" branches: text_emb, vit, wav2vec2"):
        build("text_anchored", fusion_options={**SMALL["fusion_options"], "text_modality": "transcript"})


def test_a_tensor_fusion_too_wide_for_the_head_is_refused_with_the_width_that_fits() -> None:
    shapes = [BranchShape(f"m{i}", 16) for i in range(5)]
    cfg = ModelConfig.model_validate({"fusion": "tensor"})
    assert (cfg.fusion_options.tensor_width + 1) ** 5 > MAX_TENSOR_WIDTH
    with pytest.raises(ConfigError, match=r"tensor_width: 8 gives .* 5 branches a width of 59049 .* set it to 5 or"):
        FUSIONS["tensor"](shapes, cfg)


def test_heads_must_divide_the_fusion_width() -> None:
    with pytest.raises(ValueError, match="width 64 is not a multiple of heads 5"):
        ModelConfig.model_validate({"fusion_options": {"heads": 5}})


def test_the_concat_fusion_puts_the_embeddings_side_by_side() -> None:
    fusion = FUSIONS["concat"]([BranchShape("a", 2), BranchShape("b", 3)], ModelConfig())
    out = fusion([BranchOutput(torch.zeros(4, 2), torch.ones(4, dtype=torch.bool)),
                  BranchOutput(torch.ones(4, 3), torch.ones(4, dtype=torch.bool))])
    assert fusion.out_dim == 5 and out.shape == (4, 5)


def train_and_score(model: EMIModel, corpus: Corpus, held_out: Corpus, *, epochs: int = 4) -> float:
    sequences = model.uses_frames
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(corpus.targets), generator=g).split(32):
            loss = torch.nn.functional.mse_loss(model(corpus.batch(rows, sequences=sequences)).pred,
                                                corpus.targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        pred = model.eval()(held_out.batch(torch.arange(len(held_out.targets)), sequences=sequences)).pred
    return mean_pcc(pred.numpy(), held_out.targets.numpy())


@pytest.mark.parametrize(("fusion", "encoder"), [*((f, "meanstd") for f in FUSIONS.names()),
                                                 ("attention", "attentive"), ("text_anchored", "attentive")])
def test_every_fusion_learns_to_combine_the_modalities(fusion: str, encoder: str, corpus: Corpus,
                                                       held_out: Corpus) -> None:
    score = train_and_score(build(fusion, encoder), corpus, held_out)
    assert score > LEARNED_PCC, f"{fusion} with {encoder}: held-out mean PCC {score:.3f}"
    assert np.isfinite(score)


def test_hiding_a_modality_at_prediction_takes_the_path_of_missing_data(trained_run: TrainResult,
                                                                        simulated_root: Path) -> None:
    """What bench_missing.py measures: clearing ``present`` changes the clips that have the modality, and
    only those (hiding it where it is missing already changes nothing)."""
    trained = load_run(trained_run.run)
    ds = open_dataset(simulated_root)
    store = ds.store(progress=False)
    ids = ds.split("valid").index.to_numpy(dtype=np.int64)
    has = store.present("text_emb", ids)
    assert 0 < has.sum() < len(ids)
    base = predict_ids(trained, store, ids)
    np.testing.assert_array_equal(predict_ids(trained, store, ids, {"text_emb": ~has}), base)
    hidden = predict_ids(trained, store, ids, {"text_emb": has})
    assert (np.abs(hidden[has] - base[has]).max(axis=1) > 0).all()
    np.testing.assert_array_equal(hidden[~has], base[~has])
