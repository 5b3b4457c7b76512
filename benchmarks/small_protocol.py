"""MS²L pretraining vs a random encoder under the same linear-evaluation protocol (issue: measured result).

Runs, in-process with the plain loops (no Ray, so the figure is the method, not the platform):
1. MS²L pretraining with ``--preset`` on the configured dataset's training part;
2. linear evaluation (frozen encoder, model selection on validation) of the pretrained encoder;
3. the same linear evaluation of a randomly initialised encoder.

Usage::

    python benchmarks/small_protocol.py [--preset small] [--device cpu|cuda] [--seed 0] [--set key=value ...]
    python benchmarks/small_protocol.py --dataset ucla.arrow --set data.split=ucla

Prints a Markdown table of top-1/top-5 on validation and test plus wall times, for two linear probes:
``reference`` (the configured optimiser, e.g. Adam 1e-3 for 60 epochs, raw features) and ``fair`` (the same
probe over ``--fair-lrs`` × raw/standardised features, the setting picked per encoder on validation).
``--save DIR`` keeps the pretrained encoder (``ms2l evaluate --encoder DIR`` reads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from ms2l_ray.config import load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.model.artifact import save_pretrained
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
    p.add_argument("--fair-lrs", default="0.001,0.01,0.1", help="comma-separated probe lrs of the fair probe")
    p.add_argument("--save", default=None, help="folder to save the pretrained encoder in")
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
    if a.save:
        save_pretrained(a.save, pre.model, cfg, data.num_features)
    fair = dataclasses.replace(cfg, evaluation=dataclasses.replace(
        cfg.evaluation, lr_grid=[float(v) for v in a.fair_lrs.split(",")], standardize="select"))
    probes = {"reference": cfg, "fair": fair} if a.strategy == "linear" else {a.strategy: cfg}
    rows = []
    for label, model in (("MS²L pretrained", pre.model), ("random init", None)):
        for probe, pcfg in probes.items():
            t0 = time.perf_counter()
            res = evaluate(pcfg, data, splits, model, ctx)
            rows.append((label, probe, res.metrics, time.perf_counter() - t0))
    dev = torch.cuda.get_device_name(0) if ctx.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"\n{a.strategy} evaluation, preset {a.preset}, dataset {cfg.data.dataset} ({cfg.data.split}: "
          f"train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}), seed {cfg.seed}, {dev}")
    print(f"data {t_data:.1f}s, pretraining {cfg.pretrain.epochs} epochs {t_pre:.1f}s "
          f"(final val KNN top-1 {pre.final.get('val_knn_top1', float('nan')):.1f})\n")
    print("| encoder | probe | probe lr | standardised | val top-1 | val top-5 | test top-1 | test top-5 "
          "| eval time (s) |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for label, probe, m, t in rows:
        lr = m.get("probe_lr", float("nan"))
        st = {1.0: "yes", 0.0: "no"}.get(m.get("probe_standardized", -1.0), "-")
        print(f"| {label} | {probe} | {lr:g} | {st} | {m['val_top1']:.1f} | {m['val_top5']:.1f} | {m['test_top1']:.1f} "
              f"| {m['test_top5']:.1f} | {t:.1f} |")
    for probe in probes:
        pre_m, rnd_m = (m for _, p_, m, _ in rows if p_ == probe)
        print(f"pretraining gain on test top-1 ({probe} probe): {pre_m['test_top1'] - rnd_m['test_top1']:+.1f} points")

if __name__ == "__main__":
    main()
