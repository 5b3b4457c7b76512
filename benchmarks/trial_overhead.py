"""Where a search trial's wall time goes: training epochs vs. the fixed cost of its Ray Train runs (issue 12, item 7).

Runs a small search through the product itself (:func:`ms2l_ray.studies.search.tuner.run_search`, a local Ray
instance, real ``TorchTrainer`` jobs, a real SQLite MLflow store), one trial at a time and no early stopping, so
each trial's wall time is its own: ``--trials`` trials at the model and data sizes of ``search_spaces/quick.yaml``
(or ``--sizes smoke``: ``smoke.yaml``'s, where the epochs take well under a second and the wall time is the
fixed cost), built-in data, ``--epochs`` pretraining epochs and the space's linear probe. Per trial it prints
the trial run's wall time in MLflow and where it went (from the start and end times of its pretraining and
evaluation runs, and the pretraining's Σ ``epoch_time_s``), the epochs' share of the wall time, and how many
Ray Train runs the trial started (run folders under the search's Train storage).

Usage (the before/after figures in the README ran this file against each commit's package, via ``PYTHONPATH``)::

    OMP_NUM_THREADS=1 python benchmarks/trial_overhead.py [--sizes quick|smoke] [--trials 3] [--epochs 4] [--cpus 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

SIZES = {  # preset and config of each --sizes choice: the two shipped search spaces' models and data
    "smoke": ("smoke", {"evaluation": {"optim": {"epochs": 3}},
                        "data": {"builtin_sequences": 200, "max_frames": 20, "val_fraction": 0.2}}),
    "quick": ("small", {"model": {"hidden_size": 64, "head_hidden": 128, "proj_dim": 64},
                        "evaluation": {"optim": {"epochs": 5, "batch_size": 64, "step_size": 4}},
                        "data": {"builtin_sequences": 600, "max_frames": 32, "val_fraction": 0.15}}),
}


def space(sizes: str, trials: int, epochs: int) -> dict[str, object]:
    """The benchmark's search space: ``sizes``'s model and data, ``trials`` random learning rates, no early stop."""
    preset, config = SIZES[sizes]
    pretrain = {"epochs": epochs, "step_size": max(1, epochs // 2), **({"batch_size": 64} if sizes == "quick" else {})}
    return {
        "description": "trial-overhead benchmark",
        "preset": preset,
        "config": {**config, "pretrain": pretrain},
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
    p.add_argument("--sizes", choices=sorted(SIZES), default="quick",
                   help="model and data sizes: search_spaces/quick.yaml's (default) or smoke.yaml's")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4, help="pretraining epochs per trial")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (one trial holds all)")
    p.add_argument("--keep", default=None, help="folder to keep the search's MLflow store and outputs in")
    a = p.parse_args()

    import ray

    from ms2l_ray.jobs.cluster import ensure_ray
    from ms2l_ray.jobs.spec import Resources
    from ms2l_ray.jobs.tracked import Tracking
    from ms2l_ray.studies.search.space import load_space
    from ms2l_ray.studies.search.tuner import run_search
    from ms2l_ray.tracking.query import children
    from ms2l_ray.tracking.runs import client

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep).resolve() if a.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        space_file = root / "overhead.yaml"
        space_file.write_text(yaml.safe_dump(space(a.sizes, a.trials, a.epochs)))
        uri = f"sqlite:///{root / 'mlflow.db'}"
        ensure_ray(num_cpus=a.cpus, log_to_driver=False)  # as the CLI starts it (Train's poll interval included)
        t0 = time.perf_counter()
        result = run_search(load_space(space_file), name="overhead", storage_path=str(root / "ray"),
                            tracking=Tracking(uri, "overhead"), resources=Resources(cpus_per_worker=float(a.cpus)),
                            verbose=0)
        total = time.perf_counter() - t0
        c = client(uri)
        train_runs = sorted(d.name for d in (root / "ray" / "overhead" / "train").iterdir())
        print(f"\n{a.trials} trials at {a.sizes} sizes, one at a time, {a.epochs} pretraining epochs + a linear "
              f"probe each, {a.cpus} CPUs; search wall {total:.0f} s\n")
        print("| trial | wall (s) | until pretraining run (s) | pretraining run (s) | pretraining epochs (s) "
              "| evaluation run (s) | after it (s) | epochs' share | Ray Train runs |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = []
        assert result.parent_run_id is not None
        for t in children(uri, result.parent_run_id):
            tid = t.data.tags["trial_id"]
            jobs = {j.data.tags.get("kind"): j.info for j in children(uri, t.info.run_id)}
            pre, ev = jobs["pretrain"], jobs["evaluate"]
            epochs = sum(m.value for m in c.get_metric_history(pre.run_id, "epoch_time_s"))
            trial = t.info
            row = [(trial.end_time - trial.start_time) / 1000, (pre.start_time - trial.start_time) / 1000,
                   (pre.end_time - pre.start_time) / 1000, epochs, (ev.end_time - ev.start_time) / 1000,
                   (trial.end_time - max(pre.end_time, ev.end_time)) / 1000]
            rows.append(row)
            n_train = sum(1 for r in train_runs if r.startswith(f"{tid}-"))
            cells = " | ".join(f"{v:.1f}" for v in row)
            print(f"| {tid} | {cells} | {100 * epochs / row[0]:.0f} % | {n_train} |")
        mean = [sum(col) / len(rows) for col in zip(*rows, strict=True)]
        print("| mean | " + " | ".join(f"{v:.1f}" for v in mean) + f" | {100 * mean[3] / mean[0]:.0f} % | |")
        ray.shutdown()


if __name__ == "__main__":
    main()
