"""NTU RGB+D 60/120 raw ``.skeleton`` files (REFERENCE.md §3).

Layout of a file (CRLF line endings): frame count; per frame a body count; per body one line of 10
values (bodyID first), the joint count (25) and 25 lines of 12 values (x, y, z, depth/colour
projections, orientation, trackingState). Only x, y, z are kept.

Why the structure walk is a Python loop but the numbers are not: the header lines decide where joint
blocks start (one step per body and frame, ~100 per file); all joint lines of a file are then parsed
in one :func:`numpy.loadtxt` call, which also checks that every joint line has 12 columns.

Memory grows with the file, never with bodies × frames: a parsed file is kept as its joint blocks (one
per body and frame, :class:`NtuSkeleton`) and denoising works on those (:func:`select_blocks`), so a file of
a few MB with a new body id in every frame costs a few MB, not gigabytes. The frame count a file declares is
bounded by :data:`~ms2l_ray.limits.MAX_SEQUENCE_FRAMES` before anything is allocated for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.preprocess import PreprocessConfig, select_blocks
from ms2l_ray.data.readers import COORD_RULE, ReadLog, Sample, assemble, chunked, concat_sets, in_range
from ms2l_ray.limits import MAX_SEQUENCE_FRAMES

NUM_JOINTS = 25
NUM_PERSONS = 2
VALUES_PER_JOINT = 12
VALUES_PER_BODY_INFO = 10
_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True)
class NtuName:
    """Fields of ``SsssCcccPpppRrrrAaaa`` (all 1-based as in the file name)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int


def parse_ntu_name(name: str) -> NtuName | None:
    """Fields of an NTU sample name (suffixes and directories ignored); ``None`` if it is not one."""
    m = _NAME.fullmatch(Path(name).name.split(".")[0])
    if m is None:
        return None
    return NtuName(*(int(g) for g in m.groups()))


@dataclass
class NtuSkeleton:
    """One parsed file as its joint blocks: one ``[V, C]`` block per body and frame the file lists.

    Attributes:
        name: sample name without suffix.
        fields: parsed name fields.
        body_ids: the file's bodyID per body, in order of first appearance.
        num_frames: the file's frame count ``T``.
        xyz: ``[K, V=25, C=3]`` float32 joint blocks in file order.
        body: ``[K]`` int64 index into ``body_ids`` of each block.
        frame: ``[K]`` int64 frame of each block.
    """

    name: str
    fields: NtuName
    body_ids: list[str]
    num_frames: int
    xyz: np.ndarray
    body: np.ndarray
    frame: np.ndarray

    @property
    def bodies(self) -> np.ndarray:
        """``[B, T, V, C]`` float32, zero where a body is absent.

        For inspection only: B × T can be large, and the reader itself never builds it.
        """
        out = np.zeros((len(self.body_ids), self.num_frames, NUM_JOINTS, 3), dtype=np.float32)
        out[self.body, self.frame] = self.xyz
        return out


