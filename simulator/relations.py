"""Relations between features: what makes a transaction possible at all, beyond each feature's own bounds.

A scenario lists them under ``relations:`` (next to ``features:``), one string each, in a small grammar:

* **implication** ``if <condition> then <condition>``; a condition is one feature compared with numbers:
  ``==, !=, <, <=, >, >=``, ``in [a, b, ...]`` or ``not in [...]``.
  ``if card_present == 1 then merchant_cat in [0, 1, 2]``
* **linear inequality** ``<linear> >= <linear>`` or ``<=``: sums of numbers times features on both sides.
  ``distance_km >= 300 * country_mismatch``
* **derived feature** ``<feature> = <expression>``: the feature is recomputed from its inputs after every move
  (``+ - * /``, parentheses, ``min(a, b)``, ``max(a, b)``; inputs may be model features or other columns of the
  data, e.g. a frozen ``mean_amount_30d`` the model does not use).
  ``amount_ratio_30d = min(amount / mean_amount_30d, 1000)``

Names are identifiers (letters, digits, ``_``, ``.``) or quoted with double quotes or backticks (``"amount usd"``).
Missing values: a relation whose inputs are NaN counts as satisfied; a derived feature of a NaN input is NaN.

:func:`parse_relation` turns one string into a typed object; :func:`compile_relations` checks the names
against the model's features and the data's columns and flattens everything into :class:`RelationArrays` for the
kernels (:mod:`simulator.kernels.relations`).

Examples
--------
>>> parse_relation("if card_present == 1 then merchant_cat in [0, 2, 5]")
Implication(if_=Condition(feature='card_present', op='==', values=(1.0,)), then=Condition(feature='merchant_cat', op='in', values=(0.0, 2.0, 5.0)))
>>> parse_relation("distance_km >= 300 * country_mismatch")
Linear(terms=(('distance_km', 1.0), ('country_mismatch', -300.0)), const=0.0, sense='>=', text='distance_km >= 300 * country_mismatch')
>>> parse_relation("ratio = amount / mean").inputs
('amount', 'mean')
>>> parse_relation("a * b >= 1")
Traceback (most recent call last):
...
simulator.errors.ScenarioError: non-linear expression: a product of two features (a * b); linear relations allow numbers times features
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

from .errors import ScenarioError

COND_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
OP_CODE = {op: i for i, op in enumerate(COND_OPS)}
NEGATE = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<", "in": "not in", "not in": "in"}
# derived-expression programs (postfix)
P_VAR, P_CONST, P_ADD, P_SUB, P_MUL, P_DIV, P_MIN, P_MAX, P_NEG = range(9)


# -- typed relations ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    feature: str
    op: str
    values: tuple[float, ...]

    def holds(self, v: float) -> bool:
        return bool(holds(np, np.array([v]), OP_CODE[self.op], np.array(self.values), len(self.values))[0])

    def __str__(self) -> str:
        vals = "[" + ", ".join(f"{v:g}" for v in self.values) + "]" if self.op in ("in", "not in") else f"{self.values[0]:g}"
        return f"{self.feature} {self.op} {vals}"


@dataclass(frozen=True)
class Implication:
    if_: Condition
    then: Condition

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.if_.feature, self.then.feature)))


@dataclass(frozen=True)
class Linear:
    """``sum(coef * feature) + const  (sense)  0`` with sense ``>=`` or ``<=``."""

    terms: tuple[tuple[str, float], ...]
    const: float
    sense: str
    text: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.terms)


# expression trees of derived features
@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * / min max
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Neg:
    arg: "Expr"


Expr = Union[Num, Var, BinOp, Neg]


@dataclass(frozen=True)
class Derived:
    feature: str
    expr: Expr
    text: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_vars(self.expr)))


Relation = Union[Implication, Linear, Derived]


def _vars(e: Expr):
    if isinstance(e, Var):
        yield e.name
    elif isinstance(e, BinOp):
        yield from _vars(e.left)
        yield from _vars(e.right)
    elif isinstance(e, Neg):
        yield from _vars(e.arg)


# -- tokenizer and parser -------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<q>"[^"]+"|`[^`]+`)|(?P<op>==|!=|<=|>=|[-+*/()<>=,\[\]])|(?P<name>[^\W\d][\w.]*))""", re.UNICODE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ScenarioError(f"cannot read {text[pos:pos + 12]!r} (position {pos + 1})")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        val = m.group(kind)
        if kind == "q":
            kind, val = "name", val[1:-1]
        out.append((kind, val))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str]:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind) or k == "end":
            want = repr(value) if value else (kind or "more")
            raise ScenarioError(f"expected {want} but found {v!r}" if k != "end" else f"expected {want} at the end")
        self.i += 1
        return v

    def at_end(self) -> bool:
        return self.i >= len(self.toks)

    # expressions: sum of products of atoms
    def expr(self) -> Expr:
        e = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            op = self.take()
            e = BinOp(op, e, self.term())
        return e

    def term(self) -> Expr:
        e = self.unary()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            op = self.take()
            e = BinOp(op, e, self.unary())
        return e

    def unary(self) -> Expr:
        if self.peek() == ("op", "-"):
            self.take()
            a = self.unary()
            return Num(-a.value) if isinstance(a, Num) else Neg(a)
        if self.peek() == ("op", "+"):
            self.take()
            return self.unary()
        return self.atom()

    def atom(self) -> Expr:
        k, v = self.peek()
        if k == "num":
            self.take()
            return Num(float(v))
        if k == "op" and v == "(":
            self.take()
            e = self.expr()
            self.take(")")
            return e
        if k == "name":
            self.take()
            if v in ("min", "max") and self.peek() == ("op", "("):
                self.take("(")
                a = self.expr()
                self.take(",")
                b = self.expr()
                self.take(")")
                return BinOp(v, a, b)
            return Var(v)
        raise ScenarioError(f"expected a number, a feature or '(' but found {v!r}" if k != "end" else "the expression ends too early")

    def number(self) -> float:
        sign = -1.0 if self.peek() == ("op", "-") else 1.0
        if sign < 0:
            self.take()
        return sign * float(self.take(kind="num"))

    def condition(self) -> Condition:
        name = self.take(kind="name")
        k, v = self.peek()
        if v == "not" and k == "name":
            self.take()
            self.take("in")
            op = "not in"
        elif v == "in" and k == "name":
            self.take()
            op = "in"
        elif v in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()
        else:
            raise ScenarioError(f"expected a comparison (==, !=, <, <=, >, >=, in, not in) after {name!r}")
        if op in ("in", "not in"):
            self.take("[")
            vals = [self.number()]
            while self.peek() == ("op", ","):
                self.take()
                vals.append(self.number())
            self.take("]")
        else:
            if self.peek()[0] == "name":
                raise ScenarioError(f"a condition compares one feature with a number; {self.peek()[1]!r} is not a number "
                                    "(use a linear inequality to compare two features)")
            vals = [self.number()]
        return Condition(name, op, tuple(vals))


