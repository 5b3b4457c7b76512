"""The ablation table as a figure: a bar per cell at its mean, ± std error bars, one panel per metric.

Drawn by the ablation run (its parent run's ``ablation/ablation_bars.png``) and by ``ms2l report``.
"""

from __future__ import annotations

import math

import numpy as np

from ms2l_ray.plotting import png, pyplot


def ablation_bars(cells: list[str], columns: list[str], means: dict[str, list[float]], stds: dict[str, list[float]],
                  counts: list[int]) -> bytes:
    """One panel per metric column: a bar per cell at its mean, error bar ± std, ``n`` under each bar."""
    plt = pyplot()
    ncol = min(3, len(columns))
    nrow = math.ceil(len(columns) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.0, 0.7 * len(cells) + 1.5) * ncol, 3.4 * nrow),
                             squeeze=False)
    x = np.arange(len(cells))
    for ax, col in zip(axes.flat, columns, strict=False):
        m = np.array(means[col], dtype=float)
        s = np.nan_to_num(np.array(stds[col], dtype=float))
        ax.bar(x, m, yerr=s, capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, [f"{c}\n(n={n})" for c, n in zip(cells, counts, strict=True)], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(col, fontsize=9)
        for xi, (mi, si) in enumerate(zip(m, s, strict=True)):
            if np.isfinite(mi):
                ax.text(xi, mi + si, f"{mi:.3g}", ha="center", va="bottom", fontsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    return png(fig)
