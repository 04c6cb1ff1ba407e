"""Sequence encoders: masking, the residual guarantee over pooling, length bucketing, chunked frame
gathering, and learning a within-frame co-occurrence that pooled statistics cannot see."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from emimic.config import EncoderConfig, ModelConfig
from emimic.data import ClipDataset, open_dataset
from emimic.data import dataset as dataset_module
from emimic.data.dataset import LengthBuckets, chunked_steps, gather_frames
from emimic.data.store import pool_frames
from emimic.metrics import mean_pcc
from emimic.models import build_model, resolve_spec
from emimic.models.encoders import ENCODERS, PooledStatistics, build_encoder
from emimic.training.inference import torch_threads

SEQUENCE = [name for name in ENCODERS.names() if ENCODERS.get(name).uses_frames]


def encoder(name: str, dim: int, seed: int = 0, **settings) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = EncoderConfig(name=name, hidden=8, heads=2, dropout=0.0, **settings)
    return build_encoder(dim, cfg).eval()


def randomise(module: torch.nn.Module) -> None:
    """Non-zero values everywhere, the zero-initialised residual map included (as after training)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.3)


def test_the_sequence_encoders_are_the_registered_frame_readers():
    assert SEQUENCE == ["attentive", "gru", "transformer"]


@pytest.mark.parametrize("name", SEQUENCE)
def test_a_clip_encodes_the_same_alone_and_padded_in_a_batch(name):
    model = encoder(name, dim=5)
    randomise(model)
    g = torch.Generator().manual_seed(1)
    short, long = torch.randn(3, 5, generator=g), torch.randn(9, 5, generator=g)
    pooled = torch.randn(2, 20, generator=g)
    alone = model.encode(pooled[:1], short, torch.tensor([3]))
    batched = model.encode(pooled, torch.cat([short, long]), torch.tensor([3, 9]))
    torch.testing.assert_close(batched.vector[0], alone.vector[0])
    assert batched.frames.shape == (2, 9, model.frame_dim) and batched.mask[0].tolist() == [True] * 3 + [False] * 6
    torch.testing.assert_close(batched.frames[0, :3], alone.frames[0])
    assert batched.frames[0, 3:].abs().sum() == 0


@pytest.mark.parametrize("name", SEQUENCE)
def test_with_the_temporal_part_zeroed_the_model_is_the_pooled_one(name):
    """Weights of a trained-looking pooled model loaded into a sequence model whose residual map is zero
    (as it is at initialisation) give exactly the pooled model's predictions."""
    dims = {"vit": 6, "wav2vec2": 4}
    pooled_cfg = ModelConfig()
    sequence_cfg = ModelConfig.model_validate({"encoder": {"name": name, "hidden": 8, "heads": 2}})
    spec = resolve_spec(pooled_cfg, dims)
    torch.manual_seed(0)
    pooled_model = build_model(spec, pooled_cfg).eval()
    randomise(pooled_model)
    sequence_model = build_model(spec, sequence_cfg).eval()
    missing = sequence_model.load_state_dict(pooled_model.state_dict(), strict=False).missing_keys
    assert missing and all(".encoder." in key for key in missing)
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([4, 1, 7])
    inputs = {m: {"pooled": torch.randn(3, 4 * d, generator=g), "present": torch.ones(3, dtype=torch.bool),
                  "lengths": lengths, "frames": torch.randn(int(lengths.sum()), d, generator=g)}
              for m, d in dims.items()}
    torch.testing.assert_close(sequence_model(inputs).pred, pooled_model(inputs).pred)
    with torch.no_grad():  # and the temporal part does change the output once it is not zero
        sequence_model.branches["vit"].encoder.residual.weight.normal_()
    assert not torch.allclose(sequence_model(inputs).pred, pooled_model(inputs).pred)


