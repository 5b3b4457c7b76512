"""What each run leaves in MLflow besides metrics: config, encoder, plots, per-class accuracy, the model.

Plots are drawn with matplotlib's Agg backend (no display needed on cluster nodes). The encoder is logged
as files that load without unpickling (:mod:`ms2l_ray.model.artifact`), both as the run's ``encoder/``
artifacts and as the run's MLflow logged model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ms2l_ray.plotting import pyplot
from ms2l_ray.tracking.query import logged_model_location
from ms2l_ray.tracking.runs import RunLogger, client
from ms2l_ray.tracking.store import resolve_tracking_uri, retrying
from ms2l_ray.tracking.tags import PRETRAIN_LOSSES

TASK_CURVES = (*PRETRAIN_LOSSES, "jigsaw_acc", "contrastive_acc")


def curves_figure(history: list[dict[str, float]], keys: tuple[str, ...] = TASK_CURVES) -> Any:
    """One panel per task metric: train (solid) and validation (dashed) against epoch."""
    plt = pyplot()
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
    plt = pyplot()
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
    """Resolved config, encoder checkpoint, loss curves, and the encoder as the run's MLflow logged model."""
    from ms2l_ray.model.artifact import CONFIG_FILE, ENCODER_FILE

    plt = pyplot()
    run.log_artifact(out_dir / ENCODER_FILE, "encoder")
    run.log_artifact(out_dir / CONFIG_FILE, "encoder")
    if history:
        fig = curves_figure(history)
        run.log_figure(fig, "loss_curves.png")
        plt.close(fig)
        run.log_dict({"history": history}, "history.json")
    log_encoder_model(run, out_dir)


def log_eval_outputs(run: RunLogger, out_dir: Path, history: list[dict[str, float]],
                     class_names: list[str] | None = None) -> None:
    """Confusion matrix plot, per-class accuracy table, training curves."""
    plt = pyplot()
    cm_file = out_dir / "confusion.npy"
    if cm_file.exists():
        cm = np.load(cm_file)
        if class_names is not None and len(class_names) != len(cm):
            class_names = None  # names of another class count (a relabelled store): numbers rather than wrong names
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


ENCODER_MODEL = "encoder_model"
ENCODER_MODEL_TYPE = "ms2l-encoder"


def log_encoder_model(run: RunLogger, out_dir: Path) -> str:
    """Link the encoder to the run as an MLflow logged model (the runs table's Model column); its model id.

    Why not ``mlflow.pytorch.log_model``: it pickles the module, and loading a pickle runs whatever code it
    names, so whoever can write the artifact store could run code on every machine that loads the model.
    The logged model's artifacts are the encoder files themselves (``encoder.safetensors`` + ``config.yaml``)
    and an ``MLmodel`` file with no flavor; ``ms2l evaluate --encoder models:/<model id>`` and
    :func:`load_encoder_embedding` load them without unpickling.
    """
    import shutil
    import tempfile

    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    from ms2l_ray.model.artifact import CONFIG_FILE, ENCODER_FILE

    c = client(run.ref.tracking_uri)
    experiment = retrying(lambda: c.get_run(run.run_id).info.experiment_id)
    model = retrying(lambda: c.create_logged_model(experiment_id=experiment, name=ENCODER_MODEL,
                                                   source_run_id=run.run_id, model_type=ENCODER_MODEL_TYPE,
                                                   tags={"format": "safetensors"}))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in (ENCODER_FILE, CONFIG_FILE):
                shutil.copy2(out_dir / name, Path(tmp) / name)
            Model(artifact_path=model.artifact_location, model_uuid=model.model_id, model_id=model.model_id,
                  run_id=run.run_id, metadata={"ms2l_loader": "ms2l_ray.tracking.artifacts.load_encoder_embedding",
                                               "weights": ENCODER_FILE}).save(str(Path(tmp) / "MLmodel"))
            retrying(lambda: c.log_model_artifacts(model.model_id, tmp))
        retrying(lambda: c.log_outputs(run.run_id, [LoggedModelOutput(model.model_id, step=0)]))
    except BaseException:
        c.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    retrying(lambda: c.finalize_logged_model(model.model_id, LoggedModelStatus.READY))
    return str(model.model_id)


