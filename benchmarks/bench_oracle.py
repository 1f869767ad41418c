"""Oracle throughput per model adapter: queries per second through :class:`simulator.oracle.Oracle` (budget checks,
constraint checks, scoring through the adapter, feedback, logging into a real DuckDB store) against the model
library's own batched predict on the very same rows, and the ratio.

Rows: XGBoost (``inplace_predict``), LightGBM (``Booster.predict``), ONNX (``InferenceSession.run`` on an
onnxmltools export of the same XGBoost model, in a session of its own with the adapter's intra-op threads; goal for
all three >= 0.8), and HTTP: the oracle against a model
served by ``python -m simulator.serve`` (MLflow protocol, its own process) versus a plain httpx loop posting the
same batches to the same server (goal >= 0.9).

The candidate rows are generated up front (as a batch strategy would ask them: ``--targets`` targets times
``--batch`` candidates per step), so both sides time only the door to the model, not the search.

The oracle's time runs from the first query to the moment every logged row is durable in the DuckDB file: it
includes the query log's final flush (the load of what was buffered or spilled into ``queries``) and a
``CHECKPOINT`` (rows that DuckDB parked in its write-ahead log are compressed into the file there). The store is
created and checkpointed before the clock starts, so the schema's own writes are not counted. The "flush s"
column is that final part alone ("ckpt s" the ``CHECKPOINT`` within it); "ratio w/o flush" leaves it out.

Where the flush's time goes (measured on 2 cores, DuckDB 2.0): nearly all of it is DuckDB's ``BATCH_INSERT`` itself,
about 4-5 ms per DOUBLE column, 10 ms per VARCHAR column and 2-5 ms per INTEGER/BOOLEAN column per 160,000 rows (large
appends are compressed and written to the file while they run, in full row groups; the ``CHECKPOINT`` after them
compresses and writes the last, partial row group, and costs its share of the same per-value work, plus the fsync).
The Arrow scan, the read of the spill and the disk writes take a few ms each; DuckDB's settings (threads,
``preserve_insertion_order``, ``force_compression``/``disabled_compression_methods``, ``enable_optimistic_write``,
``write_buffer_row_group_count``, ``fsync_mode``), SQL literals for constant columns, plain strings instead of
dictionaries and the Arrow batch size change the total by no more than the machine's noise; leaving the
``CHECKPOINT`` to ``close()`` moves its time there.

So the query log does that work while the model scores wherever a core is free (:func:`simulator.store.spare_core`:
``OMP_NUM_THREADS`` below the usable cores, as with ``--threads 1`` on 2 cores, or 4+ cores): a writer thread
appends batches of exactly one row group, and run files are attached with 16,384-row row groups
(``simulator.store.ROW_GROUP_ROWS``), so each append is compressed into the file as it runs and the final flush has
only the last, partial batch (12,544 rows here: 160,000 = 9 x 16,384 + 12,544). With DuckDB's default 122,880-row
groups the tail would be 37,120 rows, and small appends checkpointed as they come cost 2-3x the CPU (DuckDB's
checkpoint merges the small row groups again and again). The last, partial batch is committed with DuckDB's
``checkpoint_threshold`` at 0 (:func:`simulator.store._checkpoint_at_commit`): its commit checkpoints instead of
writing the rows to the write-ahead log first, so the ``CHECKPOINT`` after it finds nothing left ("ckpt s" 0.000).
The log appends each batch as a relation inserted by position (no view registered and dropped per append). The
oracle's checks, query numbers, cost, budget check and charge are one kernel pass (``Kernels.charge``, about 30 us
per call of 400 rows against about 75 us for the separate calls).
``--log spill,background`` prints one row per mode; ``auto`` (the default) is what a run picks on this machine.

Measured 2026-12-02 06:47 UTC, 2 cores, ``--threads 1 --log background``, load average 2.8 falling to 2.6 (another
session's two busy loops and tests running: not a quiet machine; the lead re-measures), main (4f996a5) and this
change one after the other, best of 3:

    adapter   version  baseline q/s  oracle q/s  flush s  ratio  w/o flush  cpu ratio  loop cpu  flush cpu s
    xgboost   main          535,562     292,627    0.034   0.55       0.58       0.53      0.82        0.027
    xgboost   now           524,132     278,034    0.035   0.53       0.56       0.53      0.83        0.027
    lightgbm  main          185,733     172,804    0.033   0.93       0.97       0.78      0.97        0.028
    lightgbm  now           188,044     170,196    0.032   0.91       0.94       0.77      0.95        0.029
    onnx      main          335,714     214,479    0.063   0.64       0.70       0.68      1.59        0.026
    onnx      now           322,027     278,886    0.036   0.87       0.92       0.67      0.95        0.028

ONNX: ONNX Runtime used to keep its own intra-op pool whatever ``OMP_NUM_THREADS`` said (2 threads here), so its
"baseline" used both cores and the query log's writer thread competed with it ('loop cpu' 1.6). The adapter now
sizes the pool from ``OMP_NUM_THREADS`` (:func:`simulator.threads.model_threads`), the baseline's own session gets
the same count, and :func:`simulator.store.spare_core` follows the same rule. XGBoost and LightGBM are unchanged
(same code; the differences are the machine's noise). A second pair of runs at 06:55 UTC, load 3.4-3.7 (main / now):
XGBoost 0.56 / 0.53 (loop cpu 0.85 / 0.84), LightGBM 0.75 / 0.77 (0.94 / 0.97), ONNX 0.63 / 0.67 (loop cpu 1.38 /
0.90; under that load the writer thread and the other processes share the second core either way).

Where XGBoost's loop time goes (thread CPU per 400-row call, ``time.thread_time_ns`` around each part of
``Oracle.query`` over 400 calls, best of 3-5, load 2.5-5): raw ``inplace_predict`` 730-760 us; the oracle without a
log 55-85 us more, of which the admit kernel is 40-66 us in the loop against 16-18 us warm in isolation (its inputs
are cold after the model call: 35-40 us right after a ``predict``), the Python around it about 8 us (the whole
``query`` with a constant model: 26 us warm); ``log.add`` 2-12 us; and the writer thread's DuckDB appends raise the
caller's loop CPU by another 50-60 us per call (a writer that builds the tables but does not append: +10 us), as the
two vCPUs share one core's resources. Tried and dropped, each measured in one run against the code above:
preallocated column buffers filled in place by ``add`` (one copy per call, decisions as codes, no per-call Python
objects): ``add`` grew from 12 to 40 us per call in the loop (the copies write into buffers the writer thread just
read) while the writer's table build only fell from 1.2 to 1.0 ms per batch (its cost is the features' transpose);
a branch-free admit kernel (27 us warm against 16: it computes every cost term); a pass that skips frozen features
equal to their original (no change after a model call: the kernel is bound by cold memory, not by work);
8,192-row row groups (the final flush's CPU 0.026 -> 0.017 s, but more appends: process CPU ratio 0.56 -> 0.48,
'loop cpu' 0.87 -> 0.82 at load 4.9).

Then (08:15-08:55 UTC, 2 cores shared by 5 sessions, load 1.5-9; the lead re-measures), three changes: the budget
check and charge moved into the admit kernel (``Kernels.charge``: no NumPy calls on the per-target arrays in
``Oracle.query``), the last write's commit checkpoints (above), and appends as a relation by position. Back to back
with the code before (d4cbc4a), ``--threads 1 --only xgboost --log background``, load 1.7, three runs each:

    version  ratio             w/o flush         flush s        ckpt s  cpu ratio         loop cpu          flush cpu s
    before   0.73  0.76  0.77  0.79  0.82  0.84  0.025-0.028    0.010   0.51  0.54  0.55  0.80  0.84  0.85  0.022-0.024
    now      0.76  0.82  0.74  0.81  0.88  0.79  0.020-0.022    0.000   0.54  0.58  0.52  0.84  0.90  0.80  0.020-0.021

At load 3.4 (08:54 UTC; wall ratios 0.46-0.53 on both sides) the CPU columns moved the same way: cpu ratio 0.52-0.53
-> 0.53-0.56, loop cpu 0.80-0.83 -> 0.82-0.86, flush cpu 0.021-0.022 -> 0.019-0.021 s. LightGBM and ONNX at load 3.3
(before / now): ratio 0.77 / 0.81 and 0.67 / 0.71, cpu ratio 0.78 / 0.80 and 0.68 / 0.70, flush s 0.045 / 0.038 and
0.032 / 0.021. In one process with both versions alternating (load 1.5-2.6): the flush and checkpoint 56 -> 51 us of CPU
and 62-65 -> 52-57 us of wall per call in equivalent (8 runs); the oracle without a log minus raw predict, paired per
run, median 70 -> 56 us, min 24 -> 5 us (30 runs). Alone: the last 12,544 rows' append and checkpoint took 20.5-21.7 ms
of CPU, 18.7-19.0 ms with the checkpoint at commit; a one-row append 2.3-2.5 ms with a view registered and dropped, 1.6
ms as a relation (a one-row Arrow scan alone takes about 1 ms of CPU and a one-row INSERT ... VALUES 1.3-1.5 ms: near
DuckDB's floor). Per full batch the writer spends 1.3 ms building the table and 10-12.7 ms in DuckDB's append (about 500
minor page faults there). Tried and dropped: sub-batches appended into one open transaction per row group (the flush
would find most of its tail already scanned: 19 -> 13.5-15 ms of CPU, but 4 x 4,096 rows cost 24-25 ms of CPU per row
group against 15-16 for one append); an Arrow C stream capsule or a ``RecordBatchReader`` instead of the table (the
same); DuckDB's ``block_allocator_memory`` and ``allocator_flush_threshold`` (the same page faults and CPU); the tail
split into record batches for a parallel scan, and ``_admit`` compiled without ``nogil`` (so the writer thread could
take the GIL only while the model predicts): no change measurable under load (3-4).

Measured 2026-12-02 06:08 UTC, 2 cores, ``--threads 1``, load average 2.7 rising to 3.6 (other sessions busy, so
not a quiet machine; the lead re-measures), best of 3, all rows from one run:

    adapter   log         ratio  w/o flush  flush s  cpu ratio  loop cpu  flush cpu s
    xgboost   spill        0.49       0.69    0.179       0.54      0.77        0.159
    xgboost   background   0.80       0.86    0.031       0.56      0.87        0.029
    lightgbm  spill        0.68       0.79    0.195       0.85      0.98        0.131
    lightgbm  background   0.70       0.73    0.063       0.78      0.95        0.025
    onnx      spill        0.76       1.11    0.298       0.71      1.53        0.157
    onnx      background   0.70       0.86    0.203       0.67      1.24        0.035

"loop cpu" (raw predict's CPU / the oracle loop's CPU on the caller's thread) bounds the wall ratio a quiet machine
can reach with the writer on the other core; the flush adds "flush cpu s" (ONNX Runtime's own threads count in the
baseline's CPU, hence above 1). A second busy thread slows the caller's loop by itself on this 2-vCPU machine: the
oracle's XGBoost loop without a log took 7% more CPU while an unrelated thread ran DuckDB inserts on its own
connection (4% beside a NumPy sort, 15% beside pure Python holding the GIL), so the writer thread wins back less than
the flush it removes. A second run at load 5 (06:21 UTC) gave, writer thread vs spill: XGBoost 0.45 vs 0.57 (loop
cpu 0.82 both), LightGBM 0.83 vs 0.78, ONNX 0.83 vs 0.73: under load the writer competes with other processes. Without ``--threads`` (the libraries' default: both cores) the same run at load
5.8 gave baselines of 43,000-270,000 q/s and ratios from 0.59 to 2.13 in either mode: OpenMP's barriers on a busy
machine swamp the comparison, so that choice (spill there) rests on the barrier argument above, not on a measurement.
On a quiet machine before these changes (05:25 UTC, load 0.6, spill): XGBoost 0.55, LightGBM 0.80, ONNX 0.61 (0.78,
0.93, 0.85 without the flush).

``--threads N`` sets ``OMP_NUM_THREADS`` for both sides (XGBoost and LightGBM size their OpenMP pools from it,
fraudsim's ONNX adapter and the ONNX baseline's session ONNX Runtime's intra-op pool). On a machine shared with other busy processes, OpenMP barriers across threads
that the scheduler does not run together make the library's predict itself vary many times over between calls,
which swamps the ratio; ``--threads 1`` measures the door's own cost there.

usage: python benchmarks/bench_oracle.py [--targets 40] [--batch 10] [--steps 400] [--http-steps 60]
       [--model m.json] [--only xgboost,lightgbm,onnx,http] [--threads N] [--log auto|spill|background,...]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simulator.kernels import MODE_UNIFORM, get_kernels
from simulator.oracle import Oracle
from simulator.schema import FeatureSchema
from simulator.store import QueryLog, Store
from simulator.target import TargetModel, load_model

FEATURES = ("amount", "hour", "merchant_cat", "distance_km", "txn_count_1h", "txn_count_24h", "amount_ratio_30d",
            "card_present", "new_device", "country_mismatch", "account_age_days", "credit_limit")


def synthetic_data(seed: int = 0, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.lognormal(4, 1.5, n).clip(0.5, 20000), rng.integers(0, 24, n), rng.integers(0, 10, n),
                         rng.exponential(100, n).clip(0, 5000), rng.poisson(1, n), rng.poisson(3, n),
                         rng.lognormal(0, 1, n), rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, n),
                         rng.integers(0, 9000, n), rng.choice([300, 1000, 5000, 20000], n)]).astype(np.float64)
    logit = np.log(X[:, 0]) / 2 + X[:, 8] + X[:, 9] - X[:, 7] + X[:, 4] / 2 + (X[:, 1] < 6) - 5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def synthetic_model(seed: int = 0, kind: str = "xgboost") -> tuple[TargetModel, np.ndarray]:
    """A model the size of the default scenario's (150 trees) on world-shaped features."""
    from simulator.target.train import fit_model

    X, y = synthetic_data(seed)
    model, _ = fit_model(X, y, list(FEATURES), kind=kind, seed=seed)
    return model, X


