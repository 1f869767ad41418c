"""Scenario files: typed, frozen Pydantic models of the YAML, with one-line errors naming file, field and reason.

Relative paths (``data.path``, ``model.path``, ``output``) are resolved against the scenario file's folder.

Examples
--------
>>> sc = Scenario.from_dict({"name": "demo", "world": {"customers": 500, "days": 6}, "attack": {"budget": 50}})
>>> sc.attack.budget, sc.attack.strategies, sc.data is None
(50, ('random', 'evolutionary'), True)
>>> Scenario.from_dict({"name": "demo", "attack": {"budjet": 5}})
Traceback (most recent call last):
...
simulator.errors.ScenarioError: attack.budjet: unknown key; allowed here: targets, limit, budget, feedback, strategies, params, batch_size, backend, grant_model
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from .campaign.config import AdversariesSpec, DefenceSpec, RoundsSpec, check_campaign
from .errors import ScenarioError

DEFAULT_SCENARIO = "default.yaml"


#: Upper bounds on counts and sizes, so that anything ``fraudsim validate`` accepts runs in bounded memory and time
#: (the reason is part of the error). See the README, "Limits".
LIMITS = {
    "seed": (2**31 - 1, "XGBoost and LightGBM take 32-bit seeds"),
    "name": (64, "the run id repeats the name on every stored row"),
    "customers": (1_000_000, "each customer is a row of the world's arrays (about 2 transactions a day)"),
    "merchants": (200_000, "each merchant is a row of the world's arrays"),
    "days": (730, "the world is simulated day by day, all days kept in memory"),
    "customer_days": (20_000_000, "world.customers × world.days: about 2 transactions each, all kept in memory"),
    "fraudsters": (100_000, "each fraudster is an agent stepped every day"),
    "fraud_rate_scale": (100.0, "a multiplier of fraudster activity"),
    "limit": (100_000, "targets attacked"),
    "budget": (100_000, "queries per target and strategy"),
    "queries": (20_000_000, "attack.limit × attack.budget × strategies: one stored row per query"),
    "batch_size": (10_000, "candidates per target in one model call"),
    "strategies": (20, "strategies in one run"),
    "features": (2_000, "features in the scenario"),
    "categories": (100_000, "categories of one feature"),
    "magnitude": (1e12, "a finite number far beyond any feature value"),
    "gates": (100, "gates in one scenario"),
    "path": (4096, "characters in a file path"),
}


def bound(key: str) -> Any:
    return LIMITS[key][0]


def _over(key: str, value: Any) -> str:
    return f"at most {LIMITS[key][0]:,} ({LIMITS[key][1]}); got {value:,}"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class WorldSpec(Section):
    """Build the synthetic world and attack its traffic (instead of ``data``)."""

    customers: int = Field(20_000, gt=0, le=bound("customers"))
    merchants: int = Field(2_000, gt=0, le=bound("merchants"))
    days: int = Field(30, ge=2, le=bound("days"))
    fraudsters: int = Field(60, ge=0, le=bound("fraudsters"))
    fraud_rate_scale: float = Field(1.0, gt=0, le=bound("fraud_rate_scale"))
    train_fraction: float = Field(0.6, gt=0, lt=1, description="share of days the baseline model is trained on")

    @model_validator(mode="after")
    def _size(self):
        if self.customers * self.days > bound("customer_days"):
            raise ScenarioError(_over("customer_days", self.customers * self.days), field="world.customers")
        return self


class DataSpec(Section):
    """A team's own labelled data set (Parquet or CSV); target ids are 0-based row numbers in this file."""

    path: Path
    label: str = Field("is_fraud", min_length=1, max_length=256)

    @field_validator("path", mode="before")
    @classmethod
    def _path_is_text(cls, v):
        return _path_text(v, "data.path")


