"""Resolve ``DataConfig`` to a dataset and its splits: the built-in generator or an Arrow store.

The built-in dataset is a pure function of ``(builtin_sequences, builtin_seed)`` and is cached per
process, so the three pretrain/evaluate phases of one pipeline do not regenerate it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ms2l_ray.config import DataConfig
from ms2l_ray.data.container import SkeletonSet, Splits


@functools.lru_cache(maxsize=4)
def _builtin(num_sequences: int, seed: int) -> SkeletonSet:
    from ms2l_ray.data.synthetic import generate

    return generate(num_sequences, seed)


@functools.lru_cache(maxsize=4)
def _store(path: str) -> SkeletonSet:
    from ms2l_ray.data.store import open_store

    return open_store(Path(path))


def load_dataset(cfg: DataConfig, seed: int) -> tuple[SkeletonSet, Splits]:
    """Dataset + splits for ``cfg``; the validation part is held out of training with ``seed``.

    ``limit > 0`` keeps the first ``limit`` samples of each part (smoke runs on real stores).
    """
    from ms2l_ray.data.splits import make_splits

    if cfg.dataset == "builtin":
        data = _builtin(cfg.builtin_sequences, cfg.builtin_seed)
    else:
        path = Path(cfg.dataset).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data.dataset: store {path} does not exist (expected 'builtin' or an Arrow "
                                    f"store made by `ms2l data prepare`)")
        data = _store(str(path.resolve()))
    splits = make_splits(data, cfg.split, val_fraction=cfg.val_fraction, seed=seed)
    if cfg.limit > 0:
        splits = Splits(train=splits.train[: cfg.limit], val=splits.val[: cfg.limit], test=splits.test[: cfg.limit],
                        name=splits.name)
    for part in ("train", "test"):
        if len(splits.get(part)) == 0:
            raise ValueError(f"split {cfg.split!r} of dataset {cfg.dataset!r} has an empty {part} part")
    return data, splits
