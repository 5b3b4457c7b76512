"""In-process pretrain and evaluation jobs: load data, run the plain loop, save the artifact.

The Ray layer runs the same functions inside each Train worker (with a DDP context); the ``local``
engine calls them directly, which is what unit tests and debugging use.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ms2l_ray.config import Config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.model.artifact import load_pretrained, save_pretrained
from ms2l_ray.model.ms2l import MS2L
from ms2l_ray.train.evaluate import EvalResult, evaluate
from ms2l_ray.train.guard import check_finite_weights
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.pretrain import PretrainResult, pretrain
from ms2l_ray.train.runtime import resolve_device


def run_pretrain(cfg: Config, out_dir: str | Path | None, ctx: LoopContext | None = None,
                 resume: dict[str, Any] | None = None) -> PretrainResult:
    """Pretrain on ``cfg.data`` and (rank 0) save the artifact into ``out_dir``."""
    ctx = ctx or LoopContext(device=resolve_device(cfg.device))
    data, splits = load_dataset(cfg.data, cfg.seed)
    ctx.say(f"[data] {cfg.data.dataset}: {len(data)} sequences, split {cfg.data.split}: "
            f"train {len(splits.train)} / val {len(splits.val)} / test {len(splits.test)}")
    result = pretrain(cfg, data, splits, ctx, resume=resume)
    check_finite_weights(result.model, "pretrain")  # every rank: an encoder is written only if it is all finite
    if out_dir is not None and ctx.rank == 0:
        save_pretrained(out_dir, result.model, cfg, data.num_features)
    return result


def with_encoder_config(cfg: Config, encoder_cfg: Config) -> Config:
    """Evaluation config whose model/task settings come from the pretrained encoder's own config."""
    return dataclasses.replace(cfg, model=encoder_cfg.model, tasks=encoder_cfg.tasks)


def resolve_encoder(encoder: str, cfg: Config, source: str | None = None) -> tuple[MS2L | None, Config]:
    """``"random"`` → (None, cfg); a directory/file → (model, cfg with the encoder's model settings).

    ``source``: the URI a downloaded ``encoder`` came from, so that an error names what the user typed.
    """
    if encoder == "random":
        return None, cfg
    model, enc_cfg = load_pretrained(encoder, source=source)
    return model, with_encoder_config(cfg, enc_cfg)


def run_evaluate(cfg: Config, pretrained: MS2L | None, ctx: LoopContext | None = None) -> EvalResult:
    """Evaluate ``cfg.evaluation.strategy`` on ``cfg.data``."""
    ctx = ctx or LoopContext(device=resolve_device(cfg.device))
    data, splits = load_dataset(cfg.data, cfg.seed)
    if pretrained is not None:
        expected = pretrained.encoder.num_features
        if expected != data.num_features:
            raise ValueError(f"encoder expects {expected} features per frame but dataset {cfg.data.dataset!r} has "
                             f"{data.num_features} (M={data.num_persons}, V={data.num_joints}, C=3)")
    return evaluate(cfg, data, splits, pretrained, ctx)
