"""The GPU path (opt-in: ``pytest -m gpu`` on a CUDA machine, fails without one): device from config, no ``.cuda()``."""

from __future__ import annotations

import pytest
import torch
from gpu_helpers import require_cuda
from tensor_helpers import padded_batch

from ms2l_ray.config import load_config
from ms2l_ray.data.source import load_dataset
from ms2l_ray.model.ms2l import build_ms2l
from ms2l_ray.train.evaluate import evaluate
from ms2l_ray.train.loop import LoopContext
from ms2l_ray.train.pretrain import pretrain
from ms2l_ray.train.runtime import cpu_generator, resolve_device

pytestmark = pytest.mark.gpu


def test_forward_matches_cpu() -> None:
    require_cuda()
    cfg = load_config("smoke")
    torch.manual_seed(0)
    model = build_ms2l(cfg.model, cfg.tasks, 150).eval()
    x, lengths = padded_batch(8, 24, 150, seed=0, min_len=3)
    cpu = model(x, lengths, cpu_generator(1))
    gpu_model = build_ms2l(cfg.model, cfg.tasks, 150)
    gpu_model.load_state_dict(model.state_dict())
    gpu_model = gpu_model.to(resolve_device("cuda")).eval()
    gpu = gpu_model(x.to("cuda"), lengths.to("cuda"), cpu_generator(1))
    assert gpu.loss.device.type == "cuda"
    assert float(gpu.loss) == pytest.approx(float(cpu.loss), rel=1e-3)


def test_pretrain_and_linear_on_cuda() -> None:
    require_cuda()
    cfg = load_config("smoke", overrides=["device=cuda", "data.builtin_sequences=160"])
    data, splits = load_dataset(cfg.data, cfg.seed)
    ctx = LoopContext(device=resolve_device(cfg.device), progress=False)
    res = pretrain(cfg, data, splits, ctx)
    assert next(res.model.parameters()).device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(v)) for v in res.final.values())
    ev = evaluate(cfg, data, splits, res.model, ctx)
    assert 0 <= ev.metrics["test_top1"] <= 100
