"""The built-in procedural dataset (the "embedded default"): NTU-layout skeleton actions from a seed.

Why procedural: every command needs a dataset that exists without downloads and is a pure function of a seed,
yet MS²L's three pretext tasks (REFERENCE.md §1) must stay non-trivial on it:

- motion prediction needs articulated, smooth motion → joint-angle keyframes through forward kinematics over
  the NTU bone tree (:mod:`ms2l_ray.data.kinematics`), rigid per-subject bones;
- the temporal jigsaw needs classes in which order matters → time-reversed twins (sit down / stand up, raise /
  lower arm) that share every pose and the mean pose and differ only in order;
- contrastive learning and linear evaluation need nuisances to become invariant to → per-subject bodies, NTU's
  three camera angles (-45°, 0°, +45°) with jitter, camera position, speed, amplitude, posture, idle sway,
  length, sensor noise and Kinect-like dropped joints; mirror twins (wave / kick, left vs right) differ only in
  the side; interaction classes (handshake, push, hug) add a second person.

Layout and naming follow NTU RGB+D (REFERENCE.md §3): ``M = 2`` persons with the second all zeros in one-person
classes, 25 joints, names ``SsssCcccPpppRrrrAaaa``; features are flattened in the contract's (M, V, C) order.
Lengths come from one class-independent distribution, so length says nothing about the class.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ms2l_ray.data import kinematics as kin
from ms2l_ray.data.container import SkeletonSet
from ms2l_ray.data.kinematics import Motion
from ms2l_ray.layouts import NTU25

_k, _both = kin.keyframes, kin.both_sides  # short names for the catalogue below


@dataclass(frozen=True)
class Action:
    """One class of the synthetic set.

    ``reverse`` plays the actor's motion backwards in phase (a time-order twin); ``mirror`` swaps the body's
    left and right (a side twin); ``partner`` makes it a two-person class, the persons facing each other
    ``distance`` metres apart (pelvis to pelvis) at the start.
    """

    name: str
    actor: Motion
    partner: Motion | None = None
    distance: float = 0.0
    reverse: bool = False
    mirror: bool = False


_RAISE = Motion({"r_sh_abd": _k(0, 0, .15, 0, .7, 165, 1, 165), "r_sh_flex": _k(0, 0, .15, 0, .45, 25, .7, 5, 1, 5),
                 "r_elbow": _k(0, 5, .45, 30, .7, 5, 1, 5)})
_SIT = Motion({"lean": _k(0, 0, .15, 0, .5, 35, .85, 15, 1, 15), "rise": _k(0, 0, .15, 0, .85, -.37, 1, -.37),
               "fwd": _k(0, 0, .15, 0, .85, -.38, 1, -.38),  # the pelvis moves back by a thigh: feet stay put
               **_both(hip_flex=_k(0, 0, .15, 0, .85, 90, 1, 90), knee=_k(0, 0, .15, 0, .85, 90, 1, 90),
                       sh_flex=_k(0, 0, .5, 35, .85, 10, 1, 10))})
_WAVE = Motion({"r_sh_flex": _k(0, 0, .2, 85, .8, 85, 1, 0), "r_sh_abd": _k(0, 0, .2, 20, .8, 20, 1, 0),
                "r_elbow": _k(0, 5, .2, 95, .8, 95, 1, 5)}, osc={"r_sh_abd": (25.0, 3.0)})
_KICK = Motion({"r_hip_flex": _k(0, 0, .25, 0, .4, 35, .55, 85, .7, 25, .85, 0, 1, 0),
                "r_knee": _k(0, 0, .25, 0, .4, 85, .55, 5, .7, 60, .85, 0, 1, 0),
                "lean": _k(0, 0, .4, 0, .55, -12, .85, 0, 1, 0), **_both(sh_abd=_k(0, 0, .4, 25, .85, 0, 1, 0))})
_BOW = Motion({"lean": _k(0, 0, .2, 0, .45, 45, .6, 45, .85, 0, 1, 0),
               "chest": _k(0, 0, .2, 0, .45, 15, .6, 15, .85, 0, 1, 0),
               "nod": _k(0, 0, .3, 0, .5, 20, .6, 20, .8, 0, 1, 0),
               **_both(sh_flex=_k(0, 0, .45, 20, .6, 20, .85, 0, 1, 0))})
_SHAKE = Motion({"r_sh_flex": _k(0, 0, .25, 0, .45, 55, .75, 55, .95, 0, 1, 0),
                 "r_sh_abd": _k(0, 0, .45, -15, .75, -15, .95, 0, 1, 0),  # turned in, towards the partner's hand
                 "r_elbow": _k(0, 5, .45, 35, .75, 35, .95, 5, 1, 5)},
                osc={"r_elbow": (10.0, 3.0)}, env=_k(0, 0, .45, 0, .5, 1, .7, 1, .75, 0, 1, 0))
_PUSH = Motion({**_both(sh_flex=_k(0, 0, .2, 0, .4, 85, .6, 85, .85, 0, 1, 0),
                        elbow=_k(0, 5, .35, 100, .5, 10, .65, 10, .85, 5, 1, 5)),
                "fwd": _k(0, 0, .35, 0, .55, .25, 1, .25), "lean": _k(0, 0, .3, 0, .5, 15, .85, 5, 1, 5)})
_PUSHED = Motion({"fwd": _k(0, 0, .45, 0, .7, -.45, 1, -.45), "lean": _k(0, 0, .45, 0, .55, -20, .8, 0, 1, 0),
                  **_both(sh_abd=_k(0, 0, .45, 0, .6, 40, .9, 10, 1, 10), elbow=_k(0, 5, .5, 40, 1, 15))})
_HUG = Motion({"fwd": _k(0, 0, .1, 0, .5, .5, 1, .5),
               **_both(sh_flex=_k(0, 0, .3, 20, .6, 85, 1, 85), sh_abd=_k(0, 0, .4, 45, .7, -5, 1, -5),
                       elbow=_k(0, 5, .5, 40, .75, 80, 1, 80))})
_CLAP = Motion(_both(sh_flex=_k(0, 0, .2, 75, .8, 75, 1, 0), sh_abd=_k(0, 0, .2, 15, .8, 15, 1, 0),
                     elbow=_k(0, 5, .2, 30, .8, 30, 1, 5)), osc={"l_sh_abd": (20.0, 4.0), "r_sh_abd": (20.0, 4.0)})
_TOUCH_HEAD = Motion({"r_sh_flex": _k(0, 0, .2, 0, .5, 110, .75, 110, 1, 0),
                      "r_sh_abd": _k(0, 0, .5, 50, .75, 50, 1, 0),
                      "r_elbow": _k(0, 5, .2, 20, .5, 140, .75, 140, 1, 5), "nod": _k(0, 0, .5, 10, .75, 10, 1, 0)})
_JUMP = Motion({"rise": _k(0, 0, .25, 0, .4, -.15, .5, .2, .6, -.15, .8, 0, 1, 0),
                "lean": _k(0, 0, .4, 20, .5, 0, .6, 20, .8, 0, 1, 0),
                **_both(hip_flex=_k(0, 0, .25, 0, .4, 50, .5, 5, .6, 50, .8, 0, 1, 0),
                        knee=_k(0, 0, .25, 0, .4, 80, .5, 5, .6, 80, .8, 0, 1, 0),
                        sh_flex=_k(0, 0, .4, -30, .5, 150, .6, 20, 1, 0))})

# The first 12 are the default classes: two time-order twins, two side twins, one solo and three two-person
# classes (last, as in NTU, where actions 50–60 are the interactions); the rest are opt-in via num_classes.
ACTIONS: tuple[Action, ...] = (
    Action("raise_right_arm", _RAISE), Action("lower_right_arm", _RAISE, reverse=True),
    Action("sit_down", _SIT), Action("stand_up", _SIT, reverse=True),
    Action("wave_right_hand", _WAVE), Action("wave_left_hand", _WAVE, mirror=True),
    Action("kick_right", _KICK), Action("kick_left", _KICK, mirror=True),
    Action("bow", _BOW),
    Action("handshake", _SHAKE, _SHAKE, 0.95), Action("push", _PUSH, _PUSHED, 0.75), Action("hug", _HUG, _HUG, 1.7),
    Action("clap", _CLAP), Action("touch_head", _TOUCH_HEAD), Action("jump_up", _JUMP),
)
ALL_CLASS_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)
CLASS_NAMES: tuple[str, ...] = ALL_CLASS_NAMES[:12]

_COL = {name: i for i, name in enumerate(kin.DOF_NAMES)}  # DOF name → column of a DOF array
_ANGLES = slice(len(kin.TRANSLATION_DOFS), None)  # angle columns of a DOF array
_LOG_LENGTH_STD = 0.35  # lognormal length spread: median 80 → 5–95 % ≈ 45–142 frames, NTU-like
_CHUNK = 64  # sequences rendered together, so temporaries stay in cache; fixed, so the output never depends on it


@dataclass(frozen=True)
class SyntheticSpec:
    """Generator parameters (everything but the size and the seed); ``generate`` records them in ``meta``."""

    num_classes: int = 12  # the first num_classes of ALL_CLASS_NAMES (12 = CLASS_NAMES)
    max_frames: int = 300  # longest sequence, NTU's max_frame (REFERENCE.md §1)
    min_frames: int = 24  # shortest sequence
    median_frames: int = 80  # median of the lognormal length distribution (NTU's are mostly 40–150)
    num_subjects: int = 40  # performers P001..; NTU-60 has 40, so its cross-subject split applies
    num_views: int = 3  # cameras C001..; spread evenly over -45°..+45° like NTU's three Kinects
    noise_std: float = 0.01  # Gaussian sensor noise, metres per coordinate (Kinect v2 jitter is of this order)
    drop_prob: float = 0.002  # per joint and frame: a dropped joint reads (0, 0, 0), as Kinect dropouts do
    variation: float = 1.0  # scales every per-sample nuisance draw; 0 gives canonical, exactly repeatable motion
    body_seed: int = 0  # subject bodies depend on (body_seed, subject id) only, not on the dataset seed

    def __post_init__(self) -> None:
        checks = [
            (2 <= self.num_classes <= len(ACTIONS), "num_classes", f"must be in 2..{len(ACTIONS)}"),
            (1 <= self.min_frames <= self.max_frames, "min_frames", f"must be in 1..max_frames={self.max_frames}"),
            (self.median_frames >= 1, "median_frames", "must be >= 1"),
            (self.num_subjects >= 1, "num_subjects", "must be >= 1"),
            (self.num_views >= 1, "num_views", "must be >= 1"),
            (self.noise_std >= 0, "noise_std", "must be >= 0"),
            (0 <= self.drop_prob < 1, "drop_prob", "must be in [0, 1)"),
            (self.variation >= 0, "variation", "must be >= 0"),
        ]
        bad = [f"{key}={getattr(self, key)!r} {why}" for ok, key, why in checks if not ok]
        if bad:
            raise ValueError("invalid synthetic dataset parameters: " + "; ".join(bad))

    def view_angles(self) -> np.ndarray:
        """``[num_views]`` camera yaw in degrees, evenly over -45°..+45° (0° for a single camera)."""
        return np.linspace(-45.0, 45.0, self.num_views) if self.num_views > 1 else np.zeros(1)


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """``[65536]`` float32 standard-normal quantiles at the midpoints of 65536 equal-probability bins."""
    p = (torch.arange(65536, dtype=torch.float64) + 0.5) / 65536
    return torch.special.ndtri(p).to(torch.float32).numpy()


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal float32 noise by inverse-CDF lookup of 16-bit uniform draws.

    Why not ``rng.standard_normal``: sensor noise is the largest random draw of the generator (one value per
    coordinate) and the lookup is ~3x faster. The result is the normal distribution quantised to 65536
    equal-probability levels (tails cut at 4.3 sigma), far finer than the sensor noise it models.
    """
    return _normal_quantiles()[rng.integers(0, 65536, shape, dtype=np.uint16)]  # type: ignore[no-any-return]


