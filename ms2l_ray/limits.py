"""Documented ceilings for every size and number read from a file or a config, checked before allocation.

Why: a few bytes of a hostile or damaged input can *describe* gigabytes (a zip member of zeros, a pickled
array shape, a YAML alias tree, a config's ``hidden_size``). Every reader checks what a file declares
against the data actually present and against these ceilings *before* it allocates, and refuses with an
error naming the file, the field and the value. The ceilings are far above every dataset and model this
project knows (NTU-120, Kinetics, NW-UCLA, PKU-MMD; the paper's 600-wide BiGRU), so no real input meets them.

==========================  ==============  ===========================================================
ceiling                     value           what it bounds
==========================  ==============  ===========================================================
``MAX_PERSONS``             16              persons ``M`` per frame (datasets: 1 or 2)
``MAX_JOINTS``              256             joints ``V`` per person (layouts: 18 to 25)
``MAX_FEATURES``            12288           ``F = M·V·3`` of a store, a dense file or an encoder
``MAX_CLASSES``             100000          action classes (NTU-120: 120, Kinetics-700: 700)
``MAX_SEQUENCE_FRAMES``     100000          frames of one NTU file or one row of a dense array (~55 min)
``MAX_ABS_COORD``           1e6             ``|coordinate|`` of a raw skeleton (metres, pixels)
``MAX_CHUNK_BYTES``         64 MiB          bytes of one streamed chunk of a dense array
``MAX_PICKLE_ARRAY_BYTES``  8 × file size   bytes of one array a label pickle rebuilds (+ 1 MiB)
``MAX_YAML_BYTES``          1 MiB           size of one YAML file or ``--set`` value
``MAX_YAML_NODES``          100000          YAML nodes after alias expansion
==========================  ==============  ===========================================================

Why ``MAX_ABS_COORD``: beyond it a number is not a position any sensor reports, and staying below it
keeps centring, rotation and scaling in float32 far from overflow (float32 ends at 3.4e38; ``1e39`` in a
JSON file would become ``inf``). Config ceilings (model widths, batch size, ...) live with the config
fields (:data:`ms2l_ray.config.INT_CEILINGS`).
"""

from __future__ import annotations

import math
from typing import Any

MAX_PERSONS = 16
MAX_JOINTS = 256
MAX_FEATURES = MAX_PERSONS * MAX_JOINTS * 3
MAX_CLASSES = 100_000
MAX_SEQUENCE_FRAMES = 100_000
MAX_ABS_COORD = 1e6
MAX_CHUNK_BYTES = 64 << 20
PICKLE_ARRAY_FACTOR = 8  # an object array holds one 8-byte pointer per element; each element is in the file
PICKLE_ARRAY_SLACK = 1 << 20
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def pickle_array_ceiling(file_size: int) -> int:
    """Bytes one array of a label pickle of ``file_size`` bytes may need: its data must be in the file."""
    return PICKLE_ARRAY_FACTOR * file_size + PICKLE_ARRAY_SLACK


def shape_elements(shape: Any) -> int | None:
    """The element count of a declared shape (an int or a tuple of non-negative ints), else ``None``."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple | list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return None
    if any(d < 0 for d in dims):
        return None
    return math.prod(dims)


def chunk_rows(row_bytes: int, wanted: int) -> int:
    """Rows per streamed chunk: ``wanted``, fewer when that would exceed :data:`MAX_CHUNK_BYTES` (at least 1)."""
    return max(1, min(wanted, MAX_CHUNK_BYTES // max(row_bytes, 1)))
