"""PKU-MMD part I/II: untrimmed skeleton text, per-video label intervals, split files (REFERENCE.md §3).

* Skeleton file ``<video>.txt``: one frame per line, 150 floats = 2 persons × 25 joints × xyz in NTU
  joint order (the second person is zeros when absent) — already the contract's (M, V, C) order.
* Label file ``<video>.txt``: lines ``label,start,end,confidence``; each line becomes one clip
  ``frames[start:end]`` (0-based, half-open, as the common PKU conversion scripts slice), named
  ``<video>#<label line>`` so the clip's video id is recoverable (:func:`ms2l_ray.data.splits.group_id`).
* Split files ``cross-subject.txt`` / ``cross-view.txt``: ``Training videos:``, a comma-separated id line,
  ``Validataion videos:`` (sic; the official "validation" part is the test part), its id line. They are
  recorded as ``meta["split_lists"]["pku-xsub" | "pku-xview"] = {"train": ids, "test": ids}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.readers import ReadLog, Sample, assemble, check_finite, chunked, concat_sets
from ms2l_ray.data.splits import GROUP_SEP

NUM_PERSONS, NUM_JOINTS = 2, 25
NUM_FEATURES = NUM_PERSONS * NUM_JOINTS * 3
PART1_CLASSES = 51  # labels are checked against this; part II has 41 actions (pass its own num_classes)
VIEW_IDS = {"L": 1, "M": 2, "R": 3}
SPLIT_FILES = {"pku-xsub": "cross-subject.txt", "pku-xview": "cross-view.txt"}
_DIRS = {"skeleton": ("skeleton", "skeletons", "PKU_Skeleton_Renew", "Skeleton"),
         "label": ("label", "labels", "Train_Label_PKU_final", "Label"),
         "split": ("split", "Split", ".")}


def _loadtxt(path: Path, columns: int, dtype: type, delimiter: str | None, field: str) -> np.ndarray:
    """Whole-file numeric parse; on failure, re-scan only to name the first bad line."""
    try:
        values: np.ndarray = np.loadtxt(path, dtype=dtype, delimiter=delimiter, ndmin=2)
        if values.shape[1] == columns or values.size == 0:
            return values.reshape(-1, columns)
    except ValueError:
        pass
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split(delimiter)
        try:
            ok = len([dtype(t) for t in tokens]) == columns
        except ValueError:
            ok = False
        if not ok:
            raise DataFormatError(path, field, line.strip(), f"expected {columns} {dtype.__name__} values", line=n)
    raise DataFormatError(path, field, "?", f"expected {columns} values per line")


def read_pku_skeleton(path: str | Path) -> np.ndarray:
    """``[T, 150]`` float32 frames of one video; out-of-range values and short lines are errors naming the line."""
    path = Path(path)
    values = _loadtxt(path, NUM_FEATURES, float, None, "frame")  # [T, F] float64: checked before float32
    if len(values) == 0:
        raise DataFormatError(path, "frame", "<empty file>", "expected at least one frame")
    check_finite(values, path, "frame", first_line=1)
    return values.astype(np.float32)


def read_pku_labels(path: str | Path, num_frames: int, num_classes: int = PART1_CLASSES) -> np.ndarray:
    """``[K, 4]`` int64 rows ``(label 1-based, start, end, confidence)``, each checked against the video."""
    path = Path(path)
    rows = _loadtxt(path, 4, int, ",", "label line").astype(np.int64)  # [K, 4]
    bad_label = (rows[:, 0] < 1) | (rows[:, 0] > num_classes)
    bad_span = (rows[:, 1] < 0) | (rows[:, 2] <= rows[:, 1]) | (rows[:, 2] > num_frames)
    if bad_label.any():
        k = int(np.argmax(bad_label))
        raise DataFormatError(path, "label", int(rows[k, 0]), f"expected 1..{num_classes}", line=k + 1)
    if bad_span.any():
        k = int(np.argmax(bad_span))
        raise DataFormatError(path, "interval", rows[k, 1:3].tolist(),
                              f"expected 0 <= start < end <= {num_frames} frames of the skeleton file", line=k + 1)
    return rows


def read_pku_split(path: str | Path) -> dict[str, list[str]]:
    """``{"train": ids, "test": ids}`` from an official split file (``Validataion videos:`` is the test part)."""
    path = Path(path)
    parts: dict[str, list[str]] = {}
    current: str | None = None
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        head = line.lower().rstrip(":").strip()
        if head in ("training videos", "train videos"):
            current = "train"
        elif head in ("validataion videos", "validation videos", "testing videos", "test videos"):
            current = "test"
        elif line:
            if current is None or current in parts:
                raise DataFormatError(path, "header", line[:40], "expected 'Training videos:' or "
                                      "'Validataion videos:' before each id line", line=n)
            parts[current] = [t.strip() for t in line.split(",") if t.strip()]
    for part in ("train", "test"):
        if part not in parts:
            raise DataFormatError(path, part, None, "split file lacks this part's id line")
    return parts


def view_of(video: str) -> int:
    """Camera id from the ``-L``/``-M``/``-R`` suffix of a video id (0 if absent)."""
    return VIEW_IDS.get(video.rsplit("-", 1)[-1], 0) if "-" in video else 0


def video_samples(skeleton_path: str | Path, label_path: str | Path, num_classes: int = PART1_CLASSES) -> list[Sample]:
    """The labelled clips of one video."""
    video = Path(skeleton_path).stem
    frames = read_pku_skeleton(skeleton_path)  # [T, F]
    rows = read_pku_labels(label_path, len(frames), num_classes)  # [K, 4]
    return [Sample(name=f"{video}{GROUP_SEP}{k + 1:03d}", frames=frames[s:e], label=int(c) - 1, view=view_of(video))
            for k, (c, s, e, _conf) in enumerate(rows)]


def find_pku_dirs(source: str | Path) -> dict[str, Path | None]:
    """``skeleton``/``label``/``split`` directories under ``source`` (sample and official layouts)."""
    source = Path(source)
    found: dict[str, Path | None] = {}
    for key, names in _DIRS.items():
        found[key] = next((source / n for n in names if (source / n).is_dir()
                           and (key != "split" or any((source / n / f).exists() for f in SPLIT_FILES.values()))), None)
    for key in ("skeleton", "label"):
        if found[key] is None:
            raise FileNotFoundError(f"{source}: no PKU-MMD {key} directory (looked for {list(_DIRS[key])})")
    return found


def read_split_lists(split_dir: str | Path | None) -> dict[str, dict[str, list[str]]]:
    """Both official splits found in ``split_dir``, keyed by split name."""
    if split_dir is None:
        return {}
    return {name: read_pku_split(Path(split_dir) / f) for name, f in SPLIT_FILES.items()
            if (Path(split_dir) / f).exists()}


def iter_pku(source: str | Path, *, num_classes: int = PART1_CLASSES, skip_bad: bool = False,
             log: ReadLog | None = None, videos_per_chunk: int = 64) -> Iterator[SkeletonSet]:
    """Clips of every video under ``source`` that has both a skeleton and a label file, chunk-wise."""
    dirs = find_pku_dirs(source)
    assert dirs["skeleton"] is not None and dirs["label"] is not None
    log = log if log is not None else ReadLog()
    meta: dict[str, Any] = {"source": "pku-mmd", "split_lists": read_split_lists(dirs["split"])}
    skeletons = sorted(dirs["skeleton"].glob("*.txt"))
    labels = dirs["label"]
    for chunk in chunked(skeletons, videos_per_chunk):
        samples: list[Sample] = []
        for sk in chunk:
            if not (labels / sk.name).exists():
                log.reject(DataFormatError(sk, "label file", str(labels / sk.name), "missing"), skip_bad)
                continue
            try:
                samples.extend(video_samples(sk, labels / sk.name, num_classes))
            except DataFormatError as err:
                log.reject(err, skip_bad)
        if samples:
            yield assemble(samples, num_persons=NUM_PERSONS, num_joints=NUM_JOINTS, num_classes=num_classes,
                           layout="ntu25", meta=meta)


def read_pku(source: str | Path, *, num_classes: int = PART1_CLASSES, skip_bad: bool = False) -> SkeletonSet:
    """All clips under ``source`` in one set (see :func:`iter_pku`)."""
    chunks: Sequence[SkeletonSet] = list(iter_pku(source, num_classes=num_classes, skip_bad=skip_bad))
    if not chunks:
        raise ValueError(f"{source}: no PKU-MMD clips found")
    return concat_sets(chunks)
