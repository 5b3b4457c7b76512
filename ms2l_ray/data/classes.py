"""Action class names of the datasets the readers convert, in label order (label 0 = the first name).

Why: a confusion matrix or per-class table indexed 0…119 tells a person nothing; "staggering" vs "falling"
does. ``ms2l data prepare`` records the names in the store (schema metadata ``meta.class_names``), so
``data info``, confusion matrices and per-class tables show them wherever the store goes.

Sources: the dataset papers' action lists (NTU RGB+D 60 / 120: Shahroudy et al. 2016, Liu et al. 2019;
Northwestern-UCLA Multiview: Wang et al. 2014, its ten actions in the order of the ids a01…a06, a08, a09,
a11, a12; PKU-MMD part I: Liu et al. 2017, its 51 actions in the dataset's own (alphabetical) label order).
"""

from __future__ import annotations

from typing import Any

NTU120: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up", "clapping", "reading", "writing", "tear up paper", "wear jacket",
    "take off jacket", "wear a shoe", "take off a shoe", "wear on glasses", "take off glasses",
    "put on a hat/cap", "take off a hat/cap", "cheer up", "hand waving", "kicking something",
    "reach into pocket", "hopping", "jump up", "make a phone call", "playing with phone/tablet",
    "typing on a keyboard", "pointing to something", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front", "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache)", "touch back (backache)", "touch neck (neckache)", "nausea or vomiting",
    "use a fan/feeling warm", "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    # NTU RGB+D 120 adds A61-A120
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball", "tennis bat swing",
    "juggling table tennis balls", "hush (quiet)", "flick hair", "thumb up", "thumb down", "make ok sign",
    "make victory sign", "staple book", "counting money", "cutting nails", "cutting paper (scissors)",
    "snapping fingers", "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag",
    "take off bag", "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms",
    "arm circles", "arm swings", "running on the spot", "butt kicks", "cross toe touch", "side kick", "yawn",
    "stretch oneself", "blow nose", "hit other person with something", "wield knife towards other person",
    "knock over other person", "grab other person's stuff", "shoot at other person with a gun",
    "step on foot", "high-five", "cheers and drink", "carry something with other person",
    "take a photo of other person", "follow other person", "whisper in other person's ear",
    "exchange things with other person", "support somebody with hand", "rock-paper-scissors",
)
NTU60: tuple[str, ...] = NTU120[:60]

NW_UCLA: tuple[str, ...] = (
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down", "stand up",
    "donning", "doffing", "throw", "carry",
)

PKU_MMD: tuple[str, ...] = (
    "bow", "brushing hair", "brushing teeth", "check time (from watch)", "cheer up", "clapping",
    "cross hands in front", "drink water", "drop", "eat meal/snack", "falling", "giving something to other person",
    "hand waving", "handshaking", "hopping", "hugging other person", "jump up", "kicking other person",
    "kicking something", "make a phone call", "pat on back of other person", "pickup", "playing with phone/tablet",
    "point finger at other person", "pointing to something", "punching/slapping other person",
    "pushing other person", "put on a hat/cap", "put something inside pocket", "reading", "rub two hands together",
    "salute", "sitting down", "standing up", "take off a hat/cap", "take off glasses", "take off jacket",
    "take out something from pocket", "taking a selfie", "tear up paper", "throw", "touch back (backache)",
    "touch chest (stomachache)", "touch head (headache)", "touch neck (neckache)", "typing on a keyboard",
    "use a fan/feeling warm", "wear jacket", "wear on glasses", "wipe face", "writing",
)

NTU_FORMATS = ("ntu", "ntu60", "ntu120", "stgcn", "ctrgcn")


def class_names(dataset: str, num_classes: int) -> list[str] | None:
    """The names of ``dataset``'s (a ``data prepare`` format) ``num_classes`` labels, or None when not known.

    Not known: a PKU-MMD part II store, a foreign class count; callers then show label numbers.
    """
    fmt = dataset.lower()
    if fmt in NTU_FORMATS or fmt.startswith("ntu"):
        return list(NTU120[:num_classes]) if 0 < num_classes <= len(NTU120) else None
    if fmt in ("ucla", "nw-ucla", "nwucla"):
        return list(NW_UCLA) if num_classes == len(NW_UCLA) else None
    if fmt in ("pku", "pku-mmd", "pkummd"):
        return list(PKU_MMD) if num_classes == len(PKU_MMD) else None
    return None


def store_class_names(data: Any) -> list[str] | None:
    """The class names a store (a ``SkeletonSet``) carries, else those of the dataset it holds, else None.

    The dataset's names serve stores prepared before the names were recorded.
    """
    recorded = data.meta.get("class_names")
    if isinstance(recorded, list) and len(recorded) == data.num_classes:
        return [str(n) for n in recorded]
    return class_names(str(data.meta.get("dataset", "")), data.num_classes)
