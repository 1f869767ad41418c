"""Fuzz fraudsim's inputs the way a hostile or careless user would, and count what happens.

    python benchmarks/fuzz_inputs.py [--cases 5000] [--seed 0] [--runs 5] [--max-seconds S] [--families a,b]

Cases (mixed): scenario files mutated at the value level (wrong types, missing and extra keys, NaN/inf/huge
numbers, unicode, markup, paths that are folders, /dev/zero, FIFOs, 300-character names) and at the text level
(duplicate keys, YAML aliases and billion laughs, recursive aliases, deep nesting, UTF-16, invalid UTF-8, random
bytes, truncation); model cards; data files; LightGBM text and XGBoost JSON models (truncated, mutated, crafted);
XGBoost UBJ and ONNX files (truncated, bytes flipped, garbage after a real head).
Scenarios go through ``Scenario.from_yaml`` + ``prepare(validate_only=True)`` (what ``fraudsim validate`` does) in
this process under a 20 s alarm; model files the guards accept are parsed again in a child process, so a crash or a
hang of a native parser is counted, not suffered. A few accepted scenarios are then run end to end (``--runs``).

Prints: tried, accepted, one-line errors, tracebacks (goal 0), hangs (goal 0), native crashes (goal 0).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.errors import FraudsimError  # noqa: E402

HOSTILE = [None, -1, 0, 1, 2**31 - 1, 2**63, 10**18, -(2**63), 1e300, -1e300, math.inf, -math.inf, math.nan, 0.5,
           True, False, "", "x", "[/x]", "[word]", "a\nb", "\x1b[31m", "\u202e", "ü" * 300, "n" * 100_000, {}, [],
           {"a": 1}, [1, 2], [[[]]], "1e3", "null", "~", "/dev/zero", ".", "..", "x" * 300 + ".duckdb"]
KEYS_ADDED = ["budjet", "extra", "[/x]", "name ", "ü", "source", "1"]
SEEDS = {
    "world": {"name": "w", "seed": 1, "world": {"customers": 600, "days": 6, "fraudsters": 20},
              "attack": {"limit": 2, "budget": 10, "strategies": ["random", "evolutionary"],
                         "params": {"evolutionary": {"step": 0.1, "elite": 3}}}, "gates": ["auc >= 0.5"]},
    "campaign": {"name": "c", "world": {"customers": 3000, "days": 10},
                 "adversaries": {"rings": [{"name": "r", "agents": 2, "probes_per_day": 5,
                                            "strategies": ["random", "boundary"],
                                            "params": {"boundary": {"tol": 0.05}}}],
                                 "evolution": {"temperature": 0.1, "mutation": 0.3}},
                 "defence": {"labels": {"delay_days": 1}}, "rounds": 2},
}


#: case families and their weights in the mix
FAMILIES = {"scenario": 35, "text": 20, "path": 8, "card": 10, "data": 7, "lightgbm": 12, "xgboost": 8, "ubj": 6,
            "onnx": 4}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _set(raw, path, value, rng):
    if not path:
        return value
    node = raw
    for k in path[:-1]:
        node = node[k]
    op = rng.random()
    if op < 0.12 and isinstance(node, dict):
        node.pop(path[-1], None)
    elif op < 0.2 and isinstance(node, dict):
        node[rng.choice(KEYS_ADDED)] = value
    else:
        node[path[-1]] = value
    return raw


def value_mutation(rng, special):
    raw = copy.deepcopy(SEEDS[rng.choice(list(SEEDS))])
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_paths(raw)))
        value = rng.choice(HOSTILE + special) if rng.random() < 0.85 else rng.choice(HOSTILE)
        raw = _set(raw, path, copy.deepcopy(value), rng)
    try:
        return yaml.safe_dump(raw, allow_unicode=rng.random() < 0.5).encode()
    except Exception:
        return json.dumps(raw, default=str).encode()


def text_mutation(rng):
    base = yaml.safe_dump(SEEDS[rng.choice(list(SEEDS))]).encode()
    kind = rng.randrange(9)
    if kind == 0:  # duplicate key
        return base + b"name: twice\n"
    if kind == 1:  # billion laughs inside attack.params
        depth = rng.randint(3, 9)
        lines = ["name: x", "world: {customers: 600, days: 6}", "attack:", "  strategies: [evolutionary]",
                 "  params:", "    evolutionary:", "      l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, depth)]
        return ("\n".join(lines) + "\n").encode()
    if kind == 2:  # recursive alias
        return b"name: x\nattack: &a\n  params: {random: *a}\n"
    if kind == 3:  # deep nesting
        n = rng.choice([40, 500, 5000, 100_000])
        return b"name: x\nattack: " + (b"[" * n + b"]" * n if rng.random() < 0.5 else b"{a: " * n + b"1" + b"}" * n)
    if kind == 4:  # other encodings
        return base.decode().encode(rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1"]))
    if kind == 5:  # invalid UTF-8 bytes
        b = bytearray(base)
        b[rng.randrange(len(b))] = rng.choice([0xFF, 0xC3, 0x80, 0x00])
        return bytes(b)
    if kind == 6:  # truncation
        return base[:rng.randrange(len(base))]
    if kind == 7:  # random byte flips
        b = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))


def child_parse(path: Path, kind: str, timeout: float = 30.0) -> str:
    if kind == "onnx":  # fraudsim's own loader and scoring: refused (exit 2) or scored, never a crash
        code = ("import sys, numpy as np\nfrom simulator.errors import FraudsimError\nfrom simulator.target import "
                "load_model\ntry:\n    m = load_model(sys.argv[1], features=[f'f{i}' for i in range(12)])\n"
                "    m.predict_score(np.zeros((3, len(m.feature_names))))\nexcept FraudsimError:\n    sys.exit(2)\n")
        try:
            p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=timeout,
                               cwd=str(ROOT))
        except subprocess.TimeoutExpired:
            return "hang"
        return "crash" if p.returncode < 0 else "ok" if p.returncode in (0, 2) else "traceback"
    code = ("import sys, lightgbm as lgb, numpy as np\nb = lgb.Booster(model_file=sys.argv[1])\n"
            "b.predict(np.zeros((3, b.num_feature())))\n") if kind == "lightgbm" else \
        ("import sys, xgboost as xgb, numpy as np\nb = xgb.Booster(); b.load_model(sys.argv[1])\n"
         "b.inplace_predict(np.zeros((3, b.num_features()), np.float32))\n")
    try:
        p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang"
    return "crash" if p.returncode < 0 else "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=5, help="accepted world scenarios also run end to end")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop drawing cases after this long and report "
                    "what was tried (a loaded machine still gets a result)")
    ap.add_argument("--families", default=None, help="comma-separated subset of: " + ", ".join(FAMILIES))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    families = [f for f in FAMILIES if args.families is None or f in args.families.split(",")]
    if not families:
        ap.error(f"--families: none of {args.families!r} is one of {', '.join(FAMILIES)}")

    import polars as pl

    from simulator.runner import prepare
    from simulator.scenario import Scenario
    from simulator.schema import frame_to_matrix
    from simulator.target import load_card, load_model
    from simulator.target.train import save_model, train_model
    from simulator.world import FEATURES, LABEL, World, WorldConfig

    work = Path(tempfile.mkdtemp(prefix="fraudsim-fuzz-"))
    os.mkfifo(work / "fifo.yaml")
    (work / "adir").mkdir()
    frame = World(WorldConfig(customers=1500, days=6), seed=3).generate()
    train, test = frame.filter(pl.col("day") < 4), frame.filter(pl.col("day") >= 4)
    args_tm = (frame_to_matrix(train, list(FEATURES)), train[LABEL].to_numpy(), frame_to_matrix(test, list(FEATURES)),
               test[LABEL].to_numpy(), list(FEATURES))
    xgb_path = save_model(train_model(*args_tm, kind="xgboost", seed=1), work / "m.json")
    lgb_path = save_model(train_model(*args_tm, kind="lightgbm", seed=1), work / "m.txt")
    test.drop("transaction_id").write_parquet(work / "data.parquet")
    SEEDS["data"] = {"name": "d", "seed": 2, "data": {"path": "data.parquet"}, "model": {"path": "m.json"},
                     "attack": {"limit": 3, "budget": 10, "strategies": ["random"]}, "output": "out.duckdb"}
    special = [str(work / "adir"), "/dev/zero", str(work / "fifo.yaml"), "m.txt", "m.json", "data.parquet",
               "y" * 300 + ".parquet", "nope.json"]
    lgb_text, xgb_text = lgb_path.read_bytes(), xgb_path.read_bytes()
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(xgb_path))
    ubj_text = bytes(booster.save_raw("ubj"))
    onnx_text = (ROOT / "models" / "xgb_export.onnx").read_bytes()
    card_text = (work / "m.card.json").read_text() if (work / "m.card.json").exists() else '{"threshold": 0.5}'

    counts: Counter[str] = Counter()
    samples: dict[str, list[str]] = {}
    accepted_world: list[Path] = []
    signal.signal(signal.SIGALRM, _alarm)
    t_start = time.perf_counter()

    def record(outcome: str, detail: str = "") -> None:
        counts[outcome] += 1
        if detail and len(samples.setdefault(outcome, [])) < 5:
            samples[outcome].append(detail[:300])

    tried = 0
    for i in range(args.cases):
        if args.max_seconds is not None and time.perf_counter() - t_start > args.max_seconds:
            break
        tried += 1
        family = rng.choices(families, [FAMILIES[f] for f in families])[0]
        case = work / f"case{i}"
        case.mkdir()
        for f in ("m.json", "m.txt", "data.parquet"):
            os.link(work / f, case / f)
        signal.setitimer(signal.ITIMER_REAL, 20.0)
        try:
            if family in ("scenario", "text", "path"):
                if family == "path":
                    name = rng.choice(["s.yaml", "x" * 300 + ".yaml", "adir", "fifo", "/dev/zero", "missing.yaml"])
                    target = {"adir": work / "adir", "fifo": work / "fifo.yaml", "/dev/zero": Path("/dev/zero"),
                              "missing.yaml": case / "missing.yaml"}.get(name, case / name)
                    if name in ("s.yaml",):
                        target.write_bytes(value_mutation(rng, special))
                else:
                    target = case / "s.yaml"
                    target.write_bytes(value_mutation(rng, special) if family == "scenario" else text_mutation(rng))
                sc = Scenario.from_yaml(target)
                prep = prepare(sc, validate_only=sc.data is None)
                if sc.output is not None:
                    from simulator.store import check_output_path

                    check_output_path(sc.output, inputs=sc.input_paths(), create=False)
                record("accepted")
                if sc.data is None and sc.adversaries is None and prep is None:
                    accepted_world.append(target)
            elif family == "card":
                text = card_text
                op = rng.randrange(5)
                if op == 0:
                    text = text[:rng.randrange(len(text) + 1)]
                elif op == 1:
                    text = json.dumps(rng.choice(HOSTILE[:30]), default=str)
                elif op == 2:
                    n = rng.choice([10, 100, 10_000, 200_000])
                    text = '{"a": ' + "[" * n + "]" * n + "}"
                elif op == 3:
                    text = json.dumps({"threshold": rng.choice(HOSTILE[:30])}, default=str)
                (case / "m.card.json").write_bytes(text.encode("utf-8") if rng.random() < 0.8 else
                                                   text.encode("utf-16"))
                load_card(case / "m.card.json")
                record("accepted")
            elif family == "data":
                df = pl.read_parquet(case / "data.parquet")
                op = rng.randrange(6)
                name = "d.parquet"
                if op == 0:
                    df = df.head(0)
                elif op == 1:
                    col = rng.choice(list(FEATURES))
                    df = df.with_columns(pl.lit(None, rng.choice([pl.Float64, pl.Utf8, pl.Null])).alias(col))
                elif op == 2:
                    col = rng.choice(list(FEATURES))
                    df = df.with_columns(pl.col(col).cast(pl.Utf8))
                elif op == 3:
                    col = rng.choice(list(FEATURES))
                    df = df.with_columns(pl.struct(pl.col(col)).alias(col))
                elif op == 4:
                    name = "d.csv"
                    lines = df.head(20).write_csv().splitlines()
                    lines[rng.randrange(1, len(lines))] += ",1,2"
                    (case / name).write_text("\n".join(lines[:rng.randrange(1, len(lines) + 1)]) + "\n")
                if op != 4:
                    df = df.drop(rng.choice(list(FEATURES))) if op == 5 else df
                    df.write_parquet(case / name)
                raw = copy.deepcopy(SEEDS["data"])
                raw["data"]["path"] = name
                (case / "s.yaml").write_text(yaml.safe_dump(raw))
                prepare(Scenario.from_yaml(case / "s.yaml"))
                record("accepted")
            elif family in ("ubj", "onnx"):  # binary formats: truncated, bytes flipped, garbage after a real head
                base = ubj_text if family == "ubj" else onnx_text
                op = rng.randrange(3)
                if op == 0:
                    data = base[:rng.randrange(len(base))]
                elif op == 1:
                    b = bytearray(base)
                    for _ in range(rng.randint(1, 12)):
                        b[rng.randrange(len(b))] = rng.randrange(256)
                    data = bytes(b)
                else:
                    cut = rng.randrange(min(len(base), 4096))
                    data = base[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(3000)))
                path = case / ("m2.ubj" if family == "ubj" else "m2.onnx")
                path.write_bytes(data)
                signal.setitimer(signal.ITIMER_REAL, 0)
                if family == "ubj":
                    from simulator.target.xgb_guard import check_xgboost_file

                    check_xgboost_file(path)
                    verdict = child_parse(path, "xgboost")
                else:
                    verdict = child_parse(path, "onnx")
                if verdict != "ok":
                    record("native " + verdict if verdict != "traceback" else "traceback", f"{family} op {op}: {path}")
                    continue
                if family == "ubj":
                    load_model(path, "xgboost")
                record("accepted")
            else:
                base = lgb_text if family == "lightgbm" else xgb_text
                op = rng.randrange(4)
                if op == 0:
                    data = base[:rng.randrange(len(base))]
                elif op == 1:
                    b = bytearray(base)
                    for _ in range(rng.randint(1, 6)):
                        b[rng.randrange(len(b))] = rng.choice(b"0123456789-.e =\n[]{}\"Tt,:" if family == "lightgbm"
                                                              else b"0123456789-.e []{}\",:")
                    data = bytes(b)
                elif op == 2:
                    head = b"tree\nobjective=binary sigmoid:1\n" if family == "lightgbm" else b'{"learner": '
                    data = head + bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))
                else:
                    n = rng.choice([100, 10_000, 300_000])
                    data = b'{"learner": ' + b"[" * n + b"]" * n + b"}" if family == "xgboost" else base + base
                path = case / ("m2.txt" if family == "lightgbm" else "m2.json")
                path.write_bytes(data)
                signal.setitimer(signal.ITIMER_REAL, 0)
                try:
                    if family == "lightgbm":
                        from simulator.target.lgbm_guard import check_lightgbm_text

                        check_lightgbm_text(path)
                    else:
                        from simulator.target.xgb_guard import check_xgboost_file

                        check_xgboost_file(path)
                except FraudsimError:
                    raise
                verdict = child_parse(path, family)
                if verdict != "ok":
                    record("native " + verdict, f"{family} op {op}: {path}")
                    continue
                load_model(path, family)  # the guard passed and the library survived it in a child
                record("accepted")
        except FraudsimError as exc:  # a newline in the user's own path or key is escaped by the CLI (one_line)
            text = str(exc)
            record("one-line error" if "\n" not in exc.reason and text else "multi-line error", text)
        except Hang:
            record("hang", f"{family}: {case}")
        except Exception as exc:
            record("traceback", f"{family}: {type(exc).__name__}: {exc} | {case} | "
                                + traceback.format_exc().splitlines()[-3].strip())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    run_ok = run_bad = 0
    for path in accepted_world[:args.runs]:
        try:
            p = subprocess.run([sys.executable, "-c", "from simulator.cli import main; main()", "run", str(path), "-q",
                                "-o", str(path.with_suffix(".duckdb"))], capture_output=True, text=True, timeout=600,
                               cwd=str(ROOT))
            ok = p.returncode in (0, 1, 2) and "Traceback" not in p.stderr
        except subprocess.TimeoutExpired:
            ok = False
        run_ok += ok
        run_bad += not ok
        if not ok:
            record("run failure", f"{path}")

    elapsed = time.perf_counter() - t_start
    print(f"fuzz_inputs: {tried} of {args.cases} cases, seed {args.seed}, {elapsed:.0f} s")
    print(f"  tried            {tried:>6}")
    print(f"  accepted         {counts['accepted']:>6}")
    print(f"  one-line errors  {counts['one-line error']:>6}")
    print(f"  multi-line       {counts['multi-line error']:>6}   (goal 0)")
    print(f"  tracebacks       {counts['traceback']:>6}   (goal 0)")
    print(f"  hangs            {counts['hang']:>6}   (goal 0)")
    print(f"  native crashes   {counts['native crash'] + counts['native hang']:>6}   (goal 0; parsed in a child)")
    print(f"  runs of accepted world scenarios: {run_ok} ok, {run_bad} failed (goal 0)")
    for outcome in ("traceback", "hang", "multi-line error", "native crash", "native hang", "run failure"):
        for s in samples.get(outcome, []):
            print(f"  {outcome}: {s}")
    if not any(samples.get(o) for o in ("traceback", "hang", "native crash", "native hang", "run failure")):
        import shutil

        shutil.rmtree(work, ignore_errors=True)  # kept only when there is something to look at


if __name__ == "__main__":
    main()
