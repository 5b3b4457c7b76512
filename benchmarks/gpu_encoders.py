"""The fastest correct encoder per device: the three GRU implementations × precision, against the reference step.

Issue 12, item 4. Times one full MS²L pretraining step (three views, the three losses, backward, per-module
clipping, Adam) at the paper's sizes (REFERENCE.md §1: T = 300, F = 150, BiGRU 2 × 300, decoder 2 × 600, heads
2048) for every ``model.encoder_impl`` (:mod:`ms2l_ray.model.encoder`):

- ``padded``: the reference's plain cuDNN GRU over the batch's padded frames (on a GPU the fastest kernel; on
  CPU it computes the padding too);
- ``packed``: ``pack_padded_sequence`` (public reports put it 5–100× slower than padded on GPUs);
- ``reversed``: the length-aware default (unpacked over the batch's longest clip, backward direction reversed
  within each length);

under each precision of :mod:`ms2l_ray.train.precision` the device supports (fp32; bf16 and fp16 autocast on
CUDA, losses in fp32, a grad scaler for fp16), on random NTU-like batches (padded to the batch's longest clip)
and on length-bucketed ones (``data.bucketing``). The baseline row is the reference-style step of
``benchmarks/pretrain_throughput.py`` in fp32 (CPU augmentations, every view through the encoder over all
``T`` frames); the speed-up column is against it, at equal batch. Target (issue 12): ≥ 10× on a GPU.

Usage (a GPU machine needs only torch, numpy and pyyaml; run from the repository root)::

    python benchmarks/gpu_encoders.py [--device cuda] [--batch-size 256] [--steps 5] [--warmup 2]
    python benchmarks/gpu_encoders.py --device cpu --batch-size 8 --hidden 64 --frames 60 --steps 1  # smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the reference-style step and batches live beside us

from pretrain_throughput import (  # noqa: E402
    NUM_FEATURES,
    ReferenceStyleMS2L,
    bucket_summary,
    bucketed_batches,
    ntu_like_batch,
    precision_step,
    time_steps,
    train_step,
)

from ms2l_ray.config import ENCODER_IMPLS  # noqa: E402
from ms2l_ray.train.precision import RESOLVED_PRECISIONS  # noqa: E402


def precisions(device: torch.device) -> list[str]:
    """The precisions worth timing on ``device``: fp32 everywhere; bf16 (if supported) and fp16 on CUDA."""
    if device.type != "cuda":
        return ["fp32"]
    return [p for p in RESOLVED_PRECISIONS if p != "bf16" or torch.cuda.is_bf16_supported()]


def ms2l_step(impl: str, precision: str, args: argparse.Namespace, device: torch.device,
              batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Seconds per training step of our model with ``impl`` under ``precision``, cycling through ``batches``."""
    train = precision_step(impl, precision, args.hidden, device, args.seed)
    on_device = [(x.to(device), lengths.to(device)) for x, lengths in batches]
    cursor = [0]

    def step() -> None:
        train(*on_device[cursor[0] % len(on_device)])
        cursor[0] += 1

    for _ in range(args.warmup):
        step()
    cursor[0] = 0
    return time_steps(step, args.steps, 0, device)


def reference_step(args: argparse.Namespace, device: torch.device, x: torch.Tensor, lengths: torch.Tensor) -> float:
    """Seconds per reference-style step (fp32, CPU augmentations, all ``T`` frames) on the CPU batch ``x``."""
    torch.manual_seed(args.seed)
    ref = ReferenceStyleMS2L(args.hidden).to(device).train()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    return time_steps(lambda: train_step(lambda: ref.step_loss(x, lengths, device, gen), opt, ref.clip_groups()),
                      args.steps, args.warmup, device)


def memory_note(device: torch.device) -> str:
    """Peak CUDA memory of the timed steps so far (what a trial at these sizes needs, for ``--gpus-per-trial``)."""
    if device.type != "cuda":
        return ""
    return f"; peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each row (cuDNN autotuning)")
    p.add_argument("--hidden", type=int, default=600)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--bucket-chunk", type=int, default=50, help="batches per sorted chunk of the bucketing plan")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; T={args.frames}, F={NUM_FEATURES}, hidden={args.hidden}, "
          f"batch={args.batch_size}, steps={args.steps} (+{args.warmup} warm-up per row)")
    x, lengths = ntu_like_batch(args.batch_size, args.frames, args.seed)
    random_batch = [(x[:, :int(lengths.max())].contiguous(), lengths)]  # padded to its longest clip, as we batch
    buckets = bucketed_batches(args.batch_size, args.frames, args.steps, args.bucket_chunk, args.seed)
    print(f"random batch: padded length {int(lengths.max())}, mean valid length {float(lengths.float().mean()):.0f}; "
          + bucket_summary(buckets) + "\n")

    base = reference_step(args, device, x, lengths)
    print("| step | encoder_impl | precision | batches | ms / step | sequences / s | speed-up vs reference |")
    print("|---|---|---|---|---:|---:|---:|")
    print(f"| reference-style | (plain GRU, all {args.frames} frames) | fp32 | random | {base * 1000:.0f} | "
          f"{args.batch_size / base:.1f} | 1.00× |")
    best: tuple[float, str] = (float("inf"), "")
    for impl in ENCODER_IMPLS:
        for precision in precisions(device):
            for label, batches in (("random", random_batch), ("bucketed", buckets)):
                sec = ms2l_step(impl, precision, args, device, batches)
                best = min(best, (sec, f"{impl} / {precision} / {label}"))
                print(f"| ours | {impl} | {precision} | {label} | {sec * 1000:.0f} | {args.batch_size / sec:.1f} | "
                      f"{base / sec:.2f}× |", flush=True)
    print(f"\nfastest: {best[1]} ({base / best[0]:.2f}× the reference-style step){memory_note(device)}")


if __name__ == "__main__":
    main()
