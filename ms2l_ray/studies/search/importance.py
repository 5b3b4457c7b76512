"""Which hyperparameters mattered: Optuna's parameter importance over the search's persisted study.

The study lives in SQLite beside Tune's state, so importance sees every trial Optuna was told about, across
driver restarts. Only COMPLETE trials count (the evaluated ones; trials cut by ASHA are PRUNED, see
:mod:`ms2l_ray.studies.search.sampling`). Optuna's default evaluator (PED-ANOVA in Optuna ≥ 5) handles conditional
parameters; fANOVA is the fallback. Too few complete trials, no parameter that varied, or one objective value
for all of them is reported as a reason instead of numbers — a search of two trials should not fail at the very end.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Importance:
    """Optuna's hyperparameter importances of a search, or the ``reason`` they could not be computed."""

    values: dict[str, float] = field(default_factory=dict)  # parameter → normalised importance, descending
    evaluator: str = ""
    n_complete: int = 0
    reason: str | None = None  # why ``values`` is empty


def _complete_trials(study: Any) -> list[Any]:
    import optuna

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def param_importance(storage_url: str, study_name: str) -> Importance:
    """Importance of each searched parameter for the final objective; degenerate cases give a ``reason``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except (KeyError, ValueError) as exc:
        return Importance(reason=f"no Optuna study {study_name!r} in {storage_url}: {exc}")
    complete = _complete_trials(study)
    if len(complete) < 2:
        return Importance(n_complete=len(complete), reason=f"needs >= 2 complete trials, found {len(complete)}")
    varied = {k for t in complete for k in t.params if len({repr(u.params.get(k)) for u in complete}) > 1}
    if not varied:
        return Importance(n_complete=len(complete), reason="no parameter took more than one value in complete trials")
    if len({t.value for t in complete}) < 2:  # every evaluator would spread importance evenly: meaningless
        return Importance(n_complete=len(complete), reason=f"all {len(complete)} complete trials have the same "
                                                           f"objective ({complete[0].value:g})")
    reason = ""
    for evaluator in (None, optuna.importance.FanovaImportanceEvaluator(seed=0)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "few trials per regime": expected in small searches
                values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            continue
        name = type(evaluator).__name__ if evaluator is not None else "PedAnovaImportanceEvaluator (default)"
        return Importance({k: float(v) for k, v in values.items()}, name, len(complete))
    return Importance(n_complete=len(complete), reason=reason)


def importance_table(imp: Importance) -> tuple[str, str]:
    """(CSV, Markdown) tables of the importances, or of the reason they are missing."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["parameter", "importance"])
    w.writerows([k, f"{v:.6f}"] for k, v in imp.values.items())
    if not imp.values:
        return buf.getvalue(), f"Parameter importance unavailable: {imp.reason}\n"
    md = [f"Parameter importance ({imp.evaluator}, {imp.n_complete} complete trials)", "",
          "| parameter | importance |", "|---|---|"]
    md += [f"| {k} | {v:.3f} |" for k, v in imp.values.items()]
    return buf.getvalue(), "\n".join(md) + "\n"


def plot_importance(imp: Importance, path: Path) -> Path | None:
    """Horizontal bar chart (matplotlib Agg, no display needed); None when there is nothing to plot."""
    if not imp.values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(imp.values)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    ax.barh(names, [imp.values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (normalised)")
    ax.set_title(f"Parameter importance — {imp.n_complete} complete trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_importance(imp: Importance, out: Path) -> list[Path]:
    """``importance.csv``, ``importance.md`` and (when there are values) ``importance.png`` in ``out``."""
    csv_text, md = importance_table(imp)
    files = [out / "importance.csv", out / "importance.md"]
    files[0].write_text(csv_text)
    files[1].write_text(md)
    png = plot_importance(imp, out / "importance.png")
    return files + ([png] if png else [])
