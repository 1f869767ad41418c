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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .campaign.config import AdversariesSpec, DefenceSpec, RoundsSpec, check_campaign
from .errors import ScenarioError

DEFAULT_SCENARIO = "default.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldSpec(Section):
    """Build the synthetic world and attack its traffic (instead of ``data``)."""

    customers: int = Field(20_000, gt=0)
    merchants: int = Field(2_000, gt=0)
    days: int = Field(30, ge=2)
    fraudsters: int = Field(60, ge=0)
    fraud_rate_scale: float = Field(1.0, gt=0)
    train_fraction: float = Field(0.6, gt=0, lt=1, description="share of days the baseline model is trained on")


class DataSpec(Section):
    """A team's own labelled data set (Parquet or CSV); target ids are 0-based row numbers in this file."""

    path: Path
    label: str = "is_fraud"


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


class FeatureSpecModel(Section):
    type: Literal["continuous", "integer", "binary", "categorical"] = "continuous"
    min: float | None = None
    max: float | None = None
    categories: list[float] | None = None
    mutable: bool = True
    direction: Literal["increase", "decrease", "any"] = "any"
    cost: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        for key in ("min", "max"):
            v = getattr(self, key)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{key} must be finite")
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
    limit: int | None = Field(40, gt=0, description="first N targets by row order after filtering; null for all")
    budget: int = Field(1000, gt=0, description="oracle queries per target and strategy")
    feedback: Literal["score", "decision"] = "score"
    strategies: tuple[str, ...] = ("random", "evolutionary")
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-strategy keyword parameters")
    batch_size: int | None = Field(None, gt=0, description="candidates per target per oracle call (default: the strategy's)")
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
        for name in self.params:
            if name not in self.strategies:
                raise ScenarioError(f"parameters for {name!r}, which is not in attack.strategies", field=f"attack.params.{name}")
        return self


class Scenario(Section):
    """A whole fight: where the traffic comes from, the model, what attackers may change, how they attack."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    world: WorldSpec | None = None
    data: DataSpec | None = None
    model: ModelSpec = ModelSpec()
    features: dict[str, FeatureSpecModel] | None = None
    attack: AttackSpec = AttackSpec()
    adversaries: AdversariesSpec | None = None  # a campaign (see simulator/campaign): rings, agents, evolution
    defence: DefenceSpec | None = None
    rounds: RoundsSpec | None = None
    gates: tuple[str, ...] = Field((), description="release gates, e.g. 'success_rate_at_100 <= 0.05'")
    output: Path | None = None
    source: str | None = Field(None, exclude=True, description="the file this came from, for error messages")

    @field_validator("gates", mode="before")
    @classmethod
    def _gates_parse(cls, v):
        from .report.gates import validate_gates

        return validate_gates(v)

    @model_validator(mode="before")
    @classmethod
    def _resolve_paths(cls, raw: Any, info: ValidationInfo):
        base = (info.context or {}).get("base_dir")
        if not isinstance(raw, dict) or base is None:
            return raw
        raw = dict(raw)
        for section in ("data", "model"):
            if isinstance(raw.get(section), dict) and raw[section].get("path") is not None:
                raw[section] = dict(raw[section], path=_resolve(base, raw[section]["path"]))
        if raw.get("output") is not None:
            raw["output"] = _resolve(base, raw["output"])
        return raw

    @model_validator(mode="after")
    def _sources(self):
        if self.world is not None and self.data is not None:
            raise ScenarioError("give either 'world' or 'data', not both", field="data")
        if self.data is not None and not self.model.given:
            raise ScenarioError("a scenario on a team's data needs the model to attack: model.path (a file) or "
                                "model.url (an endpoint)", field="model.path")
        check_campaign(self)
        from .report.gates import validate_gates

        validate_gates(self.gates, budget=self.attack.budget)
        return self

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
        path = Path(path)
        if not path.is_file():
            raise ScenarioError("file not found", file=str(path))
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ScenarioError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(path)) from None
        return cls.from_dict(raw, base_dir=path.resolve().parent, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, base_dir: str | Path | None = None, source: str | None = None) -> "Scenario":
        if not isinstance(raw, dict):
            raise ScenarioError("the scenario must be a mapping of keys (name, seed, world or data, model, ...)", file=source)
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


def _resolve(base: Path, p: Any) -> str:
    p = Path(str(p)).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _to_scenario_error(exc: ValidationError, source: str | None) -> ScenarioError:
    err = exc.errors()[0]
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
