"""Hypothesis fuzzing of everything fraudsim reads from other people: scenario files (values and text), model
cards and model files. In process and fast: the loader and ``prepare(validate_only=True)`` only. The property:
every input is either accepted or refused with one ``FraudsimError`` whose text is one line; nothing else escapes,
and nothing is written. The long version (5,000+ cases, runs and native parsers in child processes) is
``benchmarks/fuzz_inputs.py``."""
from __future__ import annotations

import copy
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.errors import FraudsimError, ModelError
from simulator.runner import prepare
from simulator.scenario import Scenario

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

BASE = {"name": "w", "seed": 1, "world": {"customers": 600, "days": 6, "fraudsters": 20},
        "attack": {"limit": 2, "budget": 10, "strategies": ["random", "evolutionary"],
                   "params": {"evolutionary": {"step": 0.1, "elite": 3}}},
        "gates": ["auc >= 0.5"]}
CAMPAIGN = {"name": "c", "world": {"customers": 3000, "days": 10},
            "adversaries": {"rings": [{"name": "r", "agents": 2, "probes_per_day": 5, "strategies": ["random"]}]},
            "rounds": 2}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["[/x]", "[word]", "a\nb", "\x1b[2J", "\u202e", "/dev/zero", ".", "", "x" * 300, "1e3", "~"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_scenarios(draw):
    raw = copy.deepcopy(draw(st.sampled_from([BASE, CAMPAIGN])))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(raw) if p]
        path = draw(st.sampled_from(paths))
        node = raw
        for k in path[:-1]:
            node = node[k]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        if action == "delete" and isinstance(node, dict):
            node.pop(path[-1], None)
        elif action == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(["budjet", "[/x]", "extra", "ü"]))] = draw(values)
        else:
            node[path[-1]] = draw(values)
    return raw


def _check(outcome_fn):
    """Accepted, or one FraudsimError of one line; anything else fails the test."""
    try:
        outcome_fn()
    except FraudsimError as exc:
        text = str(exc)
        assert text and "\n" not in text, text


def _dump(raw) -> str:
    try:
        return yaml.safe_dump(raw, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(raw, default=str)


@FUZZ
@given(mutated_scenarios())
def test_fuzz_scenario_values(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("fz")
    path = d / "s.yaml"
    path.write_text(_dump(raw), encoding="utf-8")

    def go():
        sc = Scenario.from_yaml(path)
        prepare(sc, validate_only=True)

    _check(go)
    assert sorted(p.name for p in d.iterdir()) == ["s.yaml"]  # validate writes nothing


text_cases = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.builds(lambda n, c: b"name: x\nattack: " + c[0] * n + c[1] * n, st.integers(1, 3000),
              st.sampled_from([(b"[", b"]"), (b"{a: ", b"}")])),
    st.builds(lambda depth: ("name: x\nworld: {customers: 600, days: 6}\nattack:\n  strategies: [evolutionary]\n"
                             "  params:\n    evolutionary:\n      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
                             + "".join(f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n"
                                       for i in range(1, depth))).encode(), st.integers(2, 9)),
    st.sampled_from([b"name: x\nattack: &a\n  params: {random: *a}\n", b"name: a\nname: b\n",
                     "name: x\n".encode("utf-16"), b"\xff\xfe\x00n", b"name: x\x00\n", b"name: [/x]\n",
                     b"name: x\noutput: {a: 1}\nworld: {}\n"]),
    st.builds(lambda data, cut: yaml.safe_dump(BASE).encode()[:cut] + data, st.binary(max_size=20),
              st.integers(0, 300)),
)


@FUZZ
@given(text_cases)
def test_fuzz_scenario_text(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("fzt")
    path = d / "s.yaml"
    path.write_bytes(data)
    _check(lambda: prepare(Scenario.from_yaml(path), validate_only=True))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.one_of(
    st.binary(max_size=200),
    values.map(lambda v: json.dumps(v, default=str).encode()),
    st.builds(lambda t: json.dumps({"threshold": t}, default=str).encode(), scalars),
    st.builds(lambda n: ('{"a": ' + "[" * n + "]" * n + "}").encode(), st.integers(1, 200_000)),
))
def test_fuzz_model_cards(tmp_path_factory, data):
    from simulator.target import load_card

    path = tmp_path_factory.mktemp("card") / "m.card.json"
    path.write_bytes(data)

    def go():
        card = load_card(path)
        assert isinstance(card, dict)
        thr = card.get("threshold")
        assert thr is None or (not isinstance(thr, bool) and 0 <= thr <= 1 and math.isfinite(thr))

    _check(go)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.data())
def test_fuzz_lightgbm_text(team_files, tmp_path_factory, data):
    """Truncated, byte-mutated and crafted LightGBM text: refused by the guard (one line) or loaded and scored."""
    import numpy as np

    from simulator.target import load_model

    base = team_files["lgbm"].read_bytes()
    kind = data.draw(st.sampled_from(["truncate", "mutate", "crafted"]))
    if kind == "truncate":
        blob = base[:data.draw(st.integers(0, len(base)))]
    elif kind == "mutate":
        b = bytearray(base)
        for _ in range(data.draw(st.integers(1, 4))):
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.sampled_from(list(b"0123456789-. =\n[]Tt:")))
        blob = bytes(b)
    else:
        blob = b"tree\nobjective=binary sigmoid:1\n" + data.draw(st.binary(max_size=500))
    path = tmp_path_factory.mktemp("lgb") / "m.txt"
    path.write_bytes(blob)
    try:
        model = load_model(path, "lightgbm")
    except ModelError as exc:
        assert "\n" not in str(exc)
        return
    scores = model.predict_score(np.zeros((2, len(model.feature_names))))
    assert scores.shape == (2,)


@pytest.mark.parametrize("n", [2, 100, 100_000])
def test_deep_json_models_and_cards(tmp_path, n):
    from simulator.target import load_card, load_model

    (tmp_path / "m.json").write_text('{"learner": ' + "[" * n + "]" * n + "}")
    with pytest.raises(ModelError):
        load_model(tmp_path / "m.json")
    (tmp_path / "c.card.json").write_text('{"x": ' + "[" * n + "]" * n + "}")
    if n > 32:
        with pytest.raises(ModelError, match="nested"):
            load_card(tmp_path / "c.card.json")
    else:
        assert load_card(tmp_path / "c.card.json")["x"]