def parse_relation(text: str) -> Relation:
    """One relation string to its typed object; :class:`ScenarioError` (no field) on bad syntax."""
    if not isinstance(text, str) or not text.strip():
        raise ScenarioError("a relation must be a non-empty string such as 'distance_km >= 300 * country_mismatch'")
    p = _Parser(text)
    if p.peek() == ("name", "if"):
        p.take()
        a = p.condition()
        p.take("then")
        b = p.condition()
        if not p.at_end():
            raise ScenarioError(f"unexpected {p.peek()[1]!r} after the implication")
        return Implication(a, b)
    left = p.expr()
    k, op = p.peek()
    if op in (">=", "<="):
        p.take()
        right = p.expr()
        if not p.at_end():
            raise ScenarioError(f"unexpected {p.peek()[1]!r} after the inequality")
        lt, lc = _linear(left)
        rt, rc = _linear(right)
        terms: dict[str, float] = dict(lt)
        for n, c in rt.items():
            terms[n] = terms.get(n, 0.0) - c
        terms = {n: c for n, c in terms.items() if c != 0.0}
        if not terms:
            raise ScenarioError("the inequality names no feature")
        return Linear(tuple(terms.items()), lc - rc, op, text.strip())
    if op in ("<", ">"):
        raise ScenarioError(f"use >= or <= between features (strict {op!r} is not allowed in a linear relation)")
    if op == "=":
        if not isinstance(left, Var):
            raise ScenarioError("the left side of a derived feature ('name = expression') must be one feature name")
        p.take()
        e = p.expr()
        if not p.at_end():
            raise ScenarioError(f"unexpected {p.peek()[1]!r} after the expression")
        if left.name in set(_vars(e)):
            raise ScenarioError(f"derived feature {left.name!r} cannot be an input of itself")
        return Derived(left.name, e, text.strip())
    if op == "==":
        raise ScenarioError("use '=' for a derived feature, or 'if ... then ...' for a condition")
    raise ScenarioError("a relation is 'if <condition> then <condition>', '<linear> >= <linear>' (or <=), or "
                        "'<feature> = <expression>'")


