"""Hyperparameter search: Ray Tune + Optuna over the real MS²L objective, tracked in MLflow.

- :mod:`~ms2l_ray.studies.search.space`: search spaces as validated YAML data (``search_spaces/*.yaml``).
- :mod:`~ms2l_ray.studies.search.params`: one searched parameter — distribution, condition, check against the config.
- :mod:`~ms2l_ray.studies.search.sampling`: Optuna define-by-run sampling, ASHA, and the one-metric objective trick.
- :mod:`~ms2l_ray.studies.search.trial`: one trial — pretrain, then evaluate — as a Tune function trainable.
- :mod:`~ms2l_ray.studies.search.runs`: the MLflow tree (search → trials → jobs) and closing runs of cut trials.
- :mod:`~ms2l_ray.studies.search.tuner`: the driver (``Tuner``, resources, resume).
- :mod:`~ms2l_ray.studies.search.summary`, :mod:`~ms2l_ray.studies.search.importance`: tables, best config, importance.

Only :mod:`space` is imported here, so validating a space needs neither Ray Tune nor Optuna.
"""

from ms2l_ray.studies.search.space import SearchSpace, load_space

__all__ = ["SearchSpace", "load_space"]
