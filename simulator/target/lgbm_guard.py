"""LightGBM text models are checked here before the library sees them.

LightGBM's own parser trusts its input: a truncated file makes it read past the buffer (SIGSEGV kills the whole
process), a crafted one (``tree\\nobjective=binary sigmoid:1\\n`` and random bytes) makes it spin forever, and a
tree whose child pointers form a cycle makes every prediction loop forever. :func:`check_lightgbm_text` walks the
whole file with a strict grammar of what LightGBM itself writes (header, ``Tree=i`` blocks whose byte sizes match
``tree_sizes``, array lengths fixed by ``num_leaves``, feature indices in range, child pointers forming one tree,
finite numbers, ``end of trees``) and raises a one-line :class:`~simulator.errors.ModelError` for anything else.

Examples
--------
>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "bad.txt")
>>> _ = open(p, "wb").write(b"tree\\nobjective=binary sigmoid:1\\n\\x00\\xff garbage")
>>> check_lightgbm_text(p)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
simulator.errors.ModelError: ...bad.txt: model.path: not a LightGBM text model: ...
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..errors import ModelError

MAX_BYTES = 512 * 1024 * 1024  # far above any real fraud model; keeps a hostile file from exhausting memory
MAX_FEATURES = 100_000
MAX_LEAVES = 1 << 20
MAX_TREES = 1_000_000
HEADER_REQUIRED = ("version", "num_class", "num_tree_per_iteration", "max_feature_idx", "objective", "feature_names")
_PARAM_LINE = re.compile(r"\[[A-Za-z0-9_]+: .*\]")  # "[name: value]", as LightGBM writes them
_TRAILER_PREFIXES = ("feature_importances:", "parameters:", "end of parameters", "pandas_categorical:")


class _Bad(Exception):
    """Internal: the reason a file is refused (turned into a ModelError with the file name)."""


def check_lightgbm_text(path: str | Path, *, field: str = "model.path") -> None:
    """Raise :class:`ModelError` unless ``path`` is a well-formed LightGBM text model that is safe to parse."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _Bad(f"{size / 2**20:,.0f} MiB is over the limit of {MAX_BYTES // 2**20} MiB for a model file")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        check_lightgbm_bytes(data)
    except _Bad as exc:
        raise ModelError(f"not a LightGBM text model: {exc}", file=str(path), field=field) from None
    except OSError as exc:
        raise ModelError(f"cannot be read ({exc.strerror or type(exc).__name__})", file=str(path), field=field) from None


def check_lightgbm_bytes(data: bytes) -> None:
    """The grammar check on the file's bytes; raises ``_Bad`` with the reason."""
    if len(data) > MAX_BYTES:
        raise _Bad(f"over the limit of {MAX_BYTES // 2**20} MiB for a model file")
    if b"\x00" in data:
        raise _Bad("it contains NUL bytes (a binary file, or a truncated download)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 text (byte {exc.start})") from None
    if "\r" in text:
        raise _Bad("it has Windows line endings (\\r\\n); LightGBM writes \\n only (convert it with dos2unix)")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "tree":
        raise _Bad("the first line must be 'tree'")
    header, i = _key_values(lines, 1, "header")
    for key in HEADER_REQUIRED:
        if key not in header:
            raise _Bad(f"the header lacks {key}=")
    num_class = _int(header["num_class"], "num_class", 1, 1)
    per_iter = _int(header["num_tree_per_iteration"], "num_tree_per_iteration", 1, 1)
    if num_class != 1 or per_iter != 1:
        raise _Bad(f"num_class={num_class}: a fraud model is a binary classifier with one tree per iteration")
    n_features = _int(header["max_feature_idx"], "max_feature_idx", 0, MAX_FEATURES - 1) + 1
    names = header["feature_names"].split(" ")
    if len(names) != n_features or any(not n for n in names):
        raise _Bad(f"feature_names lists {len(names)} names but max_feature_idx says {n_features}")
    obj = header["objective"].split()
    if not obj or obj[0] not in ("binary", "cross_entropy", "xentropy"):
        raise _Bad(f"objective {header['objective'][:40]!r} is not a binary classifier")
    for extra in obj[1:]:
        key, sep, value = extra.partition(":")
        if not sep:
            raise _Bad(f"malformed objective parameter {extra[:40]!r}")
        if key == "sigmoid":
            _float(value, "objective sigmoid", positive=True)
    sizes = None
    if "tree_sizes" in header:
        sizes = [_int(s, "tree_sizes", 1, MAX_BYTES) for s in header["tree_sizes"].split()]

    # the trees: LightGBM jumps to each one by the byte offsets in tree_sizes, so they must match exactly
    offsets: list[int] = []
    pos = sum(len(line.encode()) + 1 for line in lines[:i])  # byte offset (in the normalised text) of line i
    n_trees = 0
    while i < len(lines) and lines[i] == "":
        pos += 1
        i += 1
    tree_start_pos = pos
    while i < len(lines) and lines[i].startswith("Tree="):
        if n_trees >= MAX_TREES:
            raise _Bad(f"more than {MAX_TREES:,} trees")
        if lines[i] != f"Tree={n_trees}":
            raise _Bad(f"expected 'Tree={n_trees}', found {lines[i][:40]!r}")
        offsets.append(pos)
        start = i
        block, i = _key_values(lines, i + 1, f"Tree={n_trees}")
        _check_tree(block, n_features, n_trees)
        while i < len(lines) and lines[i] == "":
            i += 1
        pos += sum(len(line.encode()) + 1 for line in lines[start:i])
        n_trees += 1
    if i >= len(lines) or lines[i] != "end of trees":
        found = repr(lines[i][:40]) if i < len(lines) else "the end of the file"
        raise _Bad(f"expected a 'Tree=N' block or 'end of trees', found {found} (a truncated file?)")
    if n_trees == 0:
        raise _Bad("the model has no trees")
    if sizes is not None:
        if len(sizes) != n_trees:
            raise _Bad(f"tree_sizes lists {len(sizes)} trees but the file has {n_trees}")
        starts = [o - tree_start_pos for o in offsets]
        acc = 0
        for k, s in enumerate(sizes):
            if acc != starts[k]:
                raise _Bad(f"tree_sizes does not match the trees (Tree={k} starts at byte {starts[k]}, not {acc})")
            acc += s
        if acc > pos - tree_start_pos:
            raise _Bad("tree_sizes runs past 'end of trees'")
    _check_trailer(lines[i + 1:])
    if text.rstrip(" ").endswith(("end of parameters", "end of parameters\n")):
        # LightGBM reads past the end of a buffer that stops right there (SIGSEGV); what it writes has more after it
        raise _Bad("the file stops right after 'end of parameters' (truncated?); LightGBM cannot read it safely")


def _check_trailer(lines: list[str]) -> None:
    """After the trees: feature importances, the training parameters, pandas categories; LightGBM reads past the
    buffer when the parameters block is not closed, so an unclosed one is refused."""
    in_params = False
    while lines and lines[-1] == "":
        lines = lines[:-1]
    for k, line in enumerate(lines):
        if line == "parameters:":
            if in_params:
                raise _Bad("'parameters:' appears twice")
            in_params = True
        elif line == "end of parameters":
            if not in_params:
                raise _Bad("'end of parameters' without 'parameters:'")
            in_params = False
        elif in_params:
            if line and not _PARAM_LINE.fullmatch(line):
                raise _Bad(f"malformed parameter line {line[:40]!r} (a truncated file?)")
        elif line.startswith("pandas_categorical:"):
            if k != len(lines) - 1:
                raise _Bad("pandas_categorical: must be the last line")
            try:
                cats = json.loads(line.split(":", 1)[1])
            except ValueError:
                raise _Bad("pandas_categorical: is not valid JSON (a truncated file?)") from None
            if cats is not None and not isinstance(cats, list):
                raise _Bad("pandas_categorical: must be null or a list")
        elif line and not (line.startswith(_TRAILER_PREFIXES) or "=" in line):
            raise _Bad(f"unexpected line after 'end of trees': {line[:40]!r}")
    if in_params:
        raise _Bad("the parameters block is not closed by 'end of parameters' (a truncated file?)")


def _key_values(lines: list[str], i: int, where: str) -> tuple[dict[str, str], int]:
    out: dict[str, str] = {}
    while i < len(lines) and lines[i] != "":
        key, sep, value = lines[i].partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise _Bad(f"{where}: malformed line {lines[i][:40]!r}")
        if key in out:
            raise _Bad(f"{where}: {key}= appears twice")
        out[key] = value
        i += 1
    return out, i


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise _Bad(f"{what}: {text[:30]!r} is not a whole number") from None
    if not lo <= v <= hi:
        raise _Bad(f"{what}: {v} is outside {lo}..{hi}")
    return v


def _float(text: str, what: str, *, positive: bool = False) -> float:
    try:
        v = float(text)
    except ValueError:
        raise _Bad(f"{what}: {text[:30]!r} is not a number") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise _Bad(f"{what}: {text[:30]!r} must be a finite{' positive' if positive else ''} number")
    return v


def _ints(block: dict[str, str], key: str, n: int, where: str, lo: int, hi: int) -> list[int]:
    if key not in block:
        raise _Bad(f"{where}: {key}= is missing")
    parts = block[key].split()
    if len(parts) != n:
        raise _Bad(f"{where}: {key}= has {len(parts)} values, expected {n}")
    return [_int(p, f"{where}: {key}", lo, hi) for p in parts]


def _floats(block: dict[str, str], key: str, n: int, where: str, *, required: bool = True) -> None:
    if key not in block:
        if required:
            raise _Bad(f"{where}: {key}= is missing")
        return
    parts = block[key].split()
    if len(parts) != n:
        raise _Bad(f"{where}: {key}= has {len(parts)} values, expected {n}")
    for p in parts:
        _float(p, f"{where}: {key}")


def _check_tree(block: dict[str, str], n_features: int, index: int) -> None:
    where = f"Tree={index}"
    n = _int(block.get("num_leaves", ""), f"{where}: num_leaves", 1, MAX_LEAVES)
    if "num_cat" not in block:  # LightGBM's parser requires it; its error inside the parallel load aborts the process
        raise _Bad(f"{where}: num_cat= is missing")
    num_cat = _int(block["num_cat"], f"{where}: num_cat", 0, MAX_LEAVES)
    _float(block.get("shrinkage", "1"), f"{where}: shrinkage")
    _floats(block, "leaf_value", n, where)
    linear = _int(block.get("is_linear", "0"), f"{where}: is_linear", 0, 1)
    if linear:
        _floats(block, "leaf_const", n, where)
        counts = _ints(block, "num_features", n, where, 0, n_features)
        total = sum(counts)
        _ints(block, "leaf_features", total, where, 0, n_features - 1)
        _floats(block, "leaf_coeff", total, where)
    if n == 1:
        if num_cat:
            raise _Bad(f"{where}: a single leaf has no categorical splits")
        return
    m = n - 1
    _ints(block, "split_feature", m, where, 0, n_features - 1)
    _floats(block, "threshold", m, where)
    dtypes = _ints(block, "decision_type", m, where, 0, 15)
    left = _ints(block, "left_child", m, where, -n, m - 1)
    right = _ints(block, "right_child", m, where, -n, m - 1)
    for key, k in (("split_gain", m), ("leaf_weight", n), ("leaf_count", n), ("internal_value", m),
                   ("internal_weight", m), ("internal_count", m)):
        _floats(block, key, k, where, required=False)
    # one tree: from the root every node and every leaf is reached exactly once (no cycle, nothing shared)
    seen_nodes, seen_leaves = [False] * m, [False] * n
    stack = [0]
    seen_nodes[0] = True
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                if seen_nodes[child]:
                    raise _Bad(f"{where}: node {child} is reached twice (a cycle or a shared subtree)")
                seen_nodes[child] = True
                stack.append(child)
            else:
                leaf = ~child
                if seen_leaves[leaf]:
                    raise _Bad(f"{where}: leaf {leaf} is reached twice")
                seen_leaves[leaf] = True
    if not all(seen_nodes) or not all(seen_leaves):
        raise _Bad(f"{where}: some nodes or leaves are not reachable from the root")
    categorical = [k for k, d in enumerate(dtypes) if d & 1]
    if categorical or num_cat:
        bounds = _ints(block, "cat_boundaries", num_cat + 1, where, 0, 1 << 26)
        if bounds[0] != 0 or any(b > c for b, c in zip(bounds, bounds[1:])):
            raise _Bad(f"{where}: cat_boundaries must start at 0 and never decrease")
        _ints(block, "cat_threshold", bounds[-1], where, 0, (1 << 32) - 1)
        thresholds = block["threshold"].split()
        for k in categorical:
            try:
                t = float(thresholds[k])
            except ValueError:
                raise _Bad(f"{where}: threshold {k} is not a number") from None
            if t != int(t) or not 0 <= t < num_cat:
                raise _Bad(f"{where}: categorical split {k} points at category set {thresholds[k]!r} of {num_cat}")
