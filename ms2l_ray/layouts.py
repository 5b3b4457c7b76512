"""Joint layouts as data: names, 0-based bone edges, centre joint and left/right pairs.

Why data and not code: the same skeleton is read by augmentations (mirroring swaps left/right joints),
preprocessing (centring, view alignment) and the synthetic generator. Keeping one cited table per
layout avoids the silently differing edge lists seen across this field's repositories.
Sources: the NTU RGB+D and NW-UCLA joint tables in ``shared/REFERENCE.md`` §3 (1-based there, 0-based here).
"""

from __future__ import annotations

from dataclasses import dataclass


class LayoutError(ValueError):
    """An unknown layout name or an inconsistent layout table."""


@dataclass(frozen=True)
class JointLayout:
    """One skeleton layout.

    Attributes:
        name: registry key (``"ntu25"``, ``"ucla20"``).
        joints: joint names, index = 0-based joint id.
        edges: 0-based ``(child, parent)`` bone pairs; a tree over all joints.
        center: 0-based centre joint used for centring.
        left_right: 0-based ``(left, right)`` joint pairs, swapped by a mirror.
        hips: 0-based ``(left_hip, right_hip)``, the axis that view alignment maps onto x.
        spine: 0-based ``(lower, upper)`` spine joints, the axis that view alignment maps onto y.
    """

    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    center: int
    left_right: tuple[tuple[int, int], ...]
    hips: tuple[int, int]
    spine: tuple[int, int]

    @property
    def num_joints(self) -> int:
        """Joints per person, ``V`` of the ``[N, T, M·V·C]`` contract."""
        return len(self.joints)

    def mirror_permutation(self) -> list[int]:
        """Joint index permutation that swaps every left/right pair (identity elsewhere)."""
        perm = list(range(self.num_joints))
        for left, right in self.left_right:
            perm[left], perm[right] = right, left
        return perm

    def validate(self) -> None:
        """Check that the table is self-consistent (indices in range, edges form a tree)."""
        v = self.num_joints
        ids = [i for e in self.edges for i in e] + [self.center, *self.hips, *self.spine]
        ids += [i for p in self.left_right for i in p]
        bad = [i for i in ids if not 0 <= i < v]
        if bad:
            raise LayoutError(f"layout {self.name!r}: joint indices out of range 0..{v - 1}: {bad}")
        if len(self.edges) != v - 1:
            raise LayoutError(f"layout {self.name!r}: a tree over {v} joints needs {v - 1} edges, "
                              f"got {len(self.edges)}")
        parent = list(range(v))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b in self.edges:
            ra, rb = find(a), find(b)
            if ra == rb:
                raise LayoutError(f"layout {self.name!r}: edge ({a}, {b}) closes a cycle")
            parent[ra] = rb


def _edges(one_based: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in one_based)


NTU25 = JointLayout(
    name="ntu25",
    joints=(
        "base_of_spine", "middle_of_spine", "neck", "head",
        "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot",
        "right_hip", "right_knee", "right_ankle", "right_foot",
        "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
    ),
    # REFERENCE.md §3, 1-based child→parent.
    edges=_edges([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
        (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23),
        (23, 8), (24, 25), (25, 12),
    ]),
    center=20,  # joint 21 (spine at shoulder centre), as REFERENCE.md names it
    left_right=((4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (21, 23), (22, 24)),
    hips=(12, 16),
    spine=(0, 20),
)

UCLA20 = JointLayout(
    name="ucla20",
    joints=(
        "hip_center", "spine", "shoulder_center", "head",
        "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot",
        "right_hip", "right_knee", "right_ankle", "right_foot",
    ),
    edges=_edges([
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11),
        (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    ]),
    center=1,  # joint 2 (spine)
    left_right=((4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19)),
    hips=(12, 16),
    spine=(0, 2),
)

LAYOUTS: dict[str, JointLayout] = {NTU25.name: NTU25, UCLA20.name: UCLA20}


def get_layout(name: str) -> JointLayout:
    """Look a layout up by name; an unknown name lists the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise LayoutError(f"unknown joint layout {name!r}; known layouts: {sorted(LAYOUTS)}") from None


def layout_for_joints(num_joints: int) -> JointLayout:
    """The layout whose joint count matches (25 → NTU, 20 → NW-UCLA)."""
    for layout in LAYOUTS.values():
        if layout.num_joints == num_joints:
            return layout
    raise LayoutError(f"no joint layout with {num_joints} joints; known: "
                      f"{ {k: v.num_joints for k, v in LAYOUTS.items()} }")
