"""``ms2l rerun <run-id>``: rebuild a logged run's exact config from MLflow and run it again.

The config comes from the run's ``config.yaml`` artifact (typed values, unlike string params); the
code version it was logged with is reported beside the current one, so a user sees when the code moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.config import ConfigError, from_dict
from ms2l_ray.jobs.tracked import CONFIG_ARTIFACT, Execution, Tracking, tracked_evaluate, tracked_pretrain
from ms2l_ray.names import unique_name
from ms2l_ray.safe_yaml import load_yaml_file
from ms2l_ray.tracking.runs import client, code_version
from ms2l_ray.tracking.store import retrying


def rerun(run_id: str, *, tracking: Tracking, execution: Execution, out: Path | None = None) -> dict[str, Any]:
    """Run the logged pretrain or evaluation again (a new run, tagged ``rerun_of``); return its metrics."""
    import mlflow.artifacts

    c = client(tracking.uri)
    run = retrying(lambda: c.get_run(run_id))
    tags = run.data.tags
    kind = tags.get("kind")
    if kind not in ("pretrain", "evaluate"):
        raise ValueError(f"run {run_id} has tag kind={kind!r}; only pretrain and evaluate runs can be re-run")
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=CONFIG_ARTIFACT,
                                                tracking_uri=tracking.uri)
    try:  # size- and alias-bounded: whoever can write the artifact store can write this file
        stored = load_yaml_file(local)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"run {run_id}: cannot read its {CONFIG_ARTIFACT}: {exc}") from None
    cfg = from_dict(stored)
    logged, now = tags.get("git_commit", "unknown"), code_version()["git_commit"]
    print(f"[rerun] {kind} run {run_id}: logged with code {logged}; running with {now}"
          + ("" if logged == now else "  (code differs: results may differ)"))
    exp = c.get_experiment(run.info.experiment_id).name
    trk = Tracking(tracking.uri, exp)
    name = unique_name(f"rerun-{kind}")
    out_dir = out or Path("outputs") / name
    extra = {"rerun_of": run_id}
    if kind == "pretrain":
        outcome, _ = tracked_pretrain(cfg, name=name, out_dir=out_dir, tracking=trk, execution=execution, tags=extra)
        return outcome.metrics
    from ms2l_ray.train.job import fetch_encoder

    encoder = None
    source = tags.get("encoder_source", "")
    if tags.get("parent_pretrain_run"):
        encoder = fetch_encoder(f"runs:/{tags['parent_pretrain_run']}/encoder", tracking.uri)
    elif source.startswith("runs:/"):
        encoder = fetch_encoder(source, tracking.uri)
    elif tags.get("encoder") and Path(tags["encoder"]).exists():
        encoder = tags["encoder"]
    elif tags.get("encoder"):
        raise FileNotFoundError(f"run {run_id} used encoder {tags['encoder']}, which no longer exists")
    outcome, _ = tracked_evaluate(cfg, encoder=encoder, name=name, out_dir=out_dir, tracking=trk,
                                  execution=execution, tags=extra)
    return outcome.metrics
