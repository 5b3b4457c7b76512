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


def _pretrain_losses(device: str, precision: str, seed: int = 0,
                     *extra: str) -> tuple[list[float], dict[str, float], object, object, object]:
    """A short smoke pretraining on ``device`` under ``precision``: per-epoch train loss, final metrics, run."""
    cfg = load_config("smoke", overrides=[f"device={device}", f"precision={precision}", f"seed={seed}",
                                          "data.builtin_sequences=320", "pretrain.epochs=4", *extra])
    data, splits = load_dataset(cfg.data, cfg.seed)
    ctx = LoopContext(device=resolve_device(cfg.device), progress=False)
    res = pretrain(cfg, data, splits, ctx)
    return [h["train_loss"] for h in res.history], res.final, res, cfg, (data, splits, ctx)


def test_pretrain_and_linear_on_cuda() -> None:
    """fp32 on CUDA trains like fp32 on CPU (the same seed, data and model): the same loss curve within TF32's
    rounding, and a linear probe within a few clips of the CPU one."""
    require_cuda()
    gpu_curve, gpu_final, gpu, cfg, (data, splits, ctx) = _pretrain_losses("cuda", "fp32")
    cpu_curve, _, cpu, cpu_cfg, (_, _, cpu_ctx) = _pretrain_losses("cpu", "fp32")
    assert next(gpu.model.parameters()).device.type == "cuda"  # type: ignore[attr-defined]
    assert all(torch.isfinite(torch.tensor(v)) for v in gpu_final.values())
    assert gpu_curve == pytest.approx(cpu_curve, rel=0.05)
    assert gpu_curve[-1] < gpu_curve[0]  # it trains
    ev = evaluate(cfg, data, splits, gpu.model, ctx)  # type: ignore[arg-type, attr-defined]
    ev_cpu = evaluate(cpu_cfg, data, splits, cpu.model, cpu_ctx)  # type: ignore[arg-type, attr-defined]
    assert abs(ev.metrics["test_top1"] - ev_cpu.metrics["test_top1"]) <= 15.0, (ev.metrics, ev_cpu.metrics)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_loss_curves_match_fp32_within_noise(precision: str) -> None:
    """Issue 12, item 3: bf16/fp16 autocast (losses in fp32, a grad scaler for fp16) trains like fp32.

    "Within noise" is measured, not assumed: the noise of an epoch's loss is how far two fp32 runs that differ
    only in their seed land apart. Mixed precision, from fp32's seed, must land within that distance of fp32
    (or within 2 % of the loss, whichever is larger) at every epoch.
    """
    require_cuda()
    fp32, _, _, _, _ = _pretrain_losses("cuda", "fp32", 0)
    other_seed, _, _, _, _ = _pretrain_losses("cuda", "fp32", 1)
    mixed, final, _, _, _ = _pretrain_losses("cuda", precision, 0)
    assert final["precision_id"] == {"bf16": 1.0, "fp16": 2.0}[precision]  # it really ran in that precision
    for epoch, (ref, alt, amp) in enumerate(zip(fp32, other_seed, mixed, strict=True), start=1):
        noise = max(abs(ref - alt), 0.02 * abs(ref))
        assert abs(amp - ref) <= noise, f"epoch {epoch}: {precision} {amp:.4f} vs fp32 {ref:.4f} (noise {noise:.4f})"
