"""The built-in procedural dataset: contract, determinism, and the structure that makes the pretext tasks real."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ms2l_ray.data import kinematics as kin
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.synthetic import ACTIONS, ALL_CLASS_NAMES, CLASS_NAMES, generate
from ms2l_ray.layouts import NTU25

M, V, C = 2, NTU25.num_joints, 3
TWO_PERSON = {i for i, a in enumerate(ACTIONS) if a.partner is not None}
CHILD, PARENT = np.array(NTU25.edges).T


def label(name: str) -> int:
    return CLASS_NAMES.index(name)


def persons(data: SkeletonSet) -> np.ndarray:
    return data.frames.reshape(-1, M, V, C)  # [sum(L), M, V, C]


def bone_of(data: SkeletonSet, i: int) -> np.ndarray:
    """``[V-1]`` bone lengths of the actor in the first frame of sequence ``i``."""
    first = persons(data)[data.offsets[i], 0]  # [V, C]
    return np.linalg.norm(first[CHILD] - first[PARENT], axis=-1)  # type: ignore[no-any-return]


def per_sequence_mean(data: SkeletonSet, values: np.ndarray) -> np.ndarray:
    """Mean of per-frame ``values [sum(L), ...]`` over each sequence → ``[N, ...]``."""
    sums = np.add.reduceat(values.reshape(len(values), -1), data.offsets[:-1], axis=0)  # [N, prod(...)]
    return (sums / data.lengths[:, None]).reshape(len(data), *values.shape[1:])


def canonical(n: int, seed: int, min_frames: int, max_frames: int) -> SkeletonSet:
    """No nuisance variation, no sensor effects, one camera at 0°, one performer."""
    return generate(n, seed, min_frames=min_frames, max_frames=max_frames, noise_std=0.0, drop_prob=0.0,
                    variation=0.0, num_views=1, num_subjects=1)


def quarter_mean(data: SkeletonSet, mask: np.ndarray) -> np.ndarray:
    """``[N, F]`` mean pose of each sequence over the frames where ``mask [sum(L)]`` holds."""
    sums = np.add.reduceat(np.where(mask[:, None], data.frames, 0.0), data.offsets[:-1], axis=0)  # [N, F]
    return sums / np.add.reduceat(mask.astype(np.float64), data.offsets[:-1])[:, None]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def default_set() -> SkeletonSet:
    return generate(600, seed=3)


@pytest.fixture(scope="module")
def clean_set() -> SkeletonSet:
    """Same seed as ``default_set`` and no sensor effects: identical up to noise and dropped joints."""
    return generate(600, seed=3, noise_std=0.0, drop_prob=0.0)


@pytest.fixture(scope="module")
def canonical_fixed() -> SkeletonSet:
    """Every sequence 60 frames long: all samples of a class are the same array."""
    return canonical(48, seed=7, min_frames=60, max_frames=60)


@pytest.fixture(scope="module")
def canonical_varied() -> SkeletonSet:
    return canonical(240, seed=8, min_frames=40, max_frames=150)


def test_same_seed_same_arrays_other_seed_differs() -> None:
    a, b, c = generate(40, seed=1), generate(40, seed=1), generate(40, seed=2)
    np.testing.assert_array_equal(a.frames, b.frames)
    for key in ("offsets", "labels", "subjects", "views", "setups"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.names == b.names and a.meta == b.meta
    assert a.frames.shape != c.frames.shape or not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.labels, c.labels) or not np.array_equal(a.lengths, c.lengths)


def test_container_contract(default_set: SkeletonSet) -> None:
    d = default_set
    assert isinstance(d, SkeletonSet)
    assert d.frames.dtype == np.float32 and d.frames.shape[1] == M * V * C == 150
    assert d.offsets.dtype == np.int64 and d.offsets[0] == 0 and d.offsets[-1] == len(d.frames)
    for key in ("labels", "subjects", "views", "setups"):
        assert getattr(d, key).dtype == np.int64 and getattr(d, key).shape == (len(d),)
    assert (d.num_persons, d.num_joints, d.num_classes, d.layout) == (2, 25, 12, "ntu25")
    assert d.labels.min() >= 0 and d.labels.max() < 12 and np.all(d.setups == 1)
    assert d.meta["class_names"] == list(CLASS_NAMES) and d.meta["seed"] == 3 and d.meta["noise_std"] == 0.01
    d.subset(np.arange(0, len(d), 7))  # re-validates through SkeletonSet.__post_init__
    x, lengths, labels = d.batch(np.arange(8), max_frames=300)
    assert x.shape == (8, int(lengths.max()), 150) and labels.tolist() == d.labels[:8].tolist()


def test_names_follow_ntu(default_set: SkeletonSet) -> None:
    d = default_set
    assert len(set(d.names)) == len(d), "the replication field must keep names unique"
    for name, view, subject, lab in zip(d.names, d.views, d.subjects, d.labels, strict=True):
        m = re.fullmatch(r"S001C(\d{3})P(\d{3})R(\d{3})A(\d{3})", name)
        assert m is not None, name
        assert (int(m[1]), int(m[2]), int(m[4])) == (view, subject, lab + 1)


def test_lengths_in_bounds_and_independent_of_class(default_set: SkeletonSet) -> None:
    lengths = default_set.lengths
    assert lengths.min() >= 24 and lengths.max() <= 300
    assert np.mean((lengths >= 40) & (lengths <= 150)) > 0.85  # NTU-like: mostly 40-150 frames
    medians = [np.median(lengths[default_set.labels == c]) for c in range(12)]
    assert max(medians) - min(medians) < 25, medians  # length does not give the class away
    short = generate(60, seed=0, min_frames=30, max_frames=50)
    assert short.lengths.min() >= 30 and short.lengths.max() <= 50


def test_classes_subjects_views_all_present(default_set: SkeletonSet) -> None:
    assert set(default_set.labels.tolist()) == set(range(12))
    assert np.bincount(default_set.labels).min() == len(default_set) // 12  # balanced
    assert set(default_set.subjects.tolist()) == set(range(1, 41))
    assert set(default_set.views.tolist()) == {1, 2, 3}


def test_second_person_only_in_two_person_classes(default_set: SkeletonSet) -> None:
    x = persons(default_set)
    frame_label = np.repeat(default_set.labels, default_set.lengths)
    two = np.isin(frame_label, sorted(TWO_PERSON))
    assert {CLASS_NAMES[i] for i in TWO_PERSON} == {"handshake", "push", "hug"}
    assert np.all(x[~two, 1] == 0.0)  # exactly zero, as NTU stores an absent body
    assert np.all(np.any(x[two, 1] != 0.0, axis=(1, 2)))  # present in every frame of an interaction
    assert np.all(np.any(x[:, 0] != 0.0, axis=(1, 2)))


def test_bones_rigid_in_time_and_fixed_per_subject(clean_set: SkeletonSet) -> None:
    x = persons(clean_set)
    bone = np.linalg.norm(x[:, :, CHILD] - x[:, :, PARENT], axis=-1)  # [sum(L), M, V-1]
    first = np.repeat(bone[clean_set.offsets[:-1]], clean_set.lengths, axis=0)  # each sequence's first frame
    assert np.abs(bone - first).max() < 1e-4
    actor = bone[clean_set.offsets[:-1], 0]  # [N, V-1]
    by_subject = {int(s): actor[clean_set.subjects == s] for s in np.unique(clean_set.subjects)}
    for rows in by_subject.values():
        assert np.abs(rows - rows[0]).max() < 1e-4  # one body per performer id
    ref = np.stack([rows[0] for rows in by_subject.values()])  # [S, V-1]
    gaps = np.abs(ref[:, None] - ref[None]).max(-1)[np.triu_indices(len(ref), 1)]
    assert gaps.min() > 5e-3  # every pair of performers differs somewhere
    other = generate(30, seed=99, noise_std=0.0, drop_prob=0.0)  # bodies depend on the performer id only
    for i in range(len(other)):
        np.testing.assert_allclose(bone_of(other, i), by_subject[int(other.subjects[i])][0], atol=1e-4)


def test_sensor_noise_and_drops(default_set: SkeletonSet, clean_set: SkeletonSet) -> None:
    noisy, clean = persons(default_set), persons(clean_set)
    present = np.any(clean != 0.0, axis=-1)  # [sum(L), M, V]
    dropped = present & np.all(noisy == 0.0, axis=-1)
    assert 0.5 * 0.002 < dropped.sum() / present.sum() < 2 * 0.002
    kept = present & ~dropped
    diff = (noisy - clean)[kept]
    assert abs(diff.std() - 0.01) < 1e-3 and abs(diff.mean()) < 1e-3
    assert not np.any(np.all(clean[present] == 0.0, axis=-1))  # no drops without drop_prob


def test_kinematics_reproduce_the_rest_pose() -> None:
    bodies = kin.subject_bodies(3)
    identity = np.repeat(np.eye(3, dtype=np.float32)[..., None], 2, axis=-1)  # [3, 3, 2]
    bones = np.repeat(bodies.bones[0][..., None], 2, axis=-1)  # [V, 3, 2]
    pos = kin.forward_kinematics(np.zeros((2, len(kin.ANGLE_DOFS))), bones, identity, np.zeros((3, 2), np.float32))
    np.testing.assert_allclose(pos[..., 0], kin.rest_pose(), atol=1e-6)
    assert sorted(kin.ORDER) == list(range(V)) and (kin.PARENT < 0).sum() == 1


@pytest.mark.parametrize(("forward", "backward"), [("raise_right_arm", "lower_right_arm"), ("sit_down", "stand_up")])
def test_time_order_twins_are_reversals(canonical_fixed: SkeletonSet, canonical_varied: SkeletonSet,
                                        forward: str, backward: str) -> None:
    d = canonical_fixed
    a, b = (d.sequence(int(np.flatnonzero(d.labels == label(n))[0])) for n in (forward, backward))
    np.testing.assert_allclose(a[::-1], b, atol=1e-5)  # same length: exactly the reversed sequence
    assert np.abs(a - b).max() > 0.1  # …and not the same sequence
    d = canonical_varied  # lengths differ: compare class means of the first and last quarters
    t = np.arange(len(d.frames)) - np.repeat(d.offsets[:-1], d.lengths)  # frame index within its sequence
    length = np.repeat(d.lengths, d.lengths)
    first, last = (quarter_mean(d, mask) for mask in (t < length // 4, t >= length - length // 4))
    a_first, b_last = first[d.labels == label(forward)].mean(0), last[d.labels == label(backward)].mean(0)
    a_last, b_first = last[d.labels == label(forward)].mean(0), first[d.labels == label(backward)].mean(0)
    assert np.abs(a_first - b_last).max() < 0.03 and np.abs(a_last - b_first).max() < 0.03
    assert np.abs(a_first - b_first).max() > 0.2


@pytest.mark.parametrize(("right", "left"), [("wave_right_hand", "wave_left_hand"), ("kick_right", "kick_left")])
def test_side_twins_are_mirror_images(canonical_fixed: SkeletonSet, right: str, left: str) -> None:
    d = canonical_fixed
    r, lft = (persons(d)[d.offsets[i]:d.offsets[i + 1], 0] for i in
              (int(np.flatnonzero(d.labels == label(n))[0]) for n in (right, left)))
    mirrored = r[:, NTU25.mirror_permutation()] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)  # camera at 0°
    np.testing.assert_allclose(mirrored, lft, atol=1e-5)
    assert np.abs(r - lft).max() > 0.2


def test_mean_pose_does_not_solve_the_task() -> None:
    """A nearest-class-mean classifier on each sequence's centred mean pose: well above chance (the classes
    carry signal) but far from 100 % (time-order twins share their mean pose; views and bodies blur the rest)."""
    d = generate(2000, seed=11)
    x = persons(d)
    centred = np.where(np.all(x == 0, axis=-1, keepdims=True), 0.0, x - x[:, :1, NTU25.center:NTU25.center + 1])
    feats = per_sequence_mean(d, centred).reshape(len(d), -1)  # [N, M*V*C]
    train = np.arange(len(d)) % 2 == 0
    means = np.stack([feats[train & (d.labels == c)].mean(0) for c in range(d.num_classes)])  # [classes, F]
    pred = np.argmin(((feats[~train, None] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = float(np.mean(pred == d.labels[~train]))
    assert 3 / d.num_classes < accuracy < 0.85, accuracy


def test_options_and_validation() -> None:
    d = generate(45, seed=0, num_classes=15, num_subjects=5, num_views=2)
    assert set(d.labels.tolist()) == set(range(15)) and d.meta["class_names"] == list(ALL_CLASS_NAMES)
    assert d.subjects.max() <= 5 and set(d.views.tolist()) <= {1, 2} and d.meta["view_angles_deg"] == [-45.0, 45.0]
    with pytest.raises(ValueError, match=r"min_frames=50 .*noise_std=-1"):
        generate(10, seed=0, min_frames=50, max_frames=40, noise_std=-1)
    with pytest.raises(ValueError, match="num_classes"):
        generate(10, seed=0, num_classes=len(ALL_CLASS_NAMES) + 1)
    with pytest.raises(ValueError, match="num_sequences"):
        generate(0, seed=0)
