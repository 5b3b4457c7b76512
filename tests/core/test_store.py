"""Arrow store: round trip, zero-copy memory map, atomic writes, foreign files; prepare and the data CLI."""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from paths import SHARED_DATA

from ms2l_ray.cli.data_cmds import add_data_commands
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.prepare import FORMATS, info, prepare
from ms2l_ray.data.preprocess import PreprocessConfig
from ms2l_ray.data.splits import make_splits
from ms2l_ray.data.store import open_store, store_schema, write_store, write_store_chunks


def _set(lengths: list[int], seed: int = 0, **meta: object) -> SkeletonSet:
    rng = np.random.default_rng(seed)
    n = len(lengths)
    return SkeletonSet(frames=rng.normal(size=(sum(lengths), 150)).astype(np.float32),
                       offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                       labels=rng.integers(0, 60, n), subjects=rng.integers(1, 41, n), views=rng.integers(1, 4, n),
                       setups=rng.integers(1, 18, n), names=[f"S{seed:03d}C001P{i:03d}R001A001" for i in range(n)],
                       num_persons=2, num_joints=25, num_classes=60, layout="ntu25",
                       meta={"source": "test", "preprocess": [{"step": "center", "joint": 20}], **meta})


def _assert_same(a: SkeletonSet, b: SkeletonSet) -> None:
    np.testing.assert_array_equal(a.frames, b.frames)
    for key in ("offsets", "labels", "subjects", "views", "setups"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.names == b.names
    assert (a.num_persons, a.num_joints, a.num_classes, a.layout) == (b.num_persons, b.num_joints, b.num_classes,
                                                                       b.layout)


def _mapped_files(address: int) -> list[str]:
    """Files whose memory mapping in this process contains ``address`` (Linux /proc/self/maps)."""
    hits = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        if lo <= address < hi and len(parts) >= 6:
            hits.append(parts[5])
    return hits


def test_round_trip_field_by_field(tmp_path: Path) -> None:
    data = _set([5, 1, 12, 7], split_lists={"file": {"train": ["a"], "test": ["b"]}})
    write_store(data, tmp_path / "s.arrow")
    back = open_store(tmp_path / "s.arrow")
    _assert_same(back, data)
    assert back.meta["source"] == "test" and back.meta["preprocess"] == [{"step": "center", "joint": 20}]
    assert back.meta["split_lists"] == {"file": {"train": ["a"], "test": ["b"]}}
    schema = pa.ipc.open_file(pa.memory_map(str(tmp_path / "s.arrow"))).schema
    assert schema.field("frames").type == pa.list_(pa.list_(pa.float32(), 150))
    md = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert (md["format_version"], md["num_persons"], md["num_joints"], md["num_classes"], md["layout"]) == (
        "1", "2", "25", "60", "ntu25")
    assert json.loads(md["preprocessing"]) == [{"step": "center", "joint": 20}]


def test_open_is_zero_copy_memory_map(tmp_path: Path) -> None:
    path = tmp_path / "z.arrow"
    write_store(_set([40] * 50), path)
    data = open_store(path)
    assert not data.frames.flags.owndata and not data.frames.flags.writeable
    assert str(path) in _mapped_files(data.frames.ctypes.data)  # the floats live in the file mapping itself
    assert str(path) in _mapped_files(data.frames.ctypes.data + data.frames.nbytes - 1)
    base = data.frames
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert not isinstance(base, np.ndarray)  # the chain ends at the Arrow buffer, not at a numpy copy


def test_chunked_write_equals_single_write(tmp_path: Path) -> None:
    chunks = [_set([3, 9], seed=1), _set([4], seed=2), _set([1, 1, 6], seed=3)]
    n = write_store_chunks(iter(chunks), tmp_path / "c.arrow", meta={"extra": 1})
    assert n == 6
    back = open_store(tmp_path / "c.arrow")
    whole = chunks[0]
    for c in chunks[1:]:
        whole = SkeletonSet(frames=np.concatenate([whole.frames, c.frames]),
                            offsets=np.concatenate([whole.offsets, whole.offsets[-1] + c.offsets[1:]]),
                            labels=np.concatenate([whole.labels, c.labels]),
                            subjects=np.concatenate([whole.subjects, c.subjects]),
                            views=np.concatenate([whole.views, c.views]),
                            setups=np.concatenate([whole.setups, c.setups]),
                            names=whole.names + c.names, num_persons=2, num_joints=25, num_classes=60, layout="ntu25")
    _assert_same(back, whole)
    assert back.meta["extra"] == 1 and str(tmp_path / "c.arrow") in _mapped_files(back.frames.ctypes.data)
    other = _set([2])
    other.num_classes = 120
    with pytest.raises(ValueError, match="does not match the first chunk"):
        write_store_chunks(iter([chunks[0], other]), tmp_path / "d.arrow")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.arrow"
    write_store(_set([2, 3]), path)
    before = path.read_bytes()

    def broken() -> Iterator[SkeletonSet]:
        yield _set([4, 4], seed=5)
        raise DataFormatError("x.skeleton", "joint", "nan", "coordinates must be finite", line=7)

    with pytest.raises(DataFormatError, match="x.skeleton:7"):
        write_store_chunks(broken(), path)
    assert path.read_bytes() == before  # the old store is untouched
    with pytest.raises(DataFormatError):
        write_store_chunks(broken(), tmp_path / "new.arrow")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.arrow"]  # no temp or half-written files


def test_foreign_files_rejected(tmp_path: Path) -> None:
    table = pa.table({"x": [1, 2]})
    with pa.ipc.new_file(str(tmp_path / "foreign.arrow"), table.schema) as w:
        w.write_table(table)
    with pytest.raises(DataFormatError, match=r"foreign.arrow: field \"schema metadata 'format'\" = None: missing"):
        open_store(tmp_path / "foreign.arrow")

    data = _set([2, 2])
    write_store(data, tmp_path / "ok.arrow")
    md = dict(pa.ipc.open_file(pa.memory_map(str(tmp_path / "ok.arrow"))).schema.metadata)
    bad_schema = store_schema(150, {**{k.decode(): v.decode() for k, v in md.items()}, "format": "something-else"})
    t = pa.ipc.open_file(pa.memory_map(str(tmp_path / "ok.arrow"))).read_all().cast(bad_schema)
    with pa.ipc.new_file(str(tmp_path / "other.arrow"), bad_schema) as w:
        w.write_table(t)
    with pytest.raises(DataFormatError, match=r"other.arrow: field \"schema metadata 'format'\" = 'something-else'"):
        open_store(tmp_path / "other.arrow")

    wrong = pa.schema([pa.field("frames", pa.list_(pa.float32()))], metadata=md)
    with pa.ipc.new_file(str(tmp_path / "wrong.arrow"), wrong) as w:
        w.write_table(pa.table({"frames": [[1.0]]}, schema=wrong))
    with pytest.raises(DataFormatError, match=r"wrong.arrow: field \"column 'frames'\" = 'list<item: float>'"):
        open_store(tmp_path / "wrong.arrow")

    (tmp_path / "text.arrow").write_text("hello")
    with pytest.raises(DataFormatError, match="text.arrow: field 'arrow ipc'"):
        open_store(tmp_path / "text.arrow")


def test_batches_from_opened_store(tmp_path: Path) -> None:
    data = _set([30, 5, 400, 12, 64], seed=4)
    write_store(data, tmp_path / "b.arrow")
    back = open_store(tmp_path / "b.arrow")
    idx = np.array([4, 2, 0])
    for got, want in zip(back.batch(idx, 300), data.batch(idx, 300), strict=True):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    x, lengths, labels = back.batch(idx, 300)
    assert x.shape == (3, 300, 150) and lengths.tolist() == [64, 300, 30]
    assert labels.tolist() == data.labels[idx].tolist()


# ---------------------------------------------------------------- prepare + CLI
def test_prepare_unknown_format() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset format 'kinetics'; known formats: \['ntu', 'stgcn'"):
        prepare("kinetics", Path("."), Path("x.arrow"))
    assert set(FORMATS) == {"ntu", "stgcn", "ctrgcn", "nw-ucla", "pku-mmd", "builtin"}


def _ntu_dir(tmp_path: Path) -> Path:
    src = tmp_path / "ntu"
    src.mkdir()
    for p in sorted((SHARED_DATA / "ntu-samples").glob("*.skeleton"))[:3]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "NTU_RGBD_samples_with_missing_skeletons.txt").write_text("S001C002P005R002A008\n")
    (src / "S001C002P005R002A008.skeleton").write_bytes(b"0\r\n")  # a listed empty sample
    return src


def test_prepare_ntu_bad_file_skip_or_fail(tmp_path: Path) -> None:
    src = _ntu_dir(tmp_path)
    good = sorted(src.glob("*A011.skeleton"))[0].read_bytes().split(b"\r\n")
    (src / "S009C001P001R001A001.skeleton").write_bytes(b"\r\n".join(good[:200]))  # truncated
    out = tmp_path / "out" / "ntu.arrow"
    with pytest.raises(DataFormatError, match=r"S009C001P001R001A001.skeleton:\d+: field 'joint'"):
        prepare("ntu", src, out)
    assert not out.exists() and list(out.parent.iterdir()) == []
    report = prepare("ntu", src, out, skip_bad=True)
    assert report.num_sequences == 3 and report.missing == ["S001C002P005R002A008"]
    listed = tmp_path / "lists" / "missing.txt"
    listed.parent.mkdir()
    (src / "NTU_RGBD_samples_with_missing_skeletons.txt").rename(listed)
    with pytest.raises(DataFormatError, match="S001C002P005R002A008.skeleton"):  # unlisted empty file is bad input
        prepare("ntu", src, out, force=True)  # out exists now: replacing it needs force
    report = prepare("ntu", src, out, skip_bad=True, missing_lists=[listed], force=True)
    assert report.missing == ["S001C002P005R002A008"] and len(report.bad) == 1
    assert len(report.bad) == 1 and "S009C001P001R001A001" in report.bad[0]
    data = open_store(out)
    assert [s["step"] for s in data.meta["preprocess"]] == ["denoise", "center", "align"]
    assert data.meta["skipped_missing"] == 1 and data.meta["skipped_bad"][0].endswith("S009C001P001R001A001.skeleton")


def test_cli_prepare_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ms2l")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "pku.arrow"
    args = parser.parse_args(["data", "prepare", "pku-mmd", str(SHARED_DATA / "pku-mmd-samples"), str(out),
                              "--no-align", "--resample", "16"])
    assert args.func(args) == 0
    assert "wrote 24 sequences" in capsys.readouterr().out
    data = open_store(out)
    assert [s["step"] for s in data.meta["preprocess"]] == ["center", "resample"] and set(data.lengths) == {16}
    args = parser.parse_args(["data", "info", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "sequences: 24" in text and "pku-xview" in text and "length histogram" in text
    args = parser.parse_args(["data", "info", str(tmp_path / "missing.arrow")])
    assert args.func(args) == 2 and "does not exist" in capsys.readouterr().err  # a missing named file: usage (2)
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "prepare", "kinetics", "a", "b"])
    assert "invalid choice: 'kinetics'" in capsys.readouterr().err


def test_prepare_builtin_and_info(tmp_path: Path) -> None:
    report = prepare("builtin", Path("-"), tmp_path / "b.arrow", num_sequences=48, seed=1,
                     preprocess=PreprocessConfig(center=False, align=False))
    assert report.num_sequences == 48 and report.preprocess == []
    text = info(tmp_path / "b.arrow")
    assert "sequences: 48" in text and "ntu60-xsub" in text


def test_prepare_stgcn_and_ctrgcn_record_file_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    src = tmp_path / "stgcn"
    src.mkdir()
    for part, n in (("train", 4), ("val", 2)):
        np.save(src / f"{part}_data.npy", rng.normal(size=(n, 3, 10, 25, 2)).astype(np.float32))
        names = [f"S001C00{1 + i % 3}P{(1 if part == 'train' else 3):03d}R001A00{i + 1}.skeleton" for i in range(n)]
        (src / f"{part}_label.pkl").write_bytes(pickle.dumps((names, list(range(n)))))
    prepare("stgcn", src, tmp_path / "st.arrow", preprocess=PreprocessConfig(center=False, align=False))
    data = open_store(tmp_path / "st.arrow")
    assert len(data) == 6 and data.num_classes == 4 and set(data.lengths) == {10}
    sp = make_splits(data, "file", val_fraction=0.0, seed=0)
    assert sp.train.tolist() == [0, 1, 2, 3] and sp.test.tolist() == [4, 5]
    np.testing.assert_array_equal(make_splits(data, "ntu60-xsub", val_fraction=0.0, seed=0).test, sp.test)

    x = rng.normal(size=(3, 7, 150)).astype(np.float32)
    np.savez(tmp_path / "NTU60_CV.npz", x_train=x, y_train=np.eye(5)[[0, 1, 4]], x_test=x[:1], y_test=np.eye(5)[[2]])
    report = prepare("ctrgcn", tmp_path / "NTU60_CV.npz", tmp_path / "ct.arrow")
    assert report.num_sequences == 4 and [s["step"] for s in report.preprocess] == ["center", "align"]
    data = open_store(tmp_path / "ct.arrow")
    sp = make_splits(data, "ntu60-xview", val_fraction=0.0, seed=0)
    assert sp.train.tolist() == [0, 1, 2] and sp.test.tolist() == [3] and data.num_classes == 5
