"""Readers: tiny files written exactly as the real formats are laid out, bad input, and the real samples."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from paths import SHARED_DATA

from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.preprocess import PreprocessConfig
from ms2l_ray.data.readers import ReadLog
from ms2l_ray.data.readers.ctrgcn import iter_ctrgcn
from ms2l_ray.data.readers.ntu import parse_ntu_name, read_missing_list, read_ntu, read_skeleton
from ms2l_ray.data.readers.pku import read_pku, read_pku_split, video_samples
from ms2l_ray.data.readers.stgcn import iter_stgcn, read_label_pkl
from ms2l_ray.data.readers.ucla import read_ucla, read_ucla_file

NTU_DIR, UCLA_DIR, PKU_DIR = (SHARED_DATA / "ntu-samples", SHARED_DATA / "nw-ucla" / "all_sqe",
                              SHARED_DATA / "pku-mmd-samples")
RAW = PreprocessConfig(denoise=False)


# ---------------------------------------------------------------- NTU .skeleton
def _joint_line(xyz: np.ndarray) -> str:
    x, y, z = xyz
    return f"{x:.7g} {y:.7g} {z:.7g} 250.1 200.2 900.3 500.4 0.1 0.2 0.3 0.9 2"


def write_skeleton(path: Path, frames: list[list[tuple[str, np.ndarray]]]) -> Path:
    """A ``.skeleton`` file as the dataset ships it: CRLF, 10-value body lines, 25 joints × 12 values."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 -0.1159187 0.2051208 2")
            lines.append("25")
            lines += [_joint_line(j) for j in joints]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return path


def _body(rng: np.random.Generator, offset: float = 0.0) -> np.ndarray:
    return (rng.normal(size=(25, 3)) * 0.3 + [offset, 0.0, 3.0]).astype(np.float32)


def test_ntu_file_every_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = [_body(rng) for _ in range(4)]
    b = [_body(rng, 1.0) for _ in range(2)]
    # frame 0: nobody; frames 1-2: A and B; frame 3: A; frame 4: nobody (trimmed).
    frames = [[], [("720575940379", a[0]), ("720575940380", b[0])], [("720575940379", a[1]), ("720575940380", b[1])],
              [("720575940379", a[2])], []]
    path = write_skeleton(tmp_path / "S012C003P045R002A055.skeleton", frames)
    assert b"\r\n" in path.read_bytes()
    sk = read_skeleton(path)
    assert sk.name == "S012C003P045R002A055"
    assert (sk.fields.setup, sk.fields.camera, sk.fields.performer, sk.fields.replication, sk.fields.action) == (
        12, 3, 45, 2, 55)
    assert sk.body_ids == ["720575940379", "720575940380"]
    assert sk.bodies.shape == (2, 5, 25, 3)
    np.testing.assert_allclose(sk.bodies[0, 1], a[0], rtol=1e-6)
    np.testing.assert_allclose(sk.bodies[1, 2], b[1], rtol=1e-6)
    assert not sk.bodies[1, 3].any() and not sk.bodies[:, 0].any()

    data, log = read_ntu([path], config=RAW)
    assert log.missing == [] and log.bad == []
    assert data.names == ["S012C003P045R002A055"] and data.lengths.tolist() == [3]  # empty frames 0 and 4 trimmed
    assert (data.labels[0], data.subjects[0], data.views[0], data.setups[0]) == (54, 45, 3, 12)
    assert (data.num_persons, data.num_joints, data.num_classes, data.layout) == (2, 25, 60, "ntu25")
    x = data.frames.reshape(-1, 2, 25, 3)  # [L, M, V, C]: the contract's (M, V, C) order
    np.testing.assert_allclose(x[0, 0], a[0], rtol=1e-6)
    np.testing.assert_allclose(x[0, 1], b[0], rtol=1e-6)
    assert not x[2, 1].any()


def test_ntu_missing_list_skipped_and_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    good = write_skeleton(tmp_path / "S001C001P001R001A001.skeleton", [[("1", _body(rng))]] * 3)
    empty = write_skeleton(tmp_path / "S001C001P002R001A001.skeleton", [[]])
    data, log = read_ntu([good, empty], config=RAW, missing={"S001C001P002R001A001"})
    assert data.names == ["S001C001P001R001A001"] and log.missing == ["S001C001P002R001A001"]
    with pytest.raises(DataFormatError, match="S001C001P002R001A001.skeleton.*no body"):
        read_ntu([good, empty], config=RAW)


