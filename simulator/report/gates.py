"""Gates: thresholds on a run's measures that turn it into a pass/fail verdict, an exit code and a JUnit file.

A gate is one line in a small strict grammar::

    gate     := metric [ "[" strategy "]" ] operator number
    operator := "<=" | "<" | ">=" | ">" | "=="

for instance ``success_rate_at_100 <= 0.05``, ``median_queries_to_evasion >= 500``, ``auc >= 0.85`` or
``success_rate_at_100[evolutionary] <= 0.1``. Without ``[strategy]`` a per-strategy measure takes the value of the
strategy that is worst for the defender (the highest success rate, the fewest queries, the lowest cost). The metrics
are listed in :mod:`simulator.report.metrics` and defined once in :mod:`simulator.measures`; the older names
``success_at_<N>``, ``cheap_success_at_<N>`` and ``median_evasion_cost`` are accepted as aliases and reported under
their canonical names (``success_rate_at_<N>``, ``cheap_success_rate_at_<N>``, ``median_best_cost``).

Examples
--------
>>> g = parse_gate("success_rate_at_100[evolutionary] <= 0.1")
>>> g.metric, g.strategy, g.op, g.threshold
('success_rate_at_100', 'evolutionary', '<=', 0.1)
>>> parse_gate("auc >= 0.85").check(0.91)
True
>>> parse_gate("succes_rate_at_100 <= 0.1", index=0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
simulator.errors.ScenarioError: gates.0: unknown metric 'succes_rate_at_100'; known: success_rate_at_<N>, ...
"""
from __future__ import annotations

import math
import operator
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import ScenarioError
from . import metrics as M
from .views import resolve_run_id

OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRATEGY = re.compile(r"\[\s*([A-Za-z0-9_.-]+)\s*\]")
_OP = re.compile(r"<=|>=|==|<|>")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Gate:
    """One parsed gate; ``index`` is its position in the scenario's ``gates`` list (for error messages)."""

    metric: str
    strategy: str | None
    op: str
    threshold: float
    index: int | None = None

    @property
    def expression(self) -> str:
        """The gate written canonically, e.g. ``success_rate_at_100[random] <= 0.05``."""
        where = f"[{self.strategy}]" if self.strategy else ""
        return f"{self.metric}{where} {self.op} {self.threshold:g}"

    @property
    def spec(self) -> M.MetricSpec:
        spec = M.metric_spec(self.metric)
        assert spec is not None
        return spec

    @property
    def field(self) -> str:
        return "gates" if self.index is None else f"gates.{self.index}"

    def check(self, observed: float | None) -> bool:
        if observed is None or (isinstance(observed, float) and math.isnan(observed)):
            return False
        return bool(OPERATORS[self.op](observed, self.threshold))


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate on one run."""

    name: str  # the canonical expression
    expression: str  # as written
    observed: float | None
    passed: bool
    strategy: str | None = None  # the strategy the observed value comes from (the worst one when none was named)
    detail: str = ""


def parse_gate(text: str, *, index: int | None = None) -> Gate:
    """Parse one gate expression; a malformed one or an unknown metric raises ``ScenarioError(field="gates.N")``."""
    field = "gates" if index is None else f"gates.{index}"

    def fail(reason: str) -> ScenarioError:
        return ScenarioError(reason, field=field)

    if not isinstance(text, str):
        raise fail(f"a gate must be a string such as 'success_rate_at_100 <= 0.05' (got {type(text).__name__})")
    s = text.strip()
    pos = 0
    m = _NAME.match(s, pos)
    if not m:
        raise fail(f"expected a metric name at the start of {text!r}, as in 'success_rate_at_100 <= 0.05'")
    metric = m.group(0)
    spec = M.metric_spec(metric)
    if spec is None:
        raise fail(f"unknown metric {metric!r}; known: {', '.join(M.KNOWN)}")
    if spec.budget is not None and spec.budget < 1:
        raise fail(f"{metric}: the number of queries N must be at least 1")
    pos = m.end()
    while pos < len(s) and s[pos].isspace():
        pos += 1
    strategy = None
    if s.startswith("[", pos):
        sm = _STRATEGY.match(s, pos)
        if not sm:
            raise fail(f"expected a strategy name in brackets after {metric!r}, as in {metric}[evolutionary]")
        if not spec.per_strategy:
            raise fail(f"{metric} is a model measure with no per-strategy value; drop [{sm.group(1)}]")
        strategy = sm.group(1)
        pos = sm.end()
    while pos < len(s) and s[pos].isspace():
        pos += 1
    om = _OP.match(s, pos)
    if not om or s.startswith("=>", pos) or s.startswith("=<", pos):
        got = s[pos:pos + 2] or "nothing"
        raise fail(f"expected a comparison (<=, <, >=, >, ==) after {s[:pos].strip()!r}, got {got!r}")
    op = om.group(0)
    if op in ("<", ">") and s.startswith("=", om.end()):
        raise fail(f"unexpected '=' after {op!r}; write {op}=")
    pos = om.end()
    while pos < len(s) and s[pos].isspace():
        pos += 1
    nm = _NUMBER.match(s, pos)
    if not nm:
        raise fail(f"expected a number after {op!r} in {text!r}")
    rest = s[nm.end():].strip()
    if rest:
        raise fail(f"unexpected {rest!r} after the number in {text!r}")
    threshold = float(nm.group(0))
    return Gate(metric=spec.name, strategy=strategy, op=op, threshold=threshold, index=index)


def parse_gates(texts: Iterable[str | Gate]) -> list[Gate]:
    """Parse a scenario's ``gates`` list (strings or already-parsed gates), numbering errors ``gates.N``."""
    return [t if isinstance(t, Gate) else parse_gate(t, index=i) for i, t in enumerate(texts)]