class ModelSpec(Section):
    """The model under attack: a file (``path``), a scoring endpoint (``url``) or, with a world, none (a baseline
    is trained). ``features`` gives the input order of a model saved without feature names (and must equal the
    names of one saved with them); an endpoint always needs it."""

    path: Path | None = None  # XGBoost JSON/UBJ, LightGBM text or ONNX; None with a world: train a baseline
    kind: str | None = None  # detected from the file when not given (see simulator.target.registry)
    features: list[str] | None = Field(None, description="input order for models saved without names; required for url")
    threshold: float | None = Field(None, ge=0, le=1)  # decline when score >= threshold
    threshold_fpr: float = Field(0.01, gt=0, lt=1, description="false-positive rate that sets the threshold of a trained model")
    # a live scoring endpoint (simulator/target/http.py)
    url: str | None = Field(None, pattern=r"^https?://", description="scoring endpoint, e.g. http://host:5001/invocations")
    protocol: Literal["mlflow", "kserve_v2"] = "mlflow"
    model_name: str | None = Field(None, description="kserve_v2: builds URL/v2/models/NAME/infer from a base url")
    input_name: str = Field("input-0", description="kserve_v2: the name of the input tensor")
    timeout: float = Field(30.0, gt=0, description="seconds to wait for one answer")
    retries: int = Field(3, ge=0, le=20, description="retries of a batch on connection errors and 5xx answers")
    batch_size: int = Field(1000, gt=0, le=1_000_000, description="rows per request")
    concurrency: int = Field(1, gt=0, le=256, description="requests in flight at once")
    max_rps: float | None = Field(None, gt=0, description="at most this many requests per second")
    headers: dict[str, str] | None = Field(None, description="HTTP headers, e.g. Authorization: Bearer ${TOKEN}; "
                                                          "${VAR} is read from the environment, never stored")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v):
        from .target.registry import ADAPTERS

        if v is not None and ADAPTERS and v not in ADAPTERS:
            raise ValueError(f"unknown model kind {v!r}; known: {', '.join(ADAPTERS)}")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if self.path is not None and self.url is not None:
            raise ValueError("give model.path or model.url, not both")
        if self.url is not None and not self.features:
            raise ScenarioError("an endpoint needs model.features: the names of its inputs, in order",
                                field="model.features")
        if self.url is None:
            http_only = [k for k in ("model_name", "max_rps", "headers") if getattr(self, k) is not None]
            if http_only:
                raise ScenarioError(f"model.{http_only[0]} applies to an endpoint (model.url) only",
                                    field=f"model.{http_only[0]}")
        return self

    @property
    def given(self) -> bool:
        """A model file or an endpoint is given (otherwise a world scenario trains one)."""
        return self.path is not None or self.url is not None

    @property
    def location(self) -> str | None:
        return str(self.path) if self.path is not None else self.url

    @field_validator("path", mode="before")
    @classmethod
    def _path_is_text(cls, v):
        return _path_text(v, "model.path")

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_not_bool(cls, v):
        if isinstance(v, bool):
            raise ValueError(f"must be a number between 0 and 1, not {str(v).lower()}")
        return v


