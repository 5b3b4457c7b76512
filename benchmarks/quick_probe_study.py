"""The built-in anomalies of the quick grid (issue 16): every quick cell under the old and the fair probe.

For each cell of ``ablations/quick.yaml`` (random encoder, motion, jigsaw, contrastive, all), in-process with
the plain loops (no Ray, no MLflow): pretrain with the grid's sizes, then linear-probe the frozen encoder twice
— with the old quick probe (Adam lr 0.1, raw features, 20 epochs) and with the fair probe (the same over lr
{0.001, 0.01, 0.1} × raw/standardised features, picked on validation). Prints one JSON line per cell: test and
validation top-1 of both probes, the chosen probe setting and the pretext-task health notes.

Usage::

    python benchmarks/quick_probe_study.py [--epochs 24] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from ms2l_ray.config import load_config, merge_deltas
from ms2l_ray.data.source import load_dataset
from ms2l_ray.train.evaluate import evaluate
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.pretrain import pretrain

CELLS: dict[str, tuple[float, float, float] | None] = {
    "random": None, "motion": (1, 0, 0), "jigsaw": (0, 1, 0), "contrastive": (0, 0, 1), "all": (1, 1, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    base = {"model": {"hidden_size": 64, "head_hidden": 128, "proj_dim": 64},
            "pretrain": {"epochs": a.epochs, "batch_size": 64, "step_size": max(1, a.epochs * 3 // 4)},
            "data": {"builtin_sequences": 1500, "max_frames": 32, "val_fraction": 0.15}, "log_every": 1000,
            "seed": a.seed, "evaluation": {"optim": {"epochs": 20, "lr": 0.1, "batch_size": 16, "step_size": 16}}}
    ctx = LoopContext(progress=False)
    for cell, w in CELLS.items():
        weights = {} if w is None else {"tasks": dict(zip(("motion_weight", "jigsaw_weight", "contrastive_weight"),
                                                          w, strict=True))}
        cfg = load_config("small", delta=merge_deltas(base, weights))
        data, splits = load_dataset(cfg.data, cfg.seed)
        t0 = time.perf_counter()
        pre = None if w is None else pretrain(cfg, data, splits, ctx)
        row: dict[str, object] = {"cell": cell, "epochs": a.epochs, "seed": a.seed,
                                  "pretrain_s": round(time.perf_counter() - t0, 1),
                                  "health": [] if pre is None else [n.message for n in pre.health]}
        fair = dataclasses.replace(cfg.evaluation, lr_grid=[0.001, 0.01, 0.1], standardize="select")
        for probe, ev in (("quick", cfg.evaluation), ("fair", fair)):
            r = evaluate(dataclasses.replace(cfg, evaluation=ev), data, splits, None if pre is None else pre.model, ctx)
            row[probe] = {k: round(v, 2) for k, v in r.metrics.items()
                          if k in ("val_top1", "test_top1", "probe_lr", "probe_standardized")}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