def _draw_nuisance(rng: np.random.Generator, n: int, spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Per-sample nuisance parameters, all scaled by ``spec.variation`` (0 → canonical motion)."""
    v, d = spec.variation, len(kin.DOF_NAMES)
    posture = np.where(np.isin(kin.DOF_NAMES, kin.TRANSLATION_DOFS), 0.02, 4.0)  # [D] metres / degrees
    return {
        "start": v * rng.uniform(0.0, 0.2, n),  # idle fraction before the action starts …
        "end": 1.0 - v * rng.uniform(0.0, 0.2, n),  # … and after it ends
        "gamma": np.exp(v * 0.25 * rng.standard_normal(n)),  # time warp: early or late emphasis
        "speed": np.exp(v * 0.2 * rng.standard_normal(n)),  # oscillation frequency factor
        "osc_phase": v * rng.uniform(0.0, 2 * np.pi, n),
        "amp": np.exp(v * 0.15 * rng.standard_normal((2, n, d))),  # per person, sample and DOF
        "posture": v * posture * rng.standard_normal((2, n, d)),
        "sway_amp": v * rng.uniform(0.0, 3.0, n),  # degrees of idle trunk sway …
        "sway_period": rng.uniform(45.0, 150.0, n),  # … with a period in frames (1.5–5 s at 30 fps)
        "sway_phase": rng.uniform(0.0, 2 * np.pi, n),
        "facing": v * 10.0 * rng.standard_normal((2, n)),  # degrees off the nominal facing direction
        "distance": v * 0.06 * rng.standard_normal(n),  # metres added to a two-person class's distance
        "view_jitter": v * 5.0 * rng.standard_normal(n),  # degrees about the vertical axis
        "pitch": v * 3.0 * rng.standard_normal(n),  # degrees of camera tilt
        "camera": np.stack([v * 0.25 * rng.standard_normal(n), 1.0 + v * 0.1 * rng.standard_normal(n),
                            -(3.0 + v * rng.uniform(-0.6, 0.6, n))], axis=1),  # [N, 3] position: x, height, -depth
    }


def _scene(labels: np.ndarray, views: np.ndarray, draws: dict[str, np.ndarray], spec: SyntheticSpec,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Per person and sample, the rigid map body frame → camera frame.

    ``rot [2, 3, 3, N]``, ``shift [2, 3, N]``, coordinate-major, as
    :func:`~ms2l_ray.data.kinematics.forward_kinematics` takes them.

    Persons face the camera (one-person classes) or each other across the x axis (two-person classes); the scene
    turns about the vertical axis by the camera's angle plus jitter, then is seen from the camera's position:
    ``p_cam = P (Y (F p + place) - camera)`` with facing ``F``, view yaw ``Y`` and pitch ``P``.
    """
    two = np.array([a.partner is not None for a in ACTIONS])[labels]
    half = np.where(two, np.array([a.distance for a in ACTIONS])[labels] + draws["distance"], 0.0) / 2  # [N]
    facing = np.stack([np.where(two, -90.0, 0.0), np.where(two, 90.0, 0.0)]) + draws["facing"]  # [2, N]
    place = np.zeros((2, len(labels), 3))
    place[0, :, 0], place[1, :, 0] = -half, half
    yaw = kin.axis_rotation(np.radians(spec.view_angles()[views - 1] + draws["view_jitter"]), 1)  # [N, 3, 3]
    pitch = kin.axis_rotation(np.radians(draws["pitch"]), 0)  # [N, 3, 3]
    view = pitch @ yaw  # [N, 3, 3]
    rot = view[None] @ kin.axis_rotation(np.radians(facing), 1)  # [2, N, 3, 3]
    shift = np.einsum("nij,pnj->pni", view, place) - np.einsum("nij,nj->ni", pitch, draws["camera"])[None]
    return (np.ascontiguousarray(rot.transpose(0, 2, 3, 1), dtype=np.float32),  # [2, 3, 3, N]
            np.ascontiguousarray(shift.transpose(0, 2, 1), dtype=np.float32))  # [2, 3, N]


def _dof_values(u: np.ndarray, t: np.ndarray, s: np.ndarray, labels: np.ndarray, person: int,
                draws: dict[str, np.ndarray]) -> np.ndarray:
    """``[R, D]`` DOF values (degrees / metres) of one person for frames at phase ``u``, time ``t``, sample ``s``."""
    vals = np.zeros((len(u), len(kin.DOF_NAMES)))
    for c in np.unique(labels[s]):  # a loop over classes: each has its own keyframe table
        r = np.flatnonzero(labels[s] == c)
        action = ACTIONS[c]
        motion = action.actor if person == 0 else action.partner
        assert motion is not None, "second person rendered for a one-person class"
        uc = 1.0 - u[r] if action.reverse else u[r]
        vals[r] = motion.evaluate(uc, draws["speed"][s[r]], draws["osc_phase"][s[r]])
        if action.mirror:
            vals[r] = vals[r][:, kin.MIRROR_DOFS]
    vals = vals * draws["amp"][person, s] + draws["posture"][person, s]
    sway = draws["sway_amp"][s] * np.sin(2 * np.pi * t / draws["sway_period"][s] + draws["sway_phase"][s])
    vals[:, _COL["lean"]] += sway
    vals[:, _COL["nod"]] -= 0.5 * sway  # the head counters the trunk to keep the gaze level
    return vals


def _render(out: np.ndarray, ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
            draws: dict[str, np.ndarray], scene: tuple[np.ndarray, np.ndarray], bodies: kin.Bodies,
            spec: SyntheticSpec, rng: np.random.Generator) -> None:
    """Fill ``out`` (``[sum of their lengths, M·V·C]``, zeros on entry) with the sequences ``ids``, all at once."""
    length = lengths[ids]
    sample = np.repeat(ids, length)  # [F] sample id of each frame
    t = (np.arange(len(sample)) - np.repeat(np.cumsum(length) - length, length)).astype(np.float64)  # [F]
    x = t / np.repeat(np.maximum(length - 1, 1), length)  # [F] position in the sequence, 0..1
    u = np.clip((x - draws["start"][sample]) / (draws["end"] - draws["start"])[sample], 0, 1) ** draws["gamma"][sample]
    pose = out.reshape(len(sample), 2, NTU25.num_joints, 3)  # [F, M, V, C] view of out, the contract's order
    two = np.array([a.partner is not None for a in ACTIONS])
    bones = np.ascontiguousarray(bodies.bones.transpose(1, 2, 0))  # [V, 3, S+1] coordinate-major
    for person, rows in enumerate([np.arange(len(sample)), np.flatnonzero(two[labels[sample]])]):
        if len(rows) == 0:  # no two-person class in this chunk
            continue
        s = sample[rows]
        vals = _dof_values(u[rows], t[rows], s, labels, person, draws)  # [R, D]
        body = subjects[s] if person == 0 else subjects[s] % spec.num_subjects + 1  # the partner: next performer
        rot, shift = scene[0][person][..., s], scene[1][person][:, s]  # [3, 3, R], [3, R]
        height = bodies.hip_height[body] + bodies.scale[body] * vals[:, _COL["rise"]]  # [R] pelvis in the body frame
        forward = -bodies.scale[body] * vals[:, _COL["fwd"]]  # [R] along z; the body faces -z
        root = shift + rot[:, 1] * height + rot[:, 2] * forward  # [3, R]
        pos = kin.forward_kinematics(np.radians(vals[:, _ANGLES]), bones[..., body], rot, root)  # [V, 3, R]
        if spec.noise_std > 0:
            pos += np.float32(spec.noise_std) * _gaussian(rng, pos.shape)
        pos_fvc = pos.transpose(2, 0, 1)  # [R, V, C]
        if person == 0:
            pose[:, 0] = pos_fvc
        else:
            pose[rows, 1] = pos_fvc
    if spec.drop_prob > 0:  # absent persons are zeros already, so dropping there changes nothing
        # Binomial count + uniform positions: the same distribution as one Bernoulli per joint (up to rare
        # repeats) at a thousandth of the random draws.
        slots = pose.reshape(-1, 3)  # [F*M*V, C]
        hits = rng.integers(0, len(slots), rng.binomial(len(slots), spec.drop_prob))
        slots[hits] = 0.0


def _replication(labels: np.ndarray, views: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """1-based index of each sample among those with the same (camera, performer, action).

    It is NTU's ``R`` field, which keeps names unique.
    """
    key = (labels * (int(views.max()) + 1) + views) * (int(subjects.max()) + 1) + subjects
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])  # start of each group in sorted order
    group_start = np.repeat(first, np.diff(np.r_[first, len(key)]))
    rep = np.empty(len(key), dtype=np.int64)
    rep[order] = np.arange(len(key)) - group_start + 1
    return rep


