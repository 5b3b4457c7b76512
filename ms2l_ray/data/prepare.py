"""Convert a dataset in one of its published formats into an Arrow store (``ms2l data prepare``).

Why a conversion step: training reads random batches from a memory-mapped store (``ms2l_ray.data.store``)
instead of re-parsing text or loading a padded N×3×300×25×2 array into RAM. Conversion streams chunks
(readers → preprocessing → store), reports files on the published missing-skeleton lists and bad
files, and either skips the bad ones (``skip_bad``) or stops at the first one, leaving nothing behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.config import ConfigError
from ms2l_ray.data import preprocess as pp
from ms2l_ray.data.classes import class_names, store_class_names
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.readers import ReadLog, ctrgcn, ntu, pku, stgcn, ucla
from ms2l_ray.data.splits import SPLIT_NAMES, make_splits
from ms2l_ray.data.store import is_store_file, open_store, remove_leftover_temp_files, write_store_chunks

FORMATS = ("ntu", "stgcn", "ctrgcn", "nw-ucla", "pku-mmd", "builtin")
LENGTH_BINS = (1, 16, 32, 64, 128, 256, 301)
STGCN_TEST_PARTS = ("val", "test")


@dataclass
class PrepareReport:
    """What a conversion did."""

    fmt: str
    out: Path
    num_sequences: int = 0
    num_frames: int = 0
    seconds: float = 0.0
    preprocess: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # samples on a published missing-skeleton list
    bad: list[str] = field(default_factory=list)  # error messages of skipped bad files
    removed_temps: list[str] = field(default_factory=list)  # leftovers of a killed earlier prepare, deleted
    live_temps: list[str] = field(default_factory=list)  # temp files of a prepare of OUT that still runs

    def summary(self) -> str:
        """The human-readable report ``ms2l data prepare`` prints: what was written, how fast, what was cleaned."""
        rate = self.num_sequences / self.seconds if self.seconds > 0 else float("inf")
        lines = [f"wrote {self.num_sequences} sequences ({self.num_frames} frames) from {self.fmt} to {self.out} "
                 f"in {self.seconds:.1f} s ({rate:.0f} sequences/s)",
                 f"preprocessing: {[s['step'] for s in self.preprocess] or 'none'}"]
        if self.missing:
            lines.append(f"skipped {len(self.missing)} samples on a missing-skeleton list")
        if self.bad:
            lines.append(f"skipped {len(self.bad)} bad files:")
            lines += [f"  {msg}" for msg in self.bad]
        if self.removed_temps:
            lines.append(f"removed {len(self.removed_temps)} leftover temporary files of an interrupted prepare: "
                         + ", ".join(self.removed_temps))
        if self.live_temps:
            lines.append(f"kept {len(self.live_temps)} temporary files of a prepare of the same store that is still "
                         "running: " + ", ".join(self.live_temps))
        return "\n".join(lines)


def _ntu(source: Path, log: ReadLog, config: pp.PreprocessConfig, skip_bad: bool, chunk: int,
         extra: dict[str, Any], missing_lists: Sequence[Path]) -> Iterator[SkeletonSet]:
    if not source.is_dir():
        raise FileNotFoundError(f"ntu: {source} is not a directory of .skeleton files")
    paths = sorted(source.glob("*.skeleton"))
    lists = [*sorted(source.glob("*missing*.txt")), *missing_lists]
    missing = set().union(*(ntu.read_missing_list(p) for p in lists)) if lists else set()
    extra["missing_lists"] = [p.name for p in lists]
    for data in ntu.iter_ntu(paths, config=config, missing=missing, skip_bad=skip_bad, log=log, chunk_size=chunk):
        if config.denoise:
            data.meta["preprocess"] = [config.denoise_record(ntu.NUM_PERSONS)]
        yield data


def _stgcn_parts(source: Path) -> list[tuple[str, Path]]:
    if source.is_file():
        return [(source.name.removesuffix("_data.npy"), source)]
    found = {p.name.removesuffix("_data.npy"): p for p in sorted(source.glob("*_data.npy"))}
    order = ["train", *STGCN_TEST_PARTS]
    return sorted(found.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def _stgcn(source: Path, log: ReadLog, skip_bad: bool, chunk: int, extra: dict[str, Any]) -> Iterator[SkeletonSet]:
    parts = _stgcn_parts(source)
    if not parts:
        raise FileNotFoundError(f"stgcn: no *_data.npy in {source}")
    labels = {name: stgcn.read_label_pkl(p.with_name(f"{name}_label.pkl")) for name, p in parts}
    classes = max(int(lab.max(initial=0)) for _, lab in labels.values()) + 1
    if "train" in labels and any(t in labels for t in STGCN_TEST_PARTS):
        extra["split_lists"] = {"file": {
            "train": [n.split(".")[0] for n in labels["train"][0]],
            "test": [n.split(".")[0] for t in STGCN_TEST_PARTS if t in labels for n in labels[t][0]]}}
    for name, data_path in parts:
        frame = data_path.with_name(f"{name}_frame.npy")
        yield from stgcn.iter_stgcn(data_path, data_path.with_name(f"{name}_label.pkl"),
                                    frame if frame.exists() else None, num_classes=classes, skip_bad=skip_bad,
                                    log=log, chunk_size=chunk)


def _ucla_files(source: Path) -> list[Path]:
    files = sorted(source.glob("*.json")) or sorted(source.glob("*/*.json"))
    if not files:
        raise FileNotFoundError(f"nw-ucla: no .json files in {source} or its subdirectories")
    return files


def _single(source: Path, pattern: str, fmt: str) -> Path:
    if source.is_file():
        return source
    found = sorted(source.glob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"{fmt}: expected one {pattern} file in {source}, found {[p.name for p in found]}")
    return found[0]


def _ucla(source: Path, log: ReadLog, skip_bad: bool) -> Iterator[SkeletonSet]:
    yield ucla.read_ucla(_ucla_files(source), skip_bad=skip_bad, log=log)  # ~60k frames: one chunk


def _builtin(num_sequences: int, seed: int) -> Iterator[SkeletonSet]:
    from ms2l_ray.data.synthetic import generate

    data = generate(num_sequences, seed)
    data.meta.setdefault("source", "builtin")
    yield data


def _sources(fmt: str, source: Path, *, log: ReadLog, config: pp.PreprocessConfig, skip_bad: bool, chunk: int,
             extra: dict[str, Any], num_sequences: int, seed: int, missing_lists: Sequence[Path]
             ) -> Iterator[SkeletonSet]:
    if fmt == "ntu":
        return _ntu(source, log, config, skip_bad, chunk, extra, missing_lists)
    if fmt == "stgcn":
        return _stgcn(source, log, skip_bad, chunk, extra)
    if fmt == "ctrgcn":
        return ctrgcn.iter_ctrgcn(_single(source, "*.npz", fmt), skip_bad=skip_bad, log=log, chunk_size=chunk)
    if fmt == "nw-ucla":
        return _ucla(source, log, skip_bad)
    if fmt == "pku-mmd":
        return pku.iter_pku(source, skip_bad=skip_bad, log=log, videos_per_chunk=max(1, chunk // 16))
    return _builtin(num_sequences, seed)


class OutputRefused(ConfigError):
    """``ms2l data prepare`` will not write its store over the source, or over anything without ``force``."""


def check_output(source: Path | None, out: Path, *, force: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an OUT that is (or contains) the source or one of its input files, or exists without ``force``.

    Why: the store is ``os.replace``-d into place, which silently destroys whatever sat there, the dataset
    itself included (``prepare ctrgcn NTU60_CS.npz NTU60_CS.npz``). Both paths are resolved (symlinks, ``..``)
    before comparing; a symlink at OUT counts as existing (it would be replaced, not followed).
    """
    target = out.resolve()
    protected = [p.resolve() for p in (*([source] if source is not None else []), *inputs)]
    for src in protected:
        if target == src or target in src.parents:
            raise OutputRefused(f"out {out}: is the source {src if target == src else src.parent} (or holds it); "
                                f"the store would replace the dataset it is made from; choose another OUT")
        folder = src if src.is_dir() else src.parent  # a single-file source has inputs beside it (ST-GCN labels)
        if folder in target.parents and os.path.lexists(out) and not is_store_file(out):
            raise OutputRefused(f"out {out}: an existing file in the source directory {folder} that is not a "
                                f"store; it may be part of the dataset; choose another OUT")
    if os.path.isdir(out) and not os.path.islink(out):
        raise OutputRefused(f"out {out}: is a directory; a store is one file (e.g. {out}/dataset.arrow)")
    if os.path.lexists(out) and not force:
        kind = "a symlink" if os.path.islink(out) else "a file"
        raise OutputRefused(f"out {out}: already exists ({kind}); pass --force to replace it")


