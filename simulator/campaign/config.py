"""Scenario sections of a campaign: ``adversaries``, ``defence`` and ``rounds`` (typed, frozen, extra keys refused).

Defaults live here, in the model definitions; :mod:`simulator.scenario` only attaches the sections.

Examples
--------
>>> adv = AdversariesSpec.model_validate({"rings": [{"name": "testers", "strategies": ["random"]}]})
>>> adv.rings[0].probes_per_day, adv.rings[0].knowledge, adv.evolution.share_within_ring
(12, 'black', True)
>>> RoundsSpec.model_validate(8).count
8
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ScenarioError

#: Template fraud behaviour a ring copies (the world's ``fraud_type`` codes), or any caught fraud.
RING_KINDS = {"card_testing": 1, "account_takeover": 2, "stolen_card_burst": 3, "any": 0}
#: What each knowledge level grants beyond the feedback: gray adds public data, white adds the model file.
KNOWLEDGE_GRANTS = {"black": frozenset(), "gray": frozenset({"data"}), "white": frozenset({"data", "model"})}
#: The features a probe can set when it becomes a real transaction; the others come from the stream or the account.
REALISABLE_FEATURES = frozenset({"amount", "hour", "merchant_cat", "distance_km", "country_mismatch", "new_device",
                                 "card_present"})
PLAYBOOK = "playbook"  # the bandit arm that replays the ring's shared evading patterns


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: Upper bounds of a campaign (with the reason; see simulator.scenario.LIMITS for the rest)
CAMPAIGN_LIMITS = {
    "rounds": (365, "one simulated day per round"),
    "agents": (10_000, "agents across all rings, each stepped every round"),
    "probes": (10_000_000, "agents × probes_per_day × rounds: one stored row per probe"),
}


class GoalSpec(_Section):
    """When an agent stops: enough money out or enough approved transactions (null: never)."""

    kind: Literal["money", "successes"] = "money"  # what its fitness counts during evolution
    money: float | None = Field(None, gt=0, le=1e12)
    successes: int | None = Field(None, gt=0, le=10_000_000)


class PoisonSpec(_Section):
    """Transactions a ring makes on accounts it owns so that the retrained model learns the wrong thing.

    ``never_reported``: copies of the ring's evading patterns (or its templates) that no one ever charges back, so
    they are labelled legitimate. ``friendly``: ordinary-looking purchases that the ring disputes afterwards, so
    they are labelled fraud."""

    mode: Literal["never_reported", "friendly"] = "never_reported"
    accounts: int = Field(20, gt=0, le=100_000, description="mule accounts the ring owns")
    per_day: int = Field(100, ge=0, le=100_000, description="poisoning transactions per day")
    start_round: int = Field(1, ge=1, le=365)


class RingSpec(_Section):
    """A ring of fraudster agents sharing knowledge and a strategy portfolio."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    agents: int = Field(6, gt=0, le=10_000)
    kind: Literal["card_testing", "account_takeover", "stolen_card_burst", "any"] = "any"
    cards_per_agent: int = Field(6, gt=0, le=1_000, description="stolen cards each agent controls")
    devices_per_agent: int = Field(1, gt=0, le=100, description="devices an agent rotates over its cards")
    restock_per_day: float = Field(0.5, ge=0, le=100, description="new stolen cards an agent gets per day (Poisson mean)")
    known_device_share: float = Field(0.0, ge=0, le=1, description="share of cards that come with the victim's device")
    probes_per_day: int = Field(12, gt=0, le=10_000, description="probe budget of each agent per round")
    knowledge: Literal["black", "gray", "white"] = "black"
    feedback: Literal["score", "decision"] = "decision"
    strategies: tuple[str, ...] = Field(("random", "boundary"), max_length=20)  # label-only, fit decision feedback
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-strategy keyword parameters")
    goal: GoalSpec = GoalSpec()
    burn_on_decline: float = Field(0.1, ge=0, le=1, description="chance a declined probe burns its card")
    probe_cost: float = Field(0.5, ge=0, le=1e6, description="what a probe costs the ring (fees, mules)")
    amount_scale: float = Field(1.0, gt=0, le=1, description="start: share of the template amount aimed for")
    gap_minutes: float = Field(20.0, gt=0, le=1440, description="start: minutes between an agent's probes")
    poison: PoisonSpec | None = None


