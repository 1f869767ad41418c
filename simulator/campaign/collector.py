"""The campaign's collector (Mesa's ``DataCollector``): what each table records, declared once, written through the
run's :class:`~simulator.recorder.Recorder`.

The per-round measures are a table of named functions (:data:`ROUND_MEASURES`) of the round's facts
(:class:`RoundFacts`); the ring and strategy rows, the transactions, the defence events, drift, model versions and
the agents are built here from the state and the round's :class:`~.phases.Day`, by column name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa

from ..recorder import Recorder, now
from .defence import APPROVE, DECISIONS, DECLINE, NO_LABEL, POISONING, REASONS, auc
from .phases import Day
from .retrain import Fit
from .setup import release_memory
from .state import CampaignState, _Chunk


@dataclass
class RoundFacts:
    """The masks and counts the round measures are defined on."""

    st: CampaignState
    d: Day
    run_id: str

    def __post_init__(self) -> None:
        d = self.d
        self.n = d.frame.height
        self.is_fraud = d.frame["is_fraud"].to_numpy().astype(bool)
        self.amount = d.frame["amount"].to_numpy()
        self.legit = ~self.is_fraud
        self.poison = (d.ring_id >= 0) & ~d.is_probe
        self.clean = ~d.is_probe & ~self.poison  # the clean AUC: the round's own traffic, no probes, no poisoning
        self.probes = int(d.is_probe.sum())
        self.p_ok = int((d.approved & d.is_probe).sum())
        self.p_det = int((d.detected & d.is_probe).sum())
        self.n_legit = max(1, int(self.legit.sum()))
        self.thr = self.st.dfc.drift.psi_threshold
        self.jmax = int(np.argmax(d.psi_feat))


#: ``rounds``: one row per round, column -> its definition.
ROUND_MEASURES: dict[str, Callable[[RoundFacts], object]] = {
    "run_id": lambda f: f.run_id,
    "round": lambda f: f.d.r,
    "day": lambda f: f.d.day,
    "model_version": lambda f: f.st.deployed.version,
    "transactions": lambda f: f.n,
    "legit": lambda f: int(f.legit.sum()),
    "fraud": lambda f: int(f.is_fraud.sum()),
    "probes": lambda f: f.probes,
    "probes_approved": lambda f: f.p_ok,
    "attack_success_rate": lambda f: f.p_ok / f.probes if f.probes else None,
    "attack_loss": lambda f: float(f.amount[f.d.approved & f.d.is_probe].sum()),
    "fraud_loss": lambda f: float(f.amount[f.d.approved & f.is_fraud & (f.d.fraud_type != POISONING)].sum()),
    "probes_detected": lambda f: f.p_det,
    "probes_detected_share": lambda f: f.p_det / f.probes if f.probes else None,
    "poison": lambda f: int(f.poison.sum()),
    "fpr": lambda f: float((f.legit & (f.d.decision == DECLINE)).sum() / f.n_legit),
    "friction": lambda f: float((f.legit & (f.d.decision != APPROVE)).sum() / f.n_legit),
    "review_rate": lambda f: float((f.d.decision == 1).sum() / max(1, f.n)),
    "legit_detected_share": lambda f: float((f.legit & f.d.detected).sum() / f.n_legit),
    "probes_blocked": lambda f: int((f.d.blocked & ~f.d.detected & f.d.is_probe).sum()),
    "legit_affected_share": lambda f: float((f.legit & (f.d.detected | f.d.blocked)).sum() / f.n_legit),
    "clean_auc": lambda f: auc(f.is_fraud[f.clean], f.d.score[f.clean]),
    "psi_score": lambda f: float(f.d.psi_score),
    "psi_max": lambda f: float(f.d.psi_feat[f.jmax]),
    "psi_max_feature": lambda f: f.st.names[f.jmax],
    "drift_alerts": lambda f: int((f.d.psi_feat > f.thr).sum() + (f.d.psi_score > f.thr)),
    "cards_burned": lambda f: int(f.d.burned.sum()),
    "agents_active": lambda f: int(f.st.agents.active.sum()),
    "retrained": lambda f: False,  # set at the round a retrain happens (record_retrain)
    "scoring_us_per_txn": lambda f: 1e6 * f.d.scoring_s / max(1, f.n),
    "defence_us_per_txn": lambda f: 1e6 * f.d.defence_s / max(1, f.n),
}

#: ``ring_rounds``: one row per ring and round; (ring, snapshot after it evolved, the round's tallies) -> value.
RING_MEASURES: dict[str, Callable[..., object]] = {
    "agents_active": lambda rg, s, t: s["agents_active"],
    "cards_alive": lambda rg, s, t: s["cards_alive"],
    "probes": lambda rg, s, t: int(t["tries"].sum()),
    "approved": lambda rg, s, t: int(t["wins"].sum()),
    "money_out": lambda rg, s, t: float(t["money"].sum()),
    "probe_cost": lambda rg, s, t: float(t["tries"].sum() * rg.spec.probe_cost),
    "cards_burned": lambda rg, s, t: s["cards_burned"],
    "poison": lambda rg, s, t: int(t["poison"]),
    "playbook_size": lambda rg, s, t: s["playbook_size"],
    "mean_gap_minutes": lambda rg, s, t: s["mean_gap_minutes"],
    "mean_amount_scale": lambda rg, s, t: s["mean_amount_scale"],
    "mean_cards_per_day": lambda rg, s, t: s["mean_cards_per_day"],
    "mean_features_touched": lambda rg, s, t: s["mean_features_touched"],
}


def columns(rows: list[dict]) -> dict[str, list]:
    """Rows given by name as the columns of one batch."""
    return {c: [row[c] for row in rows] for c in rows[0]} if rows else {}


class Collector:
    """Records a campaign run: the setup (model, history, agents), each round, the targets at the end."""

    def __init__(self, rec: Recorder, st: CampaignState):
        self.rec, self.st, self.run_id = rec, st, rec.run_id

    # -- setup -------------------------------------------------------------------------------------------------------
    def record_fit(self, fit: Fit) -> None:
        model = fit.model
        assert model.card is not None, "fit_version and the baseline (setup._baseline) write every fit's model card"
        self.rec.model_version(version=fit.version, model=model, threshold=fit.bands.decline,
                               rule=str(model.card.get("threshold_rule", "")), auc=fit.validation_auc,
                               card=model.card, created_at=now(), sha256=self.rec.trained_model_sha(model),
                               sort_keys=True)
        self.rec.append("training_runs", columns([{"run_id": self.run_id, **fit.info}]))
        lab = fit.labels
        if len(lab["transaction_id"]):
            self.rec.append("training_labels", pa.table({
                "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(lab["label"]), np.int32)),
                                                         pa.array([self.run_id])),
                "model_version": np.full(len(lab["label"]), fit.version, np.int32),
                "transaction_id": lab["transaction_id"], "role": pa.array(lab["role"].tolist(), pa.string()),
                "label": lab["label"]}))

    def record_history(self) -> None:
        prep = self.st.prep
        for h in prep.history:
            n = h.height
            d = int(h["day"][0]) if n else 0
            dec = h["decision_code"].to_numpy()
            self.transactions(h, None, h["score"].to_numpy(), dec, np.where(dec > 0, 1, 0).astype(np.int8),
                              np.zeros(n, bool), np.zeros(n, bool), np.full(n, -1, np.int32),
                              np.full(n, -1, np.int32), h["label_day"].to_numpy(),
                              split="train" if d < prep.cut else "test")
            del h, dec
            release_memory()

    def record_agents(self) -> None:
        st, ag = self.st, self.st.agents
        self.rec.append("agents", columns([{
            "run_id": self.run_id, "agent_id": a, "ring_id": int(ag.ring[a]), "ring": st.rings[ag.ring[a]].spec.name,
            "template_id": int(ag.template_id[a]), "probes_per_day": int(ag.budget[a]),
            "knowledge": st.rings[ag.ring[a]].spec.knowledge, "feedback": st.rings[ag.ring[a]].spec.feedback,
            "cards": int((st.cards.agent == a).sum())} for a in range(ag.n)]))

    # -- each round --------------------------------------------------------------------------------------------------
    def record_day(self, d: Day) -> None:
        """The round's probes (``queries``), transactions, defence events, drift and ``rounds`` row."""
        for ch, rws in d.queries:
            self._queries(d, ch, rws)
        self.transactions(d.frame, d.r, d.score, d.decision, d.reason, d.approved, d.is_probe, d.ring_id, d.agent_id,
                          d.label_day)
        self._events(d)
        facts = RoundFacts(self.st, d, self.run_id)
        self.rec.append("rounds", columns([{c: fn(facts) for c, fn in ROUND_MEASURES.items()}]))

    def record_evolution(self, d: Day) -> None:
        """``strategy_stats`` (per ring and arm) and ``ring_rounds`` (per ring) after the rings evolved."""
        poison = np.bincount(d.ring_id[(d.ring_id >= 0) & ~d.is_probe], minlength=len(self.st.rings))
        stats, rows = [], []
        for ring, used, snap in zip(self.st.rings, d.arm_weights, d.ring_rows):
            t = {"tries": d.tries[ring.id], "wins": d.wins[ring.id], "money": d.money[ring.id],
                 "poison": poison[ring.id]}
            for i, arm in enumerate(ring.arms):
                stats.append({"run_id": self.run_id, "round": d.r, "ring_id": ring.id, "ring": ring.spec.name,
                              "strategy": arm, "agents": int(d.arm_agents[ring.id][i]), "tries": int(t["tries"][i]),
                              "successes": int(t["wins"][i]), "money": float(t["money"][i]), "weight": float(used[i]),
                              "next_weight": float(snap["next_weights"][i])})
            rows.append({"run_id": self.run_id, "round": d.r, "ring_id": ring.id, "ring": ring.spec.name,
                         **{c: fn(ring, snap, t) for c, fn in RING_MEASURES.items()}})
        self.rec.append("strategy_stats", columns(stats))
        self.rec.append("ring_rounds", columns(rows))

    def record_retrain(self, d: Day) -> None:
        fit = d.retrained
        if fit is None:
            return
        first, last = d.retrain_window
        self.record_fit(fit)
        self.rec.execute("UPDATE rounds SET retrained = true WHERE run_id = ? AND round = ?", [self.run_id, d.r])
        self.rec.defence_events([d.r], ["retrain"], [
            f"version={fit.version} days={first}..{last} labels_as_of_day={d.day} "
            f"positives={fit.info['train_positives']} validation_auc={fit.validation_auc:.4f}"])

    # -- at the end --------------------------------------------------------------------------------------------------
    def record_targets(self) -> None:
        """One ``targets`` row per (strategy, template), from the query log (as a single-round attack writes them)."""
        prep, uniq = self.st.prep, np.unique(self.st.agents.template)
        with self.rec.originals(prep.templates_id[uniq], prep.templates_score[uniq], prep.templates_X[uniq]):
            self.rec.targets_from_queries(frozen_from_probe=~self.st.sa.mutable)

    # -- tables ------------------------------------------------------------------------------------------------------
    def _queries(self, d: Day, ch: _Chunk, rws: np.ndarray) -> None:
        """An agent's probes of the day in the query log; query_index counts per (template, arm) over the run."""
        st, ag = self.st, self.st.agents
        ring = st.rings[ag.ring[ch.agent]]
        key = (int(ag.template_id[ch.agent]), ch.arm)
        k = len(rws)
        done = st.query_count.get(key, 0)
        st.query_count[key] = done + k
        X_real = d.X[rws]
        x0 = np.ascontiguousarray(ch.problem.x0, np.float64)
        Xc = np.where(st.sa.mutable[None, :], X_real, x0[None, :])
        cost = st.kernels.cost(np.ascontiguousarray(Xc), x0[None, :], np.zeros(k, np.int64), st.sa)
        st.oracle.record(round_=d.r, agent_id=int(ch.agent), strategy=ring.arms[ch.arm],
                         target_id=np.full(k, ag.template_id[ch.agent], np.int64),
                         query_index=np.arange(done + 1, done + k + 1), score=d.score[rws],
                         declined=~d.approved[rws], cost=cost, X=X_real)

    def transactions(self, frame: pl.DataFrame, r: int | None, score, decision, reason, approved, is_probe, ring_id,
                     agent_id, label_day, split: str = "campaign") -> None:
        n = frame.height
        cols = {
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([self.run_id])),
            "transaction_id": frame["transaction_id"].to_numpy(),
            "is_fraud": frame["is_fraud"].to_numpy().astype(np.int32),
            "score": score,
            "decision": pa.DictionaryArray.from_arrays(pa.array(decision.astype(np.int32)), pa.array(list(DECISIONS))),
            "model_version": np.full(n, self.st.deployed.version if r is not None else 1, np.int32),
            "split": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([split])),
        }
        for c in ("timestamp", "day", "customer_id", "merchant_id", "device_id", "fraud_type"):
            cols[c] = frame[c].to_numpy()
        for f, c in zip(self.st.names, self.rec.columns):
            cols[c] = frame[f].to_numpy()
        cols["round"] = pa.array(np.full(n, -1 if r is None else r, np.int32), mask=np.full(n, r is None))
        cols["is_probe"] = is_probe
        cols["ring_id"] = pa.array(ring_id, mask=ring_id < 0)
        cols["agent_id"] = pa.array(agent_id, mask=agent_id < 0)
        cols["approved"] = pa.array(approved, mask=None if r is not None else np.ones(n, bool))
        cols["reason"] = pa.DictionaryArray.from_arrays(pa.array(reason.astype(np.int32), mask=reason == 0),
                                                        pa.array(list(REASONS)))
        cols["label_day"] = pa.array(label_day, mask=label_day == NO_LABEL)
        self.rec.append("transactions", pa.table(cols))

    def _events(self, d: Day) -> None:
        """``defence_events`` (detections, burned cards, drift alerts, a deployment) and ``drift`` of the round."""
        st, r = self.st, d.r
        action = st.dfc.probe_detection.action
        tid, cust, dev = (d.frame[c].to_numpy() for c in ("transaction_id", "customer_id", "device_id"))
        det = np.flatnonzero(d.detected)
        kinds = ["probe_detected"] * len(det)
        targets: list[int | None] = [int(tid[i]) for i in det]
        details = [f"card={cust[i]} device={dev[i]} matches={d.matches[i]} action={action}" for i in det]
        for c in np.flatnonzero(d.burned):
            kinds.append("card_burned")
            targets.append(None)
            details.append(f"card={st.cards.customer[c]} agent={st.cards.agent[c]}")
        thr = st.dfc.drift.psi_threshold
        for f, v in [*zip(st.names, d.psi_feat), ("score", d.psi_score)]:
            if v > thr:
                kinds.append("drift_alert")
                targets.append(None)
                details.append(f"feature={f} psi={v:.4f}")
        if r > 1 and int(st.deployed.info["deployed_round"]) == r:
            kinds.append("deploy")
            targets.append(None)
            details.append(f"version={st.deployed.version}")
        self.rec.defence_events([r] * len(kinds), kinds, details, targets)
        k = len(st.names) + 1
        self.rec.append("drift", pa.table({
            "run_id": pa.array([self.run_id] * k), "round": pa.array([r] * k, pa.int32()),
            "model_version": pa.array([st.deployed.version] * k, pa.int32()),
            "feature": pa.array(list(st.names) + ["score"]),
            "psi": pa.array(list(d.psi_feat) + [d.psi_score], pa.float64()),
            "alert": pa.array([bool(v > thr) for v in d.psi_feat] + [bool(d.psi_score > thr)])}))
