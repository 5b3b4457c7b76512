"""Errors no retry can fix go from worker to driver as JSON, same type and message (``ms2l_ray.jobs.fatal``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ms2l_ray.config import ConfigError
from ms2l_ray.data.errors import DataFormatError
from ms2l_ray.jobs.fatal import FATAL_FILE, is_fatal, raise_if_fatal, write_fatal
from ms2l_ray.model.artifact import EncoderFileError
from ms2l_ray.train.errors import NonFiniteLossError


@pytest.mark.parametrize(("exc", "raised"), [
    (DataFormatError("/d/x.arrow", "arrow ipc", "b'nope'", "not a store", line=3), DataFormatError),
    (ConfigError("invalid overrides (seed=x): seed: expected int"), ConfigError),
    (NonFiniteLossError("pretrain: loss is nan at epoch 1 step 2"), NonFiniteLossError),
    (EncoderFileError("/e/encoder.safetensors", "truncated"), DataFormatError),
])
def test_a_recorded_error_is_raised_again_with_its_message(tmp_path: Path, exc: Exception,
                                                           raised: type[Exception]) -> None:
    assert is_fatal(exc)
    raise_if_fatal(tmp_path)  # nothing recorded: no error
    write_fatal(tmp_path, exc)
    with pytest.raises(raised) as err:
        raise_if_fatal(tmp_path)
    assert type(err.value) is raised and str(err.value) == str(exc)
    assert (tmp_path / FATAL_FILE).read_text().startswith('{"type": "')


def test_other_errors_are_left_to_ray_retries() -> None:
    assert [is_fatal(e) for e in (RuntimeError("worker lost"), OSError("disk"), KeyError("x"))] == [False] * 3