@pytest.mark.parametrize("damage, field, line", [
    (lambda ls: ls[:20], "joint", 21),  # truncated inside a joint block
    (lambda ls: ls[:1], "body count", 2),  # truncated after the frame count
    (lambda ls: ls[:5] + [" ".join(ls[5].split()[:11])] + ls[6:], "joint", 6),  # 11 values
    (lambda ls: ls[:7] + [ls[7].replace(ls[7].split()[0], "nan", 1)] + ls[8:], "joint", 8),  # NaN coordinate
    (lambda ls: ls[:7] + [ls[7].replace(ls[7].split()[1], "inf", 1)] + ls[8:], "joint", 8),  # inf coordinate
    (lambda ls: ls[:3] + ["24"] + ls[4:], "joint count", 4),
    (lambda ls: ["x"] + ls[1:], "frame count", 1),
    (lambda ls: ls[:2] + ["1 2 3"] + ls[3:], "body info", 3),
])
def test_ntu_malformed_names_file_and_line(tmp_path: Path, damage: Callable[[list[str]], list[str]], field: str,
                                           line: int) -> None:
    rng = np.random.default_rng(2)
    path = write_skeleton(tmp_path / "S001C001P001R001A001.skeleton", [[("1", _body(rng))]] * 2)
    lines = path.read_bytes().decode().split("\r\n")[:-1]
    path.write_bytes(("\r\n".join(damage(lines)) + "\r\n").encode())
    with pytest.raises(DataFormatError) as e:
        read_skeleton(path)
    assert (e.value.field, e.value.line) == (field, line)
    assert f"S001C001P001R001A001.skeleton:{line}" in str(e.value)


