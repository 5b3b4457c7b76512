"""MS²L pretraining vs a random encoder under the same linear-evaluation protocol (issue: measured result).

Runs, in-process with the plain loops (no Ray, so the figure is the method, not the platform):
1. MS²L pretraining with ``--preset`` on the configured dataset's training part;
2. linear evaluation (frozen encoder, model selection on validation) of the pretrained encoder;
3. the same linear evaluation of a randomly initialised encoder.

Usage::

    python benchmarks/small_protocol.py [--preset small] [--device cpu|cuda] [--seed 0] [--set key=value ...]
    python benchmarks/small_protocol.py --dataset ucla.arrow --set data.split=ucla

Prints a Markdown table of top-1/top-5 on validation and test plus wall times.
"""

from __future__ import annotations

import argparse
import time

import torch

from ms2l_ray.config import load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.train.evaluate import evaluate
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.pretrain import pretrain
from ms2l_ray.train.runtime import resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default=None)
    p.add_argument("--strategy", default="linear")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args()
    delta = {"device": a.device, "seed": a.seed, "evaluation": {"strategy": a.strategy}}
    if a.dataset:
        delta["data"] = {"dataset": a.dataset}
    cfg = load_config(a.preset, None, a.overrides, delta)
    ctx = LoopContext(device=resolve_device(cfg.device), log=lambda m: print(m, flush=True))
    t0 = time.perf_counter()
    data, splits = load_dataset(cfg.data, cfg.seed)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    pre = pretrain(cfg, data, splits, ctx)
    t_pre = time.perf_counter() - t0
    rows = []
    for label, model in (("MS²L pretrained", pre.model), ("random init", None)):
        t0 = time.perf_counter()
        res = evaluate(cfg, data, splits, model, ctx)
        rows.append((label, res.metrics, time.perf_counter() - t0))
    dev = torch.cuda.get_device_name(0) if ctx.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"\n{a.strategy} evaluation, preset {a.preset}, dataset {cfg.data.dataset} ({cfg.data.split}: "
          f"train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}), seed {cfg.seed}, {dev}")
    print(f"data {t_data:.1f}s, pretraining {cfg.pretrain.epochs} epochs {t_pre:.1f}s "
          f"(final val KNN top-1 {pre.final.get('val_knn_top1', float('nan')):.1f})\n")
    print("| encoder | val top-1 | val top-5 | test top-1 | test top-5 | eval time (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, m, t in rows:
        print(f"| {label} | {m['val_top1']:.1f} | {m['val_top5']:.1f} | {m['test_top1']:.1f} | {m['test_top5']:.1f} "
              f"| {t:.1f} |")
    gain = rows[0][1]["test_top1"] - rows[1][1]["test_top1"]
    print(f"\npretraining gain on test top-1: {gain:+.1f} points")


if __name__ == "__main__":
    main()
