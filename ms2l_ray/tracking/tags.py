"""The MLflow vocabulary: every tag key, ``kind`` value and metric name the platform writes or reads.

Why one module: the run tree is a contract between writers and readers that never meet in one process —
``ms2l rerun`` reads tags ``jobs.tracked`` wrote, ``ms2l report`` and a resumed ablation read what the
ablation runner wrote, a resumed search finds its trials by tags a trial actor set. A spelling kept in
two places drifts; here each name is defined once, and this module imports nothing (a search-space check
or a report may import it without pulling in MLflow, Ray or torch).

Run tree (``kind`` of each node, the tags that identify it)::

    experiment     KIND_EXPERIMENT (``ms2l run``)               → pretrain, evaluate children
    ablation       KIND_ABLATION, ABLATION, ABLATION_NAME       → cell-seed children
    ablation_cell  KIND_CELL, CELL, SEED, ABLATION_RUN_ID, …    → pretrain, evaluate children
    search         KIND_SEARCH, SEARCH, METRIC, MODE, …         → trial children
    trial          KIND_TRIAL, SEARCH, TRIAL_ID, OUTCOME        → pretrain, evaluate children
    pretrain       KIND_PRETRAIN, DATASET, SPLIT, SEED, CONFIG_HASH, HEALTH, …
    evaluate       KIND_EVALUATE, STRATEGY, LABEL_FRACTION, EVALUATION, ENCODER, PARENT_PRETRAIN_RUN, …
"""

from __future__ import annotations

from typing import Final

# --- MLflow's own keys ----------------------------------------------------------------------------------
PARENT_RUN: Final = "mlflow.parentRunId"  # what nests a run under another in the UI (and in our searches)
EXPERIMENT_KIND_TAG: Final = "mlflow.experimentKind"  # an experiment tag, not a run tag (tracking.runs)

# --- what a run is ----------------------------------------------------------------------------------------
KIND: Final = "kind"
KIND_PRETRAIN: Final = "pretrain"
KIND_EVALUATE: Final = "evaluate"
KIND_EXPERIMENT: Final = "experiment"  # the parent of one ``ms2l run`` pipeline
KIND_ABLATION: Final = "ablation"  # an ablation's parent run
KIND_CELL: Final = "ablation_cell"  # one cell × seed of an ablation
KIND_SEARCH: Final = "search"  # a search's parent run
KIND_TRIAL: Final = "trial"  # one search trial
JOB_KINDS: Final = (KIND_PRETRAIN, KIND_EVALUATE)  # the runs that train (``ms2l rerun`` re-runs only these)

# --- every job run (jobs.tracked.run_tags, tracking.runs.code_version) -----------------------------------
DATASET: Final = "dataset"
SPLIT: Final = "split"
SEED: Final = "seed"
CONFIG_HASH: Final = "config_hash"  # what a resumed ablation compares a finished cell-seed against
STRATEGY: Final = "strategy"  # evaluation runs only
LABEL_FRACTION: Final = "label_fraction"  # evaluation runs only
MS2L_VERSION: Final = "ms2l_version"
GIT_COMMIT: Final = "git_commit"  # ``ms2l rerun`` prints it beside the current commit
GIT_UNKNOWN: Final = "unknown"  # its value outside a git checkout
RESUMED: Final = "resumed"  # set to RESUMED_VALUE on a run a ``--resume`` reopened
RESUMED_VALUE: Final = "true"
RERUN_OF: Final = "rerun_of"  # the run id ``ms2l rerun`` ran again
HEALTH: Final = "health"  # pretrain runs: JSON list of pretext-task health notes (train.health)
PRECISION: Final = "precision"  # what ``precision: auto`` resolved to on the workers

# --- evaluation runs: where the encoder came from ---------------------------------------------------------
EVALUATION: Final = "evaluation"  # the evaluation's label (``linear``, ``semi_0.01`` …)
ENCODER: Final = "encoder"  # the encoder folder or URI the evaluation loaded
ENCODER_SOURCE: Final = "encoder_source"  # ``random`` for a baseline, else the URI given
ENCODER_RANDOM: Final = "random"
PARENT_PRETRAIN_RUN: Final = "parent_pretrain_run"  # the pretrain run whose encoder it used

# --- ablations (studies.ablation) -------------------------------------------------------------------------
ABLATION: Final = "ablation"  # the grid's name
ABLATION_NAME: Final = "ablation_name"  # the ablation's unique name (its ``--name``)
ABLATION_RUN_ID: Final = "ablation_run_id"  # on every run under an ablation: its parent run's id
CELL: Final = "cell"
BASELINE: Final = "baseline"  # ``random`` / ``supervised`` on a baseline cell's runs
REPORTED_AS: Final = "reported_as"  # a baseline's evaluation: the grid labels whose columns it fills

# --- searches (studies.search) ----------------------------------------------------------------------------
SEARCH: Final = "search"  # the search's name, on its parent and on every trial
SEARCH_SPACE: Final = "space"
METRIC: Final = "metric"  # the search's objective metric
MODE: Final = "mode"  # ``max`` / ``min``
PROXY: Final = "proxy"
SAMPLER: Final = "sampler"
SCHEDULER: Final = "scheduler"
OVERRIDES: Final = "overrides"
BEST_TRIAL_ID: Final = "best_trial_id"
CONFIRMED_BEST_TRIAL_ID: Final = "confirmed_best_trial_id"
PROXY_FIDELITY_WARNINGS: Final = "proxy_fidelity_warnings"
CONFIRM: Final = "confirm"  # 1 on a confirmation rerun of a search's top configurations
CONFIRM_OF: Final = "confirm_of"  # the trial id a confirmation rerun repeats
CONFIRM_RANK: Final = "confirm_rank"  # that trial's rank in the search
TRIAL_ID: Final = "trial_id"  # how a resumed search finds a trial's run again
OUTCOME: Final = "outcome"  # a trial's end, one of the OUTCOME_* values
OUTCOME_FINISHED: Final = "finished"
OUTCOME_EARLY_STOPPED: Final = "early_stopped"
OUTCOME_REJECTED: Final = "rejected"
OUTCOME_FAILED: Final = "failed"
OUTCOME_ORPHANED: Final = "orphaned"
OUTCOME_BUDGET_STOPPED: Final = "budget_stopped"  # running when the time budget ran out (--resume continues it)
ENDED_BY: Final = "ended_by"  # on a search or ablation parent whose budget ended it: "time_budget"
ENDED_BY_TIME_BUDGET: Final = "time_budget"
TIME_BUDGET: Final = "time_budget"  # the --time-budget as given, a param of the parent run
REJECTED_REASON: Final = "rejected_reason"

# --- metric names -----------------------------------------------------------------------------------------
VAL_METRICS: Final = ("val_top1", "val_top5")  # what a model is selected on
TEST_METRICS: Final = ("test_top1", "test_top5")  # reported, never selected on
EVAL_METRICS: Final = (*VAL_METRICS, *TEST_METRICS)  # an evaluation's headline numbers
TOP1_METRICS: Final = ("val_top1", "test_top1")  # an ablation table's default columns
PRETRAIN_LOSSES: Final = ("loss", "motion_loss", "jigsaw_loss", "contrastive_loss")  # logged as train_/val_<name>
EPOCH_TIME: Final = "epoch_time_s"  # per epoch: the training part of a job's wall time
OBJECTIVE: Final = "objective"  # a search trial's objective value
