"""Sweeps: one base scenario, many variants (a grid or a list of overrides), each run as its own task, merged.

A sweep file::

    base: release_check.yaml               # relative to this file
    grid: {attack.budget: [100, 1000], seed: [1, 2]}   # the cartesian product; or
    # variants: [{model.threshold: 0.02}, {model.threshold: 0.05, attack.budget: 300}]
    output: sweep.duckdb                   # relative to this file; -o overrides it

Every override is a scenario key by its dotted path (``model.path``, ``attack.budget``, ``features.amount.max``,
``adversaries.rings``, ...), checked against the scenario model before anything runs; every variant is validated
as a whole scenario up front, so bad input is one line and nothing is written.

Each variant is one task (a Ray task with ``engine="ray"``, in this process with ``engine="serial"``) that writes
its own run file, ``<output stem>.runs/<variant>-<hash>.duckdb``: the hash covers the variant's whole scenario, so
a rerun skips the variants whose run file is there and finished (resumable), and a changed base or grid runs again.
A variant that fails is recorded with its one-line error and the others go on; a Ray worker that dies is retried
once, then its variant is recorded as failed.

The sweep file is a DuckDB file with a ``sweep`` table (``variant``, ``overrides`` as JSON, ``status`` finished or
failed, ``error``, ``run_file``, ``wall_s``, ``engine``, ``worker``, ``run_id``, ``gates_failed``) and every
finished variant's tables (``runs``, ``queries``, ``targets``, ...) with their ``run_id``, plus the usual views.

Examples
--------
>>> expand({"attack.budget": [100, 1000], "seed": [1, 2]}, None)
[{'attack.budget': 100, 'seed': 1}, {'attack.budget': 100, 'seed': 2}, {'attack.budget': 1000, 'seed': 1}, {'attack.budget': 1000, 'seed': 2}]
>>> check_path("attack.budjet", field="grid")
Traceback (most recent call last):
...
simulator.errors.ScenarioError: grid.attack.budjet: unknown scenario key 'budjet'; allowed in attack: targets, limit, budget, feedback, strategies, params, batch_size, backend, grant_model
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import hashlib
import itertools
import json
import math
import os
import queue
import socket
import threading
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import FraudsimError, ScenarioError

ENGINES = ("ray", "serial")
#: overrides whose values are file paths: a relative one is relative to the sweep file (where it is written)
PATH_KEYS = ("model.path", "data.path")
MAX_VARIANTS = 10_000  # variants of one sweep: each is a run file; more is a typo in a grid, not a plan
RAY_EXTRA = "pip install 'fraudsim[ray]'  (or -e '.[ray]' in a checkout)"


class SweepError(FraudsimError):
    """The sweep file, or how the sweep was asked to run, is invalid."""

    kind = "sweep error"


# -- the sweep file --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One scenario of the sweep: its name, its overrides and the whole scenario they make."""

    name: str
    overrides: dict[str, Any]
    scenario: dict  # the base's raw mapping with the overrides applied (paths absolute, no output)
    source: str  # for error messages: "sweep.yaml, variant v003"
    key: str  # a hash of the whole scenario: the run file's suffix

    @property
    def overrides_json(self) -> str:
        return json.dumps(self.overrides, sort_keys=True, default=str)


@dataclass
class Sweep:
    path: Path
    base: Path
    output: Path
    variants: list[Variant]
    axes: list[str] = field(default_factory=list)  # the override keys, variants' first, then the grid's (the report's heatmap)

    @property
    def runs_dir(self) -> Path:
        return self.output.with_name(self.output.stem + ".runs")

    def run_file(self, v: Variant) -> Path:
        return self.runs_dir / f"{v.name}-{v.key}.duckdb"


def _fields_of(model: Any) -> dict | None:
    from pydantic import BaseModel

    if isinstance(model, type) and issubclass(model, BaseModel):
        return {k: f for k, f in model.model_fields.items() if not f.exclude}
    return None


def _inner(annotation: Any) -> Any:
    """The part of a field's type a dotted path can walk into: a model, a ``dict[str, X]``, or a plain value."""
    from pydantic import BaseModel

    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    for arg in args:
        if typing.get_origin(arg) is dict:
            return arg
    return None