def onnx_export(xgb_model: TargetModel, path: Path) -> TargetModel | None:
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError:
        return None
    booster = xgb_model.booster.copy()  # the benchmark builds its models itself, so it may use the library here
    booster.feature_names = None
    onx = onnxmltools.convert_xgboost(booster, initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
                                      target_opset=15)
    path.write_bytes(onx.SerializeToString())
    return load_model(path, features=list(FEATURES))


def library_predict(model: TargetModel) -> Callable[[np.ndarray], np.ndarray]:
    """The library's own batched predict, as a user would call it on float32 rows."""
    if model.kind == "xgboost":
        return lambda X: model.booster.inplace_predict(X.astype(np.float32), validate_features=False)
    if model.kind == "lightgbm":
        return lambda X: model.booster.predict(X.astype(np.float32), num_threads=0)
    if model.kind == "onnx":
        # its own session, as a user would make it, with the threads the adapter takes (OMP_NUM_THREADS when set)
        import onnxruntime as ort

        from simulator.target.onnx import MAX_THREADS
        from simulator.threads import model_threads

        so = ort.SessionOptions()
        so.intra_op_num_threads = model_threads(MAX_THREADS)
        sess = ort.InferenceSession(model.to_bytes(), so, providers=["CPUExecutionProvider"])
        name, out = model.input_names[0], model.output_name
        return lambda X: sess.run([out], {name: X.astype(np.float32)})[0]
    raise ValueError(model.kind)


