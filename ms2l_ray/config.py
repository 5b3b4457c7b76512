"""Typed configuration: dataclasses with every default in one place, validated at the edge.

YAML files and ``--set key=value`` overrides hold only deltas on top of a named preset. Unknown keys,
wrong types and out-of-range values raise :class:`ConfigError` naming the dotted key, and every problem
is reported at once (torchtune's config validation habit, STYLE.md). Defaults are the reference
settings of REFERENCE.md §1 (the ``paper`` preset); ``smoke`` and ``small`` shrink them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import reprlib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ms2l_ray import strategies as strategy_table
from ms2l_ray.limits import MAX_SEQUENCE_FRAMES
from ms2l_ray.safe_yaml import load_yaml_file, load_yaml_text

# Jigsaw policies for clips shorter than the segment count (augment.temporal_jigsaw); kept here so the
# config layer validates them without importing torch.
JIGSAW_SHORT_POLICIES: tuple[str, ...] = ("reference", "identity")
# How the encoder and decoder GRUs run over zero padding (ms2l_ray.model.encoder.run_gru): the reference's
# padded GRU, the packed-sequence one, or the length-aware "reversed" one (the default). Kept here, torch-free.
ENCODER_IMPLS: tuple[str, ...] = ("reversed", "packed", "padded")
# Arithmetic of the forward passes (ms2l_ray.train.precision): "auto" is bf16 autocast on a CUDA device that
# supports it and fp32 elsewhere (CPU included); losses are always computed in fp32. Kept here, torch-free.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """A bad configuration; the message names every offending dotted key."""


# Shown values are cut (depth, length) before they are built: a YAML alias tree of billions of leaves in a
# typed field must not become a message of billions of characters.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 3, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def shown(value: Any) -> str:
    """A bounded ``repr`` of a config value for error messages."""
    return _REPR.repr(value)


@dataclass
class ModelConfig:
    """Encoder and heads (paper §3, reference ``model.py``)."""

    hidden_size: int = 600  # total GRU width; bidirectional → hidden_size // 2 per direction
    num_layers: int = 2  # encoder GRU layers
    bidirectional: bool = True  # the reference encoder is a BiGRU
    decoder_layers: int = 2  # motion-prediction decoder GRU layers (unidirectional)
    head_hidden: int = 2048  # hidden width of the jigsaw head and the contrastive projector
    proj_dim: int = 1024  # contrastive projection size
    dropout: float = 0.0  # between GRU layers; the reference uses none
    # GRU over padding: "reversed" (length-aware, skips padding, default), "packed" (same valid outputs),
    # "padded" (the reference: all T frames; its backward direction reads the padding before each clip)
    encoder_impl: str = "reversed"


@dataclass
class TaskConfig:
    """The three self-supervised tasks (paper §3.2–3.4). A weight of 0 switches a task off and skips its compute."""

    motion_weight: float = 1.0
    jigsaw_weight: float = 1.0
    contrastive_weight: float = 1.0
    mask_ratio: float = 0.3  # fraction of each valid length hidden from the motion-prediction view
    jigsaw_segments: int = 3  # seg_num; seg_num! permutation classes
    temperature: float = 0.9  # contrastive τ (reference value)
    # Jigsaw on clips shorter than jigsaw_segments frames: "reference" cuts the padded clip (the reference
    # code's behaviour), "identity" leaves them unshuffled with label 0 (see augment.temporal_jigsaw).
    jigsaw_short: str = "reference"


@dataclass
class OptimConfig:
    """Adam + StepLR + per-module gradient clipping, as the reference ``procedure.py``."""

    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    step_size: int = 30  # StepLR step, in epochs
    gamma: float = 0.1  # StepLR decay
    grad_clip: float = 10.0  # max gradient norm per module; 0 disables
    # Consecutive training steps with a non-finite loss that are skipped (no update) before the job stops with
    # an error naming the epoch, step and loss term; 0 stops at the first (ms2l_ray.train.guard).
    nonfinite_patience: int = 0


@dataclass
class DataConfig:
    """Where sequences come from and how they are split (REFERENCE.md §3)."""

    dataset: str = "builtin"  # "builtin" (procedural NTU-layout generator) or a path to an Arrow store
    split: str = "ntu60-xsub"  # ms2l_ray.data.splits names; the builtin set has NTU-style subjects and cameras
    max_frames: int = 300  # T; longer sequences are resampled to T frames
    val_fraction: float = 0.05  # held out from the training side for model selection (train_clip 0.95)
    builtin_sequences: int = 10000  # size of the built-in dataset
    builtin_seed: int = 0  # the built-in dataset is a pure function of this seed
    limit: int = 0  # if > 0, keep only the first `limit` samples of each split part (smoke runs)
    # true: training batches of clips of similar length ("sortish": sorted within random chunks of 50 batches,
    # batch order shuffled, seeded per epoch) and length-sorted evaluation batches, so a batch pads to near its
    # mean length, not its longest clip (NTU-like lengths: several times fewer GRU steps). false (default): the
    # reference's random batches. Off by measurement: `small` preset, seed 0, 1 thread, loaded 2-core machine:
    # bucketed vs random: pretraining 1915 vs 1995 s (T = 64 caps most clips: little padding) but linear test top-1 66.8
    # vs 70.6 and KNN 79.9 vs 84.6 (ms2l_ray.train.batches).
    bucketing: bool = False


@dataclass
class EvalConfig:
    """A downstream evaluation (paper §4.3): the strategy and its own optimiser settings."""

    strategy: str = "linear"  # one of STRATEGIES
    label_fraction: float = 1.0  # fraction of training labels used (semi-supervised: 0.01, 0.1, ...)
    knn_k: int = 20  # neighbours for the KNN evaluation
    knn_temperature: float = 0.07  # weighted-vote temperature for KNN
    # Linear probe fairness (careful SSL evaluations; REFERENCE.md §2b): a frozen encoder's feature scale
    # depends on its pretraining, so one fixed probe lr favours some encoders. ``lr_grid`` (empty: optim.lr
    # only) and ``standardize`` ("off", "on": z-score with training-split statistics, "select": try both)
    # span a small probe grid; the combination with the best *validation* top-1 is kept, test is scored once.
    lr_grid: list[float] = field(default_factory=list)
    standardize: str = "off"
    optim: OptimConfig = field(default_factory=OptimConfig)


STANDARDIZE_MODES = ("off", "on", "select")

STRATEGIES = strategy_table.NAMES  # the one table: ms2l_ray.strategies


@dataclass
class Config:
    """One experiment: data, model, tasks, pretraining and evaluation settings."""

    seed: int = 0
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...
    log_every: int = 50  # steps between progress lines
    knn_every: int = 0  # epochs between KNN probes on validation features during pretraining (0 = last epoch only)
    # "auto" (bf16 on CUDA with bf16 support, else fp32), "fp32", "bf16", "fp16" (autocast + grad scaler)
    precision: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    pretrain: OptimConfig = field(default_factory=OptimConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)


PRESETS: dict[str, dict[str, Any]] = {
    # REFERENCE.md §1: the reference settings (all defaults).
    "paper": {},
    # A laptop run of minutes on 2 cores (pretrain + linear evaluations ≈ 3.5 min in-process, ≈ 5.8 min as
    # Ray Train jobs through the CLI): a narrower, shorter pretraining on shorter clips. 6000 built-in
    # sequences rather than 3000: with ~1450 training clips the contrastive task overfits (train accuracy
    # 1.0, validation 0.3) and the gain over a random encoder swung between +9 and +21 points across seeds.
    # Validation is 10 % so model selection sees ~300 clips, not ~75. Evaluation keeps the reference
    # optimiser (Adam 1e-3, 60 epochs, StepLR(30)): linear evaluation trains on cached frozen features, so
    # its epochs cost little; fine-tuning-style strategies backpropagate through the encoder for all 60
    # epochs (lower evaluation.optim.epochs in a grid or experiment YAML when time matters).
    "small": {
        "model": {"hidden_size": 128, "head_hidden": 256, "proj_dim": 128},
        "pretrain": {"epochs": 24, "batch_size": 128, "step_size": 16},
        "evaluation": {"optim": {"batch_size": 128}},
        "data": {"max_frames": 64, "builtin_sequences": 6000, "val_fraction": 0.1},
        "log_every": 20,
    },
    # Seconds, for tests.
    "smoke": {
        "model": {"hidden_size": 16, "num_layers": 1, "decoder_layers": 1, "head_hidden": 32, "proj_dim": 16},
        "pretrain": {"epochs": 2, "batch_size": 16, "step_size": 1},
        "evaluation": {"optim": {"epochs": 2, "batch_size": 16, "step_size": 1}, "knn_k": 5},
        "data": {"max_frames": 24, "builtin_sequences": 240, "val_fraction": 0.1},
        "log_every": 1000,
    },
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _path_errors(value: Any, tp: Any, key: str) -> list[str]:
    """Type errors of a leaf value against its annotation (int accepted where float is expected)."""
    if typing.get_origin(tp) is list:  # only list[float] is used: a list of numbers
        if isinstance(value, list) and all(_is_number(v) for v in value):
            return []
        return [f"{key}: expected a list of numbers, got {type(value).__name__} {shown(value)}"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - only the types above are used
        ok = True
    return [] if ok else [f"{key}: expected {tp.__name__}, got {type(value).__name__} {shown(value)}"]


def _merge(obj: Any, delta: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    """Return a copy of dataclass ``obj`` with ``delta`` applied; collect problems in ``errors``."""
    if not isinstance(delta, dict):
        where = prefix.rstrip(".") or "<root>"
        errors.append(f"{where}: expected a mapping, got {type(delta).__name__} {shown(delta)}")
        return obj
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in delta.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            errors.append(f"{dotted}: unknown key; known keys here: {sorted(names)}")
            continue
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, dotted + ".", errors)
        else:
            tp = hints[key]
            if isinstance(tp, types.UnionType):  # pragma: no cover - no unions in the schema yet
                tp = typing.get_args(tp)[0]
            found = _path_errors(value, tp, dotted)
            errors.extend(found)
            if not found:
                if tp is float:
                    value = float(value)
                elif typing.get_origin(tp) is list:
                    value = [float(v) for v in value]
                changes[key] = value
    return dataclasses.replace(obj, **changes)


# Upper bounds of the config's sizes: each allocates memory or time in proportion (a model width, a batch, a
# dataset), so an absurd value must fail here, not as an out-of-memory minutes later — and a stored config
# (an ``encoder.pt`` from elsewhere) that claims one is refused before its model is built. Far above the
# paper's settings (ms2l_ray.limits explains the data ceilings).
INT_CEILINGS: dict[str, int] = {
    "model.hidden_size": 16384, "model.num_layers": 16, "model.decoder_layers": 16, "model.head_hidden": 65536,
    "model.proj_dim": 65536, "data.max_frames": MAX_SEQUENCE_FRAMES, "data.builtin_sequences": 1_000_000,
    "evaluation.knn_k": 100_000,
    **{f"{p}.{k}": v for p in ("pretrain", "evaluation.optim")
       for k, v in (("epochs", 100_000), ("batch_size", 65536), ("step_size", 100_000),
                    ("nonfinite_patience", 1_000_000))},
}
INT64_MAX = 2**63 - 1  # any other int (seed, limit, log_every) must at least fit numpy's and torch's int64


def leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf field of a config dataclass, in declaration order."""
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(leaves(value, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", value))
    return out


def _finite_errors(cfg: Config) -> tuple[list[str], set[str]]:
    """Every float (and list-of-float entry) must be finite; every int within its ceiling.

    One walk over all fields, so a float field added later is covered without a rule of its own. Returns
    (errors, bad keys).
    """
    errors: list[str] = []
    bad: set[str] = set()
    for key, value in leaves(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{key}: must be a finite number, got {value!r}")
            bad.add(key)
        elif isinstance(value, list) and not all(math.isfinite(v) for v in value):
            i = next(i for i, v in enumerate(value) if not math.isfinite(v))
            errors.append(f"{key}[{i}]: must be a finite number, got {value[i]!r}")
            bad.add(key)
        elif isinstance(value, int) and not isinstance(value, bool):
            ceiling = INT_CEILINGS.get(key, INT64_MAX)
            if value > ceiling or value < -INT64_MAX:
                errors.append(f"{key}: must be <= {ceiling}, got {shown(value)}")
                bad.add(key)
    return errors, bad


def _range_errors(cfg: Config) -> list[str]:
    """Non-finite and out-of-range values, each named by its dotted key (a non-finite key is reported once)."""
    e, non_finite = _finite_errors(cfg)

    def need(cond: bool, key: str, value: Any, what: str) -> None:
        if not cond and key not in non_finite:
            e.append(f"{key}: {what}, got {shown(value)}")

    t = cfg.tasks
    for name in ("motion_weight", "jigsaw_weight", "contrastive_weight"):
        need(0 <= getattr(t, name) <= 1e4, f"tasks.{name}", getattr(t, name), "must be in [0, 1e4]")
    if not non_finite & {"tasks.motion_weight", "tasks.jigsaw_weight", "tasks.contrastive_weight"}:
        need(t.motion_weight + t.jigsaw_weight + t.contrastive_weight > 0, "tasks.*_weight",
             (t.motion_weight, t.jigsaw_weight, t.contrastive_weight), "at least one task weight must be > 0")
    # logits are cosine similarities / τ: below 1e-4 they leave float32's comfortable range
    need(1e-4 <= t.temperature <= 1e4, "tasks.temperature", t.temperature, "must be in [1e-4, 1e4]")
    need(2 <= t.jigsaw_segments <= 5, "tasks.jigsaw_segments", t.jigsaw_segments, "must be in 2..5")
    need(t.jigsaw_short in JIGSAW_SHORT_POLICIES, "tasks.jigsaw_short", t.jigsaw_short,
         f"must be one of {JIGSAW_SHORT_POLICIES}")
    need(0 < t.mask_ratio < 1, "tasks.mask_ratio", t.mask_ratio, "must be in (0, 1)")
    m = cfg.model
    need(m.hidden_size >= 2 and (not m.bidirectional or m.hidden_size % 2 == 0), "model.hidden_size",
         m.hidden_size, "must be >= 2 (and even when bidirectional)")
    for name in ("num_layers", "decoder_layers", "head_hidden", "proj_dim"):
        need(getattr(m, name) >= 1, f"model.{name}", getattr(m, name), "must be >= 1")
    need(0 <= m.dropout < 1, "model.dropout", m.dropout, "must be in [0, 1)")
    need(m.encoder_impl in ENCODER_IMPLS, "model.encoder_impl", m.encoder_impl, f"must be one of {ENCODER_IMPLS}")
    for prefix, o in (("pretrain", cfg.pretrain), ("evaluation.optim", cfg.evaluation.optim)):
        need(o.epochs >= 1, f"{prefix}.epochs", o.epochs, "must be >= 1")
        need(o.batch_size >= 2, f"{prefix}.batch_size", o.batch_size, "must be >= 2 (BatchNorm heads)")
        need(0 < o.lr <= 10, f"{prefix}.lr", o.lr, "must be in (0, 10]")
        need(0 <= o.weight_decay <= 10, f"{prefix}.weight_decay", o.weight_decay, "must be in [0, 10]")
        need(o.step_size >= 1, f"{prefix}.step_size", o.step_size, "must be >= 1")
        need(0 < o.gamma <= 1, f"{prefix}.gamma", o.gamma, "must be in (0, 1]")
        need(o.grad_clip >= 0, f"{prefix}.grad_clip", o.grad_clip, "must be >= 0")
        need(o.nonfinite_patience >= 0, f"{prefix}.nonfinite_patience", o.nonfinite_patience, "must be >= 0")
    ev = cfg.evaluation
    need(ev.strategy in STRATEGIES, "evaluation.strategy", ev.strategy, f"must be one of {list(STRATEGIES)}")
    need(0 < ev.label_fraction <= 1, "evaluation.label_fraction", ev.label_fraction, "must be in (0, 1]")
    partial = ev.strategy in STRATEGIES and strategy_table.strategy(ev.strategy).partial_labels
    need(not partial or ev.label_fraction < 1, "evaluation.label_fraction", ev.label_fraction,
         "must be < 1 for the semi-supervised strategy")
    need(ev.knn_k >= 1, "evaluation.knn_k", ev.knn_k, "must be >= 1")
    # the vote weights are exp(similarity / τ): below 0.02 they overflow float32
    need(0.02 <= ev.knn_temperature <= 1e4, "evaluation.knn_temperature", ev.knn_temperature,
         "must be in [0.02, 1e4]")
    need(all(0 < lr <= 10 for lr in ev.lr_grid), "evaluation.lr_grid", ev.lr_grid,
         "every learning rate must be finite and > 0 (at most 10)")
    need(len(ev.lr_grid) <= 16, "evaluation.lr_grid", ev.lr_grid, "at most 16 learning rates")
    need(ev.standardize in STANDARDIZE_MODES, "evaluation.standardize", ev.standardize,
         f"must be one of {STANDARDIZE_MODES}")
    d = cfg.data
    need(d.max_frames >= 2, "data.max_frames", d.max_frames, "must be >= 2")
    need(0 <= d.val_fraction < 1, "data.val_fraction", d.val_fraction, "must be in [0, 1)")
    need(d.builtin_sequences >= 10, "data.builtin_sequences", d.builtin_sequences, "must be >= 10")
    need(d.limit >= 0, "data.limit", d.limit, "must be >= 0")
    need(cfg.log_every >= 1, "log_every", cfg.log_every, "must be >= 1")
    need(cfg.knn_every >= 0, "knn_every", cfg.knn_every, "must be >= 0")
    need(cfg.precision in PRECISIONS, "precision", cfg.precision, f"must be one of {PRECISIONS}")
    need(cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith(("cuda", "mps")), "device",
         cfg.device, "must be auto, cpu, cuda[:i] or mps")
    return e


def apply_delta(cfg: Config, delta: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested delta and validate the result; raise one :class:`ConfigError` listing every problem."""
    errors: list[str] = []
    out = _merge(cfg, delta, "", errors)
    if not errors:
        errors = _range_errors(out)
    if errors:
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(errors))
    return out  # type: ignore[no-any-return]


def parse_override(item: str) -> dict[str, Any]:
    """``"tasks.temperature=0.5"`` → ``{"tasks": {"temperature": 0.5}}`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: bad key {key!r} in {item!r}")
    try:
        value: Any = load_yaml_text(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {shown(item)}: the value is not YAML: {exc}") from None
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string; a user means the number
        try:
            value = float(value)
        except ValueError:
            pass
    for part in reversed(key.split(".")):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def check_preset(preset: object, where: str = "preset") -> str:
    """``preset`` if it names one of :data:`PRESETS`, else a :class:`ConfigError` naming ``where``.

    Why one function: a preset is named by ``--preset`` and by every file kind (config, experiment, grid,
    search space); each check gives the same message, and a YAML value that is not a string (a list, a
    mapping) is refused rather than tested for membership.

    Args:
        preset: the value as given.
        where: what named it, e.g. ``"--preset"`` or ``"grid.yaml: preset"``.
    """
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ConfigError(f"{where}: must be one of {sorted(PRESETS)}, got {shown(preset)}")
    return preset


def preset_config(preset: object, where: str = "preset") -> Config:
    """The validated config of the preset ``preset`` (checked by :func:`check_preset`).

    It is where every composition starts.
    """
    name = check_preset(preset, where)
    return apply_delta(Config(), PRESETS[name], f"preset {name!r}")


def compose(preset: object, file: str | Path | None = None, layers: Sequence[tuple[str, dict[str, Any] | None]] = (),
            overrides: Sequence[str] = (), where: str = "preset") -> Config:
    """The one composition path of every YAML kind: preset → config file → layers → ``--set`` → validated.

    Why one function: a config file (``--config``), an experiment file, an ablation grid (base config → cell →
    overrides → seed) and a search space (fixed config → sampled values) all build a run's config from the same
    steps; each used to do it its own way. The file is validated on its own (its errors name the file); the
    layers and the ``--set`` items are merged first and validated together, so cross-field rules see all of them
    (e.g. ``strategy: semi`` from a cell with ``label_fraction`` from ``--set``).

    Args:
        preset: the preset's name (:data:`PRESETS`), checked by :func:`check_preset`.
        file: a YAML config delta to read, or None.
        layers: ``(name, delta)`` pairs in the order they apply (later wins); empty ones are skipped; the names
            appear in the error message.
        overrides: ``--set key=value`` items, applied last.
        where: what named the preset, for its error message.
    """
    cfg = preset_config(preset, where)
    if file is not None:
        cfg = apply_delta(cfg, read_config_file(Path(file)), f"config file {file}")
    merged: dict[str, Any] = {}
    names: list[str] = []
    for name, delta in layers:
        if delta:
            merged, names = merge_deltas(merged, delta), [*names, name]
    for item in overrides:
        merged, names = merge_deltas(merged, parse_override(item)), [*names, item]
    return apply_delta(cfg, merged, f"overrides ({', '.join(names)})") if merged else cfg


def read_config_file(path: Path) -> dict[str, Any]:
    """A config delta from a YAML file (empty file → no change); unreadable or malformed → :class:`ConfigError`."""
    try:
        loaded = load_yaml_file(path) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    return loaded  # type: ignore[no-any-return]


def load_config(preset: str = "small", yaml_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                delta: dict[str, Any] | None = None) -> Config:
    """Preset → optional YAML delta → optional dict delta → ``--set`` overrides: :func:`compose` in short."""
    return compose(preset, yaml_path, [("delta", delta)], overrides)


def merge_deltas(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge of two config deltas; ``b`` wins on conflicts."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_deltas(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config dataclass."""
    return dataclasses.asdict(cfg)


# Fields added after configs were first logged, with the behaviour a config stored without them ran with:
# ``ms2l rerun``, ``--resume`` and checkpoint loads of such a config replay it, not today's default.
LEGACY_DEFAULTS: dict[tuple[str, ...], Any] = {("data", "bucketing"): False, ("precision",): "fp32"}


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict` output (e.g. a logged config), validated.

    A key of :data:`LEGACY_DEFAULTS` missing from ``d`` takes its legacy value, so older stored configs keep
    their numbers.
    """
    d = copy.deepcopy(d) if isinstance(d, dict) else d
    if isinstance(d, dict):
        for path, value in LEGACY_DEFAULTS.items():
            node: Any = d
            for part in path[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and path[-1] not in node:
                node[path[-1]] = value
    return apply_delta(Config(), d, "stored config")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (MLflow params, Tune search keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        node = out
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


# Fields that change no number of a run that succeeds, left out of :func:`config_hash` at their default so
# that adding them kept the hashes of earlier runs (an ablation resumed across the upgrade matches its cells).
HASH_OMITTED_AT_DEFAULT: dict[tuple[str, ...], Any] = {("pretrain", "nonfinite_patience"): 0,
                                                       ("evaluation", "optim", "nonfinite_patience"): 0}


def config_hash(cfg: Config) -> str:
    """Short stable hash of the resolved config (MLflow tag; identical configs share it)."""
    d = to_dict(cfg)
    for path, default in HASH_OMITTED_AT_DEFAULT.items():
        node = d
        for part in path[:-1]:
            node = node[part]
        if node.get(path[-1]) == default:
            del node[path[-1]]
    blob = json.dumps(d, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def dump_yaml(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config (loadable with ``load_config(preset='paper', yaml_path=...)``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
