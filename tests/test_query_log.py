"""The query log writes row-group-sized batches, in line or on its own thread: every row arrives, in order, and
errors and failed runs are handled (a real DuckDB file throughout)."""
import duckdb
import numpy as np
import pytest

from simulator.store import QueryLog, Store

NAMES = ("amount", "select", "Straße km")  # an SQL keyword and unicode with a space, as feature names


def add_rows(log, rng, n_calls, per_call, strategy="random", start_index=0):
    for k in range(n_calls):
        X = rng.random((per_call, len(NAMES)))
        t = np.sort(rng.integers(0, 5, per_call))
        log.add(round_=0, agent_id=None if k % 2 else 3, strategy=strategy, target_id=t,
                query_index=np.arange(start_index + k * per_call, start_index + (k + 1) * per_call),
                score=X[:, 0], decision=X[:, 0] > 0.5, evaded=X[:, 0] <= 0.5, cost=X.sum(1), X=X)


@pytest.mark.parametrize("background", [True, False])
def test_every_row_arrives_in_order(tmp_path, background):
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=1000, background=background)
    rng = np.random.default_rng(0)
    add_rows(log, rng, 37, 97)  # several background batches and a partial tail
    log.flush()
    got = store.con.execute('SELECT query_index, "Straße km", cost, agent_id FROM queries').fetchall()
    assert [r[0] for r in got] == list(range(37 * 97))
    assert [r[3] for r in got[:97]] == [3] * 97 and got[97][3] is None
    rng = np.random.default_rng(0)
    for k in range(37):  # the same draws again: the logged feature values are the ones passed in
        X = rng.random((97, len(NAMES)))
        rng.integers(0, 5, 97)
        np.testing.assert_array_equal([r[1] for r in got[k * 97:(k + 1) * 97]], X[:, 2])
    add_rows(log, rng, 3, 10, strategy="greedy", start_index=10**6)
    path = store.finish()  # finishing flushes what is still buffered
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT strategy, count(*) FROM queries GROUP BY 1 ORDER BY 1").fetchall() == [
        ("greedy", 30), ("random", 37 * 97)]
    con.close()


def test_a_failed_write_is_raised_in_the_callers_thread(tmp_path):
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=10, background=True)
    store.con.execute("DROP TABLE queries")  # every later write fails
    rng = np.random.default_rng(1)
    with pytest.raises(duckdb.Error):
        add_rows(log, rng, 6, 20)
        log.flush()
    store.abandon()
    assert not store.partial.exists()


def test_abandon_waits_for_pending_writes_and_drops_the_file(tmp_path):
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=500, background=True)
    add_rows(log, np.random.default_rng(2), 20, 100)  # batches in flight
    store.fail("run-1", RuntimeError("boom"))
    assert not store.partial.exists() and not store.path.exists()
    again = Store(tmp_path / "q.duckdb", NAMES)  # the same path opens cleanly afterwards
    assert again.con.execute("SELECT count(*) FROM queries").fetchall() == [(0,)]
    again.abandon()


def test_spilled_batches_load_in_order_and_leave_no_file(tmp_path):
    # on a machine without spare cores the log spills full batches to an anonymous file and loads them at flush
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=200, background=False)
    rng = np.random.default_rng(4)
    add_rows(log, rng, 9, 70, strategy="random")
    add_rows(log, rng, 7, 70, strategy="greedy", start_index=9 * 70)  # another strategy: another dictionary
    assert log._spill_rows > 0  # spilled, not yet in DuckDB
    assert store.con.execute("SELECT count(*) FROM queries").fetchall() == [(0,)]
    assert {p.name for p in tmp_path.iterdir()} <= {"q.duckdb.lock", "q.duckdb.partial", "q.duckdb.partial.wal"}
    log.flush()
    got = store.con.execute("SELECT query_index, strategy, agent_id, opening FROM queries").fetchall()
    assert [r[0] for r in got] == list(range(16 * 70))
    assert [r[1] for r in got] == ["random"] * 630 + ["greedy"] * 490
    assert [r[2] for r in got[:140]] == [3] * 70 + [None] * 70 and {r[3] for r in got} == {None}
    add_rows(log, rng, 5, 70, strategy="random", start_index=10**6)  # spills again after a flush
    store.fail("run-1", RuntimeError("boom"))  # a failed run drops the spill with the partial file
    assert list(tmp_path.iterdir()) == []