def _linear(e: Expr) -> tuple[dict[str, float], float]:
    """``e`` as (coefficients, constant), or a ScenarioError when it is not linear."""
    if isinstance(e, Num):
        return {}, e.value
    if isinstance(e, Var):
        return {e.name: 1.0}, 0.0
    if isinstance(e, Neg):
        t, c = _linear(e.arg)
        return {n: -v for n, v in t.items()}, -c
    assert isinstance(e, BinOp)
    if e.op in ("min", "max"):
        raise ScenarioError(f"non-linear expression: {e.op}() is allowed in derived features only")
    lt, lc = _linear(e.left)
    rt, rc = _linear(e.right)
    if e.op in ("+", "-"):
        s = 1.0 if e.op == "+" else -1.0
        out = dict(lt)
        for n, v in rt.items():
            out[n] = out.get(n, 0.0) + s * v
        return out, lc + s * rc
    if e.op == "*":
        if lt and rt:
            raise ScenarioError(f"non-linear expression: a product of two features ({_show(e)}); linear relations "
                                "allow numbers times features")
        k, (t, c) = (lc, (rt, rc)) if not lt else (rc, (lt, lc))
        return {n: k * v for n, v in t.items()}, k * c
    if rt:
        raise ScenarioError(f"non-linear expression: division by a feature ({_show(e)}); linear relations allow "
                            "division by numbers only")
    if rc == 0:
        raise ScenarioError(f"division by zero ({_show(e)})")
    return {n: v / rc for n, v in lt.items()}, lc / rc


def _show(e: Expr) -> str:
    if isinstance(e, Num):
        return f"{e.value:g}"
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Neg):
        return f"-{_show(e.arg)}"
    if e.op in ("min", "max"):
        return f"{e.op}({_show(e.left)}, {_show(e.right)})"
    return f"{_show(e.left)} {e.op} {_show(e.right)}"


def parse_relations(texts: Sequence[str], *, source: str | None = None, where: str = "relations") -> tuple[Relation, ...]:
    out = []
    for i, t in enumerate(texts):
        try:
            out.append(parse_relation(t))
        except ScenarioError as exc:
            raise ScenarioError(exc.reason, file=source, field=f"{where}.{i}") from None
    derived = [r.feature for r in out if isinstance(r, Derived)]
    for i, r in enumerate(out):
        if isinstance(r, Derived) and derived.count(r.feature) > 1:
            raise ScenarioError(f"feature {r.feature!r} is derived twice", file=source, field=f"{where}.{i}")
    return tuple(out)