def httpx_loop(url: str, names: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """A plain httpx client posting each batch in MLflow's format and reading the predictions."""
    import httpx

    client = httpx.Client(timeout=60)

    def post(X: np.ndarray) -> np.ndarray:
        body = json.dumps({"dataframe_split": {"columns": names, "data": X.tolist()}}).encode()
        r = client.post(url, content=body, headers={"content-type": "application/json"})
        r.raise_for_status()
        return np.asarray(r.json()["predictions"], dtype=np.float64)

    return post


def measure(model: TargetModel, baseline: Callable, steps: list[np.ndarray], origin: np.ndarray,
            originals: np.ndarray, sa, kernels, budget: int, repeat: int, background: bool | None = None) -> dict:
    baseline(steps[0])
    model.predict_score(steps[0])  # warm up (thread pools, connections, JIT of the kernels)
    Oracle(model, threshold=0.5, feedback="score", budget=10**9, originals=originals, schema_arrays=sa,
           kernels=kernels, strategy="bench").query(origin, steps[0])
    names = list(model.feature_names)
    total = len(origin) * len(steps)
    raw_times, oracle_times, flush_times, ckpt_times, raw_cpu, oracle_cpu, loop_cpu, flush_cpu = ([] for _ in range(8))
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        for X in steps:
            baseline(X)
        raw_times.append(time.perf_counter() - t0)
        raw_cpu.append(time.process_time() - c0)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.duckdb", names)
            store.execute("CHECKPOINT")  # the schema is on disk before the clock starts
            log = QueryLog(store, "bench-run", background=background)
            oracle = Oracle(model, threshold=0.5, feedback="score", budget=budget, originals=originals,
                            schema_arrays=sa, kernels=kernels, strategy="bench", log=log)
            c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
            for X in steps:
                oracle.query(origin, X)
            t1 = time.perf_counter()
            loop_cpu.append(time.thread_time() - m0)  # this thread's CPU in the loop (a writer thread's not counted)
            c1 = time.process_time()
            log.flush()
            t2 = time.perf_counter()
            store.execute("CHECKPOINT")  # every row in the file itself, none parked in the write-ahead log
            t3 = time.perf_counter()
            oracle_cpu.append(time.process_time() - c0)
            flush_cpu.append(time.process_time() - c1)
            mode = "background" if log.background else "spill"
            oracle_times.append(t3 - t0)
            flush_times.append(t3 - t1)
            ckpt_times.append(t3 - t2)
            rows = store.con.execute("SELECT count(*) FROM queries").fetchall()[0][0]
            store.abandon()
            assert rows == total, (rows, total)
    k = int(np.argmin(oracle_times))
    return {"raw_qps": total / min(raw_times), "oracle_qps": total / min(oracle_times), "flush_s": flush_times[k],
            "ckpt_s": ckpt_times[k], "no_flush_qps": total / (oracle_times[k] - flush_times[k]), "total": total,
            "cpu_ratio": min(raw_cpu) / min(oracle_cpu), "loop_cpu_ratio": min(raw_cpu) / min(loop_cpu),
            "flush_cpu": min(flush_cpu), "log": mode}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="XGBoost/LightGBM/ONNX model file for the first row (default: synthetic models "
                                    "of the default scenario's size)")
    ap.add_argument("--targets", type=int, default=40)
    ap.add_argument("--batch", type=int, default=10, help="candidates per target per step")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--http-steps", type=int, default=60, help="steps for the HTTP row (each step is one request)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings on each side")
    ap.add_argument("--only", default="xgboost,lightgbm,onnx,http", help="comma-separated rows to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both sides (default: the libraries' own)")
    ap.add_argument("--log", default="auto", help="the query log's mode(s), comma-separated, one row each: auto (what "
                                                  "a run picks on this machine), background, spill")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        # OpenMP reads it once, when the library loads: start again with it set
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)])

    import polars as pl

    tmpdir = Path(tempfile.mkdtemp(prefix="bench_oracle_"))
    if args.model:
        first = load_model(args.model)
        X_pool = np.random.default_rng(args.seed).random((1000, len(first.feature_names)))
        models = {first.kind: first}
    else:
        xgb_model, X_pool = synthetic_model(args.seed, "xgboost")
        models = {"xgboost": xgb_model}
        if "lightgbm" in only:
            models["lightgbm"] = synthetic_model(args.seed, "lightgbm")[0]
        if "onnx" in only:
            onnx_model = onnx_export(xgb_model, tmpdir / "model.onnx")
            if onnx_model is None:
                print("onnx: skipped (onnxmltools is not installed: pip install -e '.[test]')")
            else:
                models["onnx"] = onnx_model
    names = list(next(iter(models.values())).feature_names)
    specs = {"amount": {"min": 0.5, "max": 20000}, "hour": {"type": "integer", "min": 0, "max": 23},
             "distance_km": {"min": 0, "max": 5000}, "new_device": {"type": "binary", "direction": "decrease"}}
    specs = {k: v for k, v in specs.items() if k in names} or {names[0]: {"min": float(X_pool[:, 0].min()),
                                                                          "max": float(X_pool[:, 0].max())}}
    sa = FeatureSchema.from_mapping(names, specs).with_bounds_from(pl.DataFrame(X_pool, schema=names)).arrays()
    kernels = get_kernels("cpu")
    rng = np.random.default_rng(args.seed)
    originals = np.ascontiguousarray(X_pool[rng.choice(len(X_pool), args.targets, replace=False)])
    n_step = args.targets * args.batch
    origin = np.repeat(np.arange(args.targets), args.batch)
    steps = []
    for _ in range(args.steps):
        U, Z, V = rng.random((n_step, len(names))), rng.standard_normal((n_step, len(names))), rng.random(n_step)
        steps.append(kernels.mutate(originals[origin], originals, origin, U, Z, V, np.zeros(n_step),
                                    np.full(n_step, 0.4), MODE_UNIFORM, sa))

    log_modes = {"auto": None, "background": True, "spill": False}
    results = []
    for kind, model in models.items():
        if kind not in only:
            continue
        for mode in args.log.split(","):
            r = measure(model, library_predict(model), steps, origin, originals, sa, kernels,
                        args.steps * args.batch, args.repeat, log_modes[mode])
            results.append((kind, "library's batched predict", 0.8, r))

    if "http" in only and not args.model:
        model_file = tmpdir / "served.json"
        models["xgboost"].save(model_file)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "simulator.serve", str(model_file), "--protocol", "mlflow",
                                   "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            server.stdout.readline()  # "serving ... at URL" once it listens
            url = f"http://127.0.0.1:{port}/invocations"
            http_model = load_model({"url": url, "features": names, "batch_size": n_step})
            http_steps = steps[: args.http_steps]
            r = measure(http_model, httpx_loop(url, names), http_steps, origin, originals, sa, kernels,
                        len(http_steps) * args.batch, args.repeat)
            results.append(("http (mlflow)", "plain httpx loop, same batches", 0.9, r))
            http_model.close()
        finally:
            server.terminate()
            server.wait(10)

    print(f"{args.targets} targets x {args.batch} candidates per step = {n_step} rows per call, "
          f"{len(names)} features, 150-tree models; best of {args.repeat}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}")
    print(f"{'adapter':<16}{'baseline':<32}{'log':<12}{'baseline q/s':>14}{'oracle q/s':>13}{'flush s':>9}"
          f"{'ckpt s':>8}{'ratio':>8}{'goal':>8}{'ratio w/o flush':>17}{'cpu ratio':>11}{'loop cpu':>10}"
          f"{'flush cpu s':>13}")
    for kind, base, goal, r in results:
        ratio = r["oracle_qps"] / r["raw_qps"]
        print(f"{kind:<16}{base:<32}{r['log']:<12}{r['raw_qps']:>14,.0f}{r['oracle_qps']:>13,.0f}{r['flush_s']:>9.3f}"
              f"{r['ckpt_s']:>8.3f}{ratio:>8.2f}{'>= ' + format(goal, '.1f'):>8}"
              f"{r['no_flush_qps'] / r['raw_qps']:>17.2f}{r['cpu_ratio']:>11.2f}{r['loop_cpu_ratio']:>10.2f}"
              f"{r['flush_cpu']:>13.3f}")
    print("ratio: oracle (checks, scoring through the adapter, feedback, DuckDB query log, up to every row durable "
          "in the file) / baseline; 'w/o flush' leaves out the final flush and checkpoint; 'cpu ratio': the same "
          "with the process's CPU time (all its threads) instead of wall time; 'loop cpu': baseline CPU / the "
          "oracle's loop on its own thread (the query log's writer thread not counted); 'flush cpu s': the process's "
          "CPU seconds in the final flush and checkpoint")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
