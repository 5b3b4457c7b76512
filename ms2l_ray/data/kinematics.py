"""Forward kinematics for the built-in generator: rest pose, per-subject bodies, joint-angle DOFs, keyframed motions.

Why forward kinematics rather than noise on joint positions: MS²L's pretext tasks only teach something when
frames are coupled the way bodies are — rigid bones of constant length moving as chains — otherwise motion
prediction degenerates into smoothing noise. Poses are therefore joint-angle trajectories turned into positions
by rotating each bone vector and summing down the NTU bone tree (``NTU25.edges``) from the pelvis.

Body frame: ``y`` up, the person faces ``-z`` (towards a Kinect looking along ``+z``), so the person's left is
``-x``, as in Kinect camera space. The tree is re-rooted at the base of the spine (the pelvis) because
whole-body translation (sitting, approaching) happens there; ``NTU25.center`` stays the layout's centring joint.
Arrays are float32: positions are metres of order 1, and float32 halves the memory traffic of the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ms2l_ray.layouts import NTU25, JointLayout

J = NTU25.joints.index
ROOT = J("base_of_spine")
MIRROR_SIGN = np.array([-1.0, 1.0, 1.0], dtype=np.float32)  # x → -x: the body's sagittal plane is x = 0
MIRROR_PERM = NTU25.mirror_permutation()

# Rest pose of the template body (≈1.75 m, metres, body frame, pelvis at the origin, arms hanging): midline and
# left side only. The right side is the left side mirrored through NTU25.left_right, so every body is symmetric
# and the mirror image of a motion is a valid motion of the same body (the wave-left / wave-right twins).
# Proportions are rounded adult averages; the hand chain follows NTU's tree (hand → thumb → hand tip).
_REST_MIDLINE: dict[str, tuple[float, float, float]] = {
    "base_of_spine": (0.0, 0.0, 0.0), "middle_of_spine": (0.0, 0.28, 0.0), "spine_shoulder": (0.0, 0.50, 0.0),
    "neck": (0.0, 0.57, 0.0), "head": (0.0, 0.71, -0.02),
}
_REST_LEFT: dict[str, tuple[float, float, float]] = {
    "left_shoulder": (-0.17, 0.46, 0.0), "left_elbow": (-0.19, 0.19, 0.0), "left_wrist": (-0.20, -0.05, 0.0),
    "left_hand": (-0.20, -0.12, 0.0), "left_thumb": (-0.18, -0.14, -0.03), "left_hand_tip": (-0.20, -0.20, -0.01),
    "left_hip": (-0.09, -0.03, 0.0), "left_knee": (-0.10, -0.43, 0.0), "left_ankle": (-0.10, -0.83, 0.0),
    "left_foot": (-0.10, -0.87, -0.10),
}


def rest_pose() -> np.ndarray:
    """``[V, 3]`` rest joint positions of the template body."""
    pos = np.full((NTU25.num_joints, 3), np.nan)
    for name, xyz in {**_REST_MIDLINE, **_REST_LEFT}.items():
        pos[J(name)] = xyz
    for left, right in NTU25.left_right:
        pos[right] = pos[left] * MIRROR_SIGN
    assert not np.isnan(pos).any(), "rest template misses a joint"
    return pos


def kinematic_tree(layout: JointLayout = NTU25, root: int = ROOT) -> tuple[list[int], np.ndarray]:
    """Breadth-first joint order from ``root`` and each joint's parent (-1 at the root).

    The layout's edges point (child → parent) towards its own centre; kinematics needs them directed away from
    the pelvis, so the tree is re-rooted by a breadth-first walk over the undirected edges.
    """
    neighbours: list[list[int]] = [[] for _ in range(layout.num_joints)]
    for a, b in layout.edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent = np.full(layout.num_joints, -1, dtype=np.int64)
    order, seen = [root], {root}
    for j in order:  # the list grows while it is walked: breadth-first
        for k in neighbours[j]:
            if k not in seen:
                seen.add(k)
                parent[k] = j
                order.append(k)
    return order, parent


ORDER, PARENT = kinematic_tree()


@dataclass(frozen=True)
class Dof:
    """One rotational degree of freedom: the bone that ends at ``joint`` turns about its parent joint.

    ``axis`` 0 (x) swings the bone forward/backward, 2 (z) sideways; ``sign`` makes a positive angle mean the
    anatomical direction (flexion forward, abduction away from the midline) on both sides of the body.
    """

    name: str
    joint: int
    axis: int
    sign: float


def _limb_dofs(side: str, abduction_sign: float) -> tuple[Dof, ...]:
    s = side[0]
    return (
        Dof(f"{s}_sh_flex", J(f"{side}_elbow"), 0, 1.0), Dof(f"{s}_sh_abd", J(f"{side}_elbow"), 2, abduction_sign),
        Dof(f"{s}_elbow", J(f"{side}_wrist"), 0, 1.0),
        Dof(f"{s}_hip_flex", J(f"{side}_knee"), 0, 1.0), Dof(f"{s}_hip_abd", J(f"{side}_knee"), 2, abduction_sign),
        Dof(f"{s}_knee", J(f"{side}_ankle"), 0, -1.0),  # the shin folds backwards
    )


# Bones with two DOFs compose as R_x(flex) @ R_z(abd): abduct first, then swing the abducted bone forward.
ANGLE_DOFS: tuple[Dof, ...] = (
    Dof("lean", J("middle_of_spine"), 0, -1.0),  # whole trunk forward, legs stay
    Dof("chest", J("spine_shoulder"), 0, -1.0),  # upper trunk forward
    Dof("nod", J("head"), 0, -1.0),
    *_limb_dofs("left", -1.0),  # the left side is -x: abduction is a negative turn about z
    *_limb_dofs("right", 1.0),
)
TRANSLATION_DOFS = ("fwd", "rise")  # pelvis moves along the facing direction / upwards, metres of the template body
DOF_NAMES: tuple[str, ...] = TRANSLATION_DOFS + tuple(d.name for d in ANGLE_DOFS)
SEGMENTS: tuple[str, ...] = tuple(sorted({n.removeprefix("left_").removeprefix("right_") for n in NTU25.joints}))


Keys = tuple[tuple[float, float], ...]  # (phase in [0, 1], value) keyframes; degrees, or metres for fwd/rise


def keyframes(*flat: float) -> Keys:
    """``keyframes(0, 0, .5, 90, 1, 0)`` → ``((0, 0), (.5, 90), (1, 0))``: compact motion tables."""
    return tuple(zip(flat[::2], flat[1::2], strict=True))


def both_sides(**keys: Keys) -> dict[str, Keys]:
    """The same limb keyframes on both sides (``sh_flex=…`` → ``l_sh_flex``, ``r_sh_flex``)."""
    return {f"{side}_{dof}": v for side in "lr" for dof, v in keys.items()}


_HOLD = keyframes(0, 0, 0.2, 1, 0.8, 1, 1, 0)  # default oscillation envelope: on while the pose is held


@dataclass(frozen=True)
class Motion:
    """One person's part in an action: eased DOF keyframes plus envelope-gated oscillations.

    The oscillations are ``dof -> (amplitude, cycles)``, gated by the envelope ``env``. DOFs it does not name
    stay at 0 (the rest pose).
    """

    keys: Mapping[str, Keys]
    osc: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    env: Keys = _HOLD
    _table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    _columns: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tracks = [*self.keys.items(), ("env", self.env)]
        for dof, keys in tracks:
            phases = [p for p, _ in keys]
            if dof != "env" and dof not in DOF_NAMES:
                raise ValueError(f"unknown DOF {dof!r}; known: {DOF_NAMES}")
            if phases[0] != 0 or phases[-1] != 1 or any(b <= a for a, b in zip(phases, phases[1:], strict=False)):
                raise ValueError(f"keyframes of {dof!r} must rise strictly from phase 0 to 1, got {phases}")
        unknown = sorted(set(self.osc) - set(DOF_NAMES))
        if unknown:
            raise ValueError(f"unknown oscillating DOFs {unknown}; known: {DOF_NAMES}")
        # All tracks in one sorted table, track n's phases shifted into the band [2n, 2n + 1], so that a single
        # searchsorted evaluates every track at once (see _ease).
        sizes = np.array([len(keys) for _, keys in tracks])
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # [T] index of each track's first key
        kp = np.concatenate([[p + 2.0 * n for p, _ in keys] for n, (_, keys) in enumerate(tracks)])
        kv = np.concatenate([[v for _, v in keys] for _, keys in tracks]).astype(np.float64)
        object.__setattr__(self, "_table", (kp, kv, first, first + sizes - 2))  # frozen: set once, here
        object.__setattr__(self, "_columns", [DOF_NAMES.index(d) for d in self.keys])

    def _ease(self, u: np.ndarray) -> np.ndarray:
        """``[R, T]`` smoothstep interpolation of every track at phases ``u [R]`` (C¹, flat at every key)."""
        kp, kv, lo, hi = self._table
        q = u[:, None] + 2.0 * np.arange(len(lo))  # [R, T] each phase moved into each track's band
        i = np.clip(np.searchsorted(kp, q, side="right") - 1, lo, hi)  # [R, T] key that starts the segment
        f = np.clip((q - kp[i]) / (kp[i + 1] - kp[i]), 0.0, 1.0)
        return kv[i] + (kv[i + 1] - kv[i]) * f * f * (3.0 - 2.0 * f)  # type: ignore[no-any-return]

    def evaluate(self, u: np.ndarray, speed: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """``[R, len(DOF_NAMES)]`` values (degrees / metres) at phases ``u [R]``.

        ``speed [R]`` scales the oscillations' cycle counts and ``phase [R]`` (radians) offsets them.
        """
        tracks = self._ease(u)  # [R, T]: the named DOFs, then the envelope
        vals = np.zeros((len(u), len(DOF_NAMES)))
        vals[:, self._columns] = tracks[:, :-1]
        for dof, (amplitude, cycles) in self.osc.items():
            vals[:, DOF_NAMES.index(dof)] += amplitude * tracks[:, -1] * np.sin(2 * np.pi * cycles * speed * u + phase)
        return vals


@dataclass(frozen=True)
class Bodies:
    """Per-subject skeletons, row = subject id (row 0 is the template body).

    Attributes:
        bones: ``[S+1, V, 3]`` rest vector from each joint's kinematic parent (zero at the root).
        scale: ``[S+1]`` overall size (1 = template); root translations scale with it.
        hip_height: ``[S+1]`` pelvis height above the floor at rest.
    """

    bones: np.ndarray
    scale: np.ndarray
    hip_height: np.ndarray


def subject_bodies(num_subjects: int, body_seed: int = 0) -> Bodies:
    """Bodies for subject ids ``1..num_subjects``, each a pure function of ``(body_seed, id)``.

    Seeding per id keeps performer ``P007`` the same person in every generated dataset, whatever its seed or
    size — like a real performer across NTU's setups. Size varies ±6 % (1 s.d.); each segment type (upper arm,
    shin, shoulder width, …) varies ±7 % on top, identically on the left and right.
    """
    rest = rest_pose()
    base = np.where(PARENT[:, None] >= 0, rest - rest[np.maximum(PARENT, 0)], 0.0)  # [V, 3]
    segment = np.array([SEGMENTS.index(n.removeprefix("left_").removeprefix("right_")) for n in NTU25.joints])
    scale = np.ones(num_subjects + 1)
    factor = np.ones((num_subjects + 1, len(SEGMENTS)))
    for sid in range(1, num_subjects + 1):  # a loop over subjects (tens), not over samples
        rng = np.random.default_rng([body_seed, sid])
        scale[sid] = np.clip(1.0 + 0.06 * rng.standard_normal(), 0.85, 1.15)
        factor[sid] = np.clip(np.exp(0.07 * rng.standard_normal(len(SEGMENTS))), 0.8, 1.25)
    bones = base[None] * (scale[:, None] * factor[:, segment])[..., None]  # [S+1, V, 3]
    pos = np.zeros_like(bones)
    for j in ORDER[1:]:
        pos[:, j] = pos[:, PARENT[j]] + bones[:, j]
    return Bodies(bones=bones.astype(np.float32), scale=scale.astype(np.float32),
                  hip_height=(-pos[:, :, 1].min(axis=1)).astype(np.float32))


def axis_rotation(angle: np.ndarray, axis: int) -> np.ndarray:
    """``[...]`` radians → ``[..., 3, 3]`` right-handed rotations about coordinate ``axis`` (0 x, 1 y, 2 z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = (axis + 1) % 3, (axis + 2) % 3
    rot = np.zeros((*np.shape(angle), 3, 3), dtype=np.result_type(c, np.float32))
    rot[..., axis, axis] = 1.0
    rot[..., i, i] = c
    rot[..., j, j] = c
    rot[..., i, j] = -s
    rot[..., j, i] = s
    return rot


_BONE_DOFS: dict[int, list[int]] = {}  # joint → indices of the DOFs that turn the bone ending there, in order
for _d, _dof in enumerate(ANGLE_DOFS):
    _BONE_DOFS.setdefault(_dof.joint, []).append(_d)
_SIGNS = np.array([d.sign for d in ANGLE_DOFS])


def _swap_side(name: str) -> str:
    side = {"l_": "r_", "r_": "l_"}.get(name[:2])
    return side + name[2:] if side else name


# DOF permutation that mirrors a motion: swap the sides' columns. Exact for these symmetric bodies because the
# trunk only turns about x (which commutes with x → -x) and abduction signs already point away from the midline.
MIRROR_DOFS: list[int] = [DOF_NAMES.index(_swap_side(n)) for n in DOF_NAMES]


def forward_kinematics(angles: np.ndarray, bones: np.ndarray, root_rot: np.ndarray, root_pos: np.ndarray) -> np.ndarray:
    """Joint positions from joint angles, vectorised over frames.

    Arrays are coordinate-major (frames last) so that every product below is a contiguous vector operation;
    a right-multiplication by a rotation about a coordinate axis only mixes two columns of the bone's frame,
    so it costs 6 vector operations instead of a 3×3 matrix product. Bones without DOFs (hands, feet,
    shoulders, hips) share their parent's frame.

    Args:
        angles: ``[R, len(ANGLE_DOFS)]`` radians, in ``ANGLE_DOFS`` order.
        bones: ``[V, 3, R]`` rest bone vectors (``Bodies.bones`` gathered per frame, coordinate-major).
        root_rot: ``[3, 3, R]`` rotation from the body frame to the output frame (row, column, frame).
        root_pos: ``[3, R]`` pelvis position in the output frame.

    Returns:
        ``[V, 3, R]`` float32 positions in the output frame.
    """
    signed = (angles.T * _SIGNS[:, None]).astype(np.float32)  # [D, R]; float32 trig is many times faster
    cos, sin = np.cos(signed), np.sin(signed)  # [D, R] each
    pos = np.empty(bones.shape, dtype=np.float32)  # [V, 3, R]
    frame: dict[int, np.ndarray] = {}  # joint → [3, 3, R] world frame of the bone ending at that joint
    for j in ORDER:
        p = int(PARENT[j])
        if p < 0:
            pos[j], frame[j] = root_pos, root_rot.astype(np.float32)
            continue
        g = frame[p]
        if j in _BONE_DOFS:
            g = g.copy()
            for d in _BONE_DOFS[j]:
                a = ANGLE_DOFS[d].axis
                i, k = (a + 1) % 3, (a + 2) % 3
                gi, gk = g[:, i] * cos[d] + g[:, k] * sin[d], g[:, k] * cos[d] - g[:, i] * sin[d]  # [3, R] each
                g[:, i], g[:, k] = gi, gk
        frame[j] = g
        pos[j] = pos[p] + np.einsum("ijr,jr->ir", g, bones[j])  # [3, R]: the bone turned into the world frame
    return pos


def mirror(pos: np.ndarray) -> np.ndarray:
    """Left/right mirror image of body-frame positions ``[..., V, 3]``: swap sides and negate x."""
    return pos[..., MIRROR_PERM, :] * MIRROR_SIGN
