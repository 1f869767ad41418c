"""The run store on its own: lifecycle (partial file, finish, abandon), feature columns, read-only opening."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest

from simulator.errors import StoreError
from simulator.store import Store, feature_columns, open_readonly, read_feature_columns

FEATURES = ["amount", "Score", "select", "naïve feature", "AMOUNT"]


def test_feature_columns_keep_names_unless_they_collide():
    cols = feature_columns(FEATURES)
    assert len(cols) == len(FEATURES) and len({c.lower() for c in cols}) == len(cols)
    assert cols[0] == "amount" and cols[2] == "select" and cols[3] == "naïve feature"
    assert cols[1] == "feature_Score"  # `score` is a fixed column of queries/transactions
    assert cols[4] == "feature_AMOUNT"  # collides case-insensitively with `amount`
    assert feature_columns([]) == ()


def test_finish_moves_the_partial_file_into_place_with_its_feature_columns(tmp_path):
    path = tmp_path / "run.duckdb"
    store = Store(path, FEATURES)
    assert store.partial.exists() and not path.exists()
    X = np.arange(10.0).reshape(2, 5)
    store.append("targets", {"run_id": ["r", "r"], "strategy": ["s", "s"], "target_id": [1, 2],
                             **store.feature_table(X)})
    store.execute("INSERT INTO runs (run_id, status) VALUES ('r', 'finished')")
    assert store.finish() == path
    assert path.exists() and not store.partial.exists()
    con = open_readonly(path)
    try:
        pairs = read_feature_columns(con)
        assert [f for f, _ in pairs] == FEATURES and [c for _, c in pairs] == list(feature_columns(FEATURES))
        col = dict(pairs)["naïve feature"]
        got = con.execute(f'SELECT "{col}" FROM targets ORDER BY target_id').fetchall()
        assert [r[0] for r in got] == [3.0, 8.0]
        with pytest.raises(duckdb.Error):  # read-only
            con.execute("DELETE FROM targets")
    finally:
        con.close()


def test_abandon_keeps_the_previous_finished_file(tmp_path):
    path = tmp_path / "run.duckdb"
    first = Store(path, ["a"])
    first.execute("INSERT INTO runs (run_id, status) VALUES ('old', 'finished')")
    first.finish()
    before = path.read_bytes()
    second = Store(path, ["a"])
    second.execute("INSERT INTO runs (run_id, status) VALUES ('new', 'running')")
    second.fail("new", RuntimeError("boom"))
    assert path.read_bytes() == before and not second.partial.exists()
    con = open_readonly(path)
    try:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("old",)]
    finally:
        con.close()


def test_open_readonly_refuses_what_is_not_a_finished_run_file(tmp_path):
    with pytest.raises(StoreError, match="file not found"):
        open_readonly(tmp_path / "missing.duckdb")
    with pytest.raises(StoreError, match="a folder"):
        open_readonly(tmp_path)
    (tmp_path / "x.duckdb.partial").write_bytes(b"")
    with pytest.raises(StoreError, match="unfinished file"):
        open_readonly(tmp_path / "x.duckdb.partial")
    text = tmp_path / "notes.duckdb"
    text.write_text("hello, not a database " * 10)
    with pytest.raises(StoreError, match="not a DuckDB file"):
        open_readonly(text)
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(StoreError, match="not a fraudsim run file") as exc:
        open_readonly(other)
    assert exc.value.file == str(other)