def test_spill_survives_any_feature_values(tmp_path):
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=50, background=False)
    X = np.array([[np.nan, -0.0, 1e308], [np.inf, -np.inf, 5e-324]] * 40)
    log.add(round_=2, agent_id=7, strategy="sträte\"gy", target_id=np.arange(80), query_index=np.arange(80),
            score=X[:, 1], decision=np.ones(80, bool), evaded=np.zeros(80, bool), cost=X[:, 2], X=X,
            opening=np.arange(80) % 2 == 0)
    log.add(round_=3, agent_id=None, strategy="x", target_id=np.arange(3), query_index=np.arange(3),
            score=np.zeros(3), decision=np.zeros(3, bool), evaded=np.ones(3, bool), cost=np.zeros(3), X=X[:3])
    path = store.finish()
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute('SELECT amount, "select", "Straße km", strategy, round, agent_id, opening, decision '
                       'FROM queries').fetchall()
    con.close()
    assert len(rows) == 83 and rows[0][3] == 'sträte"gy' and rows[-1][3:] == ("x", 3, None, None, "approve")
    got = np.array([r[:3] for r in rows[:80]], dtype=float)
    np.testing.assert_array_equal(got, X)  # NaN, infinities, -0.0 and subnormals come back as they went in
    assert np.signbit(got[0, 1]) and [r[6] for r in rows[:4]] == [True, False, True, False]


@pytest.mark.parametrize("background", [True, False])
def test_flush_leaves_every_row_in_the_file_and_the_setting_as_it_was(tmp_path, background):
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=1000, background=background)
    setting = "SELECT current_setting('checkpoint_threshold')"
    before = store.con.execute(setting).fetchall()
    add_rows(log, np.random.default_rng(4), 25, 97)  # full batches and a partial tail
    log.flush()
    wal = tmp_path / "q.duckdb.partial.wal"
    # the last write's commit checkpointed: the write-ahead log holds none of its rows (at most a header)
    assert not wal.exists() or wal.stat().st_size < 4096
    assert store.con.execute(setting).fetchall() == before
    assert store.con.execute("SELECT count(*), sum(query_index) FROM queries").fetchall() == [
        (25 * 97, sum(range(25 * 97)))]
    store.abandon()


def test_a_queries_table_in_another_column_order_gets_its_rows_by_name(tmp_path):
    store = Store(tmp_path / "q.duckdb", NAMES)
    cols = [d[0] for d in store.con.execute("SELECT * FROM queries LIMIT 0").description]
    store.con.execute("CREATE TABLE q2 AS SELECT " + ", ".join(f'"{c}"' for c in reversed(cols)) + " FROM queries")
    store.con.execute("DROP TABLE queries")
    store.con.execute("ALTER TABLE q2 RENAME TO queries")
    log = QueryLog(store, "run-1", flush_rows=100, background=True)
    add_rows(log, np.random.default_rng(5), 3, 97)
    log.flush()
    got = store.con.execute('SELECT run_id, query_index, score, "Straße km" FROM queries').fetchall()
    assert [r[1] for r in got] == list(range(3 * 97)) and {r[0] for r in got} == {"run-1"}
    X = np.random.default_rng(5).random((97, len(NAMES)))
    np.testing.assert_array_equal([r[2] for r in got[:97]], X[:, 0])
    np.testing.assert_array_equal([r[3] for r in got[:97]], X[:, 2])
    store.abandon()


def test_a_failed_last_write_is_raised_and_the_setting_restored(tmp_path):
    store = Store(tmp_path / "q.duckdb", NAMES)
    log = QueryLog(store, "run-1", flush_rows=1000, background=True)
    setting = "SELECT current_setting('checkpoint_threshold')"
    before = store.con.execute(setting).fetchall()
    add_rows(log, np.random.default_rng(6), 3, 97)  # only a partial batch: written at flush
    store.con.execute("DROP TABLE queries")
    with pytest.raises(duckdb.Error):
        log.flush()
    assert store.con.execute(setting).fetchall() == before
    store.abandon()
    assert not store.partial.exists()