def check_path(path: str, *, field: str, file: str | None = None) -> None:
    """Raise a one-line :class:`ScenarioError` unless ``path`` names a key of the scenario model."""
    from .scenario import Scenario

    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise ScenarioError(f"an override key must be a dotted scenario path such as 'attack.budget' (got {path!r})",
                            file=file, field=field)
    current: Any = Scenario
    where = "the scenario"
    for i, part in enumerate(path.split(".")):
        fields = _fields_of(current)
        if fields is not None:
            f = fields.get(part)
            if f is None:
                raise ScenarioError(f"unknown scenario key {part!r}; allowed in {where}: {', '.join(fields)}",
                                    file=file, field=f"{field}.{path}")
            current, where = _inner(f.annotation), ".".join(path.split(".")[:i + 1])
        elif typing.get_origin(current) is dict:  # any key (a feature name, a strategy name), then its value's type
            current, where = _inner(typing.get_args(current)[1]), ".".join(path.split(".")[:i + 1])
        else:
            raise ScenarioError(f"{where!r} is a value, not a section: nothing below it to set", file=file,
                                field=f"{field}.{path}")


def expand(grid: dict[str, list] | None, variants: list[dict] | None) -> list[dict[str, Any]]:
    """The override maps: the cartesian product of ``grid`` (last key varying fastest), the ``variants`` list, or,
    with both, every variant combined with every point of the grid (the variant's keys first: e.g. candidate models,
    each with its own threshold, times budgets and seeds)."""
    points: list[dict[str, Any]] = [{}]
    if grid is not None:
        keys = list(grid)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    if variants is None:
        return points
    return [{**dict(v), **g} for v in variants for g in points]