# -- compiled arrays ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class RelationArrays:
    """The relations flattened for the kernels. Columns ``0..d-1`` are the model features, ``d..d+e-1`` the extra
    (frozen) data columns the relations read, carried per target."""

    n_features: int
    extra_names: tuple[str, ...]
    derived: np.ndarray  # bool (d,) features recomputed from their inputs
    der_target: np.ndarray  # int64 (D,)
    prog_op: np.ndarray  # int64 (D, L) postfix program, P_*
    prog_arg: np.ndarray  # float64 (D, L) column index (P_VAR) or number (P_CONST)
    prog_len: np.ndarray  # int64 (D,)
    imp_col: np.ndarray  # int64 (I, 2) column of the if / then condition
    imp_op: np.ndarray  # int64 (I, 2) OP_CODE
    imp_val: np.ndarray  # float64 (I, 2, S) values, NaN-padded
    imp_nval: np.ndarray  # int64 (I, 2)
    lin_coef: np.ndarray  # float64 (R, d + e): sum(coef * column) + const >= 0
    lin_const: np.ndarray  # float64 (R,)
    relations: tuple[Relation, ...] = field(default=())
    fields: tuple[str, ...] = field(default=())  # scenario field of each relation, in the order above

    @property
    def n_extra(self) -> int:
        return len(self.extra_names)

    @property
    def empty(self) -> bool:
        return len(self.der_target) + len(self.imp_col) + len(self.lin_const) == 0


def compile_relations(relations: Sequence[Relation], feature_names: Sequence[str], columns: Sequence[str] = (),
                      *, source: str | None = None, where: str = "relations") -> RelationArrays:
    """Check names (model features, or other columns of the data) and flatten. Extra columns are the non-feature
    columns the relations read, in order of first use."""
    feats = list(feature_names)
    index = {n: j for j, n in enumerate(feats)}
    have = set(columns)
    extras: list[str] = []
    derived_names = {r.feature for r in relations if isinstance(r, Derived)}

    def col(name: str, i: int, *, role: str = "input") -> int:
        if name in index:
            return index[name]
        if name in derived_names:
            raise ScenarioError(f"{name!r} is derived but is not a model feature", file=source, field=f"{where}.{i}")
        if name not in have:
            what = "derived feature's input" if role == "derived" else "feature"
            raise ScenarioError(f"unknown {what} {name!r}: neither a model feature nor a column of the data",
                                file=source, field=f"{where}.{i}")
        if name not in extras:
            extras.append(name)
        return len(feats) + extras.index(name)

    der, imps, lins = [], [], []
    for i, r in enumerate(relations):
        if isinstance(r, Derived):
            if r.feature not in index:
                raise ScenarioError(f"derived feature {r.feature!r} is not a model feature", file=source,
                                    field=f"{where}.{i}")
            prog: list[tuple[int, float]] = []
            _program(r.expr, prog, lambda n, i=i: col(n, i, role="derived"))
            der.append((i, index[r.feature], prog))
        elif isinstance(r, Implication):
            imps.append((i, [(col(c.feature, i), OP_CODE[c.op], c.values) for c in (r.if_, r.then)]))
        else:
            lins.append((i, [(col(n, i), c) for n, c in r.terms], r.const, r.sense))
    # derived features may read earlier derived features only (evaluated in order)
    done: set[int] = set()
    for i, j, prog in der:
        for op, arg in prog:
            if op == P_VAR and int(arg) in {jj for _, jj, _ in der} and int(arg) not in done:
                raise ScenarioError(f"derived feature {feats[j]!r} reads {feats[int(arg)]!r}, which is derived later; "
                                    "list it first", file=source, field=f"{where}.{i}")
        done.add(j)
    d, e = len(feats), len(extras)
    L = max([len(p) for _, _, p in der] + [1])
    S = max([len(v) for _, cs in imps for _, _, v in cs] + [1])
    derived = np.zeros(d, bool)
    for _, j, _ in der:
        derived[j] = True
    arr = RelationArrays(
        n_features=d, extra_names=tuple(extras), derived=derived,
        der_target=np.array([j for _, j, _ in der], np.int64),
        prog_op=np.array([[op for op, _ in p] + [P_CONST] * (L - len(p)) for _, _, p in der], np.int64).reshape(len(der), L),
        prog_arg=np.array([[a for _, a in p] + [0.0] * (L - len(p)) for _, _, p in der], np.float64).reshape(len(der), L),
        prog_len=np.array([len(p) for _, _, p in der], np.int64),
        imp_col=np.array([[c for c, _, _ in cs] for _, cs in imps], np.int64).reshape(len(imps), 2),
        imp_op=np.array([[o for _, o, _ in cs] for _, cs in imps], np.int64).reshape(len(imps), 2),
        imp_val=np.array([[list(v) + [np.nan] * (S - len(v)) for _, _, v in cs] for _, cs in imps],
                         np.float64).reshape(len(imps), 2, S),
        imp_nval=np.array([[len(v) for _, _, v in cs] for _, cs in imps], np.int64).reshape(len(imps), 2),
        lin_coef=np.zeros((len(lins), d + e)), lin_const=np.zeros(len(lins)),
        relations=tuple(relations),
        fields=tuple(f"{where}.{i}" for i, _, _ in der) + tuple(f"{where}.{i}" for i, _ in imps)
        + tuple(f"{where}.{i}" for i, *_ in lins),
    )
    for row, (_, terms, const, sense) in enumerate(lins):
        s = 1.0 if sense == ">=" else -1.0
        for c, v in terms:
            arr.lin_coef[row, c] += s * v
        arr.lin_const[row] = s * const
    return arr