def prepare(fmt: str, source: str | Path, out: str | Path, *, skip_bad: bool = False,
            preprocess: pp.PreprocessConfig | None = None, num_sequences: int = 1000, seed: int = 0,
            missing_lists: Sequence[str | Path] = (), chunk_size: int = 1024, force: bool = False) -> PrepareReport:
    """Convert ``source`` in format ``fmt`` (one of :data:`FORMATS`) into a store at ``out``.

    Args:
        fmt: ``ntu`` (directory of ``.skeleton`` files, optional ``*missing*.txt`` lists beside them),
            ``stgcn`` (directory with ``{split}_data.npy``/``_label.pkl``/``_frame.npy``, or one
            ``*_data.npy``), ``ctrgcn`` (an ``.npz``), ``nw-ucla`` (directory of JSON files), ``pku-mmd``
            (directory with ``skeleton/``, ``label/``, ``split/``) or ``builtin`` (synthetic; ``source`` unused).
        source: the dataset's file or directory in format ``fmt``.
        out: the store file to write (its folder is created; see :func:`check_output` for what is refused).
        skip_bad: skip and report bad files instead of stopping at the first one.
        preprocess: steps to run (default :class:`~ms2l_ray.data.preprocess.PreprocessConfig`); ``denoise``
            applies to raw NTU only.
        num_sequences: the ``builtin`` generator's number of sequences.
        seed: the ``builtin`` generator's seed.
        missing_lists: NTU missing-skeleton lists kept elsewhere than beside the ``.skeleton`` files.
        chunk_size: sequences (NTU, ST-GCN, CTR-GCN files) per streamed chunk.
        force: replace an existing file or symlink at ``out`` (never the source: see :func:`check_output`).

    Temporary files that a killed earlier prepare of ``out`` left beside it are deleted first (and listed in
    the report); those of a prepare that still runs are kept and listed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; known formats: {list(FORMATS)}")
    source, out = Path(source), Path(out)
    if fmt != "builtin" and not source.exists():
        raise FileNotFoundError(f"{fmt}: source {source} does not exist")
    check_output(None if fmt == "builtin" else source, out, force=force, inputs=[Path(p) for p in missing_lists])
    config = preprocess or pp.PreprocessConfig()
    out.parent.mkdir(parents=True, exist_ok=True)
    removed, live = remove_leftover_temp_files(out)
    log = ReadLog()
    extra: dict[str, Any] = {"dataset": fmt, "source_path": str(source)}
    report = PrepareReport(fmt=fmt, out=out, removed_temps=[p.name for p in removed], live_temps=[p.name for p in live])
    start = time.perf_counter()
    chunks = _sources(fmt, source, log=log, config=config, skip_bad=skip_bad, chunk=chunk_size, extra=extra,
                      num_sequences=num_sequences, seed=seed, missing_lists=[Path(p) for p in missing_lists])

    from tqdm import tqdm

    # A count of converted sequences on a terminal, shown once a prepare has taken 3 s (a full NTU-120 tree
    # takes many minutes); nothing when stdout is piped (disable=None) or the conversion is quick.
    bar = tqdm(desc=f"[prepare] {fmt}", unit=" sequences", delay=3.0, disable=None, leave=False)

    def processed() -> Iterator[SkeletonSet]:
        classes = 0
        for data in chunks:
            data = pp.apply(data, config, source)
            bar.update(len(data.offsets) - 1)
            classes = data.num_classes
            report.num_frames += int(data.offsets[-1])
            report.preprocess = list(data.meta.get("preprocess", []))
            yield data
        names = class_names(fmt, classes)  # the store records them (data info, confusion matrices, tables)
        if names is not None and "class_names" not in extra:
            extra["class_names"] = names
        extra["skipped_missing"] = len(log.missing)
        extra["skipped_bad"] = [str(e.file) for e in log.bad]

    try:
        report.num_sequences = write_store_chunks(processed(), out, meta=extra)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - start
    report.missing = list(log.missing)
    report.bad = [str(e) for e in log.bad]
    return report


def _candidate_splits(data: SkeletonSet) -> list[str]:
    """Splits worth listing for a store: its recorded lists, the dataset's standard ones, and ``random``."""
    dataset = str(data.meta.get("dataset", data.meta.get("source")))
    if dataset == "nw-ucla":
        guess = ["ucla"]
    elif dataset == "pku-mmd":
        guess = ["pku-xsub", "pku-xview"]
    elif data.num_classes == 120:
        guess = ["ntu120-xsub", "ntu120-xset"]
    else:
        guess = ["ntu60-xsub", "ntu60-xview"]
    wanted = {*data.meta.get("split_lists", {}), *guess, "random"}
    return [s for s in SPLIT_NAMES if s in wanted]