def read_missing_list(path: str | Path) -> set[str]:
    """Sample names in a published missing-skeleton list (one name per line)."""
    names = {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    bad = [n for n in names if parse_ntu_name(n) is None]
    if bad:
        raise DataFormatError(path, "sample name", sorted(bad)[0], "expected SsssCcccPpppRrrrAaaa")
    return names


def _int_line(path: Path, lines: Sequence[str], i: int, field: str) -> int:
    if i >= len(lines):
        raise DataFormatError(path, field, "<end of file>", f"file is truncated after {len(lines)} lines", line=i + 1)
    try:
        return int(lines[i])
    except ValueError:
        raise DataFormatError(path, field, lines[i].strip(), "expected an integer", line=i + 1) from None


def _walk(path: Path, lines: Sequence[str]) -> tuple[int, list[int], list[int], list[str]]:
    """Frame count, joint-block start lines, their frame indices and body ids (one entry per body and frame)."""
    num_frames = _int_line(path, lines, 0, "frame count")
    if not 0 <= num_frames <= MAX_SEQUENCE_FRAMES:
        raise DataFormatError(path, "frame count", num_frames, f"must be in 0..{MAX_SEQUENCE_FRAMES}", line=1)
    starts: list[int] = []
    frame_of: list[int] = []
    ids: list[str] = []
    i = 1
    for t in range(num_frames):
        num_bodies = _int_line(path, lines, i, "body count")
        if num_bodies < 0:
            raise DataFormatError(path, "body count", num_bodies, "must be >= 0", line=i + 1)
        i += 1
        for _ in range(num_bodies):
            if i >= len(lines):
                raise DataFormatError(path, "body info", "<end of file>", f"file is truncated in frame {t + 1}",
                                      line=i + 1)
            info = lines[i].split()
            if len(info) != VALUES_PER_BODY_INFO:
                raise DataFormatError(path, "body info", lines[i].strip(), f"expected {VALUES_PER_BODY_INFO} values",
                                      line=i + 1)
            joints = _int_line(path, lines, i + 1, "joint count")
            if joints != NUM_JOINTS:
                raise DataFormatError(path, "joint count", joints, f"expected {NUM_JOINTS}", line=i + 2)
            i += 2
            if i + NUM_JOINTS > len(lines):
                raise DataFormatError(path, "joint", "<end of file>", f"file is truncated in frame {t + 1}",
                                      line=len(lines) + 1)
            starts.append(i)
            frame_of.append(t)
            ids.append(info[0])
            i += NUM_JOINTS
    extra = [k for k in range(i, len(lines)) if lines[k].strip()]
    if extra:
        raise DataFormatError(path, "trailing data", lines[extra[0]].strip(),
                              f"expected end of file after {num_frames} frames", line=extra[0] + 1)
    return num_frames, starts, frame_of, ids


def _parse_joints(path: Path, lines: Sequence[str], starts: list[int]) -> np.ndarray:
    """``[blocks, 25, 3]`` xyz of every joint block, with the exact line of any malformed or non-finite value."""
    line_no = (np.asarray(starts, dtype=np.int64)[:, None] + np.arange(NUM_JOINTS)).reshape(-1).tolist()  # [blocks*25]
    joint_lines = [lines[k] for k in line_no]
    try:
        values = np.loadtxt(joint_lines, dtype=np.float64, ndmin=2) if joint_lines else np.zeros((0, 12))
        if values.shape[1] != VALUES_PER_JOINT:
            raise ValueError
    except ValueError:
        for k in line_no:  # slow path, only to name the bad line
            tokens = lines[k].split()
            try:
                ok = len(tokens) == VALUES_PER_JOINT and len([float(x) for x in tokens]) == VALUES_PER_JOINT
            except ValueError:
                ok = False
            if not ok:
                raise DataFormatError(path, "joint", lines[k].strip(),
                                      f"expected {VALUES_PER_JOINT} numbers", line=k + 1) from None
        raise DataFormatError(path, "joint", "?", "unparseable joint lines") from None
    xyz = values[:, :3]  # float64 as parsed: checked before float32, where 1e39 would become inf
    finite = in_range(xyz).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataFormatError(path, "joint", lines[line_no[row]].strip(), COORD_RULE, line=line_no[row] + 1)
    return xyz.astype(np.float32).reshape(-1, NUM_JOINTS, 3)  # [blocks, V, C]


def read_skeleton(path: str | Path) -> NtuSkeleton:
    """Parse one ``.skeleton`` file; raises :class:`DataFormatError` naming the file and line."""
    path = Path(path)
    fields = parse_ntu_name(path.name)
    if fields is None:
        raise DataFormatError(path, "file name", path.name, "expected SsssCcccPpppRrrrAaaa.skeleton")
    try:
        lines = path.read_bytes().decode("ascii").splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(path, "encoding", e.object[e.start:e.end], "expected ASCII text") from None
    num_frames, starts, frame_of, ids = _walk(path, lines)
    xyz = _parse_joints(path, lines, starts)  # [blocks, V, C]
    body_ids = list(dict.fromkeys(ids))  # order of first appearance
    index = {b: k for k, b in enumerate(body_ids)}
    return NtuSkeleton(name=path.name.split(".")[0], fields=fields, body_ids=body_ids, num_frames=num_frames,
                       xyz=xyz, body=np.array([index[b] for b in ids], dtype=np.int64),
                       frame=np.asarray(frame_of, dtype=np.int64))


def to_sample(skeleton: NtuSkeleton, path: str | Path, config: PreprocessConfig) -> Sample:
    """Select ``M = 2`` persons (denoising per ``config``) and trim leading/trailing frames without anyone."""
    persons = select_blocks(skeleton.xyz, skeleton.body, skeleton.frame, num_bodies=len(skeleton.body_ids),
                            num_frames=skeleton.num_frames, max_persons=NUM_PERSONS, denoise=config.denoise,
                            max_noise_length=config.max_noise_length, spread_ratio=config.spread_ratio,
                            noise_frame_ratio=config.noise_frame_ratio)  # [M, T, V, C]
    frames = persons.transpose(1, 0, 2, 3).reshape(persons.shape[1], NUM_PERSONS * NUM_JOINTS * 3)  # [T, M*V*C]
    occupied = np.flatnonzero(np.any(frames != 0, axis=1))
    if len(occupied) == 0:
        raise DataFormatError(path, "bodies", 0, "no body in any frame and not on a missing-skeleton list")
    f = skeleton.fields
    return Sample(name=skeleton.name, frames=frames[occupied[0]: occupied[-1] + 1], label=f.action - 1,
                  subject=f.performer, view=f.camera, setup=f.setup)


def num_classes_for(paths: Iterable[str | Path]) -> int:
    """60 for NTU-60 actions only, 120 if any action id exceeds 60 (NTU-120)."""
    actions = [f.action for f in (parse_ntu_name(str(p)) for p in paths) if f is not None]
    return 120 if actions and max(actions) > 60 else 60


def iter_ntu(paths: Sequence[str | Path], *, config: PreprocessConfig | None = None, missing: Iterable[str] = (),
             skip_bad: bool = False, log: ReadLog | None = None, num_classes: int | None = None,
             chunk_size: int = 1024) -> Iterator[SkeletonSet]:
    """Read ``.skeleton`` files chunk by chunk; names on ``missing`` are skipped unread and logged.

    Yields:
        ``SkeletonSet`` chunks with ``M = 2``, ``V = 25``, layout ``ntu25``, 0-based labels
        (action − 1), subjects = performer, views = camera, setups = setup.
    """
    config = config or PreprocessConfig()
    log = log if log is not None else ReadLog()
    missing_set = set(missing)
    classes = num_classes or num_classes_for(paths)
    for chunk in chunked(paths, chunk_size):
        samples: list[Sample] = []
        for p in chunk:
            stem = Path(p).name.split(".")[0]
            if stem in missing_set:
                log.missing.append(stem)
                continue
            try:
                samples.append(to_sample(read_skeleton(p), p, config))
            except DataFormatError as err:
                log.reject(err, skip_bad)
        if samples:
            yield assemble(samples, num_persons=NUM_PERSONS, num_joints=NUM_JOINTS, num_classes=classes,
                           layout="ntu25", meta={"source": "ntu"})


def read_ntu(paths: Sequence[str | Path], *, config: PreprocessConfig | None = None, missing: Iterable[str] = (),
             skip_bad: bool = False, num_classes: int | None = None) -> tuple[SkeletonSet, ReadLog]:
    """All of :func:`iter_ntu` in one set, plus the log of skipped files."""
    log = ReadLog()
    chunks = list(iter_ntu(paths, config=config, missing=missing, skip_bad=skip_bad, log=log,
                           num_classes=num_classes))
    if not chunks:
        raise ValueError(f"no NTU samples read from {len(paths)} paths "
                         f"({len(log.missing)} on a missing list, {len(log.bad)} bad)")
    return concat_sets(chunks), log