class EvolutionSpec(_Section):
    """Between rounds: a bandit over strategies, genetic variation of the agents' tactics, shared patterns."""

    memory: float = Field(0.6, ge=0, lt=1, description="weight of earlier rounds in the strategies' success rates")
    temperature: float = Field(0.08, gt=0, le=100, description="softmax temperature of the bandit over success rates")
    exploration: float = Field(0.1, ge=0, le=1, description="weight spread evenly over all strategies")
    replace_share: float = Field(0.25, ge=0, le=1, description="share of a ring's weakest agents that copy a stronger one")
    mutation: float = Field(0.3, ge=0, le=10, description="log-normal spread of mutated tactics")
    share_within_ring: bool = True  # the ring's evading patterns become a bandit arm ('playbook')
    cross_ring_rate: float = Field(0.1, ge=0, le=1, description="chance per round that a ring's best pattern and "
                                   "tactics reach each other ring")
    playbook_size: int = Field(32, gt=0, le=10_000)


class AdversariesSpec(_Section):
    rings: tuple[RingSpec, ...] = Field(min_length=1, max_length=100)
    evolution: EvolutionSpec = EvolutionSpec()

    @model_validator(mode="after")
    def _portfolios(self):
        from ..strategies import get_strategy  # late: strategies import the kernels

        names = [r.name for r in self.rings]
        for i, ring in enumerate(self.rings):
            where = f"adversaries.rings.{i}"
            if names.count(ring.name) > 1:
                raise ScenarioError(f"ring name {ring.name!r} is used twice", field=f"{where}.name")
            if not ring.strategies:
                raise ScenarioError("give at least one strategy", field=f"{where}.strategies")
            if len(set(ring.strategies)) != len(ring.strategies):
                raise ScenarioError("a strategy is listed twice", field=f"{where}.strategies")
            grants = KNOWLEDGE_GRANTS[ring.knowledge] | ({"score"} if ring.feedback == "score" else set())
            for j, name in enumerate(ring.strategies):
                if name == PLAYBOOK:
                    raise ScenarioError(f"{PLAYBOOK!r} is the ring's shared-knowledge arm, added by "
                                        "evolution.share_within_ring; do not list it", field=f"{where}.strategies.{j}")
                cls = get_strategy(name, field=f"{where}.strategies.{j}")
                missing = sorted(set(cls.needs) - grants)
                if missing:
                    fix = {"score": "feedback: score", "data": "knowledge: gray", "model": "knowledge: white"}
                    raise ScenarioError(f"strategy {name!r} needs {missing[0]} but the ring has knowledge "
                                        f"{ring.knowledge!r} and feedback {ring.feedback!r}; set "
                                        f"{fix.get(missing[0], missing[0])}", field=f"{where}.strategies.{j}")
            for name, params in ring.params.items():
                if name not in ring.strategies:
                    raise ScenarioError(f"parameters for {name!r}, which is not in the ring's strategies",
                                        field=f"{where}.params.{name}")
                from ..strategies.params import check_params

                check_params(get_strategy(name), params, field=f"{where}.params.{name}")
        agents = sum(r.agents for r in self.rings)
        if agents > CAMPAIGN_LIMITS["agents"][0]:
            raise ScenarioError(f"{agents:,} agents: at most {CAMPAIGN_LIMITS['agents'][0]:,} "
                                f"({CAMPAIGN_LIMITS['agents'][1]})", field="adversaries.rings")
        return self

    @property
    def agents(self) -> int:
        return sum(r.agents for r in self.rings)


