"""Errors of a training job that cannot go on, kept torch-free so the CLI's error report imports no torch."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A training job that cannot go on (a runtime failure: exit code 1); the message says where and why."""

    def __reduce__(self) -> tuple[type, tuple[str]]:
        # One message argument: rebuilt as is when Ray ships the error from a worker to the driver.
        return (type(self), (str(self),))


class NonFiniteLossError(TrainingError):
    """A loss (or, after training, a weight) that is NaN or infinite (:mod:`ms2l_ray.train.guard`)."""
