"""The pretrained-encoder artifact, loaded without unpickling: ``encoder.safetensors`` + ``config.yaml``.

``encoder.safetensors`` holds every tensor of the MS²L model (encoder and heads) and, in its header's
metadata, the format version and a JSON document with the resolved config, ``num_features`` and extras;
``config.yaml`` repeats the config for people. Why safetensors: it is a JSON header followed by raw tensor
bytes, so reading one can neither run code nor build Python objects, whoever wrote the file (an artifact
pulled from a shared MLflow server, a folder from elsewhere). One file holds weights and config, so the
rename that writes it is the one step that replaces an encoder: never new weights beside an old config.

Artifacts of format 1 (``encoder.pt``, a ``torch.save`` dict) still load, through
``torch.load(weights_only=True)``: the restricted unpickler, which builds tensors and plain values only.

Every way a file can be unusable — empty, truncated, another format, Python objects inside, weights that
do not fit the config — is one :class:`EncoderFileError` naming the file (``runs:/…`` as the user gave it).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from ms2l_ray.config import Config, ConfigError, dump_yaml, from_dict, to_dict
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.model.ms2l import MS2L, build_ms2l
from ms2l_ray.model.sizes import size_problem

ENCODER_FILE = "encoder.safetensors"
LEGACY_FILE = "encoder.pt"
CONFIG_FILE = "config.yaml"
ENCODER_FILES = (ENCODER_FILE, LEGACY_FILE)  # what makes a directory an encoder directory, newest first
FORMAT_VERSION = 2
LEGACY_FORMAT = 1
META_KEY = "ms2l"  # the safetensors metadata entry holding the JSON document
MAX_META_CHARS = 1 << 20  # a config is a few KB; the JSON parser never sees more
_DETAIL_CHARS = 200


class EncoderFileError(DataFormatError):
    """An encoder file that cannot be used; exit code 1 like any bad data file.

    The message is ``<file>: <reason>``; a reason never repeats a deserializer's advice to load with
    ``weights_only=False``, which would run whatever code the file carries.
    """

    def __init__(self, file: str, reason: str, field: str = "file", value: Any = None) -> None:
        ValueError.__init__(self, f"{file}: {reason}")
        self.file, self.line, self.field, self.value, self.reason = file, None, field, value, reason


def holds_encoder(directory: Path) -> str | None:
    """The name of the encoder file in ``directory`` (new format first), or None."""
    return next((name for name in ENCODER_FILES if (directory / name).exists()), None)


def save_pretrained(out_dir: str | Path, model: MS2L, cfg: Config, num_features: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the whole MS²L model and its resolved config; return the weights file.

    Both go into one ``encoder.safetensors`` written to a temporary name and renamed; an ``encoder.pt`` of
    the old format left in the folder (``--force``) is removed after, so the folder holds one encoder.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share storage, and the file must not depend on the live model
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": to_dict(cfg), "num_features": int(num_features), "extra": extra or {}}
    tmp = out / f".{ENCODER_FILE}.tmp"
    save_file(state, str(tmp), metadata={"format": str(FORMAT_VERSION), META_KEY: json.dumps(meta)})
    tmp.replace(out / ENCODER_FILE)
    (out / LEGACY_FILE).unlink(missing_ok=True)
    dump_yaml(cfg, out / CONFIG_FILE)
    return out / ENCODER_FILE


def encoder_file(path: str | Path) -> Path:
    """The weights file of an artifact: a directory's ``encoder.safetensors`` (else ``encoder.pt``), or ``path``."""
    p = Path(path)
    if not p.is_dir():
        if not p.exists():
            raise FileNotFoundError(f"no pretrained encoder at {p} (expected a directory from `ms2l pretrain --out`)")
        return p
    name = holds_encoder(p)
    if name is None:
        raise FileNotFoundError(f"no pretrained encoder in {p} (expected {ENCODER_FILE} from `ms2l pretrain --out`)")
    return p / name


def _shown(file: Path, source: str | None) -> str:
    """How messages name ``file``: under the URI the user gave when it was downloaded from one."""
    return f"{source.rstrip('/')}/{file.name}" if source else str(file)


