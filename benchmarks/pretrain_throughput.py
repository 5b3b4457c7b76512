"""Pretraining throughput: our ``MS2L`` step against a step written the way the reference code works.

Usage::

    python benchmarks/pretrain_throughput.py [--device cpu|cuda] [--batch-size 64] [--steps 5] [--warmup 1]
                                             [--hidden 600] [--threads N] [--frames 300]

Both steps do the same work per batch (three views, the three MS²L losses, backward, per-module gradient
clipping to 10, one Adam step) on the same model sizes (REFERENCE.md §1: T = 300, F = 150, BiGRU 2 × 300,
decoder GRU 2 × 600, MLP heads 2048). Valid lengths are drawn like NTU's, ``clip(normal(90, 35), 20, 300)``.

The reference-style step differs only in *how*: the jigsaw view is built by a per-sample Python loop on
the CPU (:func:`ms2l_ray.pretext.augment.reference_jigsaw_loop`), the views are made on the CPU and copied to the
device, the GRUs run over all ``T`` padded frames, and the three views go through the encoder one by one.
Our step is timed twice: with packed GRUs (``pack_padded_sequence``) and with the default ``"reversed"`` GRUs
(unpacked over the longest clip, backward direction reversed within each length; same outputs, see
:mod:`ms2l_ray.model.encoder`), which is much faster on CPU.
Both are also timed on **length-bucketed** batches (``data.bucketing``, :func:`ms2l_ray.train.batches.train_batches`):
a pool of ``--bucket-chunk`` × batch NTU-like clips (one sorted chunk of the plan) is cut into batches of the
same size as the other rows, each gathered at its longest clip as ``SkeletonSet.batch`` does; the step time is
the mean over ``--steps`` batches at evenly spaced quantiles of the plan's batch lengths (stratified, so a few
steps estimate the epoch mean, not one lucky or unlucky batch).
A second table times the augmentations alone (vectorised vs per-sample loops).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ms2l_ray.config import ModelConfig, TaskConfig
from ms2l_ray.contract import valid_mask
from ms2l_ray.model import MS2L, MLPHead, PretrainOutput, build_ms2l, init_weights
from ms2l_ray.model.encoder import DEFAULT_IMPL, GRUImpl
from ms2l_ray.pretext.augment import reference_jigsaw_loop, temporal_jigsaw, temporal_mask
from ms2l_ray.pretext.losses import contrastive_loss
from ms2l_ray.train.batches import train_batches

NUM_FEATURES = 150  # NTU: 2 persons × 25 joints × 3 coords
PERSONS, JOINTS, COORDS = 2, 25, 3
SEG_NUM, MASK_RATIO, TAU, CLIP = 3, 0.3, 0.9, 10.0


def ntu_like_lengths(n: int, t_max: int, rng: np.random.Generator) -> np.ndarray:
    """``[N]`` NTU-like valid lengths, ``clip(normal(90, 35), 20, T)``."""
    return np.clip(rng.normal(90, 35, n), 20, t_max).astype(np.int64)


def clips_with_lengths(lengths: np.ndarray, t_max: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clips of the given valid lengths, zero-padded per the contract. Shape: ``[N, T, 150]``, ``[N]``."""
    x = torch.from_numpy(rng.standard_normal((len(lengths), t_max, NUM_FEATURES)).astype(np.float32))
    len_t = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
    return x * valid_mask(len_t, t_max).unsqueeze(-1), len_t


