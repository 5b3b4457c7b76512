"""The one YAML loader for every file a user hands in: configs, grids, search spaces, experiments, ``--set``.

Why not plain ``yaml.safe_load``: it is safe against code execution but not against size. A few hundred
bytes of nested aliases (``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) build a tree of billions of leaves by
reference; nothing is copied until something walks it — a type error's message, a JSON dump, a deep copy —
and then it takes gigabytes. This loader refuses, before anything is constructed, an input larger than
:data:`~ms2l_ray.limits.MAX_YAML_BYTES`, a node graph that expands to more than
:data:`~ms2l_ray.limits.MAX_YAML_NODES` nodes with every alias counted in full, a recursive alias, and
nesting too deep for the parser. Refusals are :class:`YAMLLimitError`, a :class:`yaml.YAMLError`, so every
caller's existing ``except yaml.YAMLError`` turns them into its usual error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ms2l_ray.limits import MAX_YAML_BYTES, MAX_YAML_NODES


class YAMLLimitError(yaml.YAMLError):
    """A YAML input over a size, expansion or nesting limit (the message says which and by how much)."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expanded_nodes(root: yaml.Node, limit: int = MAX_YAML_NODES) -> int:
    """Nodes of ``root`` with every alias expanded (shared nodes counted at each use), stopping past ``limit``.

    Iterative with a per-node memo, so it costs one visit per *distinct* node however large the expansion,
    and a recursive alias (a node inside itself) is refused instead of looping.
    """
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            size[key] = min(limit + 1, 1 + sum(size[id(c)] for c in _children(node)))
            continue
        if key in size:
            continue
        if key in active:
            raise YAMLLimitError("a recursive alias (a node that contains itself) is not allowed")
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise YAMLLimitError("a recursive alias (a node that contains itself) is not allowed")
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)]


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load(text)`` within the limits; :class:`YAMLLimitError` (naming the limit) otherwise."""
    n_bytes = len(text.encode("utf-8", "surrogatepass"))
    if n_bytes > MAX_YAML_BYTES:
        raise YAMLLimitError(f"{n_bytes} bytes; YAML inputs are limited to {MAX_YAML_BYTES} bytes")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YAMLLimitError("nested too deeply for the YAML parser") from None
        if node is None:
            return None
        total = expanded_nodes(node)
        if total > MAX_YAML_NODES:
            raise YAMLLimitError(f"expands to more than {MAX_YAML_NODES} nodes once its aliases are expanded "
                                 f"(an alias bomb?); YAML inputs are limited to {MAX_YAML_NODES} nodes")
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise YAMLLimitError("nested too deeply for the YAML parser") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """:func:`load_yaml_text` of a file, whose size is checked before it is read (never more is read).

    Raises:
        OSError: the file cannot be read.
        yaml.YAMLError: bad YAML, or :class:`YAMLLimitError`.
    """
    p = Path(path)
    with p.open("rb") as f:
        raw = f.read(MAX_YAML_BYTES + 1)
    if len(raw) > MAX_YAML_BYTES:
        raise YAMLLimitError(f"larger than {MAX_YAML_BYTES} bytes; YAML inputs are limited to {MAX_YAML_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise yaml.YAMLError(f"not UTF-8 text (byte {e.start} is {raw[e.start:e.start + 1]!r})") from None
    return load_yaml_text(text)
