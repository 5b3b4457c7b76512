"""The pretrained-encoder artifact: ``encoder.pt`` + ``config.yaml`` in one directory.

Loaded with ``torch.load(weights_only=True)`` (tensors and plain values only), so an artifact pulled
from a shared MLflow server cannot execute code on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ms2l_ray.config import Config, dump_yaml, from_dict, to_dict
from ms2l_ray.model.ms2l import MS2L, build_ms2l

ENCODER_FILE = "encoder.pt"
FORMAT_VERSION = 1


def save_pretrained(out_dir: str | Path, model: MS2L, cfg: Config, num_features: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the whole MS²L model (encoder and heads) and its resolved config; return the file path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"format": FORMAT_VERSION, "model": state, "config": to_dict(cfg), "num_features": num_features,
            "extra": extra or {}}
    tmp = out / (ENCODER_FILE + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(out / ENCODER_FILE)
    dump_yaml(cfg, out / "config.yaml")
    return out / ENCODER_FILE


def load_pretrained(path: str | Path, device: torch.device | str = "cpu") -> tuple[MS2L, Config]:
    """Load an artifact written by :func:`save_pretrained` (a directory or the ``encoder.pt`` file)."""
    p = Path(path)
    if p.is_dir():
        p = p / ENCODER_FILE
    if not p.exists():
        raise FileNotFoundError(f"no pretrained encoder at {p} (expected a directory from `ms2l pretrain --out`)")
    blob = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ValueError(f"{p}: not an ms2l encoder artifact (field 'format' = "
                         f"{blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r}, "
                         f"expected {FORMAT_VERSION})")
    cfg = from_dict(blob["config"])
    model = build_ms2l(cfg.model, cfg.tasks, int(blob["num_features"]))
    model.load_state_dict(blob["model"])
    return model.to(device), cfg
