"""Preprocessing: centring, view alignment, scale, resampling and NTU body denoising."""

from __future__ import annotations

import numpy as np
import pytest

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.preprocess import (
    PreprocessConfig,
    align_view,
    apply,
    center,
    resample,
    scale_normalize,
    select_bodies,
)
from ms2l_ray.layouts import NTU25


def _set(lengths: list[int], seed: int = 0, absent_person1: bool = True) -> SkeletonSet:
    rng = np.random.default_rng(seed)
    r = sum(lengths)
    x = rng.normal(size=(r, 2, 25, 3)).astype(np.float32) + np.array([0.5, 0.2, 3.0], np.float32)  # [R, M, V, C]
    if absent_person1:
        x[:, 1] = 0
    n = len(lengths)
    return SkeletonSet(frames=x.reshape(r, -1), offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                       labels=np.zeros(n, np.int64), subjects=np.ones(n, np.int64), views=np.ones(n, np.int64),
                       setups=np.ones(n, np.int64), names=[f"s{i}" for i in range(n)], num_persons=2, num_joints=25,
                       num_classes=1, layout="ntu25")


def _persons(data: SkeletonSet) -> np.ndarray:
    return data.frames.reshape(-1, data.num_persons, data.num_joints, 3)  # [R, M, V, C]


def test_center_puts_centre_joint_at_origin_and_keeps_zeros() -> None:
    data = _set([3, 5, 2])
    out = center(data)
    x, x0 = _persons(out), _persons(data)
    for start in data.offsets[:-1]:
        np.testing.assert_allclose(x[start, 0, NTU25.center], 0, atol=1e-6)
    # every frame of a sequence moves by that sequence's own first-frame offset
    np.testing.assert_allclose(x[4, 0] - x0[4, 0], np.broadcast_to(-x0[3, 0, NTU25.center], (25, 3)), atol=1e-5)
    assert not x[:, 1].any()  # absent person stays zero
    assert out.meta["preprocess"] == [{"step": "center", "joint": NTU25.center, "person": 0, "frame": "first present"}]
    assert data.meta == {} and not np.shares_memory(out.frames, data.frames)  # input untouched


def test_center_uses_first_frame_where_person0_is_present() -> None:
    data = _set([4])
    _persons(data)[0] = 0
    x = _persons(center(data))
    assert not x[0].any()
    np.testing.assert_allclose(x[1, 0, NTU25.center], 0, atol=1e-6)


def test_align_puts_hip_axis_on_x_and_spine_on_y() -> None:
    data = center(_set([4, 6], seed=1))
    out = align_view(data)
    x, x0 = _persons(out), _persons(data)
    left, right = NTU25.hips
    low, up = NTU25.spine
    for start in out.offsets[:-1]:
        hip = x[start, 0, right] - x[start, 0, left]
        assert hip[0] > 0 and np.allclose(hip[1:], 0, atol=1e-5)
        spine = x[start, 0, up] - x[start, 0, low]
        assert spine[1] > 0 and abs(spine[2]) < 1e-5
    # a rotation: pairwise distances inside a frame are preserved
    d = np.linalg.norm(x[5, 0, :, None] - x[5, 0, None], axis=-1)
    d0 = np.linalg.norm(x0[5, 0, :, None] - x0[5, 0, None], axis=-1)
    np.testing.assert_allclose(d, d0, atol=1e-5)
    assert not x[:, 1].any()


def test_scale_normalize_gives_unit_mean_spine() -> None:
    out = scale_normalize(center(_set([5, 3], seed=2)))
    x = _persons(out)
    spine = np.linalg.norm(x[:, 0, NTU25.spine[1]] - x[:, 0, NTU25.spine[0]], axis=-1)
    np.testing.assert_allclose([spine[:5].mean(), spine[5:].mean()], 1.0, rtol=1e-5)


def test_resample_to_fixed_frames() -> None:
    data = _set([3, 10])
    out = resample(data, 6)
    assert out.lengths.tolist() == [6, 6]
    np.testing.assert_array_equal(out.sequence(0), data.sequence(0)[[0, 0, 1, 1, 2, 2]])  # upsampled
    np.testing.assert_array_equal(out.sequence(1), data.sequence(1)[[0, 1, 3, 5, 6, 8]])  # floor(t·10/6)
    with pytest.raises(ValueError, match="num_frames"):
        resample(data, 0)


def test_apply_records_steps_in_order() -> None:
    out = apply(_set([4]), PreprocessConfig(scale_normalize=True, resample=8))
    assert [s["step"] for s in out.meta["preprocess"]] == ["center", "align", "scale_normalize", "resample"]
    assert apply(_set([4]), PreprocessConfig(center=False, align=False)).meta.get("preprocess") is None


def _person(rng: np.random.Generator, t: int, motion: float, x0: float = 0.0) -> np.ndarray:
    """A tall (y-spread) body moving with amplitude ``motion``."""
    base = np.stack([rng.uniform(-0.2, 0.2, 25) + x0, np.linspace(-0.8, 0.8, 25), np.full(25, 3.0)], -1)
    wiggle = motion * np.sin(np.linspace(0, 6, t))[:, None, None]
    return (base[None] + wiggle).astype(np.float32)  # [T, V, C]


def test_denoise_drops_object_and_short_body_keeps_two_most_active() -> None:
    rng = np.random.default_rng(3)
    t = 40
    calm, active = _person(rng, t, 0.05, x0=1.0), _person(rng, t, 0.4)
    obj = np.stack([np.linspace(-1, 1, 25), rng.uniform(-0.05, 0.05, 25), np.full(25, 2.0)], -1)
    obj = np.repeat(obj[None], t, 0) + 2.0 * np.sin(np.linspace(0, 9, t))[:, None, None]  # wide, flat, very mobile
    short = np.zeros_like(calm)
    short[:5] = _person(rng, 5, 3.0)  # most motion, but only 5 frames
    bodies = np.stack([obj, short, calm, active]).astype(np.float32)  # [B, T, V, C]
    kept = select_bodies(bodies)
    assert kept.shape == (2, t, 25, 3)
    np.testing.assert_array_equal(kept[0], active)  # most active first
    np.testing.assert_array_equal(kept[1], calm)
    raw = select_bodies(bodies, denoise=False)
    np.testing.assert_array_equal(raw[0], bodies[0])  # without denoising: first bodies in file order
    np.testing.assert_array_equal(raw[1], bodies[1])


def test_denoise_single_body_and_all_noise_fallback() -> None:
    rng = np.random.default_rng(4)
    short = np.zeros((1, 20, 25, 3), np.float32)
    short[0, :3] = _person(rng, 3, 0.1)
    np.testing.assert_array_equal(select_bodies(short)[0], short[0])  # a lone body is never dropped
    two_short = np.concatenate([short, short * 2])
    assert select_bodies(two_short)[0].any()  # everything noise → rules not applied
    assert select_bodies(np.zeros((0, 7, 25, 3), np.float32)).shape == (2, 7, 25, 3)