def validate_gates(texts: Sequence[str] | str | None, *, budget: int | None = None) -> tuple[str, ...]:
    """For the scenario model: check every gate parses (and, given the attack budget, asks about at most that many
    queries); return them as a tuple. Raises ``ScenarioError(field="gates.N")``.

    Examples
    --------
    >>> validate_gates(["auc >= 0.85", "success_rate_at_100 <= 0.05"], budget=1000)
    ('auc >= 0.85', 'success_rate_at_100 <= 0.05')
    >>> validate_gates("auc >= 0.85")
    ('auc >= 0.85',)
    """
    if texts is None:
        return ()
    items = [texts] if isinstance(texts, str) else list(texts)
    for gate in parse_gates(items):
        M.check_budget(gate.spec, budget, gate.field)
    return tuple(items)


def format_value(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞ (not reached)" if value > 0 else "-∞"
    if "rate" in metric or metric in ("auc", "recall"):
        return f"{value:.4g}"
    return f"{value:.6g}"


def evaluate_gates(path_or_con: str | Path | duckdb.DuckDBPyConnection, run_id: str | None,
                   gates: Sequence[str | Gate]) -> list[GateResult]:
    """Evaluate gates on a run file (a path, or an open connection); ``run_id`` None means the file's latest run.

    Bad input (a malformed gate, an unknown metric or strategy, N beyond the run's budget) raises
    ``ScenarioError``; a file that is not a fraudsim run raises ``StoreError``.
    """
    parsed = parse_gates(gates)
    own = not isinstance(path_or_con, duckdb.DuckDBPyConnection)
    if isinstance(path_or_con, duckdb.DuckDBPyConnection):
        con = path_or_con
    else:
        from ..store import open_readonly

        con = open_readonly(path_or_con)
    try:
        if own:
            from .views import require_run_tables

            require_run_tables(con, str(path_or_con))
        run_id = resolve_run_id(con, run_id, file=None if not own else str(path_or_con))
        budget = M.run_budget(con, run_id)
        known = M.strategies(con, run_id)
        model: dict | None = None
        results = []
        texts = [g if isinstance(g, str) else g.expression for g in gates]
        for gate, text in zip(parsed, texts):
            spec = gate.spec
            M.check_budget(spec, budget, gate.field)
            if not spec.per_strategy:
                model = model if model is not None else M.model_values(con, run_id)
                observed = model.get(gate.metric)
                observed = None if observed is None else float(observed)
                detail = f"model version {model['model_version']}, {model['split']} split" if model["split"] else ""
                if observed is None:
                    detail = "not measurable: no labelled transactions of both classes for the model" \
                        if gate.metric != "threshold" else "no threshold recorded"
                results.append(GateResult(gate.expression, text.strip(), observed, gate.check(observed), None, detail))
                continue
            values = M.strategy_values(con, run_id, spec)
            if spec.worst == "min":  # a median over evaded targets when none was: never reached, the best verdict
                values = {k: (math.inf if v is None else v) for k, v in values.items()}
            who: str | None
            if gate.strategy is not None:
                if gate.strategy not in values:
                    raise ScenarioError(f"no strategy {gate.strategy!r} in run {run_id} (strategies: "
                                        f"{', '.join(known) or 'none'})", field=gate.field)
                who, observed = gate.strategy, values[gate.strategy]
                detail = f"strategy {who}"
            else:
                who, observed = M.worst(values, spec.worst or "max")
                detail = f"worst strategy: {who}" if who else "no targets in this run"
            results.append(GateResult(gate.expression, text.strip(), observed, gate.check(observed), who, detail))
        return results
    finally:
        if own:
            con.close()


def failure_message(result: GateResult) -> str:
    return f"observed {format_value(result.name.split('[')[0].split()[0], result.observed)}" + \
        (f" ({result.detail})" if result.detail else "") + f"; gate: {result.name}"


def write_junit(results: Sequence[GateResult], path: str | Path, suite_name: str = "fraudsim gates", *,
                properties: dict[str, str] | None = None, elapsed_s: float = 0.0) -> Path:
    """Write JUnit XML: one ``testcase`` per gate, with a ``failure`` element holding the observed value."""
    failures = sum(not r.passed for r in results)
    suites = ET.Element("testsuites", name=suite_name, tests=str(len(results)), failures=str(failures), errors="0",
                        time=f"{elapsed_s:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(results)), failures=str(failures),
                          errors="0", skipped="0", time=f"{elapsed_s:.3f}",
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if properties:
        props = ET.SubElement(suite, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", name=str(k), value=str(v))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="fraudsim.gates", name=r.name, time="0")
        observed = "" if r.observed is None else repr(float(r.observed))
        if r.passed:
            ET.SubElement(case, "system-out").text = f"observed {observed}" + (f" ({r.detail})" if r.detail else "")
        else:
            fail = ET.SubElement(case, "failure", message=failure_message(r), type="GateFailed")
            fail.text = f"gate: {r.name}\nobserved: {observed or 'n/a'}\n" + (f"detail: {r.detail}\n" if r.detail else "")
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def check_run(path: str | Path, run_id: str | None, gates: Sequence[str | Gate], *, junit: str | Path | None = None,
              suite_name: str | None = None) -> list[GateResult]:
    """Evaluate gates on a finished run and optionally write the JUnit file: the one call ``fraudsim run`` needs."""
    t0 = time.perf_counter()
    results = evaluate_gates(path, run_id, gates)
    if junit is not None:
        from ..store import open_readonly

        con = open_readonly(path)
        try:
            rid = resolve_run_id(con, run_id)
            name = con.execute("SELECT scenario FROM runs WHERE run_id = ?", [rid]).fetchall()[0][0]
        finally:
            con.close()
        write_junit(results, junit, suite_name or f"fraudsim gates: {name}",
                    properties={"run_id": rid, "run_file": str(path)}, elapsed_s=time.perf_counter() - t0)
    return results


def exit_code(results: Sequence[GateResult]) -> int:
    """0 when every gate passed, 1 when any failed (bad input never gets here: it exits with 2)."""
    return 0 if all(r.passed for r in results) else 1
