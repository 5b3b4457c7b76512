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
from ms2l_ray.tracking import query
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.artifacts import download_artifact
from ms2l_ray.tracking.runs import code_version


def rerun(run_id: str, *, tracking: Tracking, execution: Execution, out: Path | None = None) -> dict[str, Any]:
    """Run the logged pretrain or evaluation again (a new run, tagged ``rerun_of``); return its metrics."""
    run = query.get_run(tracking.uri, run_id)
    tags = run.data.tags
    kind = tags.get(tag.KIND)
    if kind not in tag.JOB_KINDS:
        raise ValueError(f"run {run_id} has tag kind={kind!r}; only pretrain and evaluate runs can be re-run")
    local = download_artifact(tracking.uri, run_id, CONFIG_ARTIFACT)
    try:  # size- and alias-bounded: whoever can write the artifact store can write this file
        stored = load_yaml_file(local)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"run {run_id}: cannot read its {CONFIG_ARTIFACT}: {exc}") from None
    cfg = from_dict(stored)
    logged, now = tags.get(tag.GIT_COMMIT, tag.GIT_UNKNOWN), code_version()[tag.GIT_COMMIT]
    print(f"[rerun] {kind} run {run_id}: logged with code {logged}; running with {now}"
          + ("" if logged == now else "  (code differs: results may differ)"))
    trk = Tracking(tracking.uri, query.experiment_name(tracking.uri, run.info.experiment_id))
    name = unique_name(f"rerun-{kind}")
    out_dir = out or Path("outputs") / name
    extra = {tag.RERUN_OF: run_id}
    if kind == tag.KIND_PRETRAIN:
        outcome, _ = tracked_pretrain(cfg, name=name, out_dir=out_dir, tracking=trk, execution=execution, tags=extra)
        return outcome.metrics
    from ms2l_ray.tracking.artifacts import fetch_encoder

    encoder = None
    source = tags.get(tag.ENCODER_SOURCE, "")
    if tags.get(tag.PARENT_PRETRAIN_RUN):
        encoder = fetch_encoder(f"runs:/{tags[tag.PARENT_PRETRAIN_RUN]}/encoder", tracking.uri)
    elif source.startswith("runs:/"):
        encoder = fetch_encoder(source, tracking.uri)
    elif tags.get(tag.ENCODER) and Path(tags[tag.ENCODER]).exists():
        encoder = tags[tag.ENCODER]
    elif tags.get(tag.ENCODER):
        raise FileNotFoundError(f"run {run_id} used encoder {tags[tag.ENCODER]}, which no longer exists")
    outcome, _ = tracked_evaluate(cfg, encoder=encoder, name=name, out_dir=out_dir, tracking=trk,
                                  execution=execution, tags=extra)
    return outcome.metrics