def _set(raw: dict, path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = copy.deepcopy(value)


def _resolve_paths(raw: dict, base_dir: Path) -> dict:
    """The base scenario's relative file paths made absolute (the variants run from anywhere)."""
    raw = copy.deepcopy(raw)
    for section in ("data", "model"):
        sec = raw.get(section)
        if isinstance(sec, dict) and isinstance(sec.get("path"), str) and not Path(sec["path"]).expanduser().is_absolute():
            sec["path"] = str((base_dir / sec["path"]).resolve())
    raw.pop("output", None)  # each variant writes its own run file
    return raw


def load_sweep(path: str | Path, *, output: str | Path | None = None) -> Sweep:
    """Read and check a sweep file and every variant's scenario; raises a one-line error on bad input."""
    from .scenario import Scenario

    from .safe_yaml import YamlError, load_yaml_text, read_text_file

    path = Path(path)
    src = str(path)
    try:  # the scenario loader's limits: UTF-8, no duplicate keys, deep nesting or alias bombs
        raw = load_yaml_text(read_text_file(path, what="sweep file"))
    except YamlError as exc:
        raise SweepError(str(exc), file=src) from None
    if not isinstance(raw, dict):
        raise SweepError("a sweep file is a mapping with 'base', and 'grid' or 'variants'", file=src)
    unknown = [k for k in raw if k not in ("base", "grid", "variants", "output")]
    if unknown:
        raise SweepError("unknown key; allowed here: base, grid, variants, output", file=src, field=str(unknown[0]))
    if not isinstance(raw.get("base"), str):
        raise SweepError("required: the base scenario file (relative to this file)", file=src, field="base")
    base = (path.resolve().parent / raw["base"]).resolve()
    try:
        found = base.is_file()
    except OSError:  # a name too long for the file system
        found = False
    if not found:
        raise SweepError(f"base scenario {raw['base']!r} not found (looked at {base})", file=src, field="base")
    grid, listed = raw.get("grid"), raw.get("variants")
    if raw.get("output") is not None and (not isinstance(raw["output"], str) or not raw["output"].strip()):
        raise SweepError("give the sweep file's name, such as sweep.duckdb (relative to this file)", file=src,
                         field="output")
    if grid is None and listed is None:
        raise SweepError("give 'grid' (lists of values per key), 'variants' (a list of override maps), or both (each "
                         "variant times the grid)", file=src, field="grid")
    if grid is not None:
        if not isinstance(grid, dict) or not grid:
            raise SweepError("the grid is empty: give at least one key with a list of values", file=src, field="grid")
        for k, vals in grid.items():
            check_path(k, field="grid", file=src)
            if not isinstance(vals, list) or not vals:
                raise SweepError("give a non-empty list of values", file=src, field=f"grid.{k}")
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            raise SweepError("the variants list is empty: give at least one map of overrides", file=src, field="variants")
        for i, v in enumerate(listed):
            if not isinstance(v, dict):
                raise SweepError("each variant is a map of overrides such as {attack.budget: 100}", file=src,
                                 field=f"variants.{i}")
            for k in v:
                check_path(k, field=f"variants.{i}", file=src)
                if isinstance(grid, dict) and k in grid:
                    raise SweepError(f"{k!r} is in both the grid and this variant: give it in one of them", file=src,
                                     field=f"variants.{i}.{k}")
    points = math.prod(len(v) for v in grid.values()) if grid is not None else 1
    count = points * (len(listed) if listed is not None else 1)
    if count > MAX_VARIANTS:
        raise SweepError(f"{count:,} variants is over the limit of {MAX_VARIANTS:,} for one sweep (each is a run); "
                         "split it into several sweeps", file=src, field="grid" if grid is not None else "variants")
    try:
        base_raw = load_yaml_text(read_text_file(base, what="scenario file"))
    except YamlError as exc:
        raise ScenarioError(str(exc), file=str(base)) from None
    if not isinstance(base_raw, dict):
        raise ScenarioError("the scenario must be a mapping of keys", file=str(base))
    base_raw = _resolve_paths(base_raw, base.parent)
    out = _output_path(path, raw, output)
    variants = []
    inputs = [path, base]  # what the sweep reads: the sweep file must not overwrite any of it
    for i, ov in enumerate(expand(grid, listed)):
        name = f"v{i:03d}"
        scen = copy.deepcopy(base_raw)
        for k, value in ov.items():
            _set(scen, k, _resolve_override(k, value, path.resolve().parent))
        where = f"{src} (variant {name}: {json.dumps(ov, default=str)})"
        sc = Scenario.from_dict(scen, base_dir=base.parent, source=where)  # bad values: one line, nothing run
        inputs += [p for p in sc.input_paths() if str(p) != where]
        key = hashlib.sha256(sc.to_yaml().encode()).hexdigest()[:10]
        variants.append(Variant(name, ov, scen, where, key))
    axes = list(dict.fromkeys([*(k for v in listed or [] for k in v), *(grid or {})]))
    from .store import check_output_path

    check_output_path(out, field="--output" if output is not None else "output", inputs=inputs,
                      source=None if output is not None else src, create=False)
    return Sweep(path=path, base=base, output=out, variants=variants, axes=axes)


def _resolve_override(key: str, value: Any, sweep_dir: Path) -> Any:
    """An override's file paths made absolute, relative to the sweep file: ``model.path``/``data.path``, or the
    ``path`` inside a whole ``model``/``data`` section given as one override."""
    def absolute(p: Any) -> Any:
        return str((sweep_dir / p).resolve()) if isinstance(p, str) and not Path(p).expanduser().is_absolute() else p

    if key in PATH_KEYS:
        return absolute(value)
    if f"{key}.path" in PATH_KEYS and isinstance(value, dict) and "path" in value:
        return {**value, "path": absolute(value["path"])}
    return value


def _output_path(path: Path, raw: dict, output: str | Path | None) -> Path:
    """The sweep file: ``-o``, else the sweep file's ``output`` (relative to it), else the sweep file's name."""
    if output is not None:
        return Path(output)
    return path.resolve().parent / raw["output"] if raw.get("output") else path.with_suffix(".duckdb")


def _ran_before(path: str | Path, output: str | Path | None) -> bool:
    """Whether this sweep has run files from an earlier run (a quick look, before the sweep file is checked); also
    True when the file cannot even be read (its one-line error comes from :func:`load_sweep`)."""
    from .safe_yaml import load_yaml_text, read_text_file

    try:
        raw = load_yaml_text(read_text_file(path))
        out = _output_path(Path(path), raw, output)
        runs = out.with_name(out.stem + ".runs")
        return runs.is_dir() and any(runs.iterdir())
    except Exception:
        return True


# -- running a variant (in a Ray worker or in this process) ----------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def set_task_threads(threads: int) -> None:
    """Cap the threads one task uses: OpenMP (XGBoost, LightGBM; read when their library loads, so set before the
    first variant in a worker) and Numba's parallel kernels. Parallel tasks on a small machine each get one core;
    more threads per task only oversubscribe it (OpenMP threads spin at their barriers while the other task runs)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numba

    # getattr: numba.config sets its settings at import time, so type checkers do not see them
    numba.set_num_threads(max(1, min(threads, getattr(numba.config, "NUMBA_NUM_THREADS"))))


def numba_cache_stats() -> tuple[int, int]:
    """(compiled, loaded from the on-disk cache): Numba specialisations of fraudsim's kernels in this process so far.

    A worker that finds every kernel in the cache compiles nothing; each compilation costs seconds."""
    import sys

    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:
        return 0, 0
    compiled = loaded = 0
    seen: set[int] = set()
    for name, mod in list(sys.modules.items()):
        if not name.startswith("simulator") or mod is None:
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, CPUDispatcher) and id(obj) not in seen:
                seen.add(id(obj))
                stats = obj.stats
                compiled += sum(stats.cache_misses.values())
                loaded += sum(stats.cache_hits.values())
    return compiled, loaded


def run_variant(scenario: dict, source: str, base_dir: str, run_file: str, threads: int | None = None) -> dict:
    """Run one variant into ``run_file``; never raises for a failed run: returns its status and one-line error.

    ``threads``: cap the threads the variant uses (:func:`set_task_threads`); None leaves the libraries' defaults
    (all cores), right for one variant at a time. The result also says how many Numba kernels this process has
    compiled (``numba_compiled``) and loaded from the cache (``numba_cached``) so far, and when the variant started
    and ended (``started``/``ended``, ``time.time()``)."""
    started = time.time()
    if threads is not None:
        set_task_threads(threads)
    from .runner import execute, prepare
    from .scenario import Scenario

    t0, c0 = time.perf_counter(), time.process_time()
    result: dict[str, Any] = {"status": "failed", "error": None, "run_id": None, "worker": worker_name(), "gates_failed": None}
    try:
        sc = Scenario.from_dict(scenario, base_dir=base_dir, source=source)
        res = execute(prepare(sc), output=Path(run_file))
        result.update(status="finished", run_id=res.run_id)
        if sc.gates:
            from .report.gates import evaluate_gates

            failed = [g.name for g in evaluate_gates(res.path, res.run_id, sc.gates) if not g.passed]
            result["gates_failed"] = "; ".join(failed) or None
    except Exception as exc:  # a failed variant is a row of the sweep, not the end of it
        text = str(exc) if isinstance(exc, FraudsimError) else f"{type(exc).__name__}: {exc}"
        result["error"] = (text.strip().splitlines() or [type(exc).__name__])[0][:500]
    result["wall_s"] = time.perf_counter() - t0
    result["cpu_s"] = time.process_time() - c0  # this process's CPU time over the variant, all its threads
    result["numba_compiled"], result["numba_cached"] = numba_cache_stats()
    result["started"], result["ended"] = started, time.time()
    return result


def finished_run(run_file: Path) -> str | None:
    """The run id in an existing run file when that run finished (a resumed sweep skips it), else None."""
    if not run_file.is_file():
        return None
    import duckdb

    try:
        con = duckdb.connect(str(run_file), read_only=True)
        try:
            rows = con.execute("SELECT run_id FROM runs WHERE status = 'finished' ORDER BY started_at DESC LIMIT 1").fetchall()
        finally:
            con.close()
    except duckdb.Error:
        return None
    return rows[0][0] if rows else None


# -- engines ---------------------------------------------------------------------------------------------------

Progress = Callable[[str, int | None], Callable[[int], None]]


def _no_progress(description: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


def _serial(jobs: list[tuple[Variant, dict]], on_done: Callable[[Variant, dict], None]) -> None:
    for v, kwargs in jobs:
        on_done(v, run_variant(**kwargs))


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _check_address(address: str) -> None:
    """Fail fast, in one line, when nothing answers at a Ray address (ray.init would wait a long while)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"a Ray address is HOST:PORT, ray://HOST:PORT, auto or local (got {address!r})",
                         field="--address")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise SweepError(f"no Ray cluster answers at {hostport} ({exc.strerror or exc})", field="--address") from None


