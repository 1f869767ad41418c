"""Independent check that no logged query breaks a scenario's relations (check-run.py style: the relation strings
are turned into NumPy expressions here, without fraudsim's parser or kernels, and evaluated over the DuckDB
``queries`` table). Columns the queries table lacks (e.g. ``mean_amount_30d``) come from the scenario's data file
by target id; relations that need a column neither has are reported as skipped."""
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import yaml

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expr(text: str) -> str:
    text = text.strip()
    m = re.fullmatch(r"if (.+?) then (.+)", text)
    if m:
        return f"(~({_cond(m.group(1))}) | ({_cond(m.group(2))}))"
    if re.search(r"(?<![<>=!])=(?!=)", text) and not re.search(r">=|<=", text):
        lhs, rhs = text.split("=", 1)
        return f"_close({lhs.strip()}, {_arith(rhs)})"
    return _arith(text) + " + 0"  # an inequality: numpy compares elementwise


def _cond(c: str) -> str:
    m = re.fullmatch(r"\s*(\w+)\s+(not in|in)\s+(\[.*\])\s*", c)
    if m:
        inside = f"np.isin({m.group(1)}, {m.group(3)})"
        return inside if m.group(2) == "in" else f"~{inside}"
    return f"({c.strip()})"


def _arith(e: str) -> str:
    return e.replace("min(", "np.minimum(").replace("max(", "np.maximum(")


def _close(a, b):
    return np.isclose(a, b, rtol=1e-9, atol=1e-12)


def broken(scenario_yaml: Path, run_file: Path) -> tuple[dict[str, int], list[str]]:
    """Per relation, how many logged queries break it (inputs NaN count as satisfied), and the skipped ones."""
    sc = yaml.safe_load(Path(scenario_yaml).read_text())
    rels = sc.get("relations") or []
    con = duckdb.connect(str(run_file), read_only=True)
    q = pl.from_arrow(con.sql("SELECT * FROM queries").to_arrow_table())
    con.close()
    data = None
    if isinstance(sc.get("data"), dict):
        p = Path(scenario_yaml).parent / sc["data"]["path"]
        data = pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_csv(p)
    out, skipped = {}, []
    for text in rels:
        names = {n for n in _NAME.findall(text) if n not in ("if", "then", "in", "not", "min", "max")}
        env = {"np": np, "_close": _close}
        nan = np.zeros(q.height, bool)
        ok = True
        for n in names:
            if n in q.columns:
                v = q[n].cast(pl.Float64).to_numpy()
            elif data is not None and n in data.columns:
                v = data[n].cast(pl.Float64).to_numpy()[q["target_id"].to_numpy()]
            else:
                ok = False
                break
            env[n] = v
            nan |= np.isnan(v)
        if not ok:
            skipped.append(text)
            continue
        holds = np.asarray(eval(_expr(text), env), bool)  # noqa: S307 (our own scenario files)
        out[text] = int((~holds & ~nan).sum())
    return out, skipped
