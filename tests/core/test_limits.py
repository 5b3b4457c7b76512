"""Limits (issue 14, items 3 and 5): every number finite and in range, every size bounded before allocation.

Table-driven like ``test_hardening``: each CLI case asserts the exit code, the exact one-line message naming
the file, field and value, no traceback, and that what sat at the target before is byte-identical. The bombs
(quadratic NTU denoising, a deflated-zeros ``.npz``, a 60-byte label pickle, a YAML alias tree, an encoder
whose config claims a huge model) also run in one subprocess under ``RLIMIT_AS`` (:data:`AS_LIMIT`), where
an allocation of their claimed size would fail. All inputs are real files in their real formats.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from store_helpers import write_overflow_store

from ms2l_ray.cli.main import main
from ms2l_ray.config import Config, ConfigError, config_hash, load_config, to_dict
from ms2l_ray.data import preprocess as pp
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.data.readers import Sample, assemble
from ms2l_ray.data.readers.stgcn import read_label_pkl
from ms2l_ray.data.store import _header, _write, open_store, write_store
from ms2l_ray.data.synthetic import generate
from ms2l_ray.limits import MAX_YAML_BYTES
from ms2l_ray.model.artifact import ENCODER_FILE
from ms2l_ray.safe_yaml import YAMLLimitError, load_yaml_text
from ms2l_ray.train.guard import NonFiniteGuard, NonFiniteLossError, check_finite_weights

HINT = " (--debug shows the traceback)"
AS_LIMIT = 1536 << 20  # address space: torch's import needs ~1 GB of it; a normal tiny run passes under this


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------ real formats
def ntu_file(path: Path, frames: list[list[tuple[str, list[str]]]]) -> Path:
    """A ``.skeleton`` file: CRLF, per frame a body count, per body an info line, ``25`` and 25 joint lines."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, joints in bodies:
            lines += [f"{body_id} 0 1 1 1 1 0 -0.1 0.2 2", "25", *joints]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return path


def joint_lines(rng: np.random.Generator) -> list[str]:
    xyz = rng.normal(size=(25, 3)) * 0.3 + [0.0, 0.0, 3.0]
    return [f"{x:.6f} {y:.6f} {z:.6f} 250.1 200.2 900.3 500.4 0.1 0.2 0.3 0.9 2" for x, y, z in xyz]


def ucla_file(folder: Path, skeletons: np.ndarray | list) -> Path:
    path = folder / "a01_s01_e00_v01.json"
    doc = {"file_name": "a01_s01_e00_v01", "label": 1,
           "skeletons": skeletons.tolist() if isinstance(skeletons, np.ndarray) else skeletons}
    path.write_text(json.dumps(doc))
    return path


def deflated_zip(path: Path, members: dict[str, tuple[bytes, int]]) -> Path:
    """A zip whose members are ``prefix`` followed by ``zeros`` zero bytes, deflated, with correct CRCs.

    Written by hand because zlib would take seconds for a gigabyte of zeros: after a full flush deflate
    restarts, so one compressed MiB of zeros repeats byte for byte.
    """
    mib = bytes(1 << 20)
    local, central = bytearray(), bytearray()
    for name, (prefix, zeros) in members.items():
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
        block = co.compress(mib) + co.flush(zlib.Z_FULL_FLUSH)
        tail = co.compress(bytes(zeros % len(mib))) + co.flush(zlib.Z_FINISH)
        crc = zlib.crc32(prefix)
        for _ in range(zeros // len(mib)):
            crc = zlib.crc32(mib, crc)
        crc = zlib.crc32(bytes(zeros % len(mib)), crc)
        data = head + block * (zeros // len(mib)) + tail
        size, raw_name, offset = len(prefix) + zeros, name.encode(), len(local)
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), size, len(raw_name), 0)
        local += raw_name + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 33, crc, len(data), size,
                               len(raw_name), 0, 0, 0, 0, 0, offset) + raw_name
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + eocd))
    return path


def npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def one_hot(labels: list[int], k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[labels]


def stgcn_dir(folder: Path, data: np.ndarray, label_pickle: bytes) -> Path:
    folder.mkdir()
    np.save(folder / "train_data.npy", data)
    (folder / "train_label.pkl").write_bytes(label_pickle)
    return folder


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _long(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


# Label pickles that use only allowed numpy rebuilders but ask numpy for a giant array (protocol 2 opcodes).
PICKLE_BOMBS = {
    "reconstruct": b"\x80\x02" + _glob("numpy.core.multiarray", "_reconstruct") + _glob("numpy", "ndarray")
    + _long(10**12) + b"\x85C\x01b\x87R.",
    "ndarray": b"\x80\x02" + _glob("numpy", "ndarray") + _long(10**12) + b"\x85\x85R.",
    "setstate": b"\x80\x02" + _glob("numpy.core.multiarray", "_reconstruct") + _glob("numpy", "ndarray")
    + b"K\x00\x85C\x01b\x87R(K\x01" + _long(10**10) + b"\x85" + _glob("numpy", "dtype")
    + b"X\x02\x00\x00\x00O8\x89\x88\x87R\x89]K\x01atb.",
}


def yaml_bomb(levels: int = 9) -> str:
    """A billion-laughs document: ``levels`` anchors of nine aliases each (9**9 leaves by reference)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmodel: {{hidden_size: *a{levels - 1}}}\n"


def ntu_bomb(folder: Path, frames: int = 2000) -> Path:
    """~3 MB: a new body id in every frame (dense denoising would need bodies × frames × 75 floats)."""
    rng = np.random.default_rng(0)
    joints = joint_lines(rng)
    return ntu_file(folder / "S001C001P001R001A001.skeleton", [[(f"7205{t:08d}", joints)] for t in range(frames)])


def encoder_file(folder: Path, config: dict, state: dict[str, torch.Tensor], num_features: object = 150) -> Path:
    """A format-1 ``encoder.pt`` (the ``torch.save`` dict every ms2l version reads)."""
    folder.mkdir()
    torch.save({"format": 1, "model": state, "config": config, "num_features": num_features, "extra": {}},
               folder / "encoder.pt")
    return folder


def huge_config(**model: int) -> dict:
    d = to_dict(load_config("smoke"))
    d["model"].update(model)
    return d


# ---------------------------------------------------------------------------------- config: finite, in range
SET_CASES = [  # --set value → the one line after "invalid overrides (...):"
    ("pretrain.lr=inf", "pretrain.lr: must be a finite number, got inf"),
    ("pretrain.lr=.nan", "pretrain.lr: must be a finite number, got nan"),
    ("pretrain.lr=1e400", "pretrain.lr: must be a finite number, got inf"),
    ("pretrain.lr=100", "pretrain.lr: must be in (0, 10], got 100.0"),
    ("tasks.temperature=inf", "tasks.temperature: must be a finite number, got inf"),
    ("tasks.temperature=1e-9", "tasks.temperature: must be in [1e-4, 1e4], got 1e-09"),
    ("tasks.motion_weight=inf", "tasks.motion_weight: must be a finite number, got inf"),
    ("tasks.contrastive_weight=-inf", "tasks.contrastive_weight: must be a finite number, got -inf"),
    ("tasks.mask_ratio=nan", "tasks.mask_ratio: must be a finite number, got nan"),
    ("pretrain.grad_clip=inf", "pretrain.grad_clip: must be a finite number, got inf"),
    ("pretrain.weight_decay=inf", "pretrain.weight_decay: must be a finite number, got inf"),
    ("evaluation.optim.gamma=nan", "evaluation.optim.gamma: must be a finite number, got nan"),
    ("evaluation.knn_temperature=0.001", "evaluation.knn_temperature: must be in [0.02, 1e4], got 0.001"),
    ("evaluation.lr_grid=[0.1, .inf]", "evaluation.lr_grid[1]: must be a finite number, got inf"),
    ("model.dropout=inf", "model.dropout: must be a finite number, got inf"),
    ("model.hidden_size=100000000", "model.hidden_size: must be <= 16384, got 100000000"),
    ("pretrain.batch_size=10000000", "pretrain.batch_size: must be <= 65536, got 10000000"),
    ("data.max_frames=1000000", "data.max_frames: must be <= 100000, got 1000000"),
    ("seed=100000000000000000000000", "seed: must be <= 9223372036854775807, got 100000000000000000000000"),
    ("pretrain.nonfinite_patience=-1", "pretrain.nonfinite_patience: must be >= 0, got -1"),
]


@pytest.mark.parametrize(("item", "line"), SET_CASES, ids=[c[0] for c in SET_CASES])
def test_set_refuses_non_finite_and_out_of_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, item: str,
                                                 line: str, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["pretrain", "--preset", "smoke", "--engine", "local", "--out", "enc", "--set", item], capsys)
    assert (code, err) == (2, f"ms2l pretrain: error: invalid overrides ({item}):\n  {line}\n")
    assert not (tmp_path / "enc").exists()


def test_every_float_field_is_checked_for_finiteness() -> None:
    """One walk over the schema: no float field (present or added later) escapes the finiteness rule."""
    floats = [k for k, v in _leaves(Config()) if isinstance(v, float)]
    assert len(floats) == 17
    for key in floats:
        with pytest.raises(ConfigError) as err:
            load_config("smoke", overrides=[f"{key}=inf"])
        assert f"  {key}: must be a finite number, got inf" in str(err.value).splitlines()


def _leaves(cfg: Config) -> list[tuple[str, object]]:
    from ms2l_ray.config import leaves

    return leaves(cfg)


def test_patience_field_keeps_config_hashes() -> None:
    """The new field is left out of the hash at its default: earlier runs' hashes (ablation resume) still match."""
    assert config_hash(load_config("paper")) == "435371e8b8e4"
    assert config_hash(load_config("smoke")) == "cc99791f9c10"
    assert config_hash(load_config("smoke", overrides=["pretrain.nonfinite_patience=3"])) != "cc99791f9c10"


# ------------------------------------------------------------------------------------------------ YAML
def test_yaml_limits() -> None:
    with pytest.raises(YAMLLimitError, match=r"^expands to more than 100000 nodes once its aliases are expanded"):
        load_yaml_text(yaml_bomb())
    with pytest.raises(YAMLLimitError, match=r"^a recursive alias \(a node that contains itself\) is not allowed$"):
        load_yaml_text("&a [*a]")
    with pytest.raises(YAMLLimitError, match=r"^nested too deeply for the YAML parser$"):
        load_yaml_text("[" * 20000)
    with pytest.raises(YAMLLimitError, match=rf"^{MAX_YAML_BYTES + 1} bytes; YAML inputs are limited to "):
        load_yaml_text("#" * (MAX_YAML_BYTES + 1))
    assert load_yaml_text("base: &b {x: 1}\nuse: {<<: *b, y: [*b, *b]}\n") == {
        "base": {"x": 1}, "use": {"x": 1, "y": [{"x": 1}, {"x": 1}]}}  # ordinary anchors still work


YAML_BOMB_MSG = ("expands to more than 100000 nodes once its aliases are expanded (an alias bomb?); YAML inputs are "
                 "limited to 100000 nodes")


def test_every_yaml_input_is_bounded(tmp_path: Path) -> None:
    from ms2l_ray.studies.ablation.grid import load_grid
    from ms2l_ray.studies.experiment import load_experiment
    from ms2l_ray.studies.search.space import load_space

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(yaml_bomb())
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    for loader, what in ((load_grid, "ablation grid"), (load_space, "search space"),
                         (load_experiment, "experiment file"), (lambda p: load_config("smoke", p), "config file")):
        with pytest.raises(ConfigError) as err:
            loader(bomb)
        assert str(err.value) == f"cannot read {what} {bomb}: {YAML_BOMB_MSG}"
        with pytest.raises(ConfigError) as err:
            loader(big)
        assert str(err.value) == (f"cannot read {what} {big}: larger than {MAX_YAML_BYTES} bytes; YAML inputs are "
                                  f"limited to {MAX_YAML_BYTES} bytes")


def test_cli_config_file_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bomb.yaml").write_text(yaml_bomb())
    code, err = run_cli(["pretrain", "--engine", "local", "--config", "bomb.yaml", "--out", "enc"], capsys)
    assert (code, err) == (2, f"ms2l pretrain: error: cannot read config file {tmp_path}/bomb.yaml: {YAML_BOMB_MSG}\n")
    assert not (tmp_path / "enc").exists()


# ------------------------------------------------------------------------------- data: finite, in range
RULE = "coordinates must be finite and within ±1e+06"


def _bad_ucla(d: Path) -> tuple[list[str], str]:
    xyz = np.full((3, 20, 3), 0.5)
    xyz[1, 4, 2] = 1e39
    path = ucla_file(d, xyz)
    return ["nw-ucla", str(d)], f"{path}: field 'skeletons' = 1e+39: {RULE} (frame 1)"


def _bad_ntu(d: Path) -> tuple[list[str], str]:
    rng = np.random.default_rng(1)
    joints = joint_lines(rng)
    joints[3] = "1e39 0.5 3.0 250.1 200.2 900.3 500.4 0.1 0.2 0.3 0.9 2"
    path = ntu_file(d / "S001C001P001R001A001.skeleton", [[("72057", joint_lines(rng))], [("72057", joints)]])
    return ["ntu", str(d)], f"{path}:36: field 'joint' = '{joints[3]}': {RULE}"


def _bad_pku(d: Path) -> tuple[list[str], str]:
    (d / "skeleton").mkdir()
    (d / "label").mkdir()
    rows = np.full((4, 150), 0.25)
    rows[2, 7] = 3e38  # finite in float32, but centring it against -3e38 would overflow
    rows[2, 8] = -3e38
    (d / "skeleton" / "0002-M.txt").write_text("\n".join(" ".join(f"{v:g}" for v in r) for r in rows) + "\n")
    (d / "label" / "0002-M.txt").write_text("1,0,4,1\n")
    return ["pku-mmd", str(d)], f"{d}/skeleton/0002-M.txt:3: field 'frame' = 3e+38: {RULE}"


def _bad_ctrgcn(d: Path) -> tuple[list[str], str]:
    x = np.full((2, 4, 150), 0.5)  # float64: 1e39 is finite here and would become inf in float32
    x[1, 2, 10] = 1e39
    np.savez(d / "NTU60_CS.npz", x_train=x, y_train=one_hot([0, 1], 3), x_test=x[:1] * 0 + 0.5,
             y_test=one_hot([2], 3))
    return ["ctrgcn", str(d / "NTU60_CS.npz")], f"{d}/NTU60_CS.npz: field 'x_train' = 1e+39: {RULE} (sample 1 frame 2)"


def _bad_stgcn(d: Path) -> tuple[list[str], str]:
    data = np.full((2, 3, 5, 25, 2), 0.5)  # N, C, T, V, M in float64
    data[0, 1, 3, 0, 0] = -1e39
    folder = stgcn_dir(d / "st", data, pickle.dumps((["a.skeleton", "b.skeleton"], [0, 1])))
    return ["stgcn", str(folder)], f"{folder}/train_data.npy: field 'data' = -1e+39: {RULE} (sample 0 frame 3)"


def _bad_huge_frames(d: Path) -> tuple[list[str], str]:
    path = d / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"100000000\r\n0\r\n")
    return ["ntu", str(d)], f"{path}:1: field 'frame count' = 100000000: must be in 0..100000"


DATA_CASES = {"ucla-1e39": _bad_ucla, "ntu-1e39": _bad_ntu, "pku-3e38": _bad_pku, "ctrgcn-1e39": _bad_ctrgcn,
              "stgcn-1e39": _bad_stgcn, "ntu-frame-count": _bad_huge_frames}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_prepare_refuses_out_of_range_coordinates(tmp_path: Path, case: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    argv, msg = DATA_CASES[case](src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    write_store(generate(12, 0), out_dir / "store.arrow")  # a previous store, to be left as it is
    before = files_in(out_dir)
    code, err = run_cli(["data", "prepare", *argv, str(out_dir / "store.arrow"), "--force"], capsys)
    assert (code, err) == (1, f"ms2l data prepare: error: {msg}{HINT}\n")
    assert files_in(out_dir) == before  # byte-identical, and no temporary file left


def test_preprocessing_is_rechecked_after_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finite ±3e38 turns into inf when centred: the step that did it is named, with the sample."""
    monkeypatch.chdir(tmp_path)
    frames = np.full((2, 150), 0.5, np.float32)
    frames[:, 60:63] = -3e38  # person 0's centre joint (ntu25 joint 20) in the first frame
    frames[:, 0:3] = 3e38
    data = assemble([Sample("S001C001P001R001A001", frames, 0)], num_persons=2, num_joints=25, num_classes=60,
                    layout="ntu25")
    with pytest.raises(DataFormatError) as err:
        pp.apply(data, pp.PreprocessConfig(), "NTU/folder")
    assert str(err.value) == ("NTU/folder: field \"frames of sample 'S001C001P001R001A001'\" = inf: not finite after "
                              "preprocessing step 'center' (frame 0)")
    with pytest.raises(DataFormatError) as err:
        write_store(pp.center(data), "never.arrow")  # the writer refuses too, whatever made the set
    assert str(err.value) == ("never.arrow: field 'frames' = inf: sample 'S001C001P001R001A001' frame 0 is not "
                              "finite; a store holds only finite coordinates")
    assert not Path("never.arrow").exists()


# --------------------------------------------------------------------------------------- store contents
def _store_with(path: Path, *, frames_value: float | None = None, label: int | None = None,
                num_classes: str | None = None) -> Path:
    data = generate(12, 0)
    frames = np.array(data.frames)
    if frames_value is not None:
        frames[5, 7] = frames_value
    cols = {"label": data.labels.copy(), "subject": data.subjects, "view": data.views, "setup": data.setups}
    if label is not None:
        cols["label"][3] = label
    header = _header(data)
    if num_classes is not None:
        header["num_classes"] = num_classes
    _write(path, header, data.lengths, cols, list(data.names), frames, None)  # the writer's core: no checks
    return path


STORE_CASES = [
    ({"frames_value": float("nan")}, "field \"column 'frames'\" = nan: row 0 (frame 5) is not finite; a store holds "
                                     "only finite coordinates"),
    ({"frames_value": float("-inf")}, "field \"column 'frames'\" = -inf: row 0 (frame 5) is not finite; a store "
                                      "holds only finite coordinates"),
    ({"label": 12}, "field \"column 'label'\" = 12: row 3: expected 0..11 (num_classes = 12)"),
    ({"label": -1}, "field \"column 'label'\" = -1: row 3: expected 0..11 (num_classes = 12)"),
    ({"num_classes": "1000000000000"}, "field \"schema metadata 'num_classes'\" = '1000000000000': expected 1..100000"),
]


@pytest.mark.parametrize(("kw", "msg"), STORE_CASES, ids=[str(c[0]) for c in STORE_CASES])
def test_open_store_and_info_refuse_bad_values(tmp_path: Path, kw: dict, msg: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _store_with(tmp_path / "bad.arrow", **kw)
    with pytest.raises(DataFormatError) as err:
        open_store(path)
    assert str(err.value) == f"{path}: {msg}"
    code, out = run_cli(["data", "info", str(path)], capsys)
    assert (code, out) == (1, f"ms2l data info: error: {path}: {msg}{HINT}\n")


# --------------------------------------------------------------------------------- training: no NaN runs
@pytest.fixture(scope="module")
def overflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid store (finite float32) whose coordinates are so large that every loss overflows."""
    return write_overflow_store(tmp_path_factory.mktemp("overflow") / "huge.arrow")


GUARD_CASES = [
    (["pretrain", "--out", "enc", "--force"],
     "ms2l pretrain: error: pretrain: non-finite loss at epoch 1 step 1/2: motion_loss = inf; stopped after 1 "
     "consecutive non-finite step (pretrain.nonfinite_patience = 0); nothing was saved"),
    (["pretrain", "--out", "enc", "--force", "--set", "pretrain.nonfinite_patience=5"],
     "ms2l pretrain: error: pretrain: every one of the 2 steps of epoch 1 had a non-finite loss (all skipped, "
     "pretrain.nonfinite_patience = 5); nothing was saved"),
    (["evaluate", "--strategy", "joint", "--encoder", "random"],
     "ms2l evaluate: error: joint: non-finite loss at epoch 1 step 1/2: motion_loss = inf; stopped after 1 "
     "consecutive non-finite step (evaluation.optim.nonfinite_patience = 0); nothing was saved"),
]


@pytest.mark.parametrize(("argv", "msg"), GUARD_CASES, ids=["pretrain", "pretrain-patience", "joint"])
def test_training_stops_at_the_first_non_finite_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     overflow_store: Path, argv: list[str], msg: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / ENCODER_FILE).write_bytes(b"the previous encoder")
    before = files_in(tmp_path / "enc")
    code, err = run_cli([*argv, "--engine", "local", "--preset", "smoke", "--dataset", str(overflow_store),
                         "--set", "data.split=random"], capsys)
    assert (code, err.splitlines()[-1]) == (1, msg + HINT)
    assert "Traceback" not in err
    assert files_in(tmp_path / "enc") == before


@pytest.mark.parametrize(("strategy", "phase"), [("supervised", "supervised"), ("linear", "linear probe (lr=0.001)")])
def test_evaluation_training_stops_on_nan_features(strategy: str, phase: str) -> None:
    """NaN frames in an in-memory set (a store refuses them): the classifier's and the probe's loops stop too."""
    from ms2l_ray.data.splits import make_splits
    from ms2l_ray.train.evaluate import evaluate

    cfg = load_config("smoke", overrides=[f"evaluation.strategy={strategy}", "data.split=random"])
    data = generate(40, 0)
    data.frames[:] = np.float32("nan")
    splits = make_splits(data, "random", val_fraction=0.1, seed=0)
    with pytest.raises(NonFiniteLossError) as err:
        evaluate(cfg, data, splits, None)
    assert str(err.value) == (f"{phase}: non-finite loss at epoch 1 step 1/2: cross_entropy = nan; stopped after 1 "
                              f"consecutive non-finite step (evaluation.optim.nonfinite_patience = 0); nothing was "
                              f"saved")


GUARD_SEQUENCES = [  # (patience, per-step losses) → steps applied, or the step (1-based) where it stops
    (0, [1.0, 2.0, 3.0], [True, True, True], None),
    (0, [1.0, float("nan"), 3.0], [True], 2),
    (1, [1.0, float("inf"), 3.0, float("nan"), 5.0], [True, False, True, False, True], None),
    (1, [float("nan"), float("nan"), 3.0], [False], 2),
    (2, [float("nan"), float("nan"), 1.0, float("nan"), float("nan"), float("nan")],
     [False, False, True, False, False], 6),
]


@pytest.mark.parametrize(("patience", "losses", "applied", "stop"), GUARD_SEQUENCES)
def test_guard_patience_counts_consecutive_steps(patience: int, losses: list[float], applied: list[bool],
                                                 stop: int | None) -> None:
    said: list[str] = []
    guard = NonFiniteGuard("pretrain", patience, "pretrain.nonfinite_patience", len(losses), said.append)
    got: list[bool] = []
    try:
        for step, value in enumerate(losses):
            got.append(guard.ok(0, step, {"loss": torch.tensor(value), "motion_loss": torch.tensor(value)}))
    except NonFiniteLossError as err:
        assert stop is not None and str(err).startswith(f"pretrain: non-finite loss at epoch 1 step {stop}/"
                                                        f"{len(losses)}: motion_loss = nan")
    else:
        assert stop is None
    assert got == applied
    assert len(said) == applied.count(False)  # every skipped step is reported


def test_guard_names_the_component_and_checks_weights() -> None:
    guard = NonFiniteGuard("joint", 0, "evaluation.optim.nonfinite_patience", 9)
    with pytest.raises(NonFiniteLossError) as err:
        guard.ok(2, 4, {"loss": torch.tensor(float("inf")), "cross_entropy": torch.tensor(0.7),
                        "jigsaw_loss": torch.tensor(float("inf"))})
    assert str(err.value) == ("joint: non-finite loss at epoch 3 step 5/9: jigsaw_loss = inf; stopped after 1 "
                              "consecutive non-finite step (evaluation.optim.nonfinite_patience = 0); "
                              "nothing was saved")
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    check_finite_weights(model, "pretrain")
    with torch.no_grad():
        model[1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"^pretrain: weight 1.bias holds non-finite values after training; "
                                                 r"nothing was saved$"):
        check_finite_weights(model, "pretrain")


# ------------------------------------------------------------------------------------------- memory bombs
def bomb_cases(d: Path) -> dict[str, tuple[list[str], int, str]]:
    """name → (argv, exit code, the last stderr line); each input is a few bytes to a few MB on disk."""
    out: dict[str, tuple[list[str], int, str]] = {}
    ntu_dir = d / "ntu"
    ntu_dir.mkdir()
    ntu_bomb(ntu_dir)
    out["ntu-body-per-frame"] = (["data", "prepare", "ntu", str(ntu_dir), str(d / "ntu.arrow")], 0, "")
    y_rows = 40_000  # one-hot float64 rows of 4000 classes: 1.28 GB of zeros, ~1.3 MB deflated
    deflated_zip(d / "NTU60_CS.npz", {
        "x_train.npy": (npy_bytes(np.full((y_rows, 1, 75), 0.5, np.float16)), 0),
        "y_train.npy": (npy_header((y_rows, 4000), "<f8"), y_rows * 4000 * 8),
        "x_test.npy": (npy_bytes(np.full((1, 1, 75), 0.5, np.float16)), 0),
        "y_test.npy": (npy_bytes(one_hot([0], 4000)), 0)})
    out["npz-deflated-zeros"] = (["data", "prepare", "ctrgcn", str(d / "NTU60_CS.npz"), str(d / "c.arrow")], 1,
                                 f"ms2l data prepare: error: {d}/NTU60_CS.npz: field 'y_train' = 'row 0': expected "
                                 f"one-hot rows [N, classes]{HINT}")
    deflated_zip(d / "lying.npz", {"x_train.npy": (npy_header((10**7, 300, 150), "<f4") + bytes(64), 0),
                                   "y_train.npy": (npy_bytes(one_hot([0], 3)), 0)})
    out["npz-declared-shape"] = (["data", "prepare", "ctrgcn", str(d / "lying.npz"), str(d / "l.arrow")], 1,
                                 f"ms2l data prepare: error: {d}/lying.npz: field 'x_train' = 'shape (10000000, 300, "
                                 f"150) float32': declares 1800000000000 bytes of data but the zip entry holds "
                                 f"64{HINT}")
    for name, blob in PICKLE_BOMBS.items():
        folder = stgcn_dir(d / f"st-{name}", np.zeros((1, 3, 2, 25, 2), np.float32), blob)
        out[f"pkl-{name}"] = (["data", "prepare", "stgcn", str(folder), str(d / f"{name}.arrow")], 1, "")
    (d / "bomb.yaml").write_text(yaml_bomb())
    out["yaml-alias"] = (["pretrain", "--engine", "local", "--config", str(d / "bomb.yaml"), "--out", str(d / "e")], 2,
                         f"ms2l pretrain: error: cannot read config file {d}/bomb.yaml: {YAML_BOMB_MSG}")
    big = encoder_file(d / "enc-big", huge_config(hidden_size=16384, head_hidden=65536), {"x": torch.zeros(1)})
    out["encoder-big-model"] = (["evaluate", "--engine", "local", "--preset", "smoke", "--strategy", "knn",
                                 "--encoder", str(big)], 1, "")
    over = encoder_file(d / "enc-over", huge_config(hidden_size=10**9), {"x": torch.zeros(1)})
    out["encoder-over-ceiling"] = (["evaluate", "--engine", "local", "--preset", "smoke", "--strategy", "knn",
                                    "--encoder", str(over)], 1, "")
    wide = encoder_file(d / "enc-wide", huge_config(), {"x": torch.zeros(1)}, num_features=3 * 10**9)
    out["encoder-num-features"] = (["evaluate", "--engine", "local", "--preset", "smoke", "--strategy", "knn",
                                    "--encoder", str(wide)], 1, "")
    out["normal-tiny-run"] = (["evaluate", "--engine", "local", "--preset", "smoke", "--strategy", "knn", "--encoder",
                               "random", "--set", "data.builtin_sequences=40"], 0, "")
    return out


CHILD = r"""
import contextlib, io, json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from ms2l_ray.cli.main import main
results = {}
for name, argv in json.loads(sys.argv[2]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results[name] = [code, err.getvalue()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], int, str, int, str]]:
    """Every bomb through ``ms2l`` in one subprocess under :data:`AS_LIMIT` (one torch import for all)."""
    d = tmp_path_factory.mktemp("bombs")
    cases = bomb_cases(d)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MS2L_DEBUG": "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(AS_LIMIT), json.dumps({k: v[0] for k, v in cases.items()})],
                          capture_output=True, text=True, env=env, cwd=d, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: (*cases[k], got[k][0], got[k][1]) for k in cases}


BOMB_MESSAGES = {  # the stderr line of the cases whose message depends on nothing but the bomb
    "pkl-reconstruct": "field 'pickle' = 'UnpicklingError': not a safe (names, labels) pickle: _reconstruct: shape "
                       "(1000000000000,) of 1-byte items needs 1000000000000 bytes; an array in this file can hold "
                       "at most 1049120",
    "pkl-ndarray": "field 'pickle' = 'UnpicklingError': not a safe (names, labels) pickle: ndarray: shape "
                   "(1000000000000,) of 8-byte items needs 8000000000000 bytes; an array in this file can hold at most "
                   "1048808",
    "pkl-setstate": "field 'pickle' = 'UnpicklingError': not a safe (names, labels) pickle: ndarray state: shape "
                    "(10000000000,) of 8-byte items needs 80000000000 bytes; an array in this file can hold at most "
                    "1049408",
    "encoder-big-model": "its config describes shape (24576,) for 'encoder.gru.bias_hh_l0' but the file holds "
                         "none; refused before building the model",
    "encoder-over-ceiling": "field 'config': invalid stored config:",
    "encoder-num-features": "field 'num_features' = 3000000000: expected a multiple of 3 in 3..12288",
}


@pytest.mark.parametrize("name", ["ntu-body-per-frame", "npz-deflated-zeros", "npz-declared-shape", "pkl-reconstruct",
                                  "pkl-ndarray", "pkl-setstate", "yaml-alias", "encoder-big-model",
                                  "encoder-over-ceiling", "encoder-num-features", "normal-tiny-run"])
def test_bombs_are_refused_under_a_small_address_space(bomb_results: dict, name: str) -> None:
    argv, want_code, want_line, code, err = bomb_results[name]
    assert "Traceback" not in err and "MemoryError" not in err
    assert code == want_code, err
    if want_code == 0:
        assert err == ""
    elif want_line:
        assert err == want_line + "\n"
    else:
        assert len(err.splitlines()) >= 1 and BOMB_MESSAGES[name] in err and err.endswith(HINT + "\n"), err
    if name == "ntu-body-per-frame":  # denoised from its blocks: the two most active of 2000 one-frame bodies
        store = open_store(Path(argv[-1]))
        assert (len(store), store.lengths.tolist(), store.num_persons) == (1, [2], 2)


def test_label_pickles_still_load(tmp_path: Path) -> None:
    """The bounded rebuilders still read real label pickles: lists, numpy int and str arrays, protocols 2 to 5."""
    names = ["S001C001P001R001A001.skeleton", "S001C001P001R001A002.skeleton"]
    for proto in (2, 3, 4, 5):
        for obj in ((names, [3, 7]), (np.array(names), np.array([3, 7], np.int64)),
                    (np.array(names, dtype=object), np.array([3, 7], np.int32))):
            (tmp_path / "l.pkl").write_bytes(pickle.dumps(obj, protocol=proto))
            got_names, labels = read_label_pkl(tmp_path / "l.pkl")
            assert (got_names, labels.tolist(), labels.dtype) == (names, [3, 7], np.int64)