def find_artifact(tracking_uri: str, run_id: str, name: str, path: str | None = None, depth: int = 0) -> str | None:
    """The path of a run's first artifact called ``name``, searched two folders deep.

    Why: an artifact another tool logged (a search's ``param_importance.csv``) may sit in a folder of its
    choosing; the report looks for it by file name.

    Args:
        tracking_uri: the store.
        run_id: the run whose artifacts are searched.
        name: the file name to find.
        path: the folder to search (None: the run's artifact root).
        depth: how deep ``path`` already is (the search stops two folders below the root).

    Returns:
        The artifact path relative to the run's root, or None when no file has that name.
    """
    c = client(tracking_uri)
    for f in retrying(lambda: c.list_artifacts(run_id, path)):
        if f.is_dir and depth < 2:
            found = find_artifact(tracking_uri, run_id, name, f.path, depth + 1)
            if found:
                return found
        elif f.path.rpartition("/")[2] == name:
            return str(f.path)
    return None


def download_artifact(tracking_uri: str, run_id: str, path: str) -> str:
    """One of a run's artifacts as a local file (MLflow's download cache), e.g. the ``config.yaml`` of a run.

    Why a function: readers outside :mod:`ms2l_ray.tracking` reach the store only through this package.

    Args:
        tracking_uri: the store.
        run_id: the run that logged it.
        path: the artifact's path relative to the run's root.

    Returns:
        The local path of the downloaded file.
    """
    import mlflow.artifacts

    return str(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=tracking_uri))


def read_artifact_text(tracking_uri: str, run_id: str, path: str) -> str:
    """The text of one of a run's artifacts, downloaded to a temporary folder that is removed again.

    Args:
        tracking_uri: the store.
        run_id: the run that logged it.
        path: the artifact's path relative to the run's root (:func:`find_artifact`).

    Returns:
        The file's content as text.
    """
    import tempfile

    c = client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = retrying(lambda: c.download_artifacts(run_id, path, tmp))
        return Path(local).read_text()


def fetch_encoder(encoder: str, tracking_uri: str | None = None) -> str | None:
    """``random`` → None; an MLflow URI (``runs:/<id>/encoder``) → a local download; a path → itself."""
    if encoder == "random":
        return None
    if encoder.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        import mlflow.artifacts

        uri = resolve_tracking_uri(tracking_uri)
        if encoder.startswith("models:/"):
            encoder = _logged_model_location(encoder, uri)
        return str(mlflow.artifacts.download_artifacts(artifact_uri=encoder, tracking_uri=uri))
    if not Path(encoder).exists():
        raise FileNotFoundError(f"--encoder {encoder}: no such directory (expected a `ms2l pretrain --out` directory, "
                                f"runs:/<run-id>/encoder, or 'random')")
    return encoder


def _logged_model_location(uri: str, tracking_uri: str | None) -> str:
    """``models:/<model id>`` → the logged model's artifact location, looked up in *our* tracking store.

    MLflow 3.17 resolves such a URI through a client on the process-wide default tracking URI, whatever
    ``download_artifacts(tracking_uri=…)`` says, so another store's model is "not found"; a registered
    model (``models:/<name>/<version>``) is left to MLflow.
    """
    ref = uri.removeprefix("models:/").strip("/")
    if not ref.startswith("m-") or "/" in ref:
        return uri
    return logged_model_location(tracking_uri, ref)


def load_encoder_embedding(uri: str, tracking_uri: str | None = None) -> Any:
    """The logged encoder as an :class:`~ms2l_ray.model.embedding.EncoderEmbedding`, unpickled nowhere.

    Read from ``models:/<model id>``, ``runs:/<run id>/encoder`` or a local folder; its ``forward(x, lengths)``
    embeds a batch.
    """
    from ms2l_ray.model.artifact import load_pretrained
    from ms2l_ray.model.embedding import EncoderEmbedding
    from ms2l_ray.names import is_uri

    local = fetch_encoder(uri, tracking_uri)
    model, _ = load_pretrained(local or uri, source=uri if is_uri(uri) else None)
    return EncoderEmbedding(model.encoder).eval()
