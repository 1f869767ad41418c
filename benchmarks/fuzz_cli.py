"""Fuzz the newer commands the way a hostile or careless user would: sweep files, damaged run and sweep files given
to report / gate / compare / query, compare with many inputs of any kind, hostile gates and SQL.

    python benchmarks/fuzz_cli.py [--cases 300] [--seed 0] [--max-seconds S] [--families sweep,store,...]

Families:
  sweep    a sweep file mutated at the value level (hostile values at random paths of base/grid/variants/output,
           keys dropped or added) and at the text level (truncation, bytes flipped, encodings, deep nesting,
           aliases), run with ``fraudsim sweep --engine serial``.
  store    a finished run file or sweep file damaged (truncated, bytes flipped past the header, fraudsim_meta values,
           tables or views dropped, columns emptied) and read by a random reader; run in a child process, so a
           native crash of DuckDB is counted, not suffered.
  compare  ``fraudsim compare`` with 1-6 inputs drawn from run files, sweep files, FILE::RUN_ID (good and bad),
           Parquet, YAML, folders, missing paths, /dev/zero.
  gate     hostile gate expressions on a run file and a sweep file.
  query    hostile SQL (writes, ATTACH, COPY, pragmas, huge joins under --timeout) on a run file.

Each case: exit 0/1 (ok, gate failed) or 2 with one line on stderr is fine; exit 3, a traceback, two lines, another
exit code, a hang (60 s) or an input file changed is a finding. Prints the counts and up to 5 samples of each.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = {"sweep": 30, "store": 30, "compare": 15, "gate": 15, "query": 10}
HOSTILE = [None, -1, 0, 1, 2**63, 1e300, float("nan"), float("inf"), "", "x", "[/x]", "a\nb", "\u202e", "ü" * 300,
           {}, [], {"a": 1}, [1, 2], [[[]]], "/dev/zero", ".", "..", "x" * 300 + ".duckdb", True, "~"]
GATES = ["auc >= 0.5", "success_rate_at_100 <= 0.05", "", " ", "auc", "auc >= ", ">= 1", "auc >= nan", "auc >= inf",
         "auc >= 1e999", "success_rate_at_0 <= 1", "success_rate_at_-1 <= 1", "success_rate_at_99999999999999999999 <= 1",
         "nope <= 1", "auc >= 0.5 or 1=1", "auc >= 0.5; DROP TABLE runs", "auc >= 0.5\n", "[/x] <= 1", "auc >== 1",
         "median_queries_to_evasion <= 10", "cheap_success_rate <= 0.1", "threshold >= 0", "recall >= 0.1",
         "false_positive_rate <= 0.1", "auc\u202e >= 0.5", "ü" * 500 + " <= 1"]
SQL = ["SELECT 1", "DELETE FROM runs", "DROP TABLE runs", "INSERT INTO runs SELECT * FROM runs", "UPDATE runs SET seed=1",
       "ATTACH '/tmp/x.duckdb' AS x", "COPY runs TO '/tmp/fuzz_cli_copy.csv'", "PRAGMA database_list",
       "SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM queries a, queries b, queries c",
       "SELECT count(*) FROM range(100000000000)", "", ";", "SELECT 1; SELECT 2", "-- comment only",
       "SELECT * FROM nope", "SELECT \"ü\" FROM queries", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r) "
       "SELECT * FROM r", "SHOW TABLES", "SUMMARIZE queries", "EXPLAIN SELECT 1", "SET memory_limit='1TB'",
       "CALL pragma_version()", "SELECT repeat('x', 100000000)", "INSTALL httpfs", "LOAD httpfs",
       "SELECT * FROM success_by_budget", "PRAGMA table_info('runs')", "CHECKPOINT", "EXPORT DATABASE '/tmp/fuzz_exp'"]
META_EDITS = [
    "UPDATE fraudsim_meta SET value = '{}' WHERE key = 'schema_version'",
    "DELETE FROM fraudsim_meta WHERE key = 'schema_version'",
    "UPDATE fraudsim_meta SET value = '{}' WHERE key = 'features'",
    "UPDATE fraudsim_meta SET value = '{}' WHERE key = 'views_version'",
    "DELETE FROM fraudsim_meta",
    "DROP TABLE {} CASCADE",
    "DELETE FROM {}",
    "DROP VIEW IF EXISTS success_by_budget",
    "UPDATE runs SET threshold = NULL, status = 'running'",
    "UPDATE model_versions SET card = '{}'",
    "UPDATE runs SET scenario_yaml = '{}'",
    "UPDATE feature_columns SET column_name = '{}'",
    "UPDATE queries SET score = 'nan'::DOUBLE",
    "UPDATE targets SET original_score = NULL, queries_used = -1",
]
META_VALUES = ["99", "abc", "", "[", '{"a": 1}', '["nope"]', "-1", "3.0", "null", "ü" * 50, "'; DROP TABLE runs; --"]
TABLES = ["runs", "targets", "queries", "transactions", "model_versions", "feature_columns", "sweep"]


class Hang(BaseException):  # not an Exception: the CLI's guard would report it as an internal error (exit 3)
    pass


def _alarm(signum, frame):
    raise Hang()


def digest(paths):
    out = {}
    for p in paths:
        try:
            out[str(p)] = hashlib.sha256(Path(p).read_bytes()).hexdigest() if Path(p).is_file() else None
        except OSError:
            out[str(p)] = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--families", default=None, help="comma-separated subset of: " + ", ".join(FAMILIES))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    families = [f for f in FAMILIES if args.families is None or f in args.families.split(",")]

    import duckdb
    import polars as pl
    from typer.testing import CliRunner

    from simulator.cli import app
    from simulator.schema import frame_to_matrix
    from simulator.target.train import save_model, train_model
    from simulator.world import FEATURES, LABEL, World, WorldConfig

    runner = CliRunner()
    work = Path(tempfile.mkdtemp(prefix="fraudsim-fuzz-cli-"))
    frame = World(WorldConfig(customers=1500, days=6), seed=3).generate()
    train, test = frame.filter(pl.col("day") < 4), frame.filter(pl.col("day") >= 4)
    tm = (frame_to_matrix(train, list(FEATURES)), train[LABEL].to_numpy(), frame_to_matrix(test, list(FEATURES)),
          test[LABEL].to_numpy(), list(FEATURES))
    save_model(train_model(*tm, kind="xgboost", seed=1), work / "m.json")
    test.drop("transaction_id").write_parquet(work / "data.parquet")
    base = {"name": "b", "seed": 2, "data": {"path": "data.parquet"}, "model": {"path": "m.json"},
            "features": {"amount": {"type": "continuous", "min": 0.5, "max": 20000}},
            "attack": {"targets": "fraud", "limit": 1, "budget": 5, "strategies": ["random"]}}
    (work / "base.yaml").write_text(yaml.safe_dump(base))
    r = runner.invoke(app, ["run", str(work / "base.yaml"), "-q", "-o", str(work / "run.duckdb")])
    assert r.exit_code == 0, r.output
    (work / "sw.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"seed": [1, 2]}, "output": "sw.duckdb"}))
    r = runner.invoke(app, ["sweep", str(work / "sw.yaml"), "--engine", "serial", "-q"])
    assert r.exit_code == 0, r.output
    (work / "adir").mkdir()
    inputs = [work / n for n in ("base.yaml", "m.json", "data.parquet", "run.duckdb", "sw.duckdb", "sw.yaml")]
    before = digest(inputs)
    run_id = duckdb.connect(str(work / "run.duckdb"), read_only=True).execute("SELECT run_id FROM runs").fetchone()[0]

    counts: Counter[str] = Counter()
    samples: dict[str, list[str]] = {}
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter()

    def record(outcome: str, detail: str = "") -> None:
        counts[outcome] += 1
        if outcome != "ok" and len(samples.setdefault(outcome, [])) < 5:
            samples[outcome].append(detail[:400])

    def judge(code, stderr: str, detail: str) -> None:
        lines = stderr.strip().splitlines()
        if code in (0, 1) and "Traceback" not in stderr:
            record("ok")
        elif code == 2 and len(lines) == 1 and "Traceback" not in stderr:
            record("ok")
        elif code == 2:
            record("multi-line error", f"{detail} | {stderr[-300:]}")
        else:
            record(f"exit {code}", f"{detail} | {(lines or [''])[-1][:300]}")

    def cli(argv: list[str], detail: str) -> None:
        signal.setitimer(signal.ITIMER_REAL, 60.0)
        try:
            res = runner.invoke(app, [str(a) for a in argv])
            signal.setitimer(signal.ITIMER_REAL, 0)
            judge(res.exit_code, res.stderr, detail)
        except Hang:
            record("hang", detail)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def child(argv: list[str], detail: str) -> None:  # damaged DuckDB files: a native crash kills only the child
        code = "from simulator.cli import main; main()"
        try:
            p = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True,
                               timeout=120, cwd=str(work))
        except subprocess.TimeoutExpired:
            record("hang", detail)
            return
        if p.returncode < 0:
            record("native crash", f"{detail} | signal {-p.returncode}")
            return
        judge(p.returncode, p.stderr, detail)

    tried = 0
    for i in range(args.cases):
        if args.max_seconds is not None and time.perf_counter() - t0 > args.max_seconds:
            break
        tried += 1
        family = rng.choices(families, [FAMILIES[f] for f in families])[0]
        case = work / f"case{i}"
        case.mkdir()
        for n in ("base.yaml", "m.json", "data.parquet"):
            os.link(work / n, case / n)
        if family == "sweep":
            raw: dict = {"base": "base.yaml", "output": "out.duckdb"}
            raw.update(rng.choice([{"grid": {"seed": [1]}}, {"variants": [{"attack.budget": 3}]},
                                   {"grid": {"attack.budget": [2, 3], "seed": [1]}}]))
            for _ in range(rng.randint(1, 3)):
                top = rng.choice(list(raw) + ["extra"])
                value = copy.deepcopy(rng.choice(HOSTILE + ["base.yaml", "data.parquet", "m.json", "sw.yaml"]))
                op = rng.random()
                if op < 0.15:
                    raw.pop(top, None)
                elif op < 0.5 or not isinstance(raw.get(top), (dict, list)) or not raw.get(top):
                    raw[top] = value
                elif isinstance(raw[top], dict):
                    key = rng.choice(list(raw[top]) + ["attack.budget", "model.path", "data.path", "features.amount.max",
                                                       "attack.strategies", "nope", "attack..x", "name"])
                    raw[top][key] = value if rng.random() < 0.3 else [value]
                else:
                    raw[top][0] = value
            try:
                text = yaml.safe_dump(raw, allow_unicode=True).encode()
            except Exception:
                text = repr(raw).encode()
            op = rng.randrange(8)
            if op == 0:
                text = text[:rng.randrange(len(text) + 1)]
            elif op == 1:
                b = bytearray(text)
                for _ in range(rng.randint(1, 5)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                text = bytes(b)
            elif op == 2:
                text = text.decode("utf-8", "replace").encode(rng.choice(["utf-16", "latin-1"]), "replace")
            elif op == 3:
                text += b"grid: " + b"[" * 3000 + b"]" * 3000 + b"\n"
            (case / "s.yaml").write_bytes(text)
            extra = rng.choice([[], [], ["-o", case / "o.duckdb"], ["-o", case / "data.parquet"], ["-o", case],
                                ["-o", "/dev/null"]])
            mine = [case / n for n in ("base.yaml", "m.json", "data.parquet")]
            mine_before = digest(mine)
            cli(["sweep", case / "s.yaml", "--engine", "serial", "-q", *extra], f"sweep {case / 's.yaml'} {extra}")
            if digest(mine) != mine_before:
                record("input changed", f"sweep {case / 's.yaml'} {extra}")
        elif family == "store":
            src = rng.choice(["run.duckdb", "sw.duckdb"])
            target = case / "f.duckdb"
            shutil.copy(work / src, target)
            op = rng.randrange(4)
            if op == 0:
                data = target.read_bytes()
                target.write_bytes(data[:rng.randrange(len(data))])
            elif op == 1:
                with open(target, "r+b") as f:
                    size = target.stat().st_size
                    for _ in range(rng.randint(1, 50)):
                        f.seek(rng.randrange(4096, size))
                        f.write(bytes([rng.randrange(256)]))
            else:
                con = duckdb.connect(str(target))
                for _ in range(rng.randint(1, 2)):
                    sql = rng.choice(META_EDITS)
                    sql = sql.format(rng.choice(TABLES) if "TABLE {}" in sql or "FROM {}" in sql
                                     else rng.choice(META_VALUES).replace("'", "''"))
                    try:
                        con.execute(sql)
                    except duckdb.Error:
                        pass
                con.close()
            reader = rng.choice([["report", target, "-o", case / "r.html"], ["gate", target, rng.choice(GATES)],
                                 ["compare", target, work / "run.duckdb"], ["compare", target, target, target],
                                 ["query", target, rng.choice(SQL[:3] + ["SELECT * FROM success_by_budget"])]])
            child(reader, f"store op {op} {src}: {' '.join(map(str, reader))}")
        elif family == "compare":
            pool = [work / "run.duckdb", work / "sw.duckdb", f"{work / 'run.duckdb'}::{run_id}",
                    f"{work / 'run.duckdb'}::nope", f"{work / 'run.duckdb'}::", f"::{run_id}", work / "data.parquet",
                    work / "base.yaml", work / "adir", work / "missing.duckdb", "/dev/zero", "", "::", "a::b::c",
                    f"{work / 'sw.duckdb'}::{run_id}"]
            picks = [rng.choice(pool) for _ in range(rng.randint(1, 6))]
            fmt = rng.choice([[], ["-f", "csv"], ["-f", "json"], ["-f", "parquet"], ["-f", "nope"],
                              ["-o", case / "c.csv"], ["-o", work / "run.duckdb"], ["-o", work / "data.parquet"]])
            cli(["compare", *picks, *fmt], f"compare {picks} {fmt}")
        elif family == "gate":
            target = rng.choice([work / "run.duckdb", work / "sw.duckdb"])
            gates = [rng.choice(GATES) for _ in range(rng.randint(1, 3))]
            extra = rng.choice([[], ["--run-id", "nope"], ["--junit", case / "j.xml"], ["--junit", work / "m.json"]])
            cli(["gate", target, *gates, *extra], f"gate {target.name} {gates} {extra}")
        else:
            sql = rng.choice(SQL)
            extra = rng.choice([[], ["--timeout", "2"], ["--max-rows", "1"], ["--memory-limit", "1MB"],
                                ["--memory-limit", "lots"], ["--timeout", "-1"], ["-f", "json"], ["-o", case / "q.parquet"]])
            cli(["query", work / "run.duckdb", sql, *extra], f"query {sql!r} {extra}")
        if digest(inputs) != before:
            record("input changed", f"{family} case {i}: a shared input file changed")
            before = digest(inputs)

    elapsed = time.perf_counter() - t0
    findings = {k: v for k, v in counts.items() if k != "ok"}
    print(f"fuzz_cli: {tried} of {args.cases} cases, seed {args.seed}, families {', '.join(families)}, {elapsed:.0f} s")
    print(f"  fine (exit 0/1, or 2 with one line)  {counts['ok']:>6}")
    for k in ("exit 3", "multi-line error", "hang", "native crash", "input changed"):
        print(f"  {k:<37}{counts[k]:>6}   (goal 0)")
    for k, v in findings.items():
        if k not in ("exit 3", "multi-line error", "hang", "native crash", "input changed"):
            print(f"  {k:<37}{v:>6}   (goal 0)")
    for k, lines in samples.items():
        for s in lines:
            print(f"  {k}: {s}")
    if not findings:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