@pytest.mark.parametrize("name", SEQUENCE)
def test_a_sequence_model_starts_as_the_pooled_model_of_the_same_seed(name):
    dims = {"vit": 6, "wav2vec2": 4}
    models = []
    for cfg in (ModelConfig(), ModelConfig.model_validate({"encoder": {"name": name, "hidden": 8, "heads": 2}})):
        torch.manual_seed(3)
        models.append(build_model(resolve_spec(cfg, dims), cfg).eval())
    shared = models[0].state_dict()
    assert all(torch.equal(value, models[1].state_dict()[key]) for key, value in shared.items())


def test_buckets_cover_every_clip_once_per_epoch_seeded_and_pad_little():
    lengths = np.random.default_rng(0).integers(1, 300, size=1000)
    sampler = LengthBuckets(lengths, 32, seed=5)
    epochs = []
    for epoch in (0, 1, 0):
        sampler.sampler.set_epoch(epoch)  # what Lightning calls every epoch
        epochs.append([list(b) for b in sampler])
    for batches in epochs:
        assert len(batches) == len(sampler) == 32
        assert sorted(i for b in batches for i in b) == list(range(1000))
    assert epochs[0] == epochs[2] and epochs[0] != epochs[1]
    assert [list(b) for b in LengthBuckets(lengths, 32, seed=5)] == epochs[0]
    assert [list(b) for b in LengthBuckets(lengths, 32, seed=6)] != epochs[0]
    padded = sum(len(b) * lengths[b].max() for b in epochs[0])
    assert padded < 1.3 * lengths.sum()  # random batches would pad to about 2x
    full = list(LengthBuckets(lengths, 32, seed=5, drop_last=True))
    assert len(full) == 31 and all(len(b) == 32 for b in full) and len({i for b in full for i in b}) == 992


def test_frames_are_gathered_packed_and_long_clips_become_chunk_means():
    rng = np.random.default_rng(0)
    lengths = np.array([3, 0, 10, 2])
    store = rng.normal(size=(40, 2)).astype(np.float32)
    starts = np.array([30, 0, 5, 20])
    packed = gather_frames(store, starts, lengths, max_steps=4).numpy()
    chunks = [store[5:8].mean(0), store[8:10].mean(0), store[10:13].mean(0), store[13:15].mean(0)]
    expected = np.concatenate([store[30:33], np.stack(chunks), store[20:22]])
    np.testing.assert_allclose(packed, expected, rtol=1e-6)
    np.testing.assert_array_equal(gather_frames(store, starts, lengths, max_steps=10).numpy()[3:13], store[5:15])


def test_steps_cached_in_blocks_equal_one_gather_and_keep_a_float16_store_small(monkeypatch):
    rng = np.random.default_rng(1)
    lengths = np.array([3, 0, 10, 2, 7])
    starts = np.array([30, 0, 5, 20, 40])
    store = rng.normal(size=(50, 3)).astype(np.float32)
    monkeypatch.setattr(dataset_module, "CACHE_BLOCK", 2)  # three blocks, one of them holding an absent clip
    torch.testing.assert_close(chunked_steps(store, starts, lengths, 4), gather_frames(store, starts, lengths, 4))
    half = chunked_steps(store.astype(np.float16), starts, lengths, 4)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), gather_frames(store, starts, lengths, 4), atol=2e-3, rtol=2e-3)


def test_a_batch_of_the_dataset_reads_the_cached_steps_of_exactly_its_clips(make_root):
    """Cached once at construction, a batch's frames (any order, absent clips included) are what a gather
    from the memory map for that batch gives, every epoch."""
    ds = open_dataset(make_root(missing={"vit": [6]}))
    store = ds.store(progress=False)
    ids = ds.splits["train"].index.to_numpy()
    dataset = ClipDataset(store, ids, modalities=["vit", "wav2vec2"], sequences=True, max_frames=6)
    rows = [5, 1, 0, 11, 1]
    batch = dataset.__getitems__(rows)
    for modality in ("vit", "wav2vec2"):
        starts, lengths = store.spans(modality, ids[rows])
        assert (lengths > 6).any() and batch["inputs"][modality]["lengths"].tolist() == np.minimum(lengths, 6).tolist()
        expected = gather_frames(store.frame_rows(modality), starts, lengths, 6)
        torch.testing.assert_close(batch["inputs"][modality]["frames"], expected)
    assert batch["inputs"]["vit"]["lengths"][1] == 0  # clip 6 has no vit file: it adds no step


