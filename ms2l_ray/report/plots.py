"""Report figures (matplotlib, Agg backend): each function takes plain data and returns PNG bytes.

Keeping the plots free of MLflow makes them testable on literal numbers and reusable by other reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ms2l_ray.plotting import png as _png
from ms2l_ray.plotting import pyplot as _plt


def loss_curves(curves: dict[str, dict[str, tuple[list[float], list[float], list[float]]]]) -> bytes:
    """``curves[metric][group] = (epochs, mean, std)``: one panel per task loss, a line per group (± std band)."""
    plt = _plt()
    metrics = list(curves)
    groups = list(dict.fromkeys(g for m in metrics for g in curves[m]))
    colour = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}  # one colour per group everywhere
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes[0], metrics, strict=True):
        for group, (ep, mean, std) in curves[metric].items():
            e, m, s = np.array(ep), np.array(mean), np.nan_to_num(np.array(std))
            (handles[group],) = ax.plot(e, m, label=group, lw=1.4, marker="o", ms=3, color=colour[group])
            ax.fill_between(e, m - s, m + s, alpha=0.15, color=colour[group])
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("epoch")
    labels = [g for g in groups if g in handles]
    if labels:
        fig.legend([handles[g] for g in labels], labels, fontsize=7, loc="lower center", ncol=min(6, len(labels)),
                   bbox_to_anchor=(0.5, 1.0))
    return _png(fig)


def search_history(objectives: list[float], mode: str, metric: str = "objective") -> bytes:
    """Objective per trial in start order, with the best-so-far line."""
    plt = _plt()
    y = np.array(objectives, dtype=float)
    best = np.maximum.accumulate(np.nan_to_num(y, nan=-np.inf)) if mode == "max" else \
        np.minimum.accumulate(np.nan_to_num(y, nan=np.inf))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(np.arange(1, len(y) + 1), y, "o", ms=4, label="trial")
    ax.step(np.arange(1, len(y) + 1), best, where="post", color="tab:red", label=f"best so far ({mode})")
    ax.set_xlabel("trial (start order)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return _png(fig)


def importance_bars(names: list[str], values: list[float]) -> bytes:
    """Horizontal bars, most important parameter on top."""
    plt = _plt()
    order = np.argsort(values)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh([names[i] for i in order], [values[i] for i in order], color="tab:green")
    ax.set_xlabel("importance")
    ax.tick_params(axis="y", labelsize=7)
    return _png(fig)


def parallel_coordinates(params: list[str], rows: list[dict[str, Any]], objective: list[float], mode: str) -> bytes:
    """One polyline per trial across normalised parameter axes (categoricals as ranks), coloured by objective.

    The best trial is drawn last and thickest.
    """
    plt = _plt()
    axes_names = params + ["objective"]
    table = np.zeros((len(rows), len(axes_names)))
    ticks: list[tuple[str, str]] = []
    for j, p in enumerate(params):
        raw = [r.get(p) for r in rows]
        nums = _as_floats(raw)
        if nums is None:  # categorical → rank of its sorted distinct values
            levels = sorted({str(v) for v in raw})
            col = np.array([levels.index(str(v)) for v in raw], dtype=float)
            ticks.append((levels[0], levels[-1]))
        else:
            col = np.array(nums, dtype=float)
            ticks.append((f"{np.nanmin(col):.3g}", f"{np.nanmax(col):.3g}"))
            if np.nanmin(col) > 0 and np.nanmax(col) / np.nanmin(col) > 20:  # lr-like ranges: log axis
                col = np.log10(col)
                axes_names[j] = f"{p} (log)"
        table[:, j] = col
    obj = np.array(objective, dtype=float)
    table[:, -1] = obj
    ticks.append((f"{np.nanmin(obj):.3g}", f"{np.nanmax(obj):.3g}"))
    lo, hi = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    norm = (table - lo) / np.where(hi > lo, hi - lo, 1.0)  # [trials, axes] in [0, 1]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(axes_names)), 3.6))
    cmap = plt.get_cmap("viridis")
    good = (obj - obj.min()) / max(float(obj.max() - obj.min()), 1e-12)
    if mode == "min":
        good = 1 - good
    for i in np.argsort(good):
        ax.plot(range(len(axes_names)), norm[i], color=cmap(good[i]), lw=2.5 if i == np.argmax(good) else 1.0,
                alpha=0.9)
    for j, (a, b) in enumerate(ticks):
        ax.axvline(j, color="grey", lw=0.6)
        ax.text(j, -0.06, a, ha="center", va="top", fontsize=6)
        ax.text(j, 1.04, b, ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(axes_names)), axes_names, rotation=20, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    return _png(fig)


def _as_floats(values: list[Any]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None
