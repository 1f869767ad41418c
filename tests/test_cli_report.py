"""``fraudsim query | report | gate | compare`` end to end: outputs, exit codes (0 pass, 1 gate failed, 2 bad input),
one-line errors, and the run file left byte-for-byte unchanged by anything that reads it."""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

import simulator as fs
from simulator.cli import app

SCENARIO = {"name": "t", "seed": 3, "world": {"customers": 2000, "days": 6},
            "attack": {"limit": 8, "budget": 60, "strategies": ["random", "evolutionary"]}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fs.run(fs.Scenario.from_dict(SCENARIO), output=tmp_path_factory.mktemp("cli") / "t.duckdb")


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A second, different run to compare with: decision feedback only, smaller budget."""
    sc = dict(SCENARIO, name="u", attack={"limit": 5, "budget": 30, "feedback": "decision", "strategies": ["random"]})
    return fs.run(fs.Scenario.from_dict(sc), output=tmp_path_factory.mktemp("cli") / "u.duckdb")


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fraudsim: ")
    assert "Traceback" not in result.output
    return lines[0]


# -- query -----------------------------------------------------------------------------------------------------------

def test_query_table_csv_json_parquet(run, tmp_path):
    r = cli("query", run.path, "SELECT strategy, count(*) AS n FROM targets GROUP BY 1 ORDER BY 1")
    assert r.exit_code == 0, r.output
    assert "evolutionary" in r.stdout and "random" in r.stdout and "┃" in r.stdout
    r = cli("query", run.path, "SELECT strategy, budget, success_rate FROM success_by_budget ORDER BY 1, 2", "--format", "csv")
    assert r.exit_code == 0
    df = pl.read_csv(r.stdout.encode())
    assert df.columns == ["strategy", "budget", "success_rate"] and df.height > 10
    r = cli("query", run.path, "SELECT * FROM run_summary", "-f", "json")
    rows = json.loads(r.stdout)
    assert {row["strategy"] for row in rows} == {"random", "evolutionary"} and rows[0]["targets"] == 8
    out = tmp_path / "q.parquet"
    r = cli("query", run.path, "SELECT * FROM queries", "-o", out)  # format from the suffix
    assert r.exit_code == 0 and pl.read_parquet(out).height == 8 * 2 * 60
    out_csv = tmp_path / "sub" / "s.csv"
    assert cli("query", run.path, "DESCRIBE targets", "-f", "csv", "-o", out_csv).exit_code == 0
    assert "queries_to_first_evasion" in out_csv.read_text()


def test_query_table_is_cut_at_max_rows(run):
    r = cli("query", run.path, "SELECT * FROM range(500) t(i)", "--max-rows", "7")
    assert r.exit_code == 0 and "first 7 rows shown" in r.stdout
    assert "│ 6 │" in r.stdout and "│ 7 │" not in r.stdout


def test_query_reads_catalogue_statements(run):
    for stmt in ("SHOW TABLES", "DESCRIBE queries", "SUMMARIZE targets", "PRAGMA table_info('runs')",
                 "EXPLAIN SELECT count(*) FROM queries", "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
                 "FROM feature_changes LIMIT 3"):
        r = cli("query", run.path, stmt)
        assert r.exit_code == 0, (stmt, r.output)


FORBIDDEN = [
    ("DROP TABLE queries", "DROP"), ("DELETE FROM queries", "DELETE"), ("INSERT INTO runs (run_id) VALUES ('x')", "INSERT"),
    ("UPDATE runs SET seed = 99", "UPDATE"), ("ATTACH '/tmp/other.duckdb' AS o", "ATTACH"),
    ("COPY queries TO '/tmp/fraudsim-leak.csv'", "COPY"), ("COPY (SELECT 1) TO '/tmp/fraudsim-leak.csv'", "COPY"),
    ("INSTALL httpfs", "INSTALL"), ("LOAD httpfs", "LOAD"), ("EXPORT DATABASE '/tmp/fraudsim-export'", "EXPORT"),
    ("SET threads = 1", "SET"), ("CREATE TABLE t AS SELECT 1", "CREATE"), ("CREATE VIEW v AS SELECT 1", "CREATE"),
    ("SELECT 1; DROP TABLE queries", "exactly one statement"), ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"), ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto"),
    ("SELECT * FROM read_parquet('/tmp/x.parquet')", "read_parquet"), ("SELECT * FROM read_text('/etc/hostname')", "read_text"),
    ("SELECT * FROM read_blob('/etc/hostname')", "read_blob"), ("SELECT * FROM read_json('/tmp/x.json')", "read_json"),
    ("SELECT * FROM glob('/etc/*')", "glob"), ("SELECT * FROM '/etc/passwd.csv'", "reading the file"),
    ("SELECT count(*) FROM queries WHERE target_id IN (SELECT * FROM read_csv('/etc/passwd'))", "read_csv"),
    ("SELECT * FROM query('DELETE FROM queries')", "query()"), ("CALL pragma_table_info('runs')", "CALL"),
    ("CHECKPOINT", "CHECKPOINT"), ("VACUUM", "VACUUM"), ("PRAGMA threads=1", "PRAGMA"), ("BEGIN", "BEGIN"),
    ("EXPLAIN ANALYZE DELETE FROM queries", "EXPLAIN"), ("DETACH t", "DETACH"), ("USE memory", "USE"),
]


@pytest.mark.parametrize("stmt, word", FORBIDDEN, ids=[f[0][:40] for f in FORBIDDEN])
def test_query_refuses_writes_and_other_files(run, stmt, word):
    before = fingerprint(run.path)
    line = one_line_error(cli("query", run.path, stmt))
    assert "query error" in line and word in line
    assert fingerprint(run.path) == before
    assert not Path("/tmp/fraudsim-leak.csv").exists() and not Path("/tmp/fraudsim-export").exists()


@pytest.mark.parametrize("stmt, word", [("SELEC 1", "bad SQL"), ("SELECT * FROM no_such_table", "no_such_table"),
                                        ("SELECT 'a'::INTEGER", "bad SQL"), ("", "no SQL")])
def test_query_bad_sql_is_one_line(run, stmt, word):
    assert word in one_line_error(cli("query", run.path, stmt))


def test_query_refuses_files_that_are_not_runs(tmp_path):
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database\n")
    assert "not a DuckDB file" in one_line_error(cli("query", text, "SELECT 1"))
    plain = tmp_path / "plain.duckdb"
    con = duckdb.connect(str(plain))
    con.execute("CREATE TABLE x AS SELECT 1 AS a").fetchall()
    con.close()
    assert "not a fraudsim run file" in one_line_error(cli("query", plain, "SELECT * FROM x"))
    assert "file not found" in one_line_error(cli("query", tmp_path / "missing.duckdb", "SELECT 1"))


def test_query_output_options(run):
    assert "needs an output file" in one_line_error(cli("query", run.path, "SELECT 1", "--format", "parquet"))
    assert "unknown format" in one_line_error(cli("query", run.path, "SELECT 1", "--format", "xlsx"))


# -- gate ------------------------------------------------------------------------------------------------------------

def test_gate_pass_exits_0(run, tmp_path):
    junit = tmp_path / "pass.xml"
    r = cli("gate", run.path, "auc >= 0.5", "success_rate_at_60 <= 1", "median_queries_to_evasion[random] >= 1",
            "--junit", junit)
    assert r.exit_code == 0, r.output
    assert "all 3 gates passed" in r.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0"


def test_gate_fail_exits_1_and_names_the_failures(run, tmp_path):
    junit = tmp_path / "fail.xml"
    before = junit.exists()
    r = cli("gate", run.path, "auc >= 0.5", "success_rate_at_10 <= 0.05", "cheap_success_rate_at_60[evolutionary] < 0",
            "--junit", junit)
    assert not before and r.exit_code == 1, r.output
    assert "2 of 3 gates failed" in r.stderr and "success_rate_at_10 <= 0.05" in r.stderr
    assert "FAIL" in r.stdout and "PASS" in r.stdout
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite.get("failures") == "2"
    failed = {c.get("name"): c.find("failure") for c in suite.findall("testcase")}
    assert failed["auc >= 0.5"] is None
    msg = failed["success_rate_at_10 <= 0.05"].get("message")
    assert msg.startswith("observed ") and "worst strategy" in msg


@pytest.mark.parametrize("expr, word", [("foo <= 1", "unknown metric 'foo'"),
                                        ("success_rate_at_100 =< 0.1", "expected a comparison"),
                                        ("success_rate_at_100 <= high", "expected a number"),
                                        ("success_rate_at_100 <= 0.1", "budget is 60"),
                                        ("success_rate_at_10[tpe] <= 0.1", "no strategy 'tpe'")])
def test_gate_bad_input_exits_2(run, tmp_path, expr, word):
    junit = tmp_path / "bad.xml"
    line = one_line_error(cli("gate", run.path, "auc >= 0.5", expr, "--junit", junit))
    assert "gates.1" in line and word in line
    assert not junit.exists()


def test_gate_on_a_file_that_is_not_a_run(tmp_path):
    bad = tmp_path / "x.duckdb"
    bad.write_bytes(b"\x00" * 4096)
    assert "store error" in one_line_error(cli("gate", bad, "auc >= 0.5"))


# -- report, compare ---------------------------------------------------------------------------------------------------

def test_report_command(run, tmp_path):
    out = tmp_path / "out" / "report.html"
    before = fingerprint(run.path)
    r = cli("report", run.path, "-o", out, "--gate", "auc >= 0.5", "--title", "Release 1.2 <check>")
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Release 1.2 &lt;check&gt;" in page and "<svg" in page
    assert fingerprint(run.path) == before


def test_report_bad_input(run, tmp_path):
    plain = tmp_path / "plain.duckdb"
    duckdb.connect(str(plain)).close()
    assert "not a fraudsim run file" in one_line_error(cli("report", plain, "-o", tmp_path / "r.html"))
    assert "unknown metric" in one_line_error(cli("report", run.path, "-o", tmp_path / "r.html", "--gate", "x < 1"))
    assert "no run 'nope'" in one_line_error(cli("report", run.path, "-o", tmp_path / "r.html", "--run-id", "nope"))
    assert not (tmp_path / "r.html").exists()


def test_compare_command(run, other, tmp_path):
    r = cli("compare", run.path, other.path)
    assert r.exit_code == 0, r.output
    assert "success_rate_at_10" in r.stdout and "feedback" in r.stdout
    r = cli("compare", run.path, other.path, "--format", "json")
    rows = json.loads(r.stdout)
    by = {(x["measure"], x["strategy"]): x for x in rows}
    assert by[("feedback", None)]["a_text"] == "score" and by[("feedback", None)]["b_text"] == "decision"
    assert by[("budget", None)]["delta"] == -30
    assert ("success_rate_at_30", "random") in by and ("success_rate_at_60", "random") not in by  # common budgets only
    assert by[("success_rate_at_30", "evolutionary")]["b"] is None  # B did not run it
    out = tmp_path / "c.parquet"
    assert cli("compare", run.path, other.path, "-o", out).exit_code == 0
    assert pl.read_parquet(out).height == len(rows)
    assert "not a DuckDB file" in one_line_error(cli("compare", run.path, Path(__file__)))