def test_ntu_bad_file_name_and_skip_bad(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bad = write_skeleton(tmp_path / "not_an_ntu_name.skeleton", [[("1", _body(rng))]])
    with pytest.raises(DataFormatError, match="file name"):
        read_skeleton(bad)
    good = write_skeleton(tmp_path / "S001C001P001R001A001.skeleton", [[("1", _body(rng))]])
    data, log = read_ntu([bad, good], config=RAW, skip_bad=True)
    assert data.names == ["S001C001P001R001A001"] and len(log.bad) == 1 and "not_an_ntu_name" in str(log.bad[0])


def test_ntu_real_samples() -> None:
    paths = sorted(NTU_DIR.glob("*.skeleton"))
    assert len(paths) == 5
    two = read_skeleton(NTU_DIR / "S001C003P008R002A058.skeleton")
    assert two.bodies.shape[:2] == (2, 70) and np.any(two.bodies != 0, axis=(2, 3)).all()
    data, log = read_ntu(paths)
    assert data.names == [p.stem for p in paths] and log.bad == []
    assert data.lengths.tolist() == [82, 70, 100, 71, 124]
    assert data.labels.tolist() == [10, 57, 2, 33, 16]
    assert data.subjects.tolist() == [1, 8, 3, 15, 3]
    assert data.views.tolist() == [1, 3, 1, 1, 2] and data.setups.tolist() == [1, 1, 2, 3, 4]
    x = data.frames.reshape(-1, 2, 25, 3)  # [R, M, V, C]
    person1 = np.repeat(np.arange(5), data.lengths)
    assert np.any(x[person1 == 1, 1] != 0) and not np.any(x[person1 != 1, 1] != 0)  # only A058 has 2 persons
    assert np.isfinite(data.frames).all() and np.abs(data.frames).max() < 10


def test_ntu_real_missing_lists() -> None:
    ntu60 = read_missing_list(NTU_DIR / "NTU_RGBD_samples_with_missing_skeletons.txt")
    ntu120 = read_missing_list(NTU_DIR / "NTU_RGBD120_samples_with_missing_skeletons.txt")
    assert (len(ntu60), len(ntu120)) == (302, 535)
    assert parse_ntu_name(sorted(ntu60)[0]) is not None


# ---------------------------------------------------------------- NW-UCLA JSON
def _ucla(path: Path, name: str = "a08_s03_e01_v02", label: int = 7, t: int = 4, **over: object) -> Path:
    rng = np.random.default_rng(4)
    doc = {"file_name": name, "skeletons": rng.normal(size=(t, 20, 3)).round(5).tolist(), "label": label, **over}
    path.write_text(json.dumps(doc))
    return path


def test_ucla_file_every_field(tmp_path: Path) -> None:
    path = _ucla(tmp_path / "a08_s03_e01_v02.json")
    doc = json.loads(path.read_text())
    data = read_ucla([path])
    assert data.names == ["a08_s03_e01_v02"]
    assert (data.labels[0], data.subjects[0], data.views[0], data.setups[0]) == (6, 3, 2, 0)  # a08 → label 7 → 6
    assert (data.num_persons, data.num_joints, data.num_classes, data.layout) == (1, 20, 10, "ucla20")
    np.testing.assert_allclose(data.frames.reshape(4, 20, 3), np.array(doc["skeletons"]), rtol=1e-6)


@pytest.mark.parametrize("text, field", [
    ('{"file_name": "a01_s01_e00_v01", "skeletons": [[[1, 2, 3]', "json"),  # truncated
    ('{"file_name": "a01_s01_e00_v01", "skeletons": [[[1, 2]]], "label": 1}', "skeletons"),
    ('{"file_name": "a01_s01_e00_v01", "skeletons": [], "label": 1}', "skeletons"),
    ('{"file_name": "a01_s01_e00_v01", "label": 1}', "skeletons"),
    ('{"file_name": "a07_s01_e00_v01", "skeletons": [[[1, 2, 3]]], "label": 7}', "file_name"),
    ('{"file_name": "a01_s01_e00_v01", "skeletons": [[[1, 2, 3]]], "label": 2}', "label"),
    ('[1, 2]', "document"),
])
def test_ucla_malformed(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataFormatError) as e:
        read_ucla_file(path)
    assert e.value.field == field and "bad.json" in str(e.value)


def test_ucla_nan_coordinate(tmp_path: Path) -> None:
    path = _ucla(tmp_path / "x.json", t=3)
    doc = json.loads(path.read_text())
    doc["skeletons"][2][5][1] = float("nan")
    path.write_text(json.dumps(doc))  # json writes NaN, as Python-made files can contain
    with pytest.raises(DataFormatError, match=r"x.json: field 'skeletons' = nan.*frame 2"):
        read_ucla_file(path)


def test_ucla_real_samples() -> None:
    names = ["a01_s01_e00_v01", "a06_s05_e03_v03", "a08_s07_e01_v02", "a12_s10_e04_v01"]
    paths = [p for p in (UCLA_DIR / f"{n}.json" for n in names) if p.exists()]
    assert len(paths) >= 3
    data = read_ucla(paths)
    for i, p in enumerate(paths):
        doc = json.loads(p.read_text())
        assert data.names[i] == doc["file_name"] and data.labels[i] == doc["label"] - 1
        np.testing.assert_allclose(data.sequence(i).reshape(-1, 20, 3), np.array(doc["skeletons"]), rtol=1e-6)
        assert data.views[i] == int(doc["file_name"][-2:]) and data.subjects[i] == int(doc["file_name"][5:7])


# ---------------------------------------------------------------- PKU-MMD text
def _pku_video(root: Path, video: str, t: int, labels: list[str]) -> None:
    rng = np.random.default_rng(5)
    frames = rng.normal(size=(t, 150)).round(6)
    frames[:, 75:] = 0  # second person absent
    (root / "skeleton").mkdir(exist_ok=True)
    (root / "label").mkdir(exist_ok=True)
    (root / "skeleton" / f"{video}.txt").write_text("".join(" ".join(f"{v:f}" for v in row) + " \n" for row in frames))
    (root / "label" / f"{video}.txt").write_text("".join(f"{line}\n" for line in labels))


def test_pku_video_every_field(tmp_path: Path) -> None:
    _pku_video(tmp_path, "0002-R", 30, ["3,2,12,1", "51,12,30,2"])
    split = tmp_path / "split"
    split.mkdir()
    (split / "cross-view.txt").write_text("Training videos: \n0002-L, 0002-R, \nValidataion videos: \n0002-M, \n")
    data = read_pku(tmp_path)
    frames = np.loadtxt(tmp_path / "skeleton" / "0002-R.txt", dtype=np.float32)
    assert data.names == ["0002-R#001", "0002-R#002"] and data.lengths.tolist() == [10, 18]
    assert data.labels.tolist() == [2, 50] and data.views.tolist() == [3, 3] and data.subjects.tolist() == [0, 0]
    np.testing.assert_array_equal(data.sequence(0), frames[2:12])
    assert data.meta["split_lists"] == {"pku-xview": {"train": ["0002-L", "0002-R"], "test": ["0002-M"]}}


@pytest.mark.parametrize("edit, field, line", [
    (lambda s, lab: (s[:3] + [" ".join(s[3].split()[:149])] + s[4:], lab), "frame", 4),
    (lambda s, lab: (s[:6] + [s[6].replace(s[6].split()[0], "nan", 1)] + s[7:], lab), "frame", 7),
    (lambda s, lab: (s, ["3,2,12,1", "4,20,31,1"]), "interval", 2),
    (lambda s, lab: (s, ["52,2,12,1"]), "label", 1),
    (lambda s, lab: (s, ["3,2,12"]), "label line", 1),
])
def test_pku_malformed(tmp_path: Path, edit: Callable[[list[str], list[str]], tuple[list[str], list[str]]], field: str,
                       line: int) -> None:
    _pku_video(tmp_path, "0002-L", 30, ["3,2,12,1"])
    sk, lab = tmp_path / "skeleton" / "0002-L.txt", tmp_path / "label" / "0002-L.txt"
    s_lines, l_lines = edit(sk.read_text().splitlines(), lab.read_text().splitlines())
    sk.write_text("\n".join(s_lines) + "\n")
    lab.write_text("\n".join(l_lines) + "\n")
    with pytest.raises(DataFormatError) as e:
        video_samples(sk, lab)
    assert (e.value.field, e.value.line) == (field, line) and "0002-L.txt" in str(e.value)


def test_pku_split_file_malformed(tmp_path: Path) -> None:
    path = tmp_path / "cross-subject.txt"
    path.write_text("0002-L, 0002-M\n")
    with pytest.raises(DataFormatError, match=r"cross-subject.txt:1: field 'header'"):
        read_pku_split(path)


def test_pku_real_samples() -> None:
    data = read_pku(PKU_DIR)
    rows = np.loadtxt(PKU_DIR / "label" / "0005-M.txt", delimiter=",", dtype=int)
    sk = np.loadtxt(PKU_DIR / "skeleton" / "0005-M.txt", dtype=np.float32)
    m = [i for i, n in enumerate(data.names) if n.startswith("0005-M#")]
    assert len(data) == 24 and len(m) == len(rows) == 8
    assert data.labels[m].tolist() == (rows[:, 0] - 1).tolist() and set(data.views[m]) == {2}
    np.testing.assert_array_equal(data.sequence(m[0]), sk[rows[0, 1]:rows[0, 2]])
    xsub = read_pku_split(PKU_DIR / "split" / "cross-subject.txt")
    xview = read_pku_split(PKU_DIR / "split" / "cross-view.txt")
    assert (len(xsub["train"]), len(xsub["test"]), len(xview["train"]), len(xview["test"])) == (944, 132, 717, 359)
    assert len(set(xsub["train"]) | set(xsub["test"])) == 1076 and "0005-L" in xsub["train"]
    assert data.meta["split_lists"]["pku-xview"] == xview


# ---------------------------------------------------------------- ST-GCN .npy + .pkl
def _stgcn_files(tmp_path: Path, n: int = 3, t: int = 6, lengths: tuple[int, ...] = (6, 4, 1)) -> np.ndarray:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, 3, t, 25, 2)).astype(np.float32)
    for i, length in enumerate(lengths):
        x[i, :, length:] = 0
    np.save(tmp_path / "train_data.npy", x)
    names = [f"S00{i + 1}C002P00{i + 3}R001A00{i + 1}.skeleton" for i in range(n)]
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump((names, [0, 4, 2][:n]), f)
    return x


