"""Field-standard skeleton preprocessing, each step optional and recorded in ``meta["preprocess"]``.

Why recorded: results on NTU depend visibly on denoising, centring and alignment (REFERENCE.md §3,
"Common denoising"), so a store must say which steps made it. Every set-level step returns a new
:class:`SkeletonSet` whose ``meta["preprocess"]`` gains ``{"step": name, **parameters}``.

Steps, in the order :func:`apply` runs them:

1. **denoise** (raw NTU only, per file, before the persons are fixed to ``M``): :func:`select_blocks`.
2. **center**: subtract the layout's centre joint of person 0 in the first frame where person 0 is present,
   from every person and frame; absent persons (all-zero) stay zero.
3. **align**: rotate each sequence so that its first-frame hip axis (left → right hip) lies on +x and its
   spine (lower → upper) lies in the xy-plane pointing to +y.
4. **scale_normalize**: divide by the sequence's mean spine length (person 0).
5. **resample**: evenly spaced frame indices to a fixed number of frames (up- or down-sampling).

All set-level steps are vectorised over all frames of all sequences (one gather per step). :func:`apply`
re-checks after every step that each coordinate is still finite (a ``min``/``max`` pass, no temporary):
readers bound raw coordinates (:data:`~ms2l_ray.limits.MAX_ABS_COORD`), but a step such as centring
``±3e38`` would turn finite input into ``inf`` or NaN, and no NaN may reach a store.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from ms2l_ray.contract import COORDS
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.layouts import get_layout

_EPS = 1e-6


@dataclass(frozen=True)
class PreprocessConfig:
    """Which steps to run. Defaults follow the widely used NTU preprocessing scripts."""

    denoise: bool = True  # raw NTU only: drop noise bodies, keep the M most active
    center: bool = True  # translate the centre joint of person 0 (first frame) to the origin
    align: bool = True  # hip axis → x, spine → y (first frame)
    scale_normalize: bool = False  # divide by the mean spine length; off in the reference pipeline
    resample: int | None = None  # fixed frame count; None keeps the valid length
    max_noise_length: int = 11  # bodies present in <= this many frames are noise (script's noise_len_thres)
    spread_ratio: float = 0.8  # a frame is object-like if x-spread > ratio · y-spread (noise_spr_thres1)
    noise_frame_ratio: float = 0.69754  # a body with >= this share of object-like frames is noise (noise_spr_thres2)

    def denoise_record(self, max_persons: int) -> dict[str, Any]:
        """The ``meta["preprocess"]`` entry for the denoising done while reading raw NTU files."""
        return {"step": "denoise", "max_persons": max_persons, "max_noise_length": self.max_noise_length,
                "spread_ratio": self.spread_ratio, "noise_frame_ratio": self.noise_frame_ratio,
                "order": "motion energy, most active first"}


def select_bodies(bodies: np.ndarray, *, max_persons: int = 2, denoise: bool = True, max_noise_length: int = 11,
                  spread_ratio: float = 0.8, noise_frame_ratio: float = 0.69754) -> np.ndarray:
    """Reduce the bodies tracked in one NTU file to ``max_persons`` actors (dense form of :func:`select_blocks`).

    Shape:
        bodies ``[B, T, V, C]`` (zeros where a body is absent) → ``[max_persons, T, V, C]``.
    """
    b, t, _, _ = bodies.shape
    present = np.any(bodies != 0, axis=(2, 3))  # [B, T]
    body, frame = np.nonzero(present)  # one block per present (body, frame)
    return select_blocks(bodies[body, frame], body, frame, num_bodies=b, num_frames=t, max_persons=max_persons,
                         denoise=denoise, max_noise_length=max_noise_length, spread_ratio=spread_ratio,
                         noise_frame_ratio=noise_frame_ratio)


def select_blocks(xyz: np.ndarray, body: np.ndarray, frame: np.ndarray, *, num_bodies: int, num_frames: int,
                  max_persons: int = 2, denoise: bool = True, max_noise_length: int = 11, spread_ratio: float = 0.8,
                  noise_frame_ratio: float = 0.69754) -> np.ndarray:
    """Reduce the bodies tracked in one NTU file to ``max_persons`` actors, from the file's joint blocks.

    With ``denoise`` (the common NTU scripts' rules, simplified: no merging of broken tracks): drop
    bodies present in at most ``max_noise_length`` frames, drop bodies whose x/y spread marks them as
    objects in at least ``noise_frame_ratio`` of their frames, then keep the ``max_persons`` bodies with
    the largest motion energy (sum over joints and coords of the variance over present frames), most
    active first. If every body would be dropped, the rules are not applied. Without ``denoise`` the first
    bodies in order of appearance are kept (the ST-GCN ``ntu_gendata`` behaviour).

    Why blocks and not a ``[B, T, V, C]`` array: every statistic is a per-body sum over the blocks a file
    lists, so memory grows with the file, not with bodies × frames — a few MB with a new body id in every
    frame would otherwise ask for gigabytes. A block whose joints are all zero is an absent body; of two
    blocks of the same body and frame the later counts (as an assignment into the dense array would).

    Shape:
        xyz ``[K, V, C]``, body/frame ``[K]`` (body ids ``0..num_bodies-1`` in order of first appearance)
        → ``[max_persons, num_frames, V, C]`` float32.
    """
    k, v, c = xyz.shape
    out = np.zeros((max_persons, num_frames, v, c), dtype=np.float32)
    if num_bodies == 0 or k == 0:
        return out
    key = body.astype(np.int64) * num_frames + frame
    _, last = np.unique(key[::-1], return_index=True)  # the last block of each (body, frame)
    keep_rows = np.sort(k - 1 - last)
    keep_rows = keep_rows[np.any(xyz[keep_rows] != 0, axis=(1, 2))]  # present blocks only
    xyz, body, frame = xyz[keep_rows], body[keep_rows], frame[keep_rows]
    order = np.arange(num_bodies)
    if denoise and num_bodies > 1:
        n_frames = np.bincount(body, minlength=num_bodies)  # [B]
        x, y = xyz[..., 0], xyz[..., 1]  # [K, V]
        object_like = (x.max(-1) - x.min(-1)) > spread_ratio * (y.max(-1) - y.min(-1))  # [K]
        object_share = np.bincount(body, weights=object_like, minlength=num_bodies) / np.maximum(n_frames, 1)
        keep = (n_frames > max_noise_length) & (object_share < noise_frame_ratio)
        if not keep.any():
            keep = n_frames > 0
        n = np.maximum(n_frames, 1).astype(np.float64)  # [B]
        flat = xyz.reshape(len(xyz), v * c).astype(np.float64)  # [K, D]
        cells = (body[:, None] * (v * c) + np.arange(v * c)).reshape(-1)  # [K*D] (body, coordinate) cells
        sums = np.bincount(cells, weights=flat.reshape(-1), minlength=num_bodies * v * c).reshape(num_bodies, -1)
        mean = sums / n[:, None]  # [B, D]
        motion = np.bincount(body, weights=((flat - mean[body]) ** 2).sum(axis=1), minlength=num_bodies) / n  # [B]
        motion = np.where(keep, motion, -np.inf)
        order = np.argsort(-motion, kind="stable")[: int(keep.sum())]
    for slot, chosen in enumerate(order[:max_persons]):
        mine = body == chosen
        out[slot, frame[mine]] = xyz[mine]
    return out


def _frame_view(data: SkeletonSet) -> np.ndarray:
    frames = np.asarray(data.frames, dtype=np.float32)
    return frames.reshape(-1, data.num_persons, data.num_joints, COORDS)  # [R, M, V, C]


def _with_frames(data: SkeletonSet, x: np.ndarray, record: dict[str, Any],
                 offsets: np.ndarray | None = None) -> SkeletonSet:
    meta = dict(data.meta)
    meta["preprocess"] = [*data.meta.get("preprocess", []), record]
    return SkeletonSet(frames=np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32),  # [R, F]
                       offsets=data.offsets if offsets is None else offsets, labels=data.labels,
                       subjects=data.subjects, views=data.views, setups=data.setups, names=list(data.names),
                       num_persons=data.num_persons, num_joints=data.num_joints, num_classes=data.num_classes,
                       layout=data.layout, meta=meta)


def _reference_rows(data: SkeletonSet, present0: np.ndarray) -> np.ndarray:
    """Per sequence, the first frame row where person 0 is present (the first row if never present)."""
    rows = np.flatnonzero(present0)
    starts, ends = data.offsets[:-1], data.offsets[1:]
    pos = np.searchsorted(rows, starts)  # first present row >= start
    cand = rows[np.minimum(pos, max(len(rows) - 1, 0))] if len(rows) else starts
    return np.where((pos < len(rows)) & (cand < ends), cand, starts)  # [N]


def center(data: SkeletonSet, joint: int | None = None) -> SkeletonSet:
    """Translate so that ``joint`` (default: the layout's centre) of person 0 in the first frame is the origin."""
    j = get_layout(data.layout).center if joint is None else joint
    x = _frame_view(data)  # [R, M, V, C]
    present = np.any(x != 0, axis=(2, 3))  # [R, M]
    seq = np.repeat(np.arange(len(data)), data.lengths)  # [R]
    origin = x[_reference_rows(data, present[:, 0]), 0, j]  # [N, C]
    shifted = x - origin[seq][:, None, None, :] * present[:, :, None, None]  # absent persons stay zero
    return _with_frames(data, shifted, {"step": "center", "joint": int(j), "person": 0, "frame": "first present"})


def _alignment_rotations(data: SkeletonSet, x: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` rotations whose rows are the new x, y, z axes; identity where the axes degenerate."""
    layout = get_layout(data.layout)
    first = x[_reference_rows(data, np.any(x[:, 0] != 0, axis=(1, 2))), 0]  # [N, V, C]
    ax = first[:, layout.hips[1]] - first[:, layout.hips[0]]  # [N, 3] left → right hip
    up = first[:, layout.spine[1]] - first[:, layout.spine[0]]  # [N, 3] lower → upper spine
    ax_n = np.linalg.norm(ax, axis=1, keepdims=True)
    ex = ax / np.maximum(ax_n, _EPS)
    up = up - (up * ex).sum(axis=1, keepdims=True) * ex  # Gram-Schmidt: spine without its hip component
    up_n = np.linalg.norm(up, axis=1, keepdims=True)
    ey = up / np.maximum(up_n, _EPS)
    ez = np.cross(ex, ey)
    rot = np.stack([ex, ey, ez], axis=1)  # [N, 3, 3]
    ok = (ax_n[:, 0] > _EPS) & (up_n[:, 0] > _EPS)
    rot[~ok] = np.eye(3)
    return rot


def align_view(data: SkeletonSet) -> SkeletonSet:
    """Rotate each sequence so that the first-frame hip axis is +x and the spine points to +y.

    Rotation is about the origin, so run :func:`center` first (as :func:`apply` does). Zeros stay zero.
    """
    x = _frame_view(data)  # [R, M, V, C]
    rot = _alignment_rotations(data, x)  # [N, 3, 3]
    seq = np.repeat(np.arange(len(data)), data.lengths)  # [R]
    rotated = np.einsum("rij,rmvj->rmvi", rot[seq], x, optimize=True)  # [R, M, V, C]
    layout = get_layout(data.layout)
    return _with_frames(data, rotated, {"step": "align", "x_axis": list(layout.hips), "y_axis": list(layout.spine),
                                        "person": 0, "frame": "first present"})


def scale_normalize(data: SkeletonSet) -> SkeletonSet:
    """Divide each sequence by its mean spine length over the frames where person 0 is present."""
    layout = get_layout(data.layout)
    x = _frame_view(data)  # [R, M, V, C]
    present0 = np.any(x[:, 0] != 0, axis=(1, 2))  # [R]
    seq = np.repeat(np.arange(len(data)), data.lengths)  # [R]
    spine = np.linalg.norm(x[:, 0, layout.spine[1]] - x[:, 0, layout.spine[0]], axis=1)  # [R]
    total = np.bincount(seq, weights=spine * present0, minlength=len(data))
    count = np.bincount(seq, weights=present0.astype(np.float64), minlength=len(data))
    scale = np.where((count > 0) & (total > _EPS), total / np.maximum(count, 1), 1.0)  # [N]
    return _with_frames(data, x / scale[seq][:, None, None, None].astype(np.float32),
                        {"step": "scale_normalize", "reference": "mean spine length", "joints": list(layout.spine)})


def resample(data: SkeletonSet, num_frames: int) -> SkeletonSet:
    """Every sequence to exactly ``num_frames`` frames at evenly spaced source indices ``floor(t·L/T)``."""
    if num_frames < 1:
        raise ValueError(f"resample: num_frames must be >= 1, got {num_frames}")
    t = np.arange(num_frames, dtype=np.int64)[None, :]  # [1, T]
    rows = data.offsets[:-1, None] + (t * data.lengths[:, None]) // num_frames  # [N, T]
    x = np.asarray(data.frames)[rows.reshape(-1)]  # [N*T, F]
    offsets = np.arange(len(data) + 1, dtype=np.int64) * num_frames
    return _with_frames(data, x, {"step": "resample", "num_frames": int(num_frames)}, offsets=offsets)


def check_finite_set(data: SkeletonSet, source: str | PathLike[str], after: str) -> None:
    """Raise :class:`DataFormatError` if any frame holds NaN or inf.

    The error names ``source``, the sample and ``after`` (a step). One ``min``/``max`` pass; the offending
    sample is located only when there is one.
    """
    frames = np.asarray(data.frames)
    if not frames.size or (np.isfinite(frames.min()) and np.isfinite(frames.max())):
        return
    row = int(np.argmax(~np.isfinite(frames).all(axis=1)))
    seq = int(np.searchsorted(data.offsets, row, side="right")) - 1
    value = float(frames[row][~np.isfinite(frames[row])][0])
    raise DataFormatError(source, f"frames of sample {data.names[seq]!r}", value,
                          f"not finite after {after} (frame {row - int(data.offsets[seq])})")


def apply(data: SkeletonSet, config: PreprocessConfig, source: str | PathLike[str] = "<in memory>") -> SkeletonSet:
    """Run the enabled set-level steps (centre, align, scale, resample) in that order.

    After each step every coordinate is checked to be finite (errors name ``source``, the sample and the step).
    """
    steps = [(config.center, "center", center), (config.align, "align", align_view),
             (config.scale_normalize, "scale_normalize", scale_normalize)]
    for enabled, name, step in steps:
        if enabled:
            data = step(data)
            check_finite_set(data, source, f"preprocessing step {name!r}")
    if config.resample is not None:
        data = resample(data, config.resample)  # a gather: copies values, creates none
    return data
