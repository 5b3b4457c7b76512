"""One downstream evaluation as data: a strategy, a label fraction and config deltas of its own.

Experiment files, ablation grids and search spaces all name their evaluations the same way
(``evaluations: [linear, {strategy: semi, label_fraction: 0.01}]``), and search trials carry one to their
workers. It lives apart from the experiment runner so that validating a search space or a grid needs only the
config layer and the strategy table — neither torch nor the job layer (issue 11).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ms2l_ray.config import STRATEGIES, Config, ConfigError, apply_delta
from ms2l_ray.strategies import FROM_SCRATCH

__all__ = ["EVAL_KEYS", "FROM_SCRATCH", "Evaluation", "parse_evaluations"]

EVAL_KEYS = {"strategy", "label_fraction", "set"}


@dataclass
class Evaluation:
    """One evaluation of a pretrained (or random, or from-scratch) encoder.

    Attributes:
        strategy: one of :data:`~ms2l_ray.config.STRATEGIES`.
        label_fraction: fraction of the training labels used (``< 1`` for semi-supervised runs).
        delta: config deltas applied before the strategy (the entry's ``set:``), e.g. fewer epochs.
    """

    strategy: str
    label_fraction: float = 1.0
    delta: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``linear``, ``semi_0.01`` …: the evaluation's name in runs and tables."""
        return self.strategy if self.label_fraction == 1.0 else f"{self.strategy}_{self.label_fraction:g}"

    @property
    def pretrained(self) -> bool:
        """Whether it starts from the pretrained encoder (False for the from-scratch strategies).

        Why a property: the experiment runner pretrains only when some evaluation needs the encoder, and a
        search refuses an objective that never sees the pretraining; both ask the one strategy table.
        """
        return self.strategy not in FROM_SCRATCH

    def apply(self, cfg: Config) -> Config:
        """``cfg`` with this evaluation's deltas, strategy and label fraction, validated (``ConfigError``)."""
        cfg = apply_delta(cfg, self.delta, f"evaluation {self.label} set") if self.delta else cfg
        return apply_delta(cfg, {"evaluation": {"strategy": self.strategy, "label_fraction": self.label_fraction}},
                           f"evaluation {self.label}")


def parse_evaluations(items: Any, source: str) -> list[Evaluation]:
    """Validate a list of ``{strategy, label_fraction?, set?}`` entries (or bare strategy names).

    Args:
        items: the loaded ``evaluations`` value of a file.
        source: the file (or flag) it came from; every error names it and the entry's index.

    Returns:
        One :class:`Evaluation` per entry, in order.

    Raises:
        ConfigError: an entry that is not a mapping or a strategy name, an unknown key, strategy or fraction.
    """
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: 'evaluations' must be a non-empty list, got {items!r}")
    out = []
    for i, item in enumerate(items):
        key = f"{source}: evaluations[{i}]"
        if isinstance(item, str):
            item = {"strategy": item}
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: expected a mapping or a strategy name, got {item!r}")
        unknown = set(item) - EVAL_KEYS
        if unknown:
            raise ConfigError(f"{key}: unknown keys {sorted(unknown)}; known: {sorted(EVAL_KEYS)}")
        if item.get("strategy") not in STRATEGIES:
            raise ConfigError(f"{key}.strategy: must be one of {list(STRATEGIES)}, got {item.get('strategy')!r}")
        lf = item.get("label_fraction", 1.0)
        if isinstance(lf, bool) or not isinstance(lf, (int, float)) or not 0 < lf <= 1:
            raise ConfigError(f"{key}.label_fraction: must be a number in (0, 1], got {lf!r}")
        delta = item.get("set", {}) or {}
        if not isinstance(delta, dict):
            raise ConfigError(f"{key}.set: must be a mapping of config deltas, got {delta!r}")
        out.append(Evaluation(item["strategy"], float(lf), delta))
    return out