def info(store: str | Path, *, val_fraction: float = 0.05, seed: int = 0) -> str:
    """A text summary of a store: shape, preprocessing, split sizes, samples per class, length histogram."""
    data = open_store(store)
    lengths = data.lengths
    lines = [f"store: {store}",
             f"source: {data.meta.get('source')} | layout {data.layout} | M={data.num_persons} V={data.num_joints} "
             f"F={data.num_features} | {data.num_classes} classes",
             f"sequences: {len(data)} | frames: {int(lengths.sum())} | length min/mean/max: " + (
                 f"{lengths.min()}/{lengths.mean():.1f}/{lengths.max()}" if len(data) else "-"),
             f"preprocessing: {[s.get('step') for s in data.meta.get('preprocess', [])] or 'none'}",
             f"splits (val_fraction={val_fraction}, seed={seed}):"]
    for name in _candidate_splits(data):
        try:
            sp = make_splits(data, name, val_fraction=val_fraction, seed=seed)
        except ValueError as e:
            lines.append(f"  {name:12s} n/a ({str(e)[:80]})")
            continue
        lines.append(f"  {name:12s} train {len(sp.train):7d} | val {len(sp.val):6d} | test {len(sp.test):7d}")
    counts = np.bincount(data.labels, minlength=data.num_classes)
    lines.append(f"per class (min {counts.min()}, max {counts.max()}):" if len(counts) else "per class: none")
    names = store_class_names(data)
    if names is None:
        lines += ["  " + "  ".join(f"{c:3d}:{counts[c]:6d}" for c in range(i, min(i + 8, len(counts))))
                  for i in range(0, len(counts), 8)]
    else:  # label: name count, three to a line
        lines += ["  " + "  ".join(f"{c:3d} {names[c][:26]:26s}{counts[c]:6d}"
                                   for c in range(i, min(i + 3, len(counts)))) for i in range(0, len(counts), 3)]
    hist, _ = np.histogram(lengths, bins=[*LENGTH_BINS[:-1], max(LENGTH_BINS[-1], int(lengths.max(initial=0)) + 1)])
    top = max(int(hist.max(initial=0)), 1)
    lines.append("length histogram:")
    for lo, hi, n in zip(LENGTH_BINS[:-1], [*LENGTH_BINS[1:-1], None], hist, strict=True):
        label = f"{lo}-{hi - 1}" if hi else f">={lo}"
        lines.append(f"  {label:>8s} {int(n):7d} {'#' * int(round(40 * n / top))}")
    return "\n".join(lines)
