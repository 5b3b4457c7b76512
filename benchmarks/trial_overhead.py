"""Where a search trial's wall time goes: training epochs vs. the fixed cost of its Ray Train runs (issue 12, item 7).

Runs a small search through the product itself (:func:`ms2l_ray.studies.search.tuner.run_search`, a local Ray
instance, real ``TorchTrainer`` jobs, a real SQLite MLflow store), one trial at a time and no early stopping, so
each trial's wall time is its own: ``--trials`` trials of the ``search_spaces/smoke.yaml`` model sizes (built-in
data) with ``--epochs`` pretraining epochs and a 3-epoch linear probe. Per trial it prints the trial run's
wall time in MLflow, its pretraining epochs (Σ ``epoch_time_s``), their share of the wall time, and how many Ray
Train runs the trial started (run folders under the search's Train storage).

Usage (the before/after figures in the README ran this file against each commit's package, via ``PYTHONPATH``)::

    OMP_NUM_THREADS=1 python benchmarks/trial_overhead.py [--trials 3] [--epochs 4] [--cpus 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml


def space(trials: int, epochs: int) -> dict[str, object]:
    """The benchmark's search space: smoke sizes, ``trials`` random learning rates, no early stopping."""
    return {
        "description": "trial-overhead benchmark",
        "preset": "smoke",
        "config": {"pretrain": {"epochs": epochs, "step_size": max(1, epochs // 2)},
                   "evaluation": {"optim": {"epochs": 3}},
                   "data": {"builtin_sequences": 200, "max_frames": 20, "val_fraction": 0.2}},
        "evaluation": {"strategy": "linear"},
        "metric": "val_top1",
        "mode": "max",
        "proxy": "val_knn_top1",
        "num_samples": trials,
        "max_concurrent": 1,
        "sampler": {"type": "random", "seed": 0},
        "scheduler": {"type": "none"},
        "parameters": {"pretrain.lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4, help="pretraining epochs per trial")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (one trial holds all)")
    a = p.parse_args()

    import ray

    from ms2l_ray.jobs.spec import Resources
    from ms2l_ray.jobs.tracked import Tracking
    from ms2l_ray.studies.search.space import load_space
    from ms2l_ray.studies.search.tuner import run_search
    from ms2l_ray.tracking.query import children
    from ms2l_ray.tracking.runs import client

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        space_file = root / "overhead.yaml"
        space_file.write_text(yaml.safe_dump(space(a.trials, a.epochs)))
        uri = f"sqlite:///{root / 'mlflow.db'}"
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
        t0 = time.perf_counter()
        result = run_search(load_space(space_file), name="overhead", storage_path=str(root / "ray"),
                            tracking=Tracking(uri, "overhead"), resources=Resources(cpus_per_worker=float(a.cpus)),
                            verbose=0)
        total = time.perf_counter() - t0
        c = client(uri)
        train_runs = sorted(d.name for d in (root / "ray" / "overhead" / "train").iterdir())
        print(f"\n{a.trials} trials, one at a time, {a.epochs} pretraining epochs + 3 probe epochs each, "
              f"{a.cpus} CPUs; search wall {total:.0f} s\n")
        print("| trial | wall (s) | pretraining epochs (s) | share | Ray Train runs |")
        print("|---|---:|---:|---:|---:|")
        walls, epochs = [], []
        assert result.parent_run_id is not None
        for t in children(uri, result.parent_run_id):
            tid = t.data.tags["trial_id"]
            wall = (t.info.end_time - t.info.start_time) / 1000
            pre = [j for j in children(uri, t.info.run_id) if j.data.tags.get("kind") == "pretrain"]
            ep = sum(m.value for j in pre for m in c.get_metric_history(j.info.run_id, "epoch_time_s"))
            n_train = sum(1 for r in train_runs if r.startswith(f"{tid}-"))
            walls.append(wall)
            epochs.append(ep)
            print(f"| {tid} | {wall:.1f} | {ep:.1f} | {100 * ep / wall:.0f} % | {n_train} |")
        print(f"| mean | {sum(walls) / len(walls):.1f} | {sum(epochs) / len(epochs):.1f} | "
              f"{100 * sum(epochs) / sum(walls):.0f} % | |")
        ray.shutdown()


if __name__ == "__main__":
    main()
