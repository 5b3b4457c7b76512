"""The MLflow vocabulary on a real SQLite store: ``tracked_run``'s statuses and the run-tree queries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow_helpers import client, sqlite_uri_in

from ms2l_ray.tracking import query
from ms2l_ray.tracking import tags as tag
from ms2l_ray.tracking.runs import RunLogger, start_run, tracked_run


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for the module (creating the SQLite schema takes seconds)."""
    return sqlite_uri_in(Path(tmp_path_factory.mktemp("tree")))


def _state(uri: str, run: RunLogger) -> tuple[str, dict[str, str]]:
    got = client(uri).get_run(run.run_id)
    return got.info.status, got.data.tags


def test_tracked_run_finishes_fails_kills_or_leaves_the_run(uri: str) -> None:
    ok = start_run(uri, "statuses", "ok")
    with tracked_run(ok) as yielded:
        assert yielded is ok
    assert _state(uri, ok)[0] == "FINISHED"

    failed = start_run(uri, "statuses", "failed")
    with pytest.raises(ValueError, match="boom"), tracked_run(failed, failure_tags={tag.OUTCOME: tag.OUTCOME_FAILED}):
        raise ValueError("boom")
    status, tags = _state(uri, failed)
    assert (status, tags[tag.OUTCOME]) == ("FAILED", "failed")

    interrupted = start_run(uri, "statuses", "interrupted")
    with pytest.raises(KeyboardInterrupt), tracked_run(interrupted, interrupted="KILLED"):
        raise KeyboardInterrupt
    assert _state(uri, interrupted)[0] == "KILLED"

    search = start_run(uri, "statuses", "search")  # failed="KILLED": --resume reopens it
    with pytest.raises(ValueError), tracked_run(search, failed="KILLED"):
        raise ValueError("x")
    assert _state(uri, search)[0] == "KILLED"

    trial = start_run(uri, "statuses", "trial")  # catch=Exception: an ended actor leaves the run to its closer
    with pytest.raises(KeyboardInterrupt), tracked_run(trial, catch=Exception,
                                                       failure_tags={tag.OUTCOME: tag.OUTCOME_FAILED}):
        raise KeyboardInterrupt
    status, tags = _state(uri, trial)
    assert (status, tag.OUTCOME in tags) == ("RUNNING", False)

    own = start_run(uri, "statuses", "own")  # a run the block ended keeps its status
    with tracked_run(own):
        own.end("FAILED")
    with pytest.raises(ValueError), tracked_run(own):
        raise ValueError("after the end")
    assert _state(uri, own)[0] == "FAILED"

    with pytest.raises(ValueError, match="untracked"), tracked_run(None) as nothing:
        assert nothing is None
        raise ValueError("untracked")


def test_resume_tags_and_reopens(uri: str) -> None:
    run = start_run(uri, "resume", "r")
    run.end("KILLED")
    run.resume()
    status, tags = _state(uri, run)
    assert (status, tags[tag.RESUMED], run.ended) == ("RUNNING", "true", False)


def test_queries_follow_the_tree(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = start_run(uri, "tree", "parent", tags={tag.KIND: tag.KIND_ABLATION})
    kids = []
    for i, kind in enumerate([tag.KIND_CELL, tag.KIND_PRETRAIN, tag.KIND_CELL]):
        kids.append(start_run(uri, "tree", f"kid{i}", parent,
                              {tag.KIND: kind, tag.ABLATION_RUN_ID: parent.run_id}))
        time.sleep(0.01)  # distinct start times: children come in start order
    grandchild = start_run(uri, "tree", "grandchild", kids[0], {tag.KIND: tag.KIND_PRETRAIN,
                                                                tag.ABLATION_RUN_ID: parent.run_id})
    kids[2].end("FINISHED")
    exp = query.get_run(uri, parent.run_id).info.experiment_id

    assert [r.info.run_name for r in query.children(uri, parent.run_id)] == ["kid0", "kid1", "kid2"]
    assert [r.info.run_name for r in query.children(uri, parent.run_id, exp)] == ["kid0", "kid1", "kid2"]
    assert [r.info.run_name for r in query.children_of_kind(uri, parent.run_id, tag.KIND_CELL)] == ["kid0", "kid2"]
    assert [r.info.run_name for r in query.children_of_kind(uri, parent.run_id, tag.KIND_CELL, "FINISHED")] == [
        "kid2"]
    assert sorted(r.info.run_name for r in query.ablation_runs(uri, parent.run_id)) == [
        "grandchild", "kid0", "kid1", "kid2"]
    assert [r.info.run_name for r in query.top_level_runs(uri, exp)] == ["parent"]
    assert query.experiment_name(uri, exp) == "tree"
    assert query.find_experiment(uri, "no such experiment") is None
    assert "tree" in query.experiment_names(uri)
    assert query.tag_filter(tag.PARENT_RUN, "abc") == "tags.mlflow.parentRunId = 'abc'"

    monkeypatch.setattr(query, "PAGE", 2)  # five runs over three pages: every page is read
    assert len(query.search_all(uri, [exp], "")) == 5
    assert query.children(uri, grandchild.run_id) == []