def ntu_like_batch(n: int, t_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clips with NTU-like valid lengths, zero-padded per the contract. Shape: ``[N, T, 150]``, ``[N]``."""
    rng = np.random.default_rng(seed)
    lengths = ntu_like_lengths(n, t_max, rng)
    return clips_with_lengths(lengths, t_max, rng)


def bucketed_batches(batch_size: int, t_max: int, steps: int, chunk_batches: int,
                     seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` length-bucketed batches of ``batch_size`` NTU-like clips, each ``[N, max(len), 150]``.

    The plan is the training loop's (:func:`train_batches` with lengths) over ``chunk_batches × batch_size``
    clips; the batches returned sit at the ``(i + 0.5) / steps`` quantiles of the plan's padded lengths.
    """
    rng = np.random.default_rng(seed + 2)
    pool = ntu_like_lengths(chunk_batches * batch_size, t_max, rng)
    plan = train_batches(np.arange(len(pool)), batch_size, seed=seed, epoch=0, lengths=pool,
                         chunk_batches=chunk_batches)
    plan = sorted(plan, key=lambda b: int(pool[b].max()))
    picks = [plan[min(len(plan) - 1, int((i + 0.5) / steps * len(plan)))] for i in range(steps)]
    out = []
    for b in picks:
        lengths = pool[b]
        out.append(clips_with_lengths(lengths, int(lengths.max()), rng))
    return out


def bucket_summary(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> str:
    """Padded vs mean valid length of the timed bucketed batches (how little they pad)."""
    padded = [x.shape[1] for x, _ in batches]
    mean = [float(lengths.float().mean()) for _, lengths in batches]
    return ("bucketed batches timed: padded length " + ", ".join(str(t) for t in padded) + "; mean valid length "
            + ", ".join(f"{m:.0f}" for m in mean))


# ---- the reference-style step ----------------------------------------------------------------------------

def ref_mask_empty_frame(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Reference ``mask_empty_frame``: a float mask repeated to the full feature size."""
    n, t, f = x.shape
    idx = torch.arange(t, device=x.device).expand(n, t)  # [N, T]
    mask = (idx < frame.view(n, 1).repeat(1, t)).float().view(n, t, 1).repeat(1, 1, f)  # [N, T, F]
    return x * mask


def ref_mask_mean(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Reference ``mask_mean``."""
    return ref_mask_empty_frame(x, frame).sum(1) / (frame.view(-1, 1).float() + 0.01)  # [N, D]


def ref_temporal_mask(data: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Reference ``TemporalMask``: a mask materialised at ``[N, T, M, V, C]`` by ``repeat``."""
    n, t, f = data.shape
    data = data.view(n, t, PERSONS, JOINTS, COORDS)  # [N, T, M, V, C]
    mask_idx = (frame * (1 - MASK_RATIO)).reshape(n, 1, 1, 1, 1).repeat(1, t, PERSONS, JOINTS, COORDS)
    frame_idx = torch.arange(t).reshape(1, t, 1, 1, 1).repeat(n, 1, PERSONS, JOINTS, COORDS)
    return (data * (frame_idx < mask_idx).float()).view(n, t, f)  # [N, T, F]


class ReferenceStyleMS2L(nn.Module):
    """The reference ``Encoder``/``Decoder``/``Projector`` modules: plain GRUs over all padded frames."""

    def __init__(self, hidden: int, head_hidden: int = 2048, proj_dim: int = 1024) -> None:
        super().__init__()
        self.encoder = nn.GRU(NUM_FEATURES, hidden // 2, num_layers=2, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(hidden, hidden, num_layers=2, batch_first=True)
        self.reconstruction = nn.Linear(hidden, NUM_FEATURES)
        self.jigsaw_head = MLPHead(hidden, head_hidden, 6)
        self.projector = MLPHead(hidden, head_hidden, proj_dim)
        self.encoder.apply(init_weights)

    def step_loss(self, data: torch.Tensor, frame: torch.Tensor, device: torch.device,
                  generator: torch.Generator) -> torch.Tensor:
        """``MS2LProcessor.train_epoch`` body: CPU augmentations, copy, three encoder calls, three losses."""
        data_mask = ref_temporal_mask(data, frame)
        data_jigs, label_jigs = reference_jigsaw_loop(data, frame, SEG_NUM, generator)
        data, frame = data.to(device), frame.to(device)
        data_mask, data_jigs, label_jigs = data_mask.to(device), data_jigs.to(device), label_jigs.to(device)
        feat, _ = self.encoder(data)  # [N, T, H] each, over all T frames
        feat_mask, _ = self.encoder(data_mask)
        feat_jigs, _ = self.encoder(data_jigs)
        predict = ref_mask_empty_frame(self.reconstruction(self.decoder(feat_mask)[0]), frame)
        mse = nn.functional.mse_loss(predict, data)
        jig = nn.functional.cross_entropy(self.jigsaw_head(ref_mask_mean(feat_jigs, frame)), label_jigs)
        views = [self.projector(ref_mask_mean(f, frame)) for f in (feat, feat_mask, feat_jigs)]
        ctr, _ = contrastive_loss(views, TAU)
        return mse + jig + ctr

    def clip_groups(self) -> list[list[nn.Parameter]]:
        enc = list(self.encoder.parameters())
        dec = list(self.decoder.parameters()) + list(self.reconstruction.parameters())
        return [enc, dec, list(self.jigsaw_head.parameters()), list(self.projector.parameters())]


# ---- timing ----------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def train_step(loss_fn: Callable[[], torch.Tensor], opt: torch.optim.Optimizer,
               groups: list[list[nn.Parameter]]) -> None:
    loss = loss_fn()
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    for params in groups:  # the reference clips each module separately
        nn.utils.clip_grad_norm_(params, CLIP)
    opt.step()


def ms2l_groups(model: MS2L) -> list[list[nn.Parameter]]:
    parts = [model.encoder, model.motion_decoder, model.jigsaw_head, model.projector]
    return [list(p.parameters()) for p in parts if p is not None]


def precision_step(impl: str, precision: str, hidden: int, device: torch.device,
                   seed: int) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step of a fresh seeded ``MS2L`` with ``model.encoder_impl = impl`` under ``precision``.

    The step as :mod:`ms2l_ray.train.precision` runs it: autocast forward (losses in fp32), the scaled backward
    and unscaled per-module clipping for fp16, Adam. Shared by the GPU benchmarks (``gpu_encoders.py`` times it,
    ``gpu_packing.py`` runs it in several processes at once).
    """
    from ms2l_ray.train.precision import Precision

    torch.manual_seed(seed)
    model = build_ms2l(ModelConfig(hidden_size=hidden, encoder_impl=impl), TaskConfig(), NUM_FEATURES)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    prec = Precision.make(precision, device)
    gen = torch.Generator().manual_seed(seed)
    groups = ms2l_groups(model)

    def clip() -> None:
        for params in groups:  # the reference clips each module separately
            nn.utils.clip_grad_norm_(params, CLIP)

    def step(x: torch.Tensor, lengths: torch.Tensor) -> None:
        with prec.autocast():
            loss = model(x, lengths, gen).loss
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt, clip)

    return step


def set_gru_impl(model: MS2L, impl: GRUImpl) -> None:
    """Switch how the encoder's and motion decoder's GRUs treat padding (:func:`ms2l_ray.model.run_gru`)."""
    model.encoder.impl = impl
    if model.motion_decoder is not None:
        model.motion_decoder.impl = impl


def pretrain_table(args: argparse.Namespace, device: torch.device) -> list[str]:
    x_cpu, len_cpu = ntu_like_batch(args.batch_size, args.frames, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    cfg = ModelConfig(hidden_size=args.hidden)
    ours = build_ms2l(cfg, TaskConfig(), NUM_FEATURES).to(device).train()  # default GRU impl ("reversed")
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3)
    packed = build_ms2l(cfg, TaskConfig(), NUM_FEATURES).to(device).train()
    packed.load_state_dict(ours.state_dict())  # same parameters: the GRU impl changes no state_dict key
    set_gru_impl(packed, "packed")
    packed_opt = torch.optim.Adam(packed.parameters(), lr=1e-3)

    def ours_loss() -> torch.Tensor:
        out: PretrainOutput = ours(x_cpu.to(device), len_cpu.to(device), gen)
        return out.loss

    def packed_loss() -> torch.Tensor:
        out: PretrainOutput = packed(x_cpu.to(device), len_cpu.to(device), gen)
        return out.loss

    buckets = bucketed_batches(args.batch_size, args.frames, args.steps, args.bucket_chunk, args.seed)
    cursor = {"ours": 0, "packed": 0}

    def bucketed_loss(model: MS2L, key: str) -> torch.Tensor:
        x, lengths = buckets[cursor[key] % len(buckets)]
        cursor[key] += 1
        out: PretrainOutput = model(x.to(device), lengths.to(device), gen)
        return out.loss

    ref = ReferenceStyleMS2L(args.hidden, cfg.head_hidden, cfg.proj_dim).to(device).train()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)

    def ref_loss() -> torch.Tensor:
        return ref.step_loss(x_cpu, len_cpu, device, gen)

    rows = []
    timings = {}
    for name, fn, opt, groups in (("reference-style step", ref_loss, ref_opt, ref.clip_groups()),
                                  ("MS2L step (ours, packed GRUs)", packed_loss, packed_opt, ms2l_groups(packed)),
                                  (f"MS2L step (ours, default: {DEFAULT_IMPL} GRUs)", ours_loss, ours_opt,
                                   ms2l_groups(ours)),
                                  ("MS2L step (ours, packed GRUs, length-bucketed batches)",
                                   lambda: bucketed_loss(packed, "packed"), packed_opt, ms2l_groups(packed)),
                                  (f"MS2L step (ours, default: {DEFAULT_IMPL} GRUs, length-bucketed batches)",
                                   lambda: bucketed_loss(ours, "ours"), ours_opt, ms2l_groups(ours))):
        if "bucketed" in name:  # warm-up on the first bucket, then time one pass over the stratified buckets
            for _ in range(args.warmup):
                train_step(fn, opt, groups)
            cursor["ours" if "default" in name else "packed"] = 0
            timings[name] = time_steps(lambda f=fn, o=opt, g=groups: train_step(f, o, g),  # type: ignore[misc]
                                       args.steps, 0, device)
            continue
        timings[name] = time_steps(lambda f=fn, o=opt, g=groups: train_step(f, o, g),  # type: ignore[misc]
                                   args.steps, args.warmup, device)
    base = timings["reference-style step"]
    for name, sec in timings.items():
        rows.append(f"| {name} | {sec * 1000:.0f} | {args.batch_size / sec:.1f} | {base / sec:.2f}× |")
    longest = int(len_cpu.max())
    return [f"random batch: padded length {longest} (our GRUs) / {args.frames} (reference); mean valid length "
            f"{float(len_cpu.float().mean()):.0f}", bucket_summary(buckets), "",
            "| pretraining step | ms / step | sequences / s | speed-up |", "|---|---:|---:|---:|", *rows]


def mask_loop(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-sample loop version of the temporal mask (the shape of the jigsaw loop, for comparison)."""
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        keep = int(np.ceil(float(lengths[i]) * (1 - MASK_RATIO)))
        out[i, :keep] = x[i, :keep]
    return out


def augment_table(args: argparse.Namespace, device: torch.device) -> list[str]:
    n = args.aug_batch_size
    x_cpu, len_cpu = ntu_like_batch(n, args.frames, args.seed + 1)
    x, lengths = x_cpu.to(device), len_cpu.to(device)
    gen = torch.Generator().manual_seed(args.seed)
    cases: list[tuple[str, Callable[[], object], torch.device]] = [
        ("jigsaw, per-sample loop (reference, CPU)", lambda: reference_jigsaw_loop(x_cpu, len_cpu, SEG_NUM, gen),
         torch.device("cpu")),
        (f"jigsaw, vectorised ({device.type})", lambda: temporal_jigsaw(x, lengths, SEG_NUM, gen), device),
        ("mask, per-sample loop (CPU)", lambda: mask_loop(x_cpu, len_cpu), torch.device("cpu")),
        ("mask, reference 5-D repeat (CPU)", lambda: ref_temporal_mask(x_cpu, len_cpu), torch.device("cpu")),
        (f"mask, vectorised ({device.type})", lambda: temporal_mask(x, lengths, MASK_RATIO), device),
    ]
    timings = {name: time_steps(fn, args.aug_steps, 2, dev) for name, fn, dev in cases}
    rows = ["| augmentation (batch " + str(n) + ") | ms / batch | sequences / s | speed-up vs loop |",
            "|---|---:|---:|---:|"]
    for name, sec in timings.items():
        base = timings[next(k for k in timings if k.split(",")[0] == name.split(",")[0])]
        rows.append(f"| {name} | {sec * 1000:.2f} | {n / sec:,.0f} | {base / sec:.1f}× |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--hidden", type=int, default=600, help="encoder width (reference 600)")
    p.add_argument("--frames", type=int, default=300, help="T, the padded length (reference 300)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--aug-batch-size", type=int, default=256, help="batch of the augmentation table")
    p.add_argument("--aug-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bucket-chunk", type=int, default=50,
                   help="batches per sorted chunk of the length-bucketed plan (data.bucketing's 50)")
    p.add_argument("--skip-pretrain", action="store_true", help="only the augmentation table")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; T={args.frames}, F={NUM_FEATURES}, hidden={args.hidden}, "
          f"batch={args.batch_size}, steps={args.steps} (+{args.warmup} warm-up)\n")
    if not args.skip_pretrain:
        print("\n".join(pretrain_table(args, device)) + "\n")
    print("\n".join(augment_table(args, device)))


if __name__ == "__main__":
    main()