def _start_ray(sweep: Sweep | str | Path, output: str | Path | None, address: str | None, num_cpus: int | None,
               timings: dict) -> tuple[Sweep, bool]:
    """Start Ray (or connect to it) while a helper thread reads and checks the sweep file: Ray's processes start
    while the driver imports the scenario model and validates every variant (half a second and more, of a
    ray.init that takes seconds). Returns the sweep and whether Ray was started here (then the caller shuts it
    down). ray.init stays on the calling thread: the processes it starts are bound to the life of that thread."""
    import ray

    if ray.is_initialized():
        return (sweep if isinstance(sweep, Sweep) else load_sweep(sweep, output=output)), False
    # address "local" without --address: a Ray of its own on this machine, never a cluster that ``ray start`` left
    # in /tmp/ray/ray_current_cluster (ray.init() would connect to it, or fail on a stale one)
    kw: dict[str, Any] = dict(address=address or "local", logging_level="ERROR", log_to_driver=False,
                              ignore_reinit_error=True)
    if address is None:
        # worker_niceness: Ray starts its workers at nice 15 by default, so on a machine that other work keeps
        # busy they get a sliver of the CPU (measured: 5 % each on a loaded 2-core machine, while the serial
        # engine runs at the user's own priority). A local sweep is the user's foreground job: priority 0.
        # enable_autoscaler_v2: ray.shutdown stops the GCS before the autoscaler's monitor, and the v1 monitor
        # answers SIGTERM by reporting to the GCS it can no longer reach, so shutdown waited a second for it and
        # then killed it (1.0 of 1.4 s measured); the v2 monitor just exits. Nothing autoscales a local node.
        kw.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                  _system_config={"worker_niceness": 0, "enable_autoscaler_v2": True})
    started, error = False, None
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fraudsim-sweep-load") as pool:
        loading = None if isinstance(sweep, Sweep) else pool.submit(_timed_load, sweep, output, timings)
        t0 = time.perf_counter()
        try:
            with _stderr_held(address is not None):
                ray.init(**kw)
            started = True
        except Exception as exc:  # Ray raises plain Exception too, e.g. when its node times out starting
            error = SweepError(f"cannot start or reach Ray ({_ray_failure(exc)})",
                               field="--address" if address else "--engine")
        timings["ray_start_s"] = time.perf_counter() - t0
        try:
            if loading is not None:
                sweep = loading.result()  # bad input is reported first, and Ray stopped
        except BaseException:
            if started:
                ray.shutdown()
            raise
    if error is not None:
        raise error
    assert isinstance(sweep, Sweep)
    return sweep, started


