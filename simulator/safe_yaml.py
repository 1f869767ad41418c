r"""Reading YAML (and JSON) that other people wrote: plain data only, and never more than a scenario needs.

On top of PyYAML's ``SafeLoader`` (no Python objects): a file must be a regular file (not a folder, a FIFO or
``/dev/zero``) of at most :data:`MAX_BYTES`, UTF-8 (UTF-16 and invalid bytes are refused with the reason);
duplicate keys are refused (instead of "last one wins"); nesting is limited to :data:`MAX_DEPTH` levels; and the
document, with every alias expanded, may hold at most :data:`MAX_NODES` values, so a "billion laughs" file or a
recursive alias is refused before anything is built from it.

Examples
--------
>>> load_yaml_text("a: 1\nb: [x, y]")
{'a': 1, 'b': ['x', 'y']}
>>> load_yaml_text("a: 1\na: 2")
Traceback (most recent call last):
...
simulator.safe_yaml.YamlError: line 2: duplicate key 'a' (first at line 1)
>>> laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
...     f"{k}: &{k} [{', '.join(['*' + p] * 10)}]\n" for p, k in ("ab", "bc", "cd"))
>>> load_yaml_text(laughs)
Traceback (most recent call last):
...
simulator.safe_yaml.YamlError: with its aliases expanded the document has more than 10,000 values (a "billion laughs" file?)
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a scenario is a few kB; a bigger file is a mistake or an attack
MAX_DEPTH = 32  # a scenario nests at most ~6 levels
MAX_NODES = 10_000  # values after expanding aliases; the largest example scenario has a few hundred


class YamlError(ValueError):
    """The text is not acceptable YAML for fraudsim; ``str()`` is the one-line reason."""


def read_text_file(path: str | Path, *, max_bytes: int = MAX_BYTES, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; ``OSError``-free: raises :class:`YamlError`."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise YamlError("file not found") from None
    except OSError as exc:
        raise YamlError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise YamlError(f"a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise YamlError(f"not a regular file (a device, a FIFO or a socket); give a {what}")
    if st.st_size > max_bytes:
        raise YamlError(f"{st.st_size:,} bytes is over the limit of {max_bytes:,} for a {what}")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise YamlError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise YamlError(f"over the limit of {max_bytes:,} bytes for a {what}")
    return decode_utf8(data)


def decode_utf8(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(data) >= 2 and (data[0] == 0) != (data[1] == 0)):
        raise YamlError("the file is UTF-16 (or another wide encoding); save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None
    if "\x00" in text:
        raise YamlError("the file contains NUL characters (a binary file?)")
    return text


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let PyYAML give its own message
                break
            if first is not None:
                raise YamlError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line {first})")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_size(root: yaml.Node) -> None:
    """Refuse recursive aliases, nesting deeper than MAX_DEPTH and more than MAX_NODES values once expanded."""
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
    active: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in memo:
            size, height = memo[key]
        else:
            if key in active:
                raise YamlError(f"line {node.start_mark.line + 1}: a recursive alias (an anchor used inside itself)")
            if depth > MAX_DEPTH:
                raise YamlError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            active.add(key)
            size, height = 1, 0
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = []
            for child in children:
                s, h = visit(child, depth + 1)
                size += s
                height = max(height, h + 1)
                if size > MAX_NODES:
                    raise YamlError(f"with its aliases expanded the document has more than {MAX_NODES:,} values "
                                    "(a \"billion laughs\" file?)")
            active.discard(key)
            memo[key] = (size, height)
        if depth + height > MAX_DEPTH:
            raise YamlError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        return size, height

    visit(root, 0)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document of plain data with the limits above; raises :class:`YamlError` (one line)."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"over the limit of {MAX_BYTES:,} characters")
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", text):  # PyYAML is quadratic in flow nesting: refuse deep text up front
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise YamlError(f"nested more than {MAX_DEPTH} levels deep")
    loader = None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlError(f"nested more than {MAX_DEPTH} levels deep") from None
        if node is None:
            return None
        _check_size(node)
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise YamlError(f"nested more than {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlError(f"not valid YAML{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
