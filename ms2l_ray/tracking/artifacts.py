"""What each run leaves in MLflow besides metrics: config, encoder, plots, per-class accuracy, the model.

Plots are drawn with matplotlib's Agg backend (no display needed on cluster nodes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.tracking.runs import RunLogger

TASK_CURVES = ("loss", "motion_loss", "jigsaw_loss", "contrastive_loss", "jigsaw_acc", "contrastive_acc")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(history: list[dict[str, float]], keys: tuple[str, ...] = TASK_CURVES) -> Any:
    """One panel per task metric: train (solid) and validation (dashed) against epoch."""
    plt = _plt()
    present = [k for k in keys if any(f"train_{k}" in h or f"val_{k}" in h for h in history)] or ["train_loss"]
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 2.8), squeeze=False)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for ax, key in zip(axes[0], present, strict=True):
        for prefix, style in (("train_", "-"), ("val_", "--")):
            ys = [h.get(prefix + key, np.nan) for h in history]
            if not all(np.isnan(ys)):
                ax.plot(epochs, ys, style, label=prefix.rstrip("_"))
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_figure(cm: np.ndarray, class_names: list[str] | None = None) -> Any:
    """Row-normalised confusion matrix (rows: true class)."""
    plt = _plt()
    k = cm.shape[0]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.35 * k), min(12, 2 + 0.35 * k)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = class_names or [str(i) for i in range(k)]
    if k <= 40:
        ax.set_xticks(range(k), names, rotation=90, fontsize=6)
        ax.set_yticks(range(k), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def log_pretrain_outputs(run: RunLogger, out_dir: Path, history: list[dict[str, float]]) -> None:
    """Resolved config, encoder checkpoint, loss curves, and the encoder as an MLflow model."""
    plt = _plt()
    run.log_artifact(out_dir / "encoder.pt", "encoder")
    run.log_artifact(out_dir / "config.yaml", "encoder")
    if history:
        fig = curves_figure(history)
        run.log_figure(fig, "loss_curves.png")
        plt.close(fig)
        run.log_dict({"history": history}, "history.json")
    log_encoder_model(run, out_dir)


def log_eval_outputs(run: RunLogger, out_dir: Path, history: list[dict[str, float]],
                     class_names: list[str] | None = None) -> None:
    """Confusion matrix plot, per-class accuracy table, training curves."""
    plt = _plt()
    cm_file = out_dir / "confusion.npy"
    if cm_file.exists():
        cm = np.load(cm_file)
        fig = confusion_figure(cm, class_names)
        run.log_figure(fig, "confusion_matrix.png")
        plt.close(fig)
        total = cm.sum(axis=1)
        names = class_names or [str(i) for i in range(len(cm))]
        per_class = {names[i]: (float(cm[i, i] / total[i] * 100) if total[i] else None) for i in range(len(cm))}
        run.log_dict({"per_class_top1": per_class, "confusion": cm.tolist()}, "per_class_accuracy.json")
    if history:
        fig = curves_figure(history, ("loss", "top1"))
        run.log_figure(fig, "curves.png")
        plt.close(fig)
        run.log_text(json.dumps(history, indent=1), "history.json")


def log_encoder_model(run: RunLogger, out_dir: Path) -> None:
    """Log the encoder as an MLflow PyTorch model: ``mlflow.pytorch.load_model`` returns an
    :class:`~ms2l_ray.model.embedding.EncoderEmbedding` whose ``forward(x, lengths)`` embeds a batch."""
    import mlflow
    import mlflow.pytorch

    from ms2l_ray.checkpoint import load_pretrained
    from ms2l_ray.model.embedding import EncoderEmbedding
    from ms2l_ray.tracking.store import retrying

    model, _ = load_pretrained(out_dir)
    module = EncoderEmbedding(model.encoder).eval()
    mlflow.set_tracking_uri(run.ref.tracking_uri)

    def log() -> None:
        with mlflow.start_run(run_id=run.run_id):
            mlflow.pytorch.log_model(module, name="encoder_model", pip_requirements=["torch", "ms2l-ray"],
                                     serialization_format="pickle")  # packed GRU: not traceable to pt2

    retrying(log)
