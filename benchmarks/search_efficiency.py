"""Does a search pay for itself? Grid vs. random vs. TPE vs. TPE + ASHA on a space small enough to grid (issue 13).

Every search runs through the product itself (:func:`ms2l_ray.studies.search.tuner.run_search` on a local Ray instance,
real ``TorchTrainer`` jobs, no MLflow), with the sampler and scheduler chosen in the space data:

- the space: ``tasks.jigsaw_weight`` ∈ {0, 1} (jigsaw on/off; motion and contrastive always on, so every point
  is a different model) × ``tasks.temperature`` ∈ {0.1, 0.3, 1.0} × ``tasks.mask_ratio`` ∈ {0.2, 0.4} = 12 points,
  on the built-in data at the ``search_spaces/quick.yaml`` sizes (600 sequences, 4 pretraining epochs, 5-epoch
  linear probe). This is smaller than the issue's suggestion (all three task weights on/off × 3 × 2 = 42 points)
  so that the whole benchmark fits about 30–40 minutes on 2 cores;
- ``grid``: every point once at the full budget (sampler grid, no early stopping; the proxy is probed every epoch,
  so its fidelity is measured over all 12 points);
- ``random`` (Bergstra & Bengio 2012), ``tpe``: ``--samples`` trials at the full budget;
- ``tpe+asha``: ``--asha-samples`` trials, ASHA on the KNN proxy at epochs 1, 2, 4 (Li et al. 2020).

The training seed is the same in every search (``--seed``), and only the sampler seed changes between the
``--seeds`` repetitions: a configuration gets the same objective whichever method visits it, so the grid's values
are the ground truth the other methods are measured against.

Columns: the best validation linear top-1 found (mean ± std over sampler seeds), its test top-1 (information, never
selected on), compute spent (pretraining epochs summed over trials — the linear probe of a finished trial adds a
small constant — and wall time), and the fraction of the grid's compute after which a method's best-so-far first came
within ``--within`` points of the grid's best (trials taken in the order the sampler proposed them; the mean over
the seeds that got there, and how many did). Then the proxy's fidelity per rung (Spearman, Kendall τ-b between
the proxy at each rung and the final objective; :mod:`ms2l_ray.studies.search.fidelity`), and the same for both
proxies — KNN (``val_knn_top1``) and the linear probe on cached features (``val_probe_top1``,
:mod:`ms2l_ray.train.probe_proxy`) — over the grid's points, which ran at the full budget. ``--proxy`` picks the one
ASHA cuts on.

Full run (measured: 3243 s wall on a shared 2-core machine; table and reading in the README, "Searching")::

    OMP_NUM_THREADS=1 python benchmarks/search_efficiency.py --seeds 3 --samples 6 --asha-samples 8 --cpus 2

Toy run (proves the pipeline; the numbers mean nothing — every toy trial sits near chance. Measured: 16 min
wall on a 2-core machine under a load average of ~6–13 from other jobs; a few minutes on a quiet one)::

    OMP_NUM_THREADS=1 python benchmarks/search_efficiency.py --toy
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ms2l_ray.studies.search.space import SearchSpace, parse_space, with_overrides
from ms2l_ray.studies.search.summary import SearchResult, TrialRow, format_table

QUICK_CONFIG: dict[str, Any] = {  # search_spaces/quick.yaml sizes
    "model": {"hidden_size": 64, "head_hidden": 128, "proj_dim": 64},
    "pretrain": {"epochs": 4, "batch_size": 64, "step_size": 3},
    "evaluation": {"optim": {"epochs": 5, "batch_size": 64, "step_size": 4}},
    "data": {"builtin_sequences": 600, "max_frames": 32, "val_fraction": 0.15},
}
TOY_CONFIG: dict[str, Any] = {
    "pretrain": {"epochs": 2, "step_size": 2},
    "evaluation": {"optim": {"epochs": 2}},
    "data": {"builtin_sequences": 200, "max_frames": 20, "val_fraction": 0.2},
}
PARAMETERS: dict[str, Any] = {
    "tasks.jigsaw_weight": {"type": "categorical", "choices": [0.0, 1.0]},
    "tasks.temperature": {"type": "categorical", "choices": [0.1, 0.3, 1.0]},
    "tasks.mask_ratio": {"type": "categorical", "choices": [0.2, 0.4]},
}
TOY_PARAMETERS: dict[str, Any] = {
    "tasks.jigsaw_weight": {"type": "categorical", "choices": [0.0, 1.0]},
    "tasks.temperature": {"type": "categorical", "choices": [0.1, 1.0]},
}


def space_for(method: str, preset: str, config: dict[str, Any], parameters: dict[str, Any], samples: int,
              n_startup: int, proxy: str = "val_knn_top1") -> SearchSpace:
    """The benchmark space with the method's sampler and scheduler — as data, validated like any space file."""
    epochs = config["pretrain"]["epochs"]
    raw: dict[str, Any] = {"name": method.replace("+", "_"), "preset": preset,
                           "config": copy.deepcopy(config), "evaluation": {"strategy": "linear"},
                           "metric": "val_top1", "mode": "max", "proxy": proxy, "max_concurrent": 2,
                           "parameters": copy.deepcopy(parameters), "fidelity": {"probe_every": 1}}
    if method == "grid":
        raw.update(sampler={"type": "grid"}, scheduler={"type": "none"})
    elif method == "random":
        raw.update(sampler={"type": "random"}, scheduler={"type": "none"}, num_samples=samples)
    elif method == "tpe":
        raw.update(sampler={"type": "tpe", "n_startup_trials": n_startup}, scheduler={"type": "none"},
                   num_samples=samples)
    elif method == "tpe+asha":
        raw.update(sampler={"type": "tpe", "n_startup_trials": n_startup}, num_samples=samples,
                   scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": epochs})
    else:
        raise ValueError(f"unknown method {method!r}")
    return parse_space(raw, f"benchmark:{method}")


def trial_epochs(row: TrialRow) -> int:
    """Pretraining epochs a trial ran: all of them when finished, up to the cut when early-stopped."""
    if row.status in ("finished", "early_stopped"):
        return int(row.epoch or 0)
    return 0


def fraction_to_reach(rows: list[TrialRow], target: float, grid_epochs: int) -> float | None:
    """Share of the grid's epochs spent when the best-so-far first reached ``target`` (None: never)."""
    spent, best = 0, -math.inf
    for r in rows:  # creation order = the order the sampler proposed them
        spent += trial_epochs(r)
        if r.status == "finished" and r.objective is not None:
            best = max(best, r.objective)
            if best >= target:
                return spent / grid_epochs
    return None


@dataclass
class Run:
    method: str
    seed: int
    result: SearchResult
    wall_s: float

    @property
    def epochs(self) -> int:
        return sum(trial_epochs(r) for r in self.result.rows)


@dataclass
class MethodRuns:
    method: str
    runs: list[Run] = field(default_factory=list)


def pm(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def efficiency_table(methods: list[MethodRuns], grid: Run, within: float) -> list[list[str]]:
    best_row = grid.result.best
    grid_best = float(best_row.objective) if best_row is not None and best_row.objective is not None else math.nan
    head = ["method", "seeds", "trials", "best val top-1", "its test top-1", "pretrain epochs", "wall s",
            "epochs / grid's", f"reached grid best - {within:g} at (share of grid epochs)"]
    out = [head]
    for m in methods:
        best = [r.result.best.objective for r in m.runs if r.result.best is not None]
        test = [r.result.best.metrics.get("test_top1", math.nan) for r in m.runs if r.result.best is not None]
        reach = [fraction_to_reach(r.result.rows, grid_best - within, grid.epochs) for r in m.runs]
        got = [f for f in reach if f is not None]
        reach_s = (f"{pm(got)} ({len(got)}/{len(reach)} seeds)" if got else f"never (0/{len(reach)} seeds)")
        out.append([m.method, str(len(m.runs)), pm([float(len(r.result.rows)) for r in m.runs], 1),
                    pm([float(b) for b in best if b is not None]), pm(test),
                    pm([float(r.epochs) for r in m.runs], 1), pm([r.wall_s for r in m.runs], 0),
                    pm([r.epochs / grid.epochs for r in m.runs]), reach_s])
    return out


COMPARED_PROXIES = ("val_knn_top1", "val_probe_top1")  # both reported at every probe epoch (train.pretrain.knn_probe)


def proxy_comparison(grid: Run, storage: Path) -> list[list[str]]:
    """Spearman/Kendall of each proxy at each epoch vs. the final objective over the grid's points.

    The grid ran every point at the full budget with a probe every epoch, so both proxies' histories sit in Tune's
    per-trial results; they are read back here for the proxies the search did not cut on.
    """
    from ray.tune import ExperimentAnalysis

    from ms2l_ray.studies.search.fidelity import TrialHistory, rung_correlation
    from ms2l_ray.studies.search.summary import proxy_history

    frames = ExperimentAnalysis(str(storage / grid.result.name)).trial_dataframes
    out = [["proxy", "epoch", "points", "Spearman", "Kendall tau-b"]]
    for proxy in COMPARED_PROXIES:
        hist = [TrialHistory(r.trial_id, r.status, proxy_history(frames.get(r.trial_id), proxy), r.objective)
                for r in grid.result.rows]
        for epoch in sorted({e for h in hist for e in h.proxies}):
            c = rung_correlation(hist, epoch)
            out.append([proxy, str(epoch), str(c.n), "-" if c.spearman is None else f"{c.spearman:+.2f}",
                        "-" if c.kendall is None else f"{c.kendall:+.2f}"])
    return out


def fidelity_table(methods: list[MethodRuns]) -> list[list[str]]:
    out = [["method", "seed", "epoch", "finished trials", "Spearman", "Kendall tau-b", "warnings"]]
    for m in methods:
        for r in m.runs:
            fid = r.result.fidelity
            for rung in fid.rungs:
                out.append([m.method, str(r.seed), str(rung.epoch), str(rung.n),
                            "-" if rung.spearman is None else f"{rung.spearman:+.2f}",
                            "-" if rung.kendall is None else f"{rung.kendall:+.2f}", str(len(fid.warnings()))])
    return out


def main() -> None:
    from ms2l_ray.jobs.cluster import ensure_ray
    from ms2l_ray.studies.search.tuner import run_search

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="sampler seeds per method (grid: one)")
    p.add_argument("--samples", type=int, default=6, help="trials of random and tpe")
    p.add_argument("--asha-samples", type=int, default=8, help="trials of tpe+asha")
    p.add_argument("--n-startup", type=int, default=3, help="random trials before TPE models the results")
    p.add_argument("--within", type=float, default=1.0, help="points below the grid's best that count as found")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    p.add_argument("--methods", default="grid,random,tpe,tpe+asha")
    p.add_argument("--toy", action="store_true", help="tiny sizes and a 4-point grid: a pipeline check, not a result")
    p.add_argument("--storage", default=None, help="where the searches keep their state (default: a temp folder)")
    p.add_argument("--proxy", default="val_knn_top1", choices=("val_knn_top1", "val_probe_top1"),
                   help="the proxy ASHA cuts on (the grid reports the fidelity of both either way)")
    a = p.parse_args()
    preset, config, params = ("smoke", TOY_CONFIG, TOY_PARAMETERS) if a.toy else ("small", QUICK_CONFIG, PARAMETERS)
    if a.toy:
        a.seeds, a.samples, a.asha_samples, a.n_startup = min(a.seeds, 1), 2, 3, 1
    methods = [m.strip() for m in a.methods.split(",")]
    if methods[0] != "grid":
        raise SystemExit("--methods must start with grid: the other methods are measured against it")
    ensure_ray(num_cpus=a.cpus)
    storage = Path(a.storage or tempfile.mkdtemp(prefix="ms2l-search-bench-"))
    t_all = time.perf_counter()
    done: list[MethodRuns] = []
    for method in methods:
        m = MethodRuns(method)
        samples = a.asha_samples if method == "tpe+asha" else a.samples
        base = space_for(method, preset, config, params, samples, a.n_startup, a.proxy)
        for seed in range(1 if method == "grid" else a.seeds):
            space = with_overrides(base, seed=seed)
            t0 = time.perf_counter()
            result = run_search(space, name=f"{space.name}-s{seed}-{int(time.time())}", storage_path=str(storage),
                                verbose=0)
            m.runs.append(Run(method, seed, result, time.perf_counter() - t0))
            print(f"[bench] {method} seed {seed}: {len(result.rows)} trials, "
                  f"best {result.best.objective if result.best else float('nan'):.2f}, "
                  f"{m.runs[-1].epochs} epochs, {m.runs[-1].wall_s:.0f}s", flush=True)
        done.append(m)
    grid = done[0].runs[0]
    print(f"\nSearch efficiency ({'toy sizes' if a.toy else 'quick sizes'}, {len(grid.result.rows)}-point grid, "
          f"grid best val top-1 {grid.result.best.objective if grid.result.best else float('nan'):.2f}; "
          f"total wall {time.perf_counter() - t_all:.0f}s on {a.cpus} CPUs):\n")
    print(format_table(efficiency_table(done, grid, a.within)))
    print(f"\nProxy fidelity ({a.proxy} at each rung vs. final val_top1 over the finished trials):\n")
    print(format_table(fidelity_table(done)))
    print("\nBoth proxies on the grid (every point at the full budget, probed every epoch) vs. final val_top1:\n")
    print(format_table(proxy_comparison(grid, storage)))


if __name__ == "__main__":
    main()
