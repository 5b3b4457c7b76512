"""The matplotlib kit every figure goes through: the Agg backend and PNG bytes.

Why one module: figures are drawn on cluster nodes with no display (Agg, chosen before pyplot is imported),
by the run artifacts (:mod:`ms2l_ray.tracking.artifacts`), the ablation table and the reports; each used to
carry its own copy of these two functions.
"""

from __future__ import annotations

import io
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, imported on first use (matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes, then closed (a long search draws hundreds of figures)."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # keeps legends placed outside the axes
    plt.close(fig)
    return buf.getvalue()