def _program(e: Expr, out: list, col) -> None:
    if isinstance(e, Num):
        out.append((P_CONST, e.value))
    elif isinstance(e, Var):
        out.append((P_VAR, float(col(e.name))))
    elif isinstance(e, Neg):
        _program(e.arg, out, col)
        out.append((P_NEG, 0.0))
    else:
        _program(e.left, out, col)
        _program(e.right, out, col)
        out.append(({"+": P_ADD, "-": P_SUB, "*": P_MUL, "/": P_DIV, "min": P_MIN, "max": P_MAX}[e.op], 0.0))


def no_relations(n_features: int) -> RelationArrays:
    return compile_relations((), [f"f{j}" for j in range(n_features)])


def holds(xp, v, op: int, vals, nval: int):
    """Whether values ``v`` meet a condition (``OP_CODE``: ==, !=, <, <=, >, >=, in, not in) against the first
    ``nval`` of ``vals``; ``xp`` is numpy or cupy. The one definition the NumPy/CuPy kernels share (the Numba
    kernel in :mod:`simulator.kernels.relations` is its row-at-a-time twin)."""
    if op == 0:
        return v == vals[0]
    if op == 1:
        return v != vals[0]
    if op == 2:
        return v < vals[0]
    if op == 3:
        return v <= vals[0]
    if op == 4:
        return v > vals[0]
    if op == 5:
        return v >= vals[0]
    inside = xp.zeros(v.shape, bool)
    for s in range(nval):
        inside |= v == vals[s]
    return inside if op == 6 else ~inside


def check_feasible_space(arr: RelationArrays, sa, *, source: str | None = None) -> None:
    """Bad input when the linear relations and the features' bounds leave no point at all (each relation's side
    checked alone against the bounds: a relation no value of its features can meet)."""
    d = arr.n_features
    for r in range(len(arr.lin_const)):
        coef = arr.lin_coef[r]
        best = arr.lin_const[r]
        bounded = True
        for c in np.flatnonzero(coef):
            if c >= d:
                bounded = False  # data columns vary per target: checked per target
                break
            lo, hi = float(sa.lo[c]), float(sa.hi[c])
            if not (math.isfinite(lo) and math.isfinite(hi)):
                bounded = False
                break
            best += max(coef[c] * lo, coef[c] * hi)
        if bounded and best < -1e-9 * (1 + abs(best)):
            rel = arr.relations and [x for x in arr.relations if isinstance(x, Linear)][r]
            raise ScenarioError(f"no values within the features' bounds satisfy {getattr(rel, 'text', '') or 'it'}",
                                file=source, field=arr.fields[len(arr.der_target) + len(arr.imp_col) + r])
