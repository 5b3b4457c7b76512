"""Where the tests find the repository's shipped files and the shared data sets: one definition each."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository root (tests/ is directly under it)
SHARED_DATA = REPO.parent / "shared" / "data"  # the real data sets, next to the checkout
EXPERIMENTS = REPO / "experiments"
ABLATIONS = REPO / "ablations"
SEARCH_SPACES = REPO / "search_spaces"