def accepted_params(cls) -> set[str] | None:
    """Keyword parameters a strategy's constructor takes (:func:`simulator.strategies.params.strategy_parameters`);
    None when a constructor forwards ``**params`` somewhere that cannot be followed."""
    from ..strategies.params import strategy_parameters

    params = strategy_parameters(cls)
    return None if params is None else set(params)


class PolicySpec(_Section):
    """Approve / review / decline bands on the model score; thresholds given, or set at false-positive rates on the
    deployed model's validation days (again at each retrain)."""

    review_fpr: float = Field(0.03, gt=0, lt=1)
    decline_fpr: float | None = Field(None, gt=0, lt=1, description="default: model.threshold_fpr")
    review_threshold: float | None = Field(None, ge=0, le=1)
    decline_threshold: float | None = Field(None, ge=0, le=1)
    review_catch_rate: float = Field(0.8, ge=0, le=1, description="share of reviewed fraud an analyst stops")

    @model_validator(mode="after")
    def _order(self):
        if self.review_threshold is not None and self.decline_threshold is not None \
                and self.review_threshold > self.decline_threshold:
            raise ValueError(f"review_threshold ({self.review_threshold:g}) > decline_threshold "
                             f"({self.decline_threshold:g})")
        if self.decline_fpr is not None and self.review_fpr < self.decline_fpr:
            raise ValueError(f"review_fpr ({self.review_fpr:g}) < decline_fpr ({self.decline_fpr:g}): the review band "
                             "would be empty")
        return self


class RulesSpec(_Section):
    """Hard rules, applied before the model (null switches a rule off)."""

    velocity_1h: int | None = Field(8, gt=0, le=100_000, description="decline at this many earlier transactions of the card in 1 h")
    velocity_24h: int | None = Field(30, gt=0, le=100_000, description="... in 24 h")
    new_device_amount: float | None = Field(2000.0, gt=0, le=1e12, description="decline above this amount on a new device")


class ProbeDetectionSpec(_Section):
    """Stateful probe detection: near-duplicate transactions of the same card or device in a window."""

    enabled: bool = True
    mode: Literal["linked", "l1"] = Field("linked", description="linked: near duplicates (same amount or distance) of "
                                          "declined attempts, devices shared by cards and the cards linked to them; "
                                          "l1: near duplicates by L1 distance under radius (the earlier detector)")
    window_hours: float = Field(12.0, gt=0, le=8760)
    radius: float = Field(0.15, gt=0, le=1e6, description="l1 mode: distance under which two transactions are near "
                          "duplicates")
    min_matches: int = Field(3, ge=1, le=32, description="earlier near duplicates in the window that trigger detection")
    declined_only: bool = Field(True, description="count only near duplicates that were declined or reviewed")
    memory: int = Field(8, ge=1, le=32, description="recent transactions remembered per card and per device")
    action: Literal["block", "flag"] = "block"  # block: decline and block card and device; flag: send to review
    block_hours: float = Field(1.0, ge=0, le=8760, description="how long a detected card or device stays blocked")
    repeat_score: float | None = Field(0.5, gt=0, le=10, description="linked mode: an attempt scoring at least this "
                                       "share of the review threshold that repeats the amount of such an attempt of "
                                       "the card at another merchant in the window is detected (null: off)")
    repeat_amount: float | None = Field(20.0, gt=0, le=1e12, description="linked mode: an attempt of at least this "
                                        "amount that repeats the exact amount of an attempt of the card at another "
                                        "merchant in the window is detected, whatever the scores (null: off)")
    link_detected: bool = Field(True, description="linked mode: a detected card is linked for the window (its later "
                                "declined or repeated attempts are detected)")


class LabelSpec(_Section):
    """Fraud labels (chargebacks) arrive late, and not always."""

    delay_days: int = Field(2, ge=0, le=365)
    delay_jitter_days: int = Field(0, ge=0, le=365, description="extra delay, uniform in 0..jitter days")
    report_rate: float = Field(0.95, ge=0, le=1)
    small_amount: float = Field(5.0, ge=0, le=1e12, description="frauds at or below this amount often go unnoticed")
    small_report_rate: float = Field(0.3, ge=0, le=1)


