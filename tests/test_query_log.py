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
