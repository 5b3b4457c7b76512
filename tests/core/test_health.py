"""Pretext-task health (issue 16 item 5): each check fires on a constructed unhealthy history and stays quiet
on a learning one; the real smoke pretraining records the embedding-spread metrics and returns notes."""

from __future__ import annotations

import math

import torch

from ms2l_ray.config import Config, TaskConfig, load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.report.build import health_rows, health_section
from ms2l_ray.report.render import Section
from ms2l_ray.train.health import HealthNote, assess, embedding_stats, health_tag, parse_health_tag
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.pretrain import pretrain


def tasks(motion: float = 1.0, jigsaw: float = 1.0, contrastive: float = 1.0) -> Config:
    return Config(tasks=TaskConfig(motion_weight=motion, jigsaw_weight=jigsaw, contrastive_weight=contrastive))


HEALTHY_SPREAD = {"val_emb_std_mean": 0.15, "val_emb_std_min": 0.02, "val_emb_dead_frac": 0.0, "val_samples": 200.0}


def learning_history() -> list[dict[str, float]]:
    """Three epochs of a run where every task learns: jigsaw far above chance, contrastive not trivial at
    epoch 1, weighted losses within one order of magnitude, spread-out features."""
    first = {"epoch": 1.0, "train_motion_loss": 0.9, "train_jigsaw_loss": 1.6, "train_jigsaw_acc": 0.3,
             "train_contrastive_loss": 4.0, "train_contrastive_acc": 0.6, "val_motion_loss": 0.8,
             "val_jigsaw_loss": 1.5, "val_jigsaw_acc": 0.35, "val_contrastive_loss": 3.9, "val_contrastive_acc": 0.65}
    middle = {**first, "epoch": 2.0, "val_jigsaw_acc": 0.5, "val_jigsaw_loss": 1.2}
    last = {"epoch": 3.0, "train_motion_loss": 0.3, "train_jigsaw_loss": 0.9, "train_jigsaw_acc": 0.65,
            "train_contrastive_loss": 3.0, "train_contrastive_acc": 0.85, "val_motion_loss": 0.35,
            "val_jigsaw_loss": 1.0, "val_jigsaw_acc": 0.6, "val_contrastive_loss": 3.1, "val_contrastive_acc": 0.8,
            **HEALTHY_SPREAD}
    return [first, middle, last]


def test_a_learning_history_is_healthy() -> None:
    assert assess(learning_history(), tasks()) == []
    assert assess([], tasks()) == []


def test_jigsaw_stuck_at_chance_is_flagged() -> None:
    stuck = {"train_jigsaw_loss": math.log(6), "train_jigsaw_acc": 1 / 6, "val_jigsaw_loss": math.log(6),
             "val_jigsaw_acc": 1 / 6, **HEALTHY_SPREAD}
    notes = assess([dict(stuck, epoch=1.0), dict(stuck, epoch=2.0)], tasks(motion=0, contrastive=0))
    # band = 2·sqrt((1/6)(5/6)/200) = 0.0527
    assert notes == [HealthNote("jigsaw", "chance", "jigsaw stuck at chance at the last epoch: val accuracy 0.167 ≤ "
                                "chance 1/6 = 0.167 + 2 SE (0.053, n = 200); val loss 1.792 within 3 % of ln 3! "
                                "= 1.792")]


def test_chance_criteria_separately_and_only_for_an_active_jigsaw() -> None:
    cfg = tasks(motion=0, contrastive=0)
    # Accuracy just inside the 2-SE band, loss clearly learning: the accuracy criterion alone fires.
    acc_only = {"val_jigsaw_acc": 0.21, "val_jigsaw_loss": 1.5, **HEALTHY_SPREAD}
    assert [n.message for n in assess([acc_only], cfg)] == [
        "jigsaw stuck at chance at the last epoch: val accuracy 0.210 ≤ chance 1/6 = 0.167 + 2 SE (0.053, n = 200)"]
    # Just outside the band, loss 10 % under ln 6: quiet.
    assert assess([{**acc_only, "val_jigsaw_acc": 0.23}], cfg) == []
    # Without a validation size (no KNN epoch) only the loss criterion can fire, here on training metrics.
    train_only = {"train_jigsaw_acc": 0.17, "train_jigsaw_loss": 1.80}
    assert [n.message for n in assess([train_only], cfg)] == [
        "jigsaw stuck at chance at the last epoch: train loss 1.800 within 3 % of ln 3! = 1.792"]
    # k = 4 segments: 24 classes, chance 1/24 and ln 24.
    four = Config(tasks=TaskConfig(motion_weight=0, contrastive_weight=0, jigsaw_segments=4))
    at_chance = {"val_jigsaw_acc": 1 / 24, "val_jigsaw_loss": math.log(24), **HEALTHY_SPREAD}
    assert [n.message for n in assess([at_chance], four)] == [
        "jigsaw stuck at chance at the last epoch: val accuracy 0.042 ≤ chance 1/24 = 0.042 + 2 SE (0.028, n = 200); "
        "val loss 3.178 within 3 % of ln 4! = 3.178"]
    # An inactive jigsaw (weight 0) is not judged even if stale keys are present.
    assert assess([{**at_chance, "val_motion_loss": 0.3}], tasks(jigsaw=0, contrastive=0)) == []


