"""Class names people know (``ms2l_ray.data.classes``): in the lists, in a prepared store, in ``data info``."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import SHARED_DATA

from ms2l_ray.data.classes import NTU60, NTU120, NW_UCLA, PKU_MMD, class_names
from ms2l_ray.data.prepare import info, prepare
from ms2l_ray.data.store import open_store

NTU_DIR = SHARED_DATA / "ntu-samples"


def test_lists_have_the_datasets_class_counts_and_known_anchors() -> None:
    assert (len(NTU60), len(NTU120), len(NW_UCLA), len(PKU_MMD)) == (60, 120, 10, 51)
    for names in (NTU120, NW_UCLA, PKU_MMD):
        assert len(set(names)) == len(names)  # no duplicate label
    assert (NTU120[0], NTU120[42], NTU120[59], NTU120[119]) == (
        "drink water", "falling", "walking apart from each other", "rock-paper-scissors")
    assert (NW_UCLA[0], NW_UCLA[-1], PKU_MMD[0], PKU_MMD[-1]) == ("pick up with one hand", "carry", "bow", "writing")
    assert class_names("ntu", 60) == list(NTU60) and class_names("stgcn", 120) == list(NTU120)
    assert class_names("nw-ucla", 10) == list(NW_UCLA) and class_names("pku-mmd", 51) == list(PKU_MMD)
    assert class_names("pku-mmd", 41) is None and class_names("other", 5) is None  # unknown: numbers, not guesses


@pytest.mark.skipif(not NTU_DIR.is_dir(), reason="needs the NTU samples in ../shared/data")
def test_prepared_store_records_names_and_data_info_shows_them(tmp_path: Path) -> None:
    out = tmp_path / "ntu.arrow"
    prepare("ntu", NTU_DIR, out)
    data = open_store(out)
    names = data.meta["class_names"]
    assert names == list(NTU120[: data.num_classes])
    text = info(out)
    present = sorted(set(data.labels.tolist()))
    assert all(NTU120[c][:26] in text for c in present)  # each present class by name, beside its count
