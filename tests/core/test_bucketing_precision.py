"""Length-bucketed batch plans (``data.bucketing``) and mixed precision (``precision``), on CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from tensor_helpers import stable_history

from ms2l_ray.config import Config, ConfigError, from_dict, load_config, to_dict
from ms2l_ray.data.source import load_dataset
from ms2l_ray.train.batches import eval_batches, eval_positions, train_batches
from ms2l_ray.train.evaluate import evaluate
from ms2l_ray.train.features import extract_features
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.precision import PRECISION_METRIC, Precision, precision_name, resolve_precision
from ms2l_ray.train.pretrain import new_model, pretrain

QUIET = LoopContext(progress=False)


def smoke(*overrides: str) -> Config:
    return load_config("smoke", overrides=["data.builtin_sequences=160", *overrides])


def _pretrain_history(cfg: Config) -> list[dict[str, float]]:
    data, splits = load_dataset(cfg.data, cfg.seed)
    return pretrain(cfg, data, splits, QUIET).history


# ---- the bucketed plan -----------------------------------------------------------------------------------

def test_bucketed_plan_uses_every_index_once_per_epoch() -> None:
    idx = np.arange(1000) + 7
    lengths = np.random.default_rng(0).integers(20, 300, len(idx))
    for epoch in range(3):
        plan = train_batches(idx, 32, seed=4, epoch=epoch, lengths=lengths, min_batch=1)
        assert [len(b) for b in plan].count(32) == 31 and sorted(len(b) for b in plan)[0] == 8  # 1000 = 31·32 + 8
        assert np.array_equal(np.sort(np.concatenate(plan)), idx)


def test_bucketed_batches_pad_to_their_own_lengths() -> None:
    # 8 lengths × 16 clips, one chunk: each batch holds clips of one length, so it pads to exactly that length.
    lengths = np.repeat(np.arange(10, 90, 10), 16)
    idx = np.arange(len(lengths))
    plan = train_batches(idx, 16, seed=0, epoch=2, lengths=lengths)
    assert sorted(int(lengths[b].max()) for b in plan) == [10, 20, 30, 40, 50, 60, 70, 80]
    assert all(lengths[b].min() == lengths[b].max() for b in plan)
    # Distinct lengths 0..127: batch k holds exactly lengths 16k..16k+15; the random plan pads far more.
    lengths = np.arange(128)
    plan = train_batches(idx, 16, seed=0, epoch=2, lengths=lengths)
    assert sorted(int(lengths[b].max()) for b in plan) == [15, 31, 47, 63, 79, 95, 111, 127]
    assert sorted(int(lengths[b].min()) for b in plan) == [0, 16, 32, 48, 64, 80, 96, 112]
    random_pad = sum(int(lengths[b].max()) for b in train_batches(idx, 16, seed=0, epoch=2))
    assert random_pad > 1.4 * (15 + 31 + 47 + 63 + 79 + 95 + 111 + 127)


def test_bucketed_chunks_bound_the_sort() -> None:
    # chunk_batches=1: each batch is one random chunk, sorted inside: the same membership as no sort at all.
    lengths = np.arange(64)
    idx = np.arange(64)
    one = train_batches(idx, 8, seed=3, epoch=0, lengths=lengths, chunk_batches=1)
    assert sorted(sorted(b.tolist()) for b in one) != [list(range(k, k + 8)) for k in range(0, 64, 8)]
    whole = train_batches(idx, 8, seed=3, epoch=0, lengths=lengths, chunk_batches=8)
    assert sorted(sorted(b.tolist()) for b in whole) == [list(range(k, k + 8)) for k in range(0, 64, 8)]
    with pytest.raises(ValueError, match="chunk_batches"):
        train_batches(idx, 8, seed=3, epoch=0, lengths=lengths, chunk_batches=0)
    with pytest.raises(ValueError, match="lengths must match"):
        train_batches(idx, 8, seed=3, epoch=0, lengths=lengths[:5])


def test_bucketed_plan_is_seeded_per_epoch() -> None:
    idx = np.arange(500)
    lengths = np.random.default_rng(1).integers(20, 60, len(idx))  # many ties: membership is random too
    a = train_batches(idx, 16, seed=9, epoch=1, lengths=lengths)
    b = train_batches(idx, 16, seed=9, epoch=1, lengths=lengths)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = train_batches(idx, 16, seed=9, epoch=2, lengths=lengths)
    assert len(c) == len(a)
    assert [x.tolist() for x in a] != [x.tolist() for x in c]  # another order …
    assert sorted(sorted(x.tolist()) for x in a) != sorted(sorted(x.tolist()) for x in c)  # … and membership
    d = train_batches(idx, 16, seed=10, epoch=1, lengths=lengths)
    assert [x.tolist() for x in a] != [x.tolist() for x in d]


def test_bucketed_ranks_are_disjoint_equal_and_in_step() -> None:
    idx = np.arange(1000)
    lengths = np.arange(1000)[::-1].copy()  # distinct lengths
    plans = [train_batches(idx, 64, seed=2, epoch=5, rank=r, world_size=4, lengths=lengths) for r in range(4)]
    assert [len(p) for p in plans] == [16, 16, 16, 16]  # 1000 = 15·64 + 40 → 16 steps, the last of 10 per rank
    assert all(len({len(p[s]) for p in plans}) == 1 for s in range(16))  # every step the same size on all ranks
    assert np.array_equal(np.sort(np.concatenate([np.concatenate(p) for p in plans])), idx)  # disjoint, complete
    for s in range(16):  # one global batch per step: rank r holds every 4th of its sorted clips
        tops = [int(lengths[p[s]].max()) for p in plans]
        assert max(tops) - min(tops) == 3
    # The step count equals the random plan's, so n_steps and ETA do not depend on the plan.
    for n, ws in ((103, 2), (1000, 4), (9, 1)):
        for r in range(ws):
            assert len(train_batches(np.arange(n), 16, seed=0, epoch=0, rank=r, world_size=ws,
                                     lengths=np.arange(n))) == \
                len(train_batches(np.arange(n), 16, seed=0, epoch=0, rank=r, world_size=ws))


def test_random_plan_is_unchanged_without_lengths() -> None:
    # The reference plan (data.bucketing: false), pinned from the committed code before bucketing existed.
    assert [b.tolist() for b in train_batches(np.arange(10), 4, seed=0, epoch=0)] == [[2, 9, 6, 4], [8, 5, 3, 1],
                                                                                     [7, 0]]
    assert [b.tolist() for b in train_batches(np.arange(11), 4, seed=1, epoch=2, rank=1, world_size=2)] == \
        [[5, 1], [7, 3], [10, 6]]


def test_eval_positions_sort_by_length_within_each_shard() -> None:
    lengths = np.array([5, 1, 4, 2, 3, 9, 7, 8, 6, 0])
    assert [p.tolist() for p in eval_positions(10, 3, rank=0, world_size=2, lengths=lengths)] == [[1, 3, 4], [2, 0]]
    assert [p.tolist() for p in eval_positions(10, 3, rank=1, world_size=2, lengths=lengths)] == [[9, 8, 6], [7, 5]]
    assert [p.tolist() for p in eval_positions(10, 3, rank=1, world_size=2)] == [[5, 6, 7], [8, 9]]
    idx = np.arange(10) * 10
    assert [b.tolist() for b in eval_batches(idx, 4, lengths=lengths)] == [[90, 10, 30, 40], [20, 0, 80, 60],
                                                                          [70, 50]]


def test_extract_features_returns_rows_in_index_order_when_bucketing() -> None:
    cfg = smoke()
    data, splits = load_dataset(cfg.data, cfg.seed)
    idx = splits.train[::-1][:37]

    def encode(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # row-local: batch composition-free
        return torch.cat([x[:, 0, :3], lengths.unsqueeze(1).float()], dim=1)

    kw: dict[str, Any] = dict(batch_size=8, max_frames=cfg.data.max_frames, device=torch.device("cpu"))
    plain_f, plain_y = extract_features(encode, data, idx, **kw)
    sorted_f, sorted_y = extract_features(encode, data, idx, bucketing=True, **kw)
    assert torch.equal(sorted_f, plain_f) and torch.equal(sorted_y, plain_y)
    assert plain_y.tolist() == data.labels[idx].tolist()
    assert plain_f[:, 3].tolist() == np.minimum(data.lengths[idx], cfg.data.max_frames).astype(float).tolist()


# ---- config --------------------------------------------------------------------------------------------------

def test_bucketing_and_precision_config_fields() -> None:
    cfg = Config()
    assert cfg.data.bucketing is False and cfg.precision == "auto"  # the reference's random batches by default
    with pytest.raises(ConfigError, match=r"precision: must be one of \('auto', 'fp32', 'bf16', 'fp16'\), got 'fp64'"):
        load_config("smoke", overrides=["precision=fp64"])
    with pytest.raises(ConfigError, match="data.bucketing: expected bool, got int 3"):
        load_config("smoke", overrides=["data.bucketing=3"])
    assert load_config("smoke", overrides=["data.bucketing=true"]).data.bucketing is True


def test_stored_configs_without_the_new_fields_replay_their_old_behaviour() -> None:
    old = to_dict(Config())
    del old["data"]["bucketing"], old["precision"]
    replay = from_dict(old)
    assert replay.data.bucketing is False and replay.precision == "fp32"
    assert "bucketing" not in old["data"]  # the caller's dict is left alone
    assert from_dict(to_dict(Config())) == Config()


# ---- training with bucketing -----------------------------------------------------------------------------

def test_pretraining_with_bucketing_is_reproducible() -> None:
    cfg = smoke("pretrain.epochs=2", "data.bucketing=true")
    first = _pretrain_history(cfg)
    assert stable_history(_pretrain_history(cfg)) == stable_history(first)
    plain = _pretrain_history(smoke("pretrain.epochs=2", "data.bucketing=false"))
    assert plain[0]["train_loss"] != first[0]["train_loss"]  # the plan changes the batches


# ---- precision -----------------------------------------------------------------------------------------------

def test_precision_resolution_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert [resolve_precision(p, cpu) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp64", cpu)
    auto = Precision.make("auto", cpu)
    assert auto.dtype is None and auto.scaler is None and auto.metrics() == {PRECISION_METRIC: 0.0}
    assert Precision.make("bf16", cpu).dtype == torch.bfloat16 and Precision.make("bf16", cpu).scaler is None
    half = Precision.make("fp16", cpu)
    assert half.dtype == torch.float16 and half.scaler is not None
    assert [precision_name(Precision.make(p, cpu).metrics()) for p in ("fp32", "bf16", "fp16")] == \
        ["fp32", "bf16", "fp16"]
    assert precision_name({}) is None
    with auto.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Precision.make("bf16", cpu).autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


# Smoke pretraining, random batches, fp32: the exact train losses of the committed loop from before precision
# and bucketing existed (git HEAD 6ac9686, CPU, torch 2.13; the same run's val_loss and KNN matched too).
FP32_TRAIN_LOSS = [6.864366173744202, 6.894499182701111]


def test_fp32_pretraining_numbers_are_unchanged() -> None:
    cfg = smoke("pretrain.epochs=2", "data.bucketing=false", "precision=fp32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the pinned values are single-threaded (a GEMM's sums depend on its thread split)
    try:
        hist = _pretrain_history(cfg)
        auto = _pretrain_history(smoke("pretrain.epochs=2", "data.bucketing=false"))  # auto → fp32 on CPU
    finally:
        torch.set_num_threads(threads)
    # 1e-6 relative: the second epoch's loss differs in its 7th digit between CPUs of the same torch build
    # (6.8944987 here vs 6.8944992 pinned; GEMM kernels differ by instruction set), while any change to the
    # loop's arithmetic moves it by far more.
    assert [h["train_loss"] for h in hist] == pytest.approx(FP32_TRAIN_LOSS, rel=1e-6, abs=0)
    assert [h[PRECISION_METRIC] for h in hist] == [0.0, 0.0]
    assert stable_history(auto) == stable_history(hist)


def test_bf16_pretraining_runs_on_cpu_with_finite_losses() -> None:
    hist = _pretrain_history(smoke("pretrain.epochs=2", "data.bucketing=false", "precision=bf16"))
    assert [h[PRECISION_METRIC] for h in hist] == [1.0, 1.0]
    for h in hist:
        for k in ("train_loss", "train_motion_loss", "train_jigsaw_loss", "train_contrastive_loss", "val_loss"):
            assert np.isfinite(h[k]), k
    assert hist[0]["train_loss"] != FP32_TRAIN_LOSS[0]  # autocast did run the heads in bf16
    assert abs(hist[0]["train_loss"] - FP32_TRAIN_LOSS[0]) < 0.05 * FP32_TRAIN_LOSS[0]


def test_fp16_pretraining_uses_the_grad_scaler() -> None:
    cfg = smoke("pretrain.epochs=1", "data.bucketing=false", "precision=fp16")
    data, splits = load_dataset(cfg.data, cfg.seed)
    states: dict[int, dict[str, Any]] = {}
    ctx = LoopContext(progress=False, hooks=[lambda e, m, make: states.__setitem__(e, make())])
    hist = pretrain(cfg, data, splits, ctx).history
    assert hist[0][PRECISION_METRIC] == 2.0 and np.isfinite(hist[0]["train_loss"])
    assert states[0]["scaler"] is not None and states[0]["scaler"]["scale"] > 0


def test_losses_are_computed_in_fp32_under_autocast() -> None:
    cfg = smoke()
    data, splits = load_dataset(cfg.data, cfg.seed)
    model = new_model(cfg, data, torch.device("cpu"))
    seen: dict[str, Any] = {}
    for name in ("motion_loss", "jigsaw_loss", "contrastive_loss"):
        module = getattr(model, name)
        original = module.forward

        def spy(*args: Any, _name: str = name, _orig: Any = original) -> Any:
            tensors = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            tensors += [t for a in args if isinstance(a, list) for t in a]
            seen[_name] = ({t.dtype for t in tensors}, torch.is_autocast_enabled("cpu"))
            return _orig(*args)

        module.forward = spy
    x, lengths, _ = data.batch(splits.train[:16], cfg.data.max_frames)
    with Precision.make("bf16", torch.device("cpu")).autocast():
        out = model(x, lengths, torch.Generator().manual_seed(0))
        head = model.jigsaw_head(torch.zeros(2, cfg.model.hidden_size))
    assert head.dtype == torch.bfloat16  # the heads do run in bf16 …
    assert seen == {k: ({torch.float32}, False) for k in ("motion_loss", "jigsaw_loss", "contrastive_loss")}
    assert out.loss.dtype == torch.float32  # … and every loss in fp32, outside autocast


@pytest.mark.parametrize("strategy", ["finetune", "linear"])
def test_bf16_evaluation_runs_on_cpu(strategy: str) -> None:
    cfg = smoke(f"evaluation.strategy={strategy}", "precision=bf16")
    data, splits = load_dataset(cfg.data, cfg.seed)
    res = evaluate(cfg, data, splits, None, QUIET)
    assert res.metrics[PRECISION_METRIC] == 1.0
    assert all(np.isfinite(h["train_loss"]) for h in res.history)
    assert 0.0 <= res.metrics["test_top1"] <= 100.0