def test_contrastive_solved_at_epoch_one_is_flagged() -> None:
    history = learning_history()
    history[0]["train_contrastive_acc"] = 1.0
    assert assess(history, tasks()) == [
        HealthNote("contrastive", "trivial", "contrastive solved from the first epoch: train accuracy 1.000 ≥ 0.99 "
                                             "at epoch 1 (the task barely shapes the encoder)")]
    history[0]["train_contrastive_acc"] = 0.98
    assert assess(history, tasks()) == []
    # Only epoch 1 counts: reaching 1.0 later is learning, not triviality.
    history[-1]["train_contrastive_acc"] = 1.0
    assert assess(history, tasks()) == []


def test_loss_scale_mismatch_is_flagged_on_weighted_terms() -> None:
    last = {"val_motion_loss": 0.01, "val_contrastive_loss": 4.0, "val_contrastive_acc": 0.8, **HEALTHY_SPREAD}
    assert assess([last], tasks(jigsaw=0)) == [
        HealthNote("motion", "scale", "loss scales differ: weighted contrastive term 4 vs motion 0.01 (400× > 100×, "
                                      "val, last epoch); rebalance tasks.motion_weight")]
    # The same losses weighted 100 : 1 are 1.0 vs 4.0 — balanced.
    assert assess([last], tasks(motion=100, jigsaw=0)) == []
    # One active task has nothing to compare with.
    assert assess([last], tasks(motion=0, jigsaw=0)) == []


def test_collapsed_features_are_flagged() -> None:
    last = {**learning_history()[-1], "val_emb_std_mean": 1e-5, "val_emb_std_min": 0.0}
    assert assess([last], tasks()) == [
        HealthNote("encoder", "collapse", "collapsed features: mean per-dimension std of the pooled validation "
                                          "embeddings 1.00e-05 < 0.001")]
    partial = {**learning_history()[-1], "val_emb_dead_frac": 0.5}
    assert assess([partial], tasks()) == [
        HealthNote("encoder", "collapse", "partially collapsed features: 50 % of embedding dimensions have std < "
                                          "0.001 × the mean std (0.15)")]
    assert assess([{**partial, "val_emb_dead_frac": 0.2}], tasks()) == []


def test_embedding_stats_are_per_dimension_population_std() -> None:
    f = torch.tensor([[0.0, 0.0, 0.0, 7.0], [2.0, 2.0, 2.0, 7.0]])  # per-dim std 1, 1, 1, 0
    assert embedding_stats(f) == {"emb_std_mean": 0.75, "emb_std_min": 0.0, "emb_dead_frac": 0.25, "samples": 2.0}
    assert embedding_stats(f[:1]) == {}
    assert embedding_stats(torch.zeros(3, 4))["emb_dead_frac"] == 1.0


def test_health_tag_round_trip_and_report_rows() -> None:
    notes = [HealthNote("jigsaw", "chance", "a"), HealthNote("encoder", "collapse", "b")]
    assert health_tag(notes) == '["a", "b"]' and health_tag([]) == "[]"
    assert parse_health_tag('["a", "b"]') == ["a", "b"]
    assert parse_health_tag(None) is None and parse_health_tag("not json") is None
    runs: list[tuple[str, str | None]] = [("jigsaw seed 0", health_tag(notes)), ("all seed 0", "[]"),
                                          ("old", None)]
    assert health_rows(runs) == [["jigsaw seed 0", "a; b"], ["all seed 0", "healthy"], ["old", "not assessed"]]
    sec = Section("Ablation x", "0" * 32)
    health_section(sec, runs)
    assert sec.blocks[0][0] == "p" and sec.blocks[0][1].startswith("**Pretext-task health** (1 of 3 pretrain runs")
    assert sec.blocks[1] == ("table", (["pretrain run", "health"], health_rows(runs)))
    empty = Section("Run y", "1" * 32)
    health_section(empty, [])
    assert empty.blocks == []


def test_smoke_pretraining_records_embedding_spread_and_notes() -> None:
    cfg = load_config("smoke")
    data, splits = load_dataset(cfg.data, cfg.seed)
    lines: list[str] = []
    result = pretrain(cfg, data, splits, LoopContext(log=lines.append))
    final = result.final
    for key in ("val_emb_std_mean", "val_emb_std_min"):
        assert math.isfinite(final[key]) and final[key] > 0, key
    assert final["val_emb_dead_frac"] == 0.0  # a healthy smoke encoder: no dimension is dead
    assert final["val_samples"] == float(len(splits.val))
    assert "val_emb_std_mean" not in result.history[0]  # measured with the KNN probe: the last epoch only
    # both proxies a search can cut on come from that probe (the linear one: ms2l_ray.train.probe_proxy)
    assert {"val_knn_top1", "val_probe_top1", "val_probe_top5"} <= set(final)
    assert "val_probe_top1" not in result.history[0]
    assert isinstance(result.health, list) and all(isinstance(n, HealthNote) for n in result.health)
    assert result.health == assess(result.history, cfg)
    health_lines = [line for line in lines if line.startswith("[health]")]
    assert health_lines == ([f"[health] {n.task} ({n.kind}): {n.message}" for n in result.health] or [
        "[health] pretext tasks look healthy (no chance-level, trivial, scale or collapse findings)"])

