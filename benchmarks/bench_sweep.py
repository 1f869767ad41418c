"""Sweeps on Ray: 8 variants of ``scenarios/release_check.yaml`` as shipped (40 targets, budget 1000, three
strategies; seeds 1 to 8) run by ``fraudsim sweep`` with ``--engine ray`` (a local Ray on this machine's cores,
one thread per task) against ``--engine serial`` (one process, the variants in a loop) as the baseline, measured in
the same run. The serial engine runs twice, with the libraries' default threads (XGBoost's OpenMP and Numba use
every core) and with one thread; the baseline is the faster of the two. Goal: Ray ≥ 1.6× faster on 2 cores, and
the merged sweep files equal row for row (same seeds; wall-clock columns aside).

Each engine runs in a fresh process, timed from its start: interpreter, imports, Ray's start-up (``ray.init``),
its workers' imports and their loading of the Numba kernels are all in the time. The Numba cache is warmed first,
in a separate process, so that nobody compiles; the table says how many kernels each process compiled (0 expected)
and loaded from the cache, and each worker's wall and CPU time; per engine, where the time went
(``SweepResult.timings``: ``ray_start_s`` with ``load_s``, reading the sweep file, overlapped; ``tasks_s``;
``ray_stop_s`` with the merge's tail ``merge_s`` overlapped; ``merge_busy_s``, the merge thread's time in all, most of
it while the tasks ran) and the driver's CPU time (its own, and its ended children's: Ray's GCS, raylet, ...).

Measure on free cores: with Linux's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) a session
sharing the machine with others gets one share of the CPU however many processes it runs, so there the ratio
measures the scheduler, not Ray; the CPU times still compare the work each engine does per variant.

usage: python benchmarks/bench_sweep.py [--budgets 1000] [--seeds 1,...,8] [--limit 40] [--cpus N] [--task-threads 1]
    [--runs serial,serial-1,ray]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import yaml

from simulator.sweep import ray_available

ROOT = Path(__file__).resolve().parent.parent
WALL_CLOCK = ("engine", "worker", "run_file", "card")  # and TIMESTAMP columns, and those ending in _s / _us


def comparable_rows(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall():
            cols = [c for c, typ in con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                                                "ORDER BY column_index", [t]).fetchall()
                    if typ != "TIMESTAMP" and not c.endswith(("_s", "_us")) and c not in WALL_CLOCK]
            out[t] = con.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM \"{t}\"").fetchall()
        return out
    finally:
        con.close()


WARM = """
import sys
from simulator.sweep import run_variant, load_sweep
sw = load_sweep(sys.argv[1])
v = sw.variants[0]
print(run_variant(v.scenario, v.source, str(sw.base.parent), sys.argv[2]))
"""
ENGINE = """
import json, resource, sys
from simulator.sweep import run_sweep
sweep, engine, cpus, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]) or None, int(sys.argv[4]) or None
address = sys.argv[5] or None
r = run_sweep(sweep, engine=engine, num_cpus=None if address else cpus, task_threads=threads, address=address)
cpu = {k: sum(getattr(resource.getrusage(w), f) for f in ("ru_utime", "ru_stime"))
       for k, w in (("own", resource.RUSAGE_SELF), ("children", resource.RUSAGE_CHILDREN))}
print(json.dumps({"path": str(r.path), "failed": [x["error"] for x in r.failed], "timings": r.timings,
                  "workers": r.workers, "driver_cpu": cpu}))
"""


def run_engine(tmp: Path, name: str, engine: str, grid: dict, cpus: int | None, threads: int | None,
               env: dict | None = None, address: str | None = None) -> tuple[float, dict]:
    """Seconds and the sweep's summary of one engine run in a fresh process (its start-up and imports included)."""
    sw = tmp / f"sweep-{name}.yaml"
    sw.write_text(yaml.safe_dump({"base": "release_check.yaml", "grid": grid, "output": f"{name}.duckdb"}))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", ENGINE, str(sw), engine, str(cpus or 0), str(threads or 0),
                          address or ""],
                         check=True, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - t0
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["failed"]:
        raise SystemExit(f"{name}: {len(res['failed'])} variants failed, first: {res['failed'][0]}")
    return seconds, res