def test_stgcn_every_field_and_mvc_order(tmp_path: Path) -> None:
    x = _stgcn_files(tmp_path)
    (chunk,) = list(iter_stgcn(tmp_path / "train_data.npy", tmp_path / "train_label.pkl"))
    assert chunk.names == ["S001C002P003R001A001", "S002C002P004R001A002", "S003C002P005R001A003"]
    assert chunk.lengths.tolist() == [6, 4, 1] and chunk.labels.tolist() == [0, 4, 2] and chunk.num_classes == 5
    assert chunk.subjects.tolist() == [3, 4, 5] and chunk.views.tolist() == [2, 2, 2]
    assert chunk.setups.tolist() == [1, 2, 3]
    n, c, t, v, m = 1, 2, 3, 7, 1
    assert chunk.sequence(n)[t, (m * 25 + v) * 3 + c] == x[n, c, t, v, m]  # F flattened in (M, V, C) order
    np.save(tmp_path / "train_frame.npy", np.array([5, 2, 1]))
    (chunk,) = list(iter_stgcn(tmp_path / "train_data.npy", tmp_path / "train_label.pkl", tmp_path / "train_frame.npy"))
    assert chunk.lengths.tolist() == [5, 2, 1]


def test_stgcn_label_count_mismatch_and_nan(tmp_path: Path) -> None:
    x = _stgcn_files(tmp_path)
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump((["a", "b"], [0, 1]), f)
    with pytest.raises(DataFormatError, match=r"train_label.pkl: field 'labels' = 2: .*3 samples"):
        list(iter_stgcn(tmp_path / "train_data.npy", tmp_path / "train_label.pkl"))
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump((["a", "b"], [0, 1, 2]), f)
    with pytest.raises(DataFormatError, match="2 sample names but 3 labels"):
        read_label_pkl(tmp_path / "train_label.pkl")
    _stgcn_files(tmp_path)
    x[1, 0, 2, 3, 0] = np.inf
    np.save(tmp_path / "train_data.npy", x)
    with pytest.raises(DataFormatError, match=r"train_data.npy: field 'data' = inf.*sample 1 frame 2"):
        list(iter_stgcn(tmp_path / "train_data.npy", tmp_path / "train_label.pkl"))
    log = ReadLog()
    (chunk,) = list(iter_stgcn(tmp_path / "train_data.npy", tmp_path / "train_label.pkl", skip_bad=True, log=log))
    assert len(chunk) == 2 and len(log.bad) == 1


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_stgcn_malicious_pickle_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "train_label.pkl"
    path.write_bytes(pickle.dumps((["S001C001P001R001A001"], _Evil(marker))))
    with pytest.raises(DataFormatError, match=r"train_label.pkl: field 'pickle'.*(posix|os)\.system is not allowed"):
        read_label_pkl(path)
    assert not marker.exists()
    # (not `print`: Ray replaces builtins.print in a process where it runs, which would change the name)
    path.write_bytes(pickle.dumps((["a"], [len])))
    with pytest.raises(DataFormatError, match="builtins.len is not allowed"):
        read_label_pkl(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_stgcn_numpy_label_pickles_allowed(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "val_label.pkl"
    path.write_bytes(pickle.dumps((np.array(["x", "y"]), np.array([3, 1], dtype=np.int64)), protocol=protocol))
    names, labels = read_label_pkl(path)
    assert names == ["x", "y"] and labels.tolist() == [3, 1]
    path.write_bytes(pickle.dumps((["x"], np.array([0.5])), protocol=protocol))
    with pytest.raises(DataFormatError, match="integers"):
        read_label_pkl(path)


# ---------------------------------------------------------------- CTR-GCN .npz
def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_ctrgcn_every_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x_train = rng.normal(size=(3, 5, 150)).astype(np.float32)
    x_train[0, 3:] = 0
    x_train[1, 1] = 0  # a zero frame inside the valid part stays
    x_test = rng.normal(size=(2, 5, 150)).astype(np.float32)
    y_train, y_test = np.eye(4)[[1, 3, 0]], np.eye(4)[[2, 2]]
    path = _npz(tmp_path / "NTU60_CS.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    chunks = list(iter_ctrgcn(path, chunk_size=2))
    names = [n for c in chunks for n in c.names]
    assert names == ["train#000000", "train#000001", "train#000002", "test#000000", "test#000001"]
    assert [c.lengths.tolist() for c in chunks] == [[3, 5], [5], [5, 5]]
    assert [c.labels.tolist() for c in chunks] == [[1, 3], [0], [2, 2]] and chunks[0].num_classes == 4
    np.testing.assert_array_equal(chunks[0].sequence(1), x_train[1])
    assert chunks[0].meta["split_lists"]["ntu60-xsub"] == {"train": ["train"], "test": ["test"]}


def test_ctrgcn_bad_inputs(tmp_path: Path) -> None:
    x = np.ones((2, 4, 150), np.float32)
    path = _npz(tmp_path / "a.npz", x_train=x, y_train=np.eye(3)[[0, 1, 2]], x_test=x, y_test=np.eye(3)[[0, 1]])
    with pytest.raises(DataFormatError, match=r"a.npz: field 'y_train' = 3: x_train holds 2"):
        list(iter_ctrgcn(path))
    path = _npz(tmp_path / "b.npz", x_train=x, y_train=np.array([[1, 1, 0], [0, 1, 0]]), x_test=x, y_test=np.eye(3)[:2])
    with pytest.raises(DataFormatError, match="one-hot"):
        list(iter_ctrgcn(path))
    bad = x.copy()
    bad[1, 2, 7] = np.nan
    path = _npz(tmp_path / "c.npz", x_train=bad, y_train=np.eye(3)[:2], x_test=x, y_test=np.eye(3)[:2])
    with pytest.raises(DataFormatError, match=r"field 'x_train' = nan.*sample 1 frame 2"):
        list(iter_ctrgcn(path))
    path = _npz(tmp_path / "d.npz", x_train=x, y_train=np.eye(3)[:2])
    with pytest.raises(DataFormatError, match="x_test"):
        list(iter_ctrgcn(path))
    (tmp_path / "e.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataFormatError, match="e.npz"):
        list(iter_ctrgcn(tmp_path / "e.npz"))
    assert zipfile.is_zipfile(tmp_path / "a.npz")
