"""Standard evaluation splits (REFERENCE.md §3) as index arrays into one :class:`SkeletonSet`.

Membership comes from one of two places:

* **split lists** — explicit ``{"train": ids, "test": ids}`` passed as ``split_lists`` or recorded by the
  reader in ``data.meta["split_lists"][name]`` (PKU-MMD split files, CTR-GCN ``.npz`` parts). An id names
  a *group*: the part of a sample name before ``#`` (:func:`group_id`), e.g. the video ``0005-L`` of the
  clip ``0005-L#003``; a name without ``#`` is its own group. Lists take precedence over rules.
* **rules** on the ``subjects``/``views``/``setups`` columns (NTU performers and cameras, NW-UCLA views).

Validation is always carved from the training side with a seeded hold-out
(:func:`~ms2l_ray.data.container.holdout_validation`), never from test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ms2l_ray.data.container import SkeletonSet, Splits, holdout_validation

GROUP_SEP = "#"

NTU60_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94,
    95, 97, 98, 100, 103)
NTU60_TRAIN_CAMERAS = (2, 3)
UCLA_TRAIN_VIEWS = (1, 2)
PKU_TRAIN_VIEWS = (1, 3)  # L and R; M is the test view
RANDOM_TEST_FRACTION = 0.2
RANDOM_TEST_SEED = 0  # the random split's test part is a property of the dataset, not of the run seed

SplitLists = Mapping[str, Sequence[str]]


def group_id(name: str) -> str:
    """The split-list id of a sample: its name up to the first ``#``."""
    return name.split(GROUP_SEP, 1)[0]


def _column_rule(column: str, train_values: Sequence[int], what: str) -> Callable[[SkeletonSet], np.ndarray]:
    def rule(data: SkeletonSet) -> np.ndarray:
        values = getattr(data, column)
        unknown = int((values == 0).sum())
        if unknown:
            raise ValueError(f"{what}: {unknown} of {len(data)} samples have unknown {column} (0), e.g. "
                             f"{data.names[int(np.argmax(values == 0))]!r}; this split needs {column} ids "
                             f"(NTU-style names) or split lists")
        return np.isin(values, train_values)

    return rule


def _even_setup(data: SkeletonSet) -> np.ndarray:
    if (data.setups == 0).any():
        raise ValueError(f"ntu120-xset: {int((data.setups == 0).sum())} samples have unknown setup (0)")
    return data.setups % 2 == 0


def _needs_lists(name: str) -> Callable[[SkeletonSet], np.ndarray]:
    def rule(data: SkeletonSet) -> np.ndarray:
        raise ValueError(f"split {name!r} needs split lists (PKU-MMD split files read by `ms2l data prepare "
                         f"pku-mmd`, or split_lists=...); dataset meta has {sorted(data.meta.get('split_lists', {}))}")

    return rule


_RULES: dict[str, Callable[[SkeletonSet], np.ndarray]] = {
    "ntu60-xsub": _column_rule("subjects", NTU60_TRAIN_SUBJECTS, "ntu60-xsub"),
    "ntu60-xview": _column_rule("views", NTU60_TRAIN_CAMERAS, "ntu60-xview"),
    "ntu120-xsub": _column_rule("subjects", NTU120_TRAIN_SUBJECTS, "ntu120-xsub"),
    "ntu120-xset": _even_setup,
    "ucla": _column_rule("views", UCLA_TRAIN_VIEWS, "ucla"),
    "pku-xsub": _needs_lists("pku-xsub"),
    "pku-xview": _column_rule("views", PKU_TRAIN_VIEWS, "pku-xview"),
    "file": _needs_lists("file"),  # the partition given by the source files (CTR-GCN .npz, ST-GCN train/val)
}
SPLIT_NAMES: tuple[str, ...] = (*_RULES, "random")


def _from_lists(data: SkeletonSet, name: str, lists: SplitLists) -> tuple[np.ndarray, np.ndarray]:
    missing = [part for part in ("train", "test") if part not in lists]
    if missing:
        raise ValueError(f"split {name!r}: split lists lack {missing}; expected keys 'train' and 'test'")
    train_ids, test_ids = set(lists["train"]), set(lists["test"])
    both = train_ids & test_ids
    if both:
        raise ValueError(f"split {name!r}: {len(both)} ids are in both train and test lists, e.g. {sorted(both)[:3]}")
    groups = [group_id(n) for n in data.names]
    in_train = np.fromiter((g in train_ids for g in groups), bool, len(groups))
    in_test = np.fromiter((g in test_ids for g in groups), bool, len(groups))
    unlisted = ~(in_train | in_test)
    if unlisted.any():
        raise ValueError(f"split {name!r}: {int(unlisted.sum())} samples belong to no listed group, e.g. "
                         f"{data.names[int(np.argmax(unlisted))]!r} (group {groups[int(np.argmax(unlisted))]!r})")
    return np.flatnonzero(in_train), np.flatnonzero(in_test)


def make_splits(data: SkeletonSet, name: str, *, val_fraction: float, seed: int,
                split_lists: SplitLists | None = None) -> Splits:
    """Train/val/test indices of split ``name`` (one of :data:`SPLIT_NAMES`).

    Args:
        data: the dataset.
        name: ``ntu60-xsub``, ``ntu60-xview``, ``ntu120-xsub``, ``ntu120-xset``, ``ucla`` (views 1, 2 train /
            3 test), ``pku-xsub``, ``pku-xview``, ``file`` (the source files' own
            train/test partition, recorded by the reader) or ``random`` (80/20 with a fixed seed, so that runs
            with different seeds share one test part; for sets without a standard split).
        val_fraction: share of the training side held out for validation (reference: 0.05).
        seed: seeds the validation hold-out.
        split_lists: explicit ``{"train": group ids, "test": group ids}``; overrides meta and rules.
    """
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}; known splits: {list(SPLIT_NAMES)}")
    lists = split_lists if split_lists is not None else data.meta.get("split_lists", {}).get(name)
    if lists is not None:
        train, test = _from_lists(data, name, lists)
    elif name == "random":
        perm = np.random.default_rng(RANDOM_TEST_SEED).permutation(len(data))
        n_test = int(round(len(data) * RANDOM_TEST_FRACTION))
        train, test = np.sort(perm[n_test:]), np.sort(perm[:n_test])
    else:
        is_train = _RULES[name](data)
        train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    train, val = holdout_validation(train, val_fraction, seed)
    return Splits(train=train.astype(np.int64), val=val.astype(np.int64), test=test.astype(np.int64), name=name)