@contextlib.contextmanager
def _stderr_held(hold: bool) -> typing.Iterator[None]:
    """Hold back what is written to this process's stderr (fd 2) while connecting to a cluster by address: when the
    cluster refuses the driver (a missing token), Ray's C++ client logs a warning line per retry there, for about
    20 s, before ``ray.init`` gives up; the error is then fraudsim's one line. Ray's Python logging is at ERROR
    already. fd 2 is restored before anything is raised or printed."""
    if not hold:
        yield
        return
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _ray_failure(exc: BaseException) -> str:
    """Why ``ray.init`` failed, in a few words: its own first line, or, when the cluster refused the driver for want
    of its token (Ray's token authentication, on by default in recent Ray, needs the driver's ``RAY_AUTH_MODE``
    when it connects by address; ``ray.init`` says only "Failed to connect"), what to set."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return ("the cluster asks for its token: set RAY_AUTH_MODE=token, with the token in ~/.ray/auth_token "
                    "or RAY_AUTH_TOKEN")
        e = e.__cause__ or e.__context__
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _timed_load(path: str | Path, output: str | Path | None, timings: dict) -> Sweep:
    t0 = time.perf_counter()
    try:
        return load_sweep(path, output=output)
    finally:
        timings["load_s"] = time.perf_counter() - t0


def _ray(jobs: list[tuple[Variant, dict]], on_done: Callable[[Variant, dict], None],
         task_threads: int | None = 1) -> None:
    """Run the jobs as Ray tasks (Ray is up: see :func:`_start_ray`)."""
    import ray
    from ray.exceptions import RayError

    # max_retries: a task whose worker process dies is run once more, then ray.get raises (recorded as failed).
    # Ray keeps a worker process per CPU and reuses it for the next task, so a worker pays the imports and
    # loads the Numba kernels from the on-disk cache once, not once per variant. One thread per task (one CPU
    # each): more would oversubscribe the cores the other tasks use.
    # At most one task per CPU in flight, the next submitted as one ends: no task waits in Ray's queue, where the
    # v2 autoscaler (see _start_ray) would report it as an infeasible request, in a warning on every sweep.
    task = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(run_variant)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
    queued = list(jobs)
    pending: dict[Any, Variant] = {}
    while queued or pending:
        while queued and len(pending) < slots:
            v, kwargs = queued.pop(0)
            pending[task.remote(**kwargs, threads=task_threads)] = v
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            v = pending.pop(ref)
            try:
                result = ray.get(ref)
            except RayError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                result = {"status": "failed", "run_id": None, "worker": None, "gates_failed": None, "wall_s": None,
                          "error": f"worker died (retried once): {type(exc).__name__}: {first}"[:500]}
            on_done(v, result)


def check_engine(engine: str, address: str | None) -> None:
    """One-line errors for an unknown engine, Ray not installed, or an address without Ray."""
    if engine not in ENGINES:
        raise SweepError(f"unknown engine {engine!r}; use ray or serial", field="--engine")
    if engine == "ray" and not ray_available():
        raise SweepError(f"--engine ray needs Ray, an optional extra: {RAY_EXTRA}; or use --engine serial",
                         field="--engine")
    if address is not None and engine != "ray":
        raise SweepError("--address is for --engine ray", field="--address")
    if address is not None:
        _check_address(address)


# -- the whole sweep -------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    path: Path
    rows: list[dict]  # one per variant, as in the ``sweep`` table
    skipped: int  # finished variants of an earlier run, not run again
    #: where the time went, in seconds: ``ray_start_s`` (ray.init), ``tasks_s`` (first submit to last result),
    #: ``ray_stop_s`` (ray.shutdown), ``merge_s`` (the merge's tail: last result to the file in place, while Ray
    #: stops), ``merge_busy_s`` (the merge thread's time in all, most of it while tasks still ran), ``end_s`` (last
    #: result to the end); per worker ``first_variant_s`` (imports and kernel loading included)
    timings: dict = field(default_factory=dict)
    #: worker -> {"variants", "wall_s" and "cpu_s" summed over its variants, "numba_compiled", "numba_cached"}
    workers: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "finished"]

    @property
    def gates_failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("gates_failed")]


SWEEP_COLUMNS = ("variant", "overrides", "status", "error", "run_file", "wall_s", "engine", "worker", "run_id",
                 "gates_failed")


def run_sweep(sweep: Sweep | str | Path, *, engine: str = "ray", address: str | None = None,
              output: str | Path | None = None, progress: Progress = _no_progress, num_cpus: int | None = None,
              task_threads: int | None = 1) -> SweepResult:
    """Run every variant not finished before, then write the merged sweep file (see the module docstring).

    ``task_threads``: threads per Ray task (None: the libraries' defaults); the serial engine always leaves the
    defaults (one variant at a time may use every core)."""
    check_engine(engine, address)
    timings: dict[str, float] = {}
    ray_started = [False]

    def ensure_ray(sw: Sweep) -> None:  # Ray starts once the sweep has something to run
        if not ray_started[0]:
            ray_started[0] = _start_ray(sw, None, address, num_cpus, timings)[1]

    try:
        if engine == "ray" and not isinstance(sweep, Sweep) and not _ran_before(sweep, output):
            # a new sweep: every variant will run, so Ray starts while the sweep file is read and checked
            sweep, ray_started[0] = _start_ray(sweep, output, address, num_cpus, timings)
        result, merger = _run_sweep(sweep, engine, output, progress, task_threads, timings, ensure_ray)
    finally:
        if ray_started[0]:  # Ray stops while the merge thread ends the sweep file (its tail)
            import ray

            t1 = time.perf_counter()
            ray.shutdown()
            timings["ray_stop_s"] = time.perf_counter() - t1
    last = timings.pop("last_result")
    merger.wait()
    # merge_s: the merge's tail, from the last result to the file in place (while Ray stops, with the Ray engine);
    # merge_busy_s: the merge thread's time in all, most of it while the tasks ran; end_s: last result to return
    timings["merge_s"], timings["merge_busy_s"] = merger.tail_s, merger.busy_s
    timings["end_s"] = time.perf_counter() - last
    result.timings = timings
    return result


def _run_sweep(sweep: Sweep | str | Path, engine: str, output: str | Path | None, progress: Progress,
               task_threads: int | None, timings: dict,
               ensure_ray: Callable[[Sweep], None]) -> tuple[SweepResult, _Merger]:
    """Run the variants; waiting for the merge thread to end the sweep file, and stopping Ray, are the caller's."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, output=output)
    elif output is not None:
        sweep.output = Path(output)
    previous = _previous_rows(sweep.output)
    sweep.runs_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    jobs = []
    for v in sweep.variants:
        run_file = sweep.run_file(v)
        run_id = finished_run(run_file)
        if run_id is not None:
            old = previous.get(v.name) or {}
            same = old.get("run_file") == str(run_file) and old.get("status") == "finished"
            rows[v.name] = _row(v, run_file, {"status": "finished", "error": None, "run_id": run_id,
                                               "wall_s": old.get("wall_s") if same else None,
                                               "worker": old.get("worker") if same else None,
                                               "gates_failed": old.get("gates_failed") if same else None},
                                old.get("engine") if same else None)
            continue
        jobs.append((v, dict(scenario=v.scenario, source=v.source, base_dir=str(sweep.base.parent),
                             run_file=str(run_file))))
    skipped = len(rows)
    advance = progress(f"sweep: {len(jobs)} variants" + (f" ({skipped} done before)" if skipped else ""), len(jobs))

    workers: dict[str, dict] = {}
    # the sweep file is built while the variants run (see _Merger): finished variants of an earlier run first
    merger = _Merger(sweep.output, [v.name for v in sweep.variants]).start()
    for v in sweep.variants:
        if v.name in rows:
            merger.add(rows[v.name])

    def on_done(v: Variant, result: dict) -> None:
        rows[v.name] = _row(v, sweep.run_file(v), result, engine)
        merger.add(rows[v.name])
        if result.get("worker"):
            w = workers.setdefault(result["worker"], {"variants": 0, "first_started": result.get("started"),
                                                      "wall_s": 0.0, "cpu_s": 0.0})
            w["variants"] += 1
            w["wall_s"] += result.get("wall_s") or 0.0
            w["cpu_s"] += result.get("cpu_s") or 0.0
            w["numba_compiled"], w["numba_cached"] = result.get("numba_compiled"), result.get("numba_cached")
            if result.get("started") is not None and result["started"] <= (w["first_started"] or result["started"]):
                w["first_started"], w["first_variant_s"] = result["started"], result["ended"] - result["started"]
        advance(1)

    try:
        if jobs and engine == "ray":
            ensure_ray(sweep)
            t0 = time.perf_counter()
            _ray(jobs, on_done, task_threads)
        else:
            t0 = time.perf_counter()
            _serial(jobs, on_done)
    except BaseException:
        merger.abort()
        raise
    timings["last_result"] = time.perf_counter()
    if jobs:
        timings["tasks_s"] = timings["last_result"] - t0
    merger.finish([rows[v.name] for v in sweep.variants])
    ordered = [rows[v.name] for v in sweep.variants]
    return SweepResult(path=sweep.output, rows=ordered, skipped=skipped, workers=workers), merger


def _row(v: Variant, run_file: Path, result: dict, engine: str | None) -> dict:
    return {"variant": v.name, "overrides": v.overrides_json, "status": result["status"], "error": result.get("error"),
            "run_file": str(run_file), "wall_s": result.get("wall_s"), "engine": engine, "worker": result.get("worker"),
            "run_id": result.get("run_id"), "gates_failed": result.get("gates_failed")}


def _previous_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            cur = con.execute("SELECT * FROM sweep")
            names = [d[0] for d in cur.description]
            return {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
        finally:
            con.close()
    except duckdb.Error:
        return {}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Merger:
    """Builds the sweep file while the variants run, on a thread of its own.

    Each finished variant's tables are appended as soon as every variant before it has ended, so the file holds the
    variants in variant order (the same file, row for row, whatever the engine and the order its tasks end in) and
    most of the copying is done before the last task ends: the driver is otherwise idle, waiting on its workers. All
    of it is one transaction on ``<output>.partial`` (one commit, one checkpoint: committing each append made DuckDB
    checkpoint again and again, twice the CPU time), moved into place once complete, so an interrupted sweep never
    leaves half a file. One DuckDB thread: the cores are the workers'.
    """

    def __init__(self, output: Path, names: Sequence[str]) -> None:
        self.output = output
        self.partial = output.with_name(output.name + ".partial")
        self._names = list(names)
        self._ready: dict[str, dict] = {}
        self._next = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fraudsim-sweep-merge", daemon=True)
        self._error: BaseException | None = None
        self._tables: dict[str, list[str]] = {}
        self._features: list[str] = []
        self.busy_s = 0.0  # time spent copying and writing, all of it (most of it while tasks still run)
        self.tail_s = 0.0  # time from finish() to the file in place: what is left when the last task has ended
        self._finish_called = 0.0

    def start(self) -> "_Merger":
        self._thread.start()
        return self

    def add(self, row: dict) -> None:
        """A variant has ended (finished or failed; a failed one has no tables to copy)."""
        self._queue.put(("row", row))

    def finish(self, rows: Sequence[dict]) -> None:
        """Every variant has ended: write the ``sweep`` table (``rows``, in variant order) and the views, commit."""
        self._finish_called = time.perf_counter()
        self._queue.put(("finish", list(rows)))

    def wait(self) -> Path:
        """Wait for the file to be in place; re-raises what went wrong on the merge thread."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.output

    def abort(self) -> None:
        """Stop without writing the sweep file (the partial file is removed; an earlier sweep file stays)."""
        self._queue.put(("abort", None))
        self._thread.join()

    def _run(self) -> None:
        import duckdb

        con = None
        finish_at = None
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            for stale in (self.partial, Path(str(self.partial) + ".wal")):
                stale.unlink(missing_ok=True)
            con = duckdb.connect(str(self.partial), config={"threads": 1})
            con.execute("BEGIN TRANSACTION")
            con.execute("CREATE TABLE fraudsim_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute("""CREATE TABLE sweep (variant VARCHAR, overrides VARCHAR, status VARCHAR, error VARCHAR,
                run_file VARCHAR, wall_s DOUBLE, engine VARCHAR, worker VARCHAR, run_id VARCHAR, gates_failed VARCHAR)""")
            while True:
                kind, payload = self._queue.get()
                if kind == "abort":
                    raise _MergeAborted
                t0 = time.perf_counter()
                if kind == "row":
                    self._ready[payload["variant"]] = payload
                    while self._next < len(self._names) and self._names[self._next] in self._ready:
                        row = self._ready.pop(self._names[self._next])
                        self._next += 1
                        if row["status"] == "finished":
                            self._append(con, row["run_file"])
                    self.busy_s += time.perf_counter() - t0
                    continue
                finish_at = t0
                if self._next < len(self._names):  # not reached: the engines report every variant before finish()
                    raise RuntimeError(f"sweep merge: variant {self._names[self._next]} never ended")
                self._close(con, payload)
                con = None
                os.replace(self.partial, self.output)
                break
        except BaseException as exc:
            if con is not None:
                con.close()
            for f in (self.partial, Path(str(self.partial) + ".wal")):
                f.unlink(missing_ok=True)
            if not isinstance(exc, _MergeAborted):
                self._error = exc
        finally:
            if finish_at is not None:
                self.busy_s += time.perf_counter() - finish_at
                self.tail_s = time.perf_counter() - self._finish_called

    def _append(self, con: Any, run_file: str) -> None:
        """Copy one variant's tables (all but its metadata) into the sweep file; a variant with other features
        (another model) adds its columns."""
        con.execute(f"ATTACH {_lit(run_file)} AS variant_run (READ_ONLY)")
        try:
            meta = dict(con.execute("SELECT key, value FROM variant_run.main.fraudsim_meta").fetchall())
            self._features += [f for f in _feature_list(meta.get("features")) if f not in self._features]
            for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'variant_run' "
                                    "AND schema_name = 'main' ORDER BY table_name").fetchall():
                if t == "fraudsim_meta":
                    continue
                cols = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                                   "'variant_run' AND table_name = ? ORDER BY column_index", [t]).fetchall()
                src = f"variant_run.main.{_q(t)}"
                if t not in self._tables:
                    con.execute(f"CREATE TABLE main.{_q(t)} AS SELECT * FROM {src}")
                    self._tables[t] = [c for c, _ in cols]
                    continue
                for c, dtype in cols:
                    if c not in self._tables[t]:
                        con.execute(f"ALTER TABLE main.{_q(t)} ADD COLUMN {_q(c)} {dtype}")
                        self._tables[t].append(c)
                con.execute(f"INSERT INTO main.{_q(t)} BY NAME SELECT * FROM {src}")
        finally:
            con.execute("DETACH variant_run")

    def _close(self, con: Any, rows: list[dict]) -> None:
        from .store import SCHEMA_VERSION

        con.executemany(f"INSERT INTO sweep VALUES ({', '.join('?' * len(SWEEP_COLUMNS))})",
                        [[r[c] for c in SWEEP_COLUMNS] for r in rows])
        con.execute("INSERT INTO fraudsim_meta VALUES ('schema_version', ?), ('features', ?), ('kind', 'sweep')",
                    [str(SCHEMA_VERSION), json.dumps(self._features, ensure_ascii=False)])
        if "runs" in self._tables and "targets" in self._tables:
            from .report.views import create_views

            create_views(con)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        con.close()


class _MergeAborted(Exception):
    pass


def _feature_list(value: str | None) -> list[str]:
    """A run file's ``features`` entry: a JSON list of names (a comma-separated list in older files)."""
    if not value:
        return []
    try:
        names = json.loads(value)
    except ValueError:
        return [f for f in value.split(",") if f]
    return [str(f) for f in names] if isinstance(names, list) else []


def merge(output: Path, rows: Sequence[dict]) -> Path:
    """Write the sweep file: the ``sweep`` table and every finished variant's tables, in variant order.

    Written to ``<output>.partial`` and moved into place, so an interrupted merge never leaves half a file.
    (:func:`run_sweep` does the same while its variants run.)"""
    merger = _Merger(output, [r["variant"] for r in rows]).start()
    for r in rows:
        merger.add(r)
    merger.finish(rows)
    return merger.wait()


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def is_sweep_file(path: str | Path) -> bool:
    """True for a sweep file (a fraudsim store with a ``sweep`` table)."""
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'sweep' "
                                    "AND schema_name = 'main'").fetchall()[0][0])
        finally:
            con.close()
    except duckdb.Error:
        return False