@contextlib.contextmanager
def ray_cluster(cpus: int | None):
    """A Ray head node of its own (``ray start --head --block``, as a team keeps one up between sweeps), started and
    stopped outside the timing; its workers at priority 0 like the local engine's. Yields its address and the
    environment a driver needs to connect (the token mode, where Ray's token authentication is on)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--include-dashboard=false",
           "--disable-usage-stats", f"--num-cpus={cpus or os.cpu_count()}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_worker_niceness": "0", "RAY_enable_autoscaler_v2": "1"})
    try:
        ip, env = "127.0.0.1", {}
        for line in proc.stdout:  # "Local node IP: ..." and then "Ray runtime started." once the head node is up
            if "Local node IP:" in line:
                ip = line.split("Local node IP:", 1)[1].strip()
            if "Token authentication is enabled" in line:  # Ray >= 2.5x: the driver sends the token
                env["RAY_AUTH_MODE"] = "token"
            if "Ray runtime started" in line:
                break
        else:
            raise SystemExit(f"ray start failed (exit {proc.wait()})")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
        yield f"{ip}:{port}", env
    finally:
        proc.terminate()  # --block: the head node stops its processes on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default=None, help="comma-separated (default: the scenario's own, 1000)")
    ap.add_argument("--seeds", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--limit", type=int, default=None, help="targets per variant (default: the scenario's own, 40)")
    ap.add_argument("--cpus", type=int, default=None, help="Ray CPUs (default: all of this machine's)")
    ap.add_argument("--task-threads", type=int, default=1, help="threads per Ray task; 0: the libraries' defaults")
    ap.add_argument("--runs", default="serial,serial-1,ray",
                    help="which of serial, serial-1 (one thread), ray (a local Ray started by the sweep), ray-cluster "
                         "(a Ray head node kept up between sweeps: started before the clock, fraudsim sweep --address)")
    args = ap.parse_args(argv)
    names = args.runs.split(",")
    if any(x.startswith("ray") for x in names) and not ray_available():
        raise SystemExit("needs Ray: pip install -e '.[ray]'")
    one_thread = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = {"serial": ("serial", None, None, "serial, default threads"),
            "serial-1": ("serial", None, one_thread, "serial, 1 thread"),
            "ray": ("ray", args.task_threads or None, None, f"ray, local, {args.task_threads or 'default'} thread(s)/task"),
            "ray-cluster": ("ray", args.task_threads or None, None, "ray, a cluster kept up (--address)")}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = yaml.safe_load((ROOT / "scenarios" / "release_check.yaml").read_text())
        if args.limit is not None:
            base["attack"]["limit"] = args.limit
        for section in ("data", "model"):
            base[section]["path"] = str((ROOT / "scenarios" / base[section]["path"]).resolve())
        (tmp / "release_check.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        grid: dict = {}
        if args.budgets:
            grid["attack.budget"] = [int(b) for b in args.budgets.split(",")]
        grid["seed"] = [int(s) for s in args.seeds.split(",")]
        n = len(grid.get("attack.budget", [0])) * len(grid["seed"])
        budget, limit = args.budgets or base["attack"]["budget"], base["attack"]["limit"]
        # warm Numba's on-disk cache (a small variant, its own process) so that no timed process compiles
        (tmp / "warm.yaml").write_text(yaml.safe_dump({"base": "release_check.yaml", "variants": [{"attack.limit": 2,
                                                        "attack.budget": 20}], "output": "warm.duckdb"}))
        subprocess.run([sys.executable, "-c", WARM, str(tmp / "warm.yaml"), str(tmp / "warm-run.duckdb")], check=True,
                       stdout=subprocess.DEVNULL)
        times, results, loads = {}, {}, {}
        for name in names:
            engine, threads, env, _ = runs[name]
            with ray_cluster(args.cpus) if name == "ray-cluster" else contextlib.nullcontext((None, {})) as cluster:
                address, auth = cluster
                times[name], results[name] = run_engine(tmp, name, engine, grid, args.cpus, threads,
                                                        {**(env or {}), **auth}, address)
            loads[name] = os.getloadavg()[0]
            print(f"  {runs[name][3]}: {n} variants in {times[name]:.1f} s, load average {loads[name]:.1f}", flush=True)
        tables = {name: comparable_rows(Path(results[name]["path"])) for name in names}
        for t in tables.values():
            t.pop("sweep")
        first = tables[names[0]]
        diff = sorted({t for name in names[1:] for t in first if tables[name].get(t) != first[t]})
        rows = sum(len(v) for v in first.values())
    print(f"{n} variants of release_check (budget {budget}, seeds {args.seeds}, {limit} targets each, "
          f"strategies {', '.join(base['attack']['strategies'])}); {os.cpu_count()} CPUs, load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1 min; other sessions share the machine)")
    print(f"{'engine (each in a fresh process)':<40}{'seconds':>10}{'variants/min':>14}{'load':>7}")
    for name in names:
        print(f"{runs[name][3]:<40}{times[name]:>10.1f}{n / times[name] * 60:>14.1f}{loads[name]:>7.1f}")
    for name in names:
        r = results[name]
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())
              + f"; driver CPU {r['driver_cpu']['own']:.1f} s, its ended children's {r['driver_cpu']['children']:.1f} s")
        for w, st in sorted(r["workers"].items()):
            print(f"    worker {w}: {st['variants']} variants, {st['wall_s']:.0f} s wall, {st['cpu_s']:.0f} s CPU; "
                  f"first one {st.get('first_variant_s', 0):.1f} s "
                  f"(imports included), Numba kernels compiled {st['numba_compiled']}, loaded from cache "
                  f"{st['numba_cached']}")
    serial = [x for x in names if x.startswith("serial")]
    for r in (x for x in names if x.startswith("ray")):
        if not serial:
            break
        best = min(serial, key=times.get)
        print(f"{'speed-up ' + r + ' ÷ best serial (' + best + ')':<40}{times[best] / times[r]:>10.2f}   (goal >= 1.6)")
        for x in serial:
            if x != best:
                print(f"{'speed-up ' + r + ' ÷ ' + x:<40}{times[x] / times[r]:>10.2f}")
    if len(names) > 1:
        print(f"merged files equal row for row: {'yes' if not diff else 'NO, differing tables: ' + ', '.join(diff)} "
              f"({rows:,} rows in {len(first)} tables, {len(names)} files)")
    return 0 if not diff else 1


if __name__ == "__main__":
    raise SystemExit(main())
