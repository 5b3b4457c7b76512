"""Standard splits: the REFERENCE.md performer/camera lists, disjointness, validation from train only, real counts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from paths import SHARED_DATA

from ms2l_ray.data.container import SkeletonSet, Splits
from ms2l_ray.data.prepare import prepare
from ms2l_ray.data.readers.pku import read_pku
from ms2l_ray.data.splits import (
    NTU60_TRAIN_CAMERAS,
    NTU60_TRAIN_SUBJECTS,
    NTU120_TRAIN_SUBJECTS,
    SPLIT_NAMES,
    group_id,
    make_splits,
)
from ms2l_ray.data.store import open_store

# Copied by hand from shared/REFERENCE.md §3, so that a typo in the module cannot hide in both places.
REF_NTU60_XSUB = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
REF_NTU120_EXTRA = {45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91,
                    92, 93, 94, 95, 97, 98, 100, 103}


def _set(n: int, seed: int = 0, *, subjects: int = 106, setups: int = 32,
         names: list[str] | None = None) -> SkeletonSet:
    rng = np.random.default_rng(seed)
    return SkeletonSet(frames=np.zeros((n, 150), np.float32), offsets=np.arange(n + 1, dtype=np.int64),
                       labels=rng.integers(0, 5, n), subjects=rng.integers(1, subjects + 1, n),
                       views=rng.integers(1, 4, n), setups=rng.integers(1, setups + 1, n),
                       names=names or [f"s{i}" for i in range(n)], num_persons=2, num_joints=25, num_classes=5,
                       layout="ntu25")


def _check_partition(sp: Splits, n: int) -> None:
    parts = np.concatenate([sp.train, sp.val, sp.test])
    assert len(parts) == n and len(np.unique(parts)) == n  # disjoint and complete


def test_lists_match_reference() -> None:
    assert set(NTU60_TRAIN_SUBJECTS) == REF_NTU60_XSUB and len(NTU60_TRAIN_SUBJECTS) == 20
    assert set(NTU120_TRAIN_SUBJECTS) == REF_NTU60_XSUB | REF_NTU120_EXTRA and len(NTU120_TRAIN_SUBJECTS) == 53
    assert set(NTU60_TRAIN_CAMERAS) == {2, 3}


@pytest.mark.parametrize("name, column, train_values", [
    ("ntu60-xsub", "subjects", REF_NTU60_XSUB),
    ("ntu120-xsub", "subjects", REF_NTU60_XSUB | REF_NTU120_EXTRA),
    ("ntu60-xview", "views", {2, 3}),
    ("ntu120-xset", "setups", set(range(2, 33, 2))),
    ("ucla", "views", {1, 2}),
    ("pku-xview", "views", {1, 3}),
])
def test_rule_splits(name: str, column: str, train_values: set[int]) -> None:
    data = _set(2000)
    sp = make_splits(data, name, val_fraction=0.1, seed=3)
    _check_partition(sp, len(data))
    values = getattr(data, column)
    assert set(values[sp.train]) | set(values[sp.val]) <= train_values
    assert not set(values[sp.test]) & train_values
    assert len(sp.val) == round(0.1 * (len(sp.train) + len(sp.val)))
    assert sp.name == name


def test_val_is_carved_from_train_and_seeded() -> None:
    data = _set(500)
    a, b = (make_splits(data, "ntu60-xsub", val_fraction=0.05, seed=s) for s in (1, 2))
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(np.union1d(a.train, a.val), np.union1d(b.train, b.val))
    assert not np.array_equal(a.val, b.val)
    again = make_splits(data, "ntu60-xsub", val_fraction=0.05, seed=1)
    np.testing.assert_array_equal(a.val, again.val)
    assert len(make_splits(data, "ntu60-xsub", val_fraction=0.0, seed=1).val) == 0


def test_random_split_fixed_test_part() -> None:
    data = _set(101)
    a, b = (make_splits(data, "random", val_fraction=0.1, seed=s) for s in (0, 9))
    _check_partition(a, 101)
    assert len(a.test) == 20
    np.testing.assert_array_equal(a.test, b.test)  # runs with other seeds are scored on the same samples


def test_unknown_split_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown split 'ntu60-xsubject'.*'ntu60-xsub'.*'random'"):
        make_splits(_set(10), "ntu60-xsubject", val_fraction=0.1, seed=0)
    assert {"ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset", "ucla", "pku-xsub", "pku-xview",
            "random"} <= set(SPLIT_NAMES)


def test_unknown_ids_rejected() -> None:
    data = _set(10)
    data.subjects[3] = 0
    with pytest.raises(ValueError, match="1 of 10 samples have unknown subjects"):
        make_splits(data, "ntu60-xsub", val_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="needs split lists"):
        make_splits(data, "pku-xsub", val_fraction=0.1, seed=0)


def test_split_lists_by_group() -> None:
    names = ["0001-L#001", "0001-L#002", "0001-M#001", "0002-R#001", "0002-R#002"]
    data = _set(5, names=names)
    assert group_id(names[1]) == "0001-L" and group_id("S001C001P001R001A001") == "S001C001P001R001A001"
    lists = {"train": ["0001-L", "0002-R"], "test": ["0001-M"]}
    sp = make_splits(data, "pku-xsub", val_fraction=0.0, seed=0, split_lists=lists)
    assert sp.train.tolist() == [0, 1, 3, 4] and sp.test.tolist() == [2]
    data.meta["split_lists"] = {"pku-xsub": lists}
    assert make_splits(data, "pku-xsub", val_fraction=0.0, seed=0).test.tolist() == [2]
    with pytest.raises(ValueError, match="1 samples belong to no listed group.*'0001-M#001'"):
        make_splits(data, "pku-xsub", val_fraction=0.0, seed=0, split_lists={"train": lists["train"], "test": []})
    with pytest.raises(ValueError, match="in both train and test"):
        make_splits(data, "pku-xsub", val_fraction=0.0, seed=0, split_lists={"train": ["0001-L"], "test": ["0001-L"]})


def test_pku_real_split_files() -> None:
    data = read_pku(SHARED_DATA / "pku-mmd-samples")
    xsub = make_splits(data, "pku-xsub", val_fraction=0.0, seed=0)
    assert len(xsub.train) == 24 and len(xsub.test) == 0  # video 0005 is a cross-subject training video
    xview = make_splits(data, "pku-xview", val_fraction=0.0, seed=0)
    assert set(data.views[xview.train]) == {1, 3} and set(data.views[xview.test]) == {2}
    assert len(xview.test) == 8


def test_nw_ucla_real_counts(tmp_path: Path) -> None:
    start = time.perf_counter()
    report = prepare("nw-ucla", SHARED_DATA / "nw-ucla", tmp_path / "ucla.arrow")
    seconds = time.perf_counter() - start
    assert report.num_sequences == 1484 and report.bad == [] and seconds < 30
    data = open_store(tmp_path / "ucla.arrow")
    sp = make_splits(data, "ucla", val_fraction=0.05, seed=0)
    assert len(sp.train) + len(sp.val) == 1020 and len(sp.test) == 464
    assert set(data.views[sp.test]) == {3}
    _check_partition(sp, 1484)