def generate(num_sequences: int, seed: int, *, num_classes: int = 12, max_frames: int = 300, min_frames: int = 24,
             num_subjects: int = 40, num_views: int = 3, noise_std: float = 0.01, drop_prob: float = 0.002,
             median_frames: int = 80, variation: float = 1.0, body_seed: int = 0) -> SkeletonSet:
    """Generate ``num_sequences`` labelled NTU-layout sequences; a pure function of its arguments.

    Classes are balanced (a seeded permutation of ``i mod num_classes``); performers, cameras and lengths are
    drawn independently of the class. See :class:`SyntheticSpec` for the parameters.

    Returns:
        A :class:`SkeletonSet` with layout ``"ntu25"``, ``M = 2``, ``V = 25``, labels 0-based, subjects
        ``1..num_subjects``, views ``1..num_views``, setups 1 and names like ``S001C002P003R001A004``.
    """
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    spec = SyntheticSpec(num_classes=num_classes, max_frames=max_frames, min_frames=min_frames,
                         median_frames=median_frames, num_subjects=num_subjects, num_views=num_views,
                         noise_std=noise_std, drop_prob=drop_prob, variation=variation, body_seed=body_seed)
    rng = np.random.default_rng(seed)
    n = num_sequences
    labels = rng.permutation(np.arange(n, dtype=np.int64) % spec.num_classes)
    subjects = rng.integers(1, spec.num_subjects + 1, n, dtype=np.int64)
    views = rng.integers(1, spec.num_views + 1, n, dtype=np.int64)
    lengths = np.clip(np.rint(spec.median_frames * np.exp(_LOG_LENGTH_STD * rng.standard_normal(n))),
                      spec.min_frames, spec.max_frames).astype(np.int64)
    draws = _draw_nuisance(rng, n, spec)
    scene = _scene(labels, views, draws, spec)
    bodies = kin.subject_bodies(spec.num_subjects, spec.body_seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.zeros((int(offsets[-1]), 2 * NTU25.num_joints * 3), dtype=np.float32)  # [sum(L), M*V*C]
    for start in range(0, n, _CHUNK):  # chunks of sequences bound the temporaries; each chunk is vectorised
        stop = min(n, start + _CHUNK)
        _render(frames[offsets[start]:offsets[stop]], np.arange(start, stop), lengths, labels, subjects, draws,
                scene, bodies, spec, rng)
    rep = _replication(labels, views, subjects)
    names = [f"S001C{c:03d}P{p:03d}R{r:03d}A{a + 1:03d}"
             for c, p, r, a in zip(views.tolist(), subjects.tolist(), rep.tolist(), labels.tolist(), strict=True)]
    actions = ACTIONS[: spec.num_classes]
    meta = {
        "dataset": "builtin", "generator": __name__, "num_sequences": n, "seed": seed, **asdict(spec),
        "class_names": [a.name for a in actions],
        "two_person_classes": [a.name for a in actions if a.partner is not None],
        "view_angles_deg": spec.view_angles().tolist(),
    }
    return SkeletonSet(frames=frames, offsets=offsets, labels=labels, subjects=subjects, views=views,
                       setups=np.ones(n, dtype=np.int64), names=names, num_persons=2, num_joints=NTU25.num_joints,
                       num_classes=spec.num_classes, layout=NTU25.name, meta=meta)
