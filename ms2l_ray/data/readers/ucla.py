"""NW-UCLA Multiview Action 3D, one JSON file per sample (REFERENCE.md §3).

``{"file_name": "a01_s01_e00_v01", "skeletons": [[[x, y, z] × 20] × T], "label": 1..10}``: one
person, 20 Kinect-v1 joints (layout ``ucla20``). The 10 action ids a01..a06, a08, a09, a11, a12 map
to labels 1..10; the file's ``label`` is checked against its ``aXX`` field so that a renamed or
mislabelled file is caught instead of silently training on a wrong class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.readers import ReadLog, Sample, assemble, check_finite

NUM_JOINTS = 20
NUM_CLASSES = 10
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)  # aXX of labels 1..10
_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})")


def parse_ucla_name(name: str) -> tuple[int, int, int, int] | None:
    """``(action, subject, episode, view)`` of ``aXX_sYY_eZZ_vWW``; ``None`` if the name is not one."""
    m = _NAME.fullmatch(name)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3]), int(m[4]))


def _parse(path: Path, doc: Any) -> Sample:
    if not isinstance(doc, dict):
        raise DataFormatError(path, "document", type(doc).__name__, "expected a JSON object")
    for key in ("file_name", "skeletons", "label"):
        if key not in doc:
            raise DataFormatError(path, key, None, "missing key")
    name = doc["file_name"]
    fields = parse_ucla_name(name) if isinstance(name, str) else None
    if fields is None:
        raise DataFormatError(path, "file_name", name, "expected aXX_sYY_eZZ_vWW")
    action, subject, _episode, view = fields
    if action not in ACTION_IDS:
        raise DataFormatError(path, "file_name", name, f"action a{action:02d} is not one of {ACTION_IDS}")
    label = ACTION_IDS.index(action)
    if doc["label"] != label + 1:
        raise DataFormatError(path, "label", doc["label"], f"a{action:02d} is label {label + 1}")
    try:
        xyz = np.asarray(doc["skeletons"], dtype=np.float64)  # [T, V, C], float64: checked before float32
    except (ValueError, TypeError, OverflowError):
        raise DataFormatError(path, "skeletons", "ragged or non-numeric", "expected T × 20 × 3 numbers") from None
    if xyz.ndim != 3 or xyz.shape[1:] != (NUM_JOINTS, 3) or len(xyz) < 1:
        raise DataFormatError(path, "skeletons", f"shape {xyz.shape}", f"expected (T >= 1, {NUM_JOINTS}, 3)")
    check_finite(xyz, path, "skeletons", what="frame")
    return Sample(name=name, frames=xyz.reshape(len(xyz), -1).astype(np.float32), label=label, subject=subject,
                  view=view)  # [T, V*C]


def read_ucla_file(path: str | Path) -> Sample:
    """One JSON sample; raises :class:`DataFormatError` naming the file (and the JSON line on a syntax error)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataFormatError(path, "json", e.msg, f"invalid JSON at column {e.colno}", line=e.lineno) from None
    except UnicodeDecodeError:
        raise DataFormatError(path, "encoding", "non-UTF-8 bytes", "expected UTF-8 JSON") from None
    return _parse(path, doc)


def read_ucla(paths: Sequence[str | Path], *, skip_bad: bool = False, log: ReadLog | None = None) -> SkeletonSet:
    """Read NW-UCLA JSON files into one set (``M = 1``, ``V = 20``, subjects = sYY, views = vWW).

    The whole dataset is ~60k frames, so it is read in one piece.
    """
    log = log if log is not None else ReadLog()
    samples: list[Sample] = []
    for p in paths:
        try:
            samples.append(read_ucla_file(p))
        except DataFormatError as err:
            log.reject(err, skip_bad)
    if not samples:
        raise ValueError(f"no NW-UCLA samples read from {len(paths)} files ({len(log.bad)} bad)")
    return assemble(samples, num_persons=1, num_joints=NUM_JOINTS, num_classes=NUM_CLASSES, layout="ucla20",
                    meta={"source": "nw-ucla"})