def _detail(exc: BaseException) -> str:
    """``Type: text`` of a reader's exception on one line, cut at :data:`_DETAIL_CHARS` characters."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > _DETAIL_CHARS:
        text = text[:_DETAIL_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_encoder(path: str | Path, source: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """``(meta, state, shown)`` of an artifact: its JSON document, its tensors and the file's name for messages.

    The document holds config, num_features and extra. Nothing is built yet: a caller can check sizes first.
    """
    file = encoder_file(path)
    shown = _shown(file, source)
    if file.stat().st_size == 0:
        raise EncoderFileError(shown, "empty file")
    if file.suffix == ".pt":
        meta, state = _read_legacy(file, shown)
    else:
        meta, state = _read_safetensors(file, shown)
    return meta, state, shown


def _read_safetensors(file: Path, shown: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            header = f.metadata() or {}
            fmt = header.get("format")
            if fmt != str(FORMAT_VERSION):
                raise EncoderFileError(shown, f"not an ms2l encoder (metadata 'format' = {fmt!r}, expected "
                                              f"'{FORMAT_VERSION}')", "format", fmt)
            text = header.get(META_KEY, "")
            if len(text) > MAX_META_CHARS:
                raise EncoderFileError(shown, f"metadata '{META_KEY}' is {len(text)} characters, more than "
                                              f"{MAX_META_CHARS}", META_KEY, len(text))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except EncoderFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the reader meets in a damaged file, one error naming it
        raise EncoderFileError(shown, f"not a readable safetensors file: damaged, cut short or another format "
                                      f"({_detail(exc)})") from None
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EncoderFileError(shown, f"metadata '{META_KEY}' is not JSON ({_detail(exc)})", META_KEY) from None
    if not isinstance(meta, dict):
        raise EncoderFileError(shown, f"metadata '{META_KEY}' is not a JSON object", META_KEY)
    return meta, state


def _read_legacy(file: Path, shown: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A format-1 ``encoder.pt`` through the restricted unpickler (tensors and plain values only)."""
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise EncoderFileError(shown, "holds Python objects other than tensors and plain values; refused: "
                                          "building them could run code from the file") from None
        raise EncoderFileError(shown, f"not a readable encoder.pt: damaged, cut short or another format "
                                      f"({_detail(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - EOFError, RuntimeError (zip), KeyError ...: one error naming the file
        raise EncoderFileError(shown, f"not a readable encoder.pt: damaged, cut short or another format "
                                      f"({_detail(exc)})") from None
    if not isinstance(blob, dict):
        raise EncoderFileError(shown, f"not an ms2l encoder (a {type(blob).__name__}, expected a dict)")
    if blob.get("format") != LEGACY_FORMAT:
        raise EncoderFileError(shown, f"not an ms2l encoder (field 'format' = {blob.get('format')!r}, expected "
                                      f"{LEGACY_FORMAT})", "format", blob.get("format"))
    state = blob.get("model")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderFileError(shown, "field 'model' is not a dict of tensors", "model")
    return {k: blob.get(k) for k in ("config", "num_features", "extra")}, state


def _config(meta: dict[str, Any], shown: str) -> tuple[Config, int]:
    """The artifact's config and feature count, checked: a bad one is an error naming the file."""
    if not isinstance(meta.get("config"), dict):
        raise EncoderFileError(shown, "field 'config' is missing or not a mapping", "config")
    try:
        cfg = from_dict(meta["config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise EncoderFileError(shown, f"field 'config': {exc}", "config") from None
    n = meta.get("num_features")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EncoderFileError(shown, f"field 'num_features' = {n!r}: expected a positive integer", "num_features", n)
    return cfg, n


def load_pretrained(path: str | Path, device: torch.device | str = "cpu",
                    source: str | None = None) -> tuple[MS2L, Config]:
    """Load an artifact written by :func:`save_pretrained` (or a format-1 ``encoder.pt``): a directory or file.

    ``source``: the URI it was downloaded from (``runs:/…/encoder``), used to name it in errors.
    """
    meta, state, shown = read_encoder(path, source)
    cfg, num_features = _config(meta, shown)
    problem = size_problem(cfg, num_features, state)  # on the meta device: nothing allocated yet
    if problem:
        raise EncoderFileError(shown, problem, "weights")
    model = build_ms2l(cfg.model, cfg.tasks, num_features)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing/unexpected keys, shapes that do not match the config
        raise EncoderFileError(shown, f"its weights do not fit its config ({_detail(exc)})", "weights") from None
    return model.to(device), cfg