class FeatureSpecModel(Section):
    type: Literal["continuous", "integer", "binary", "categorical"] = "continuous"
    min: float | None = None
    max: float | None = None
    categories: list[float] | None = Field(None, max_length=bound("categories"))
    mutable: bool = True
    direction: Literal["increase", "decrease", "any"] = "any"
    cost: float = Field(1.0, ge=0, le=1e6)
    cost_scale: Literal["range", "iqr", "unit"] | None = Field(
        None, description="the change that costs `cost`: the range, the data's IQR, or one unit (default: the "
                          "scenario's cost_scale)")

    @model_validator(mode="after")
    def _consistent(self):
        for key in ("min", "max"):
            v = getattr(self, key)
            if v is not None and not (math.isfinite(v) and abs(v) <= bound("magnitude")):
                raise ValueError(f"{key} must be a finite number of magnitude at most {bound('magnitude'):g}")
        if self.categories is not None and not all(math.isfinite(c) and abs(c) <= bound("magnitude")
                                                   for c in self.categories):
            raise ValueError(f"categories must be finite numbers of magnitude at most {bound('magnitude'):g}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) > max ({self.max:g})")
        if self.type == "categorical" and not self.categories:
            raise ValueError("a categorical feature needs a non-empty 'categories' list")
        if self.type == "integer":
            for key in ("min", "max"):
                v = getattr(self, key)
                if v is not None and v != round(v):
                    raise ValueError(f"{key} of an integer feature must be a whole number")
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class AttackSpec(Section):
    targets: Literal["caught_fraud", "fraud", "declined"] = "caught_fraud"
    limit: int | None = Field(40, gt=0, le=bound("limit"),
                              description="first N targets by row order after filtering; null for all")
    budget: int = Field(1000, gt=0, le=bound("budget"), description="oracle queries per target and strategy")
    feedback: Literal["score", "decision"] = "score"
    strategies: tuple[str, ...] = Field(("random", "evolutionary"), max_length=bound("strategies"))
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-strategy keyword parameters")
    batch_size: int | None = Field(None, gt=0, le=bound("batch_size"),
                                   description="candidates per target per oracle call (default: the strategy's)")
    backend: Literal["auto", "cpu", "gpu"] = "auto"
    grant_model: bool = False  # white box: the attacker may read the model file

    @field_validator("strategies", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known_strategies(self):
        from .strategies import get_strategy  # late: strategies import the kernels, which stay optional here

        if not self.strategies:
            raise ValueError("give at least one strategy")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("a strategy is listed twice")
        for i, name in enumerate(self.strategies):
            cls = get_strategy(name, field=f"attack.strategies.{i}")
            if "score" in cls.needs and self.feedback != "score":
                raise ScenarioError(f"strategy {name!r} needs score feedback but attack.feedback is "
                                    f"{self.feedback!r}; use a label-only strategy such as 'random'",
                                    field=f"attack.strategies.{i}")
            if "model" in cls.needs and not self.grant_model:
                raise ScenarioError(f"strategy {name!r} needs the model file; set attack.grant_model: true",
                                    field=f"attack.strategies.{i}")
        from .strategies.params import check_params

        for name, params in self.params.items():
            if name not in self.strategies:
                raise ScenarioError(f"parameters for {name!r}, which is not in attack.strategies", field=f"attack.params.{name}")
            check_params(get_strategy(name), params, field=f"attack.params.{name}")
        queries = (self.limit or bound("limit")) * self.budget * len(self.strategies)
        if queries > bound("queries"):
            raise ScenarioError(_over("queries", queries) + "; lower the budget, the limit or the strategies",
                                field="attack.budget")
        return self


class TrainSpec(Section):
    """``fraudsim harden``: the labelled data hardened candidates are trained on (Parquet or CSV)."""

    path: Path
    label: str = "is_fraud"


class HardenSpec(Section):
    """``fraudsim harden``: the methods to try (see simulator/defences) and the clean AUC a candidate may lose."""

    methods: tuple[str, ...] = ("adversarial_training", "monotone", "squeeze", "ensemble")
    max_auc_loss: float = Field(0.01, ge=0, le=1)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method keyword parameters")
    train_params: dict[str, Any] = Field(default_factory=dict, description="library parameters over the base model's "
                                         "for every model trained here, e.g. {rounds: 50}")

    @field_validator("methods", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known_methods(self):
        from .defences import get_defence

        if not self.methods:
            raise ValueError("give at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("a method is listed twice")
        for i, name in enumerate(self.methods):
            get_defence(name, field=f"harden.methods.{i}")
        for name in self.params:
            if name not in self.methods:
                raise ScenarioError(f"parameters for {name!r}, which is not in harden.methods", field=f"harden.params.{name}")
        return self


class RateLimitSpec(Section):
    """Refuse a query when its card (or device) already made ``max_queries`` attempts in the last ``window_s``."""

    key: Literal["card", "device"] = "card"
    max_queries: int = Field(gt=0)
    window_s: float = Field(3600.0, gt=0)


class ReviewBandSpec(Section):
    """Hold for review (not an evasion) the scores between the review threshold and the decline threshold."""

    review_fpr: float = Field(0.03, gt=0, lt=1, description="review threshold at this FPR on the data's legitimate rows")
    review_threshold: float | None = Field(None, ge=0, le=1)


class StatefulDetectionSpec(Section):
    """k-NN probe detection (Chen, Carlini & Wagner 2019): a query whose mean distance to its k nearest recent
    queries of the same card/device is below the threshold is a probe."""

    k: int = Field(4, ge=1, le=64)
    buffer: int = Field(32, ge=1, le=1024)
    threshold: float | None = Field(None, ge=0, description="default: calibrated at calibrate_fpr on legitimate rows")
    calibrate_fpr: float = Field(0.001, gt=0, lt=1)
    window_s: float | None = Field(None, gt=0)
    key: Literal["card", "device", "both"] = "both"
    action: Literal["block", "review"] = "block"
    block_s: float = Field(86_400.0, ge=0)
    include_original: bool = Field(True, description="the target's own transaction is in its card's history")

    @model_validator(mode="after")
    def _buffer(self):
        if self.buffer < self.k:
            raise ValueError(f"buffer ({self.buffer}) < k ({self.k})")
        return self


RUN_DEFENCE_KEYS = ("rate_limits", "review_band", "stateful_detection", "seconds_between_queries", "card_column",
                    "device_column")


class RunDefenceSpec(Section):
    """Runtime defences of a single-round run (a campaign's ``defence:`` has its own keys)."""

    rate_limits: tuple[RateLimitSpec, ...] = ()
    review_band: ReviewBandSpec | None = None
    stateful_detection: StatefulDetectionSpec | None = None
    seconds_between_queries: float = Field(60.0, gt=0, description="the attacker's pace: one query per target every N s")
    card_column: str | None = Field(None, description="the card of a target row (default: each target its own card)")
    device_column: str | None = None


def _defence_kind(v: Any) -> str:
    if isinstance(v, RunDefenceSpec) or (isinstance(v, dict) and any(k in RUN_DEFENCE_KEYS for k in v)):
        return "run"
    return "campaign"


class Scenario(Section):
    """A whole fight: where the traffic comes from, the model, what attackers may change, how they attack."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=bound("name"))
    seed: int = Field(0, ge=0, le=bound("seed"))
    world: WorldSpec | None = None
    data: DataSpec | None = None
    model: ModelSpec = ModelSpec()
    features: dict[str, FeatureSpecModel] | None = Field(None, max_length=bound("features"))
    relations: tuple[str, ...] = Field((), description="relations between features (grammar: simulator/relations.py)")
    cost_scale: Literal["range", "iqr", "unit"] = Field(
        "range", description="what a numeric feature's cost is per: its range (max - min), the data's "
                             "inter-quartile range, or one unit; a feature may give its own")
    attack: AttackSpec = AttackSpec()
    adversaries: AdversariesSpec | None = None  # a campaign (see simulator/campaign): rings, agents, evolution
    defence: Annotated[Union[Annotated[DefenceSpec, Tag("campaign")], Annotated[RunDefenceSpec, Tag("run")]],
                       Discriminator(_defence_kind)] | None = None
    rounds: RoundsSpec | None = None
    train: TrainSpec | None = None  # fraudsim harden: training data of the candidates
    harden: HardenSpec | None = None  # fraudsim harden: methods to try
    gates: tuple[str, ...] = Field((), max_length=bound("gates"),
                                   description="release gates, e.g. 'success_rate_at_100 <= 0.05'")
    output: Path | None = None
    source: str | None = Field(None, exclude=True, description="the file this came from, for error messages")

    @field_validator("gates", mode="before")
    @classmethod
    def _gates_parse(cls, v):
        from .report.gates import validate_gates

        if v is not None and not isinstance(v, (str, list, tuple)):
            raise ValueError(f"gates must be a list of strings such as 'auc >= 0.85' (got {type(v).__name__})")

        return validate_gates(v)

    @field_validator("relations", mode="after")
    @classmethod
    def _relations_parse(cls, v):
        from .relations import parse_relations

        parse_relations(v)  # syntax only; names are checked against the model and the data in runner.prepare
        return v

    @model_validator(mode="before")
    @classmethod
    def _resolve_paths(cls, raw: Any, info: ValidationInfo):
        base = (info.context or {}).get("base_dir")
        if not isinstance(raw, dict) or base is None:
            return raw
        raw = dict(raw)
        for section in ("data", "model", "train"):
            if isinstance(raw.get(section), dict) and raw[section].get("path") is not None:
                raw[section] = dict(raw[section], path=_resolve(base, raw[section]["path"], f"{section}.path"))
        if raw.get("output") is not None:
            raw["output"] = _resolve(base, raw["output"], "output")
        return raw

    @field_validator("output", mode="before")
    @classmethod
    def _output_is_text(cls, v):
        return _path_text(v, "output")

    @model_validator(mode="after")
    def _sources(self):
        if self.world is not None and self.data is not None:
            raise ScenarioError("give either 'world' or 'data', not both", field="data")
        if self.data is not None and not self.model.given and self.train is None:
            raise ScenarioError("a scenario on a team's data needs the model to attack: model.path (a file) or "
                                "model.url (an endpoint)", field="model.path")
        check_campaign(self)
        from .report.gates import parse_gates, validate_gates

        validate_gates(self.gates, budget=self.attack.budget)
        known = self.strategy_names()
        for gate in parse_gates(self.gates):
            if gate.strategy is not None and gate.strategy not in known:
                raise ScenarioError(f"gate names strategy {gate.strategy!r}, which this scenario does not run "
                                    f"(strategies: {', '.join(sorted(known))})", field=gate.field)
        return self

    def strategy_names(self) -> set[str]:
        """The strategies whose results a run of this scenario records (for gates that name one)."""
        if self.adversaries is not None:
            from .campaign.config import PLAYBOOK

            names = {s for r in self.adversaries.rings for s in r.strategies}
            return names | ({PLAYBOOK} if self.adversaries.evolution.share_within_ring else set())
        return set(self.attack.strategies)

    def input_paths(self) -> list[Path]:
        """Files a run reads (scenario, model and its card, data, and a harden's training data): no output may
        overwrite them."""
        paths = [Path(self.source)] if self.source and not self.source.startswith("<") else []
        if self.model.path is not None:
            from .target import card_path_for

            paths += [self.model.path, card_path_for(self.model.path)]
        if self.data is not None:
            paths.append(self.data.path)
        if self.train is not None:
            paths.append(self.train.path)
        return paths

    @property
    def uses_world(self) -> bool:
        return self.data is None

    @property
    def world_spec(self) -> WorldSpec:
        return self.world or WorldSpec()

    def output_path(self) -> Path:
        return self.output or Path(f"{self.name}.duckdb")

    # -- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "Scenario":
        """Read a scenario file with :mod:`simulator.safe_yaml` (regular UTF-8 files of at most 1 MiB; no duplicate
        keys, deep nesting or alias bombs) and validate it."""
        from .safe_yaml import YamlError, load_yaml_text, read_text_file

        path = Path(path)
        try:
            raw = load_yaml_text(read_text_file(path, what="scenario file"))
        except YamlError as exc:
            raise ScenarioError(str(exc), file=str(path)) from None
        try:
            base = path.resolve().parent
        except (OSError, RuntimeError) as exc:
            raise ScenarioError(f"cannot resolve the file's folder ({exc})", file=str(path)) from None
        return cls.from_dict(raw, base_dir=base, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, base_dir: str | Path | None = None, source: str | None = None) -> "Scenario":
        if not isinstance(raw, dict):
            raise ScenarioError("the scenario must be a mapping of keys (name, seed, world or data, model, ...)", file=source)
        bad_key = next((k for k in raw if not isinstance(k, str)), None)
        if bad_key is not None or "source" in raw:
            key = bad_key if bad_key is not None else "source"
            raise ScenarioError("unknown key" if key == "source" else "keys must be strings", file=source,
                                field=str(key))
        raw = dict(raw, source=source)
        try:
            return cls.model_validate(raw, context={"base_dir": Path(base_dir) if base_dir else None})
        except ScenarioError as exc:
            exc.file = exc.file or source
            raise ScenarioError(exc.reason, file=exc.file, field=exc.field) from None
        except ValidationError as exc:
            raise _to_scenario_error(exc, source) from None

    @classmethod
    def default(cls) -> "Scenario":
        """The built-in scenario ``fraudsim run`` uses when given no file."""
        text = resources.files("simulator").joinpath("data", DEFAULT_SCENARIO).read_text()
        return cls.from_dict(yaml.safe_load(text), base_dir=Path.cwd(), source=f"<built-in {DEFAULT_SCENARIO}>")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    def replace(self, **changes: Any) -> "Scenario":
        """A validated copy with top-level fields replaced (sections may be given as dicts)."""
        raw = self.model_dump(mode="python", exclude_none=True)
        raw.update(changes)
        return Scenario.from_dict(raw, source=self.source)


def _path_text(p: Any, field: str) -> Any:
    """A path in a scenario must be a non-empty string (never a mapping, list or number turned into a name)."""
    if p is None or isinstance(p, Path):
        return p
    if not isinstance(p, str):
        raise ScenarioError(f"must be a file path (a string), got {type(p).__name__}", field=field)
    if not p.strip() or "\x00" in p or len(p) > bound("path"):
        raise ScenarioError("must be a non-empty file path" if not p.strip() or "\x00" in p
                            else _over("path", len(p)), field=field)
    return p


def _resolve(base: Path, p: Any, field: str) -> str:
    p = _path_text(p, field)
    if isinstance(p, Path):
        p = str(p)
    try:
        q = Path(p).expanduser()
    except RuntimeError:  # "~user" of an unknown user
        q = Path(p)
    return str(q if q.is_absolute() else (base / q))


def _to_scenario_error(exc: ValidationError, source: str | None) -> ScenarioError:
    err = exc.errors()[0]
    raw_loc = err["loc"]
    if len(raw_loc) > 1 and raw_loc[0] == "defence" and raw_loc[1] in ("run", "campaign"):  # the union's tag
        raw_loc = (raw_loc[0],) + tuple(raw_loc[2:])
        err = err.copy()
        err["loc"] = raw_loc
    loc = [str(x) for x in err["loc"]]
    field = ".".join(loc) or None
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(Scenario, err["loc"][:-1])
        reason = "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    elif err["type"] == "missing":
        reason = "required key is missing"
    else:
        reason = err["msg"].removeprefix("Value error, ")
        if "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], (dict, list)):
            reason += f" (got {err['input']!r})"
    return ScenarioError(reason, file=source, field=field)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the models along ``loc`` to list the keys a section accepts (for 'unknown key' errors)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            if isinstance(current, type) is False and typing.get_origin(current) is dict:
                current = typing.get_args(current)[1]
                continue
            return []
        f = current.model_fields.get(part)
        if f is None:
            return []
        ann = f.annotation
        for arg in (typing.get_args(ann) or (ann,)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
            if typing.get_origin(arg) is dict:
                current = arg
                break
        else:
            return []
    if typing.get_origin(current) is dict:
        current = typing.get_args(current)[1]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [k for k, f in current.model_fields.items() if not f.exclude]
    return []