class RetrainSpec(_Section):
    every: int = Field(5, ge=0, le=365, description="retrain after every N rounds (0: never)")
    window_days: int = Field(12, ge=2, le=730, description="days of labelled stream the model is trained on")
    wait_days: int | None = Field(None, ge=0, le=365, description="train only on days at least this old (default: the "
                                  "label delay plus its jitter)")
    validation_share: float = Field(0.25, gt=0, lt=1, description="last share of the window used to set thresholds")
    legit_fraction: float = Field(0.2, gt=0, le=1, description="share of legitimate rows kept for training")
    audit_labels: bool = True  # record every label a training used (table training_labels)


class DriftSpec(_Section):
    psi_threshold: float = Field(0.2, gt=0, le=100)
    bins: int = Field(10, ge=2, le=100)


class DefenceSpec(_Section):
    policy: PolicySpec = PolicySpec()
    rules: RulesSpec = RulesSpec()
    probe_detection: ProbeDetectionSpec = ProbeDetectionSpec()
    labels: LabelSpec = LabelSpec()
    retrain: RetrainSpec = RetrainSpec()
    drift: DriftSpec = DriftSpec()


class RoundsSpec(_Section):
    """Campaign rounds: simulated days after the world's history days. ``rounds: 12`` is short for ``{count: 12}``."""

    count: int = Field(10, gt=0, le=CAMPAIGN_LIMITS["rounds"][0], description="rounds (at most 365: one day each)")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, raw: Any):
        return {"count": raw} if isinstance(raw, int) and not isinstance(raw, bool) else raw


def check_campaign(scenario) -> None:
    """Cross-section checks of a scenario with campaign sections (called by the scenario's validator)."""
    if scenario.adversaries is None:
        for key in ("defence", "rounds"):
            if key == "defence" and not isinstance(scenario.defence, (DefenceSpec, type(None))):
                continue  # a single-round run's runtime defences (simulator.scenario.RunDefenceSpec)
            if getattr(scenario, key) is not None:
                raise ScenarioError(f"'{key}' belongs to a campaign; add an 'adversaries' section (or remove '{key}')",
                                    field=key)
        return
    if scenario.data is not None:
        raise ScenarioError("a campaign runs on the synthetic world; use 'world' instead of 'data'", field="adversaries")
    if scenario.defence is not None and not isinstance(scenario.defence, DefenceSpec):
        raise ScenarioError("rate_limits, review_band, stateful_detection are single-round defences; a campaign's "
                            "defence has policy, rules, probe_detection, labels, retrain, drift", field="defence")
    if scenario.world_spec.fraudsters < 1:
        raise ScenarioError("a campaign's rings copy the world's caught frauds, so the world needs fraudsters; "
                            "set world.fraudsters to at least 1", field="world.fraudsters")
    rounds = scenario.rounds.count if scenario.rounds is not None else RoundsSpec().count
    probes = sum(r.agents * r.probes_per_day for r in scenario.adversaries.rings) * rounds
    if probes > CAMPAIGN_LIMITS["probes"][0]:
        raise ScenarioError(f"{probes:,} probes: at most {CAMPAIGN_LIMITS['probes'][0]:,} "
                            f"({CAMPAIGN_LIMITS['probes'][1]})", field="adversaries.rings")
    days = scenario.world_spec.days + rounds
    if scenario.world_spec.customers * days > 20_000_000:
        raise ScenarioError(f"world.customers × (world.days + rounds) = {scenario.world_spec.customers * days:,}: at "
                            "most 20,000,000 (about 2 transactions each, all kept in memory)", field="world.customers")
    for name, spec in (scenario.features or {}).items():
        if spec.mutable and name not in REALISABLE_FEATURES:
            raise ScenarioError(f"a probe is a real transaction and cannot set {name!r} (it comes from the stream or "
                                f"the account); mark it mutable: false or drop it. Settable: "
                                f"{', '.join(sorted(REALISABLE_FEATURES))}", field=f"features.{name}")