def test_the_gru_without_padding_skips_packing_and_computes_the_same():
    """A bucketed batch of equal lengths runs the GRU on the padded tensor directly; its clips must encode
    as they do in a batch with padding (which takes the packed path)."""
    model = encoder("gru", dim=5)
    randomise(model)
    g = torch.Generator().manual_seed(3)
    frames, pooled = torch.randn(17, 5, generator=g), torch.randn(3, 20, generator=g)
    equal = model.encode(pooled[:2], frames[:10], torch.tensor([5, 5]))
    assert bool(equal.mask.all())
    padded = model.encode(pooled, frames, torch.tensor([5, 5, 7]))
    torch.testing.assert_close(equal.vector, padded.vector[:2])
    torch.testing.assert_close(equal.frames, padded.frames[:2, :5])


def co_occurrence_clips(n: int, steps: int = 8, dim: int = 4, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Label 1: one frame where features 0 and 1 both peak; label 0: they peak in two different frames.
    Every feature's mean, std, min and max have the same distribution in both classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    clips = []
    for label in labels:
        frames = 0.3 * rng.standard_normal((steps, dim))
        first, second = rng.choice(steps, size=2, replace=False)
        frames[first, 0] += 2.0
        frames[first if label else second, 1] += 2.0
        clips.append(frames.astype(np.float32))
    return clips, labels.astype(np.float32)


def fit(model: torch.nn.Module, clips: list[np.ndarray], labels: np.ndarray, steps: int = 80) -> float:
    """Train ``model`` (an encoder) + a linear readout on clips, return the PCC on fresh clips of the same kind."""

    def tensors(frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = torch.from_numpy(np.stack([pool_frames(f) for f in frames]))
        return pooled, torch.from_numpy(np.concatenate(frames)), torch.tensor([len(f) for f in frames])

    torch.manual_seed(0)
    readout = torch.nn.Linear(model.out_dim, 1)
    optimiser = torch.optim.Adam([*model.parameters(), *readout.parameters()], lr=1e-2)
    pooled, frames, lengths = tensors(clips)
    target = torch.from_numpy(labels)
    model.train()
    with torch_threads(1):  # tiny matrices: one thread is fastest, and far faster on a busy machine
        for _ in range(steps):
            loss = ((readout(model(pooled, frames, lengths)).squeeze(1) - target) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        test_clips, test_labels = co_occurrence_clips(200, seed=1)
        with torch.no_grad():
            pred = readout(model(*tensors(test_clips))).squeeze(1).numpy()
    return mean_pcc(np.tile(pred[:, None], 6), np.tile(test_labels[:, None], 6))


@pytest.fixture(scope="module")
def co_occurrence() -> tuple[list[np.ndarray], np.ndarray, float]:
    clips, labels = co_occurrence_clips(256)
    pooled = PooledStatistics(4, EncoderConfig(stats=["mean", "std", "min", "max"]))
    return clips, labels, fit(pooled, clips, labels)


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_encoders_learn_a_co_occurrence_that_pooling_misses(name, co_occurrence):
    clips, labels, pooled_pcc = co_occurrence
    model = build_encoder(4, EncoderConfig(name=name, hidden=12, heads=2, dropout=0.0))
    assert abs(pooled_pcc) < 0.2
    assert fit(model, clips, labels) > 0.7


def test_docs_encoder_example_runs(capsys):
    page = (Path(__file__).parents[1] / "docs" / "method.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"fusion reads:\n\n```python\n(.*?)```", page, flags=re.S)
    exec(compile(code, "docs/method.md", "exec"), {})
    expected = code.strip().splitlines()[-1].removeprefix("# ")
    assert capsys.readouterr().out.strip() == expected
