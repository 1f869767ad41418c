"""What ``fraudsim run`` prints after a campaign: a header, the per-strategy summary, the arms race per round and
how each ring's strategy weights moved. Everything is read back from the store."""
from __future__ import annotations

import polars as pl
from rich import box
from rich.markup import escape
from rich.table import Table

ROUND_SQL = """
SELECT r.round, r.day, r.model_version, r.retrained, r.probes, r.attack_success_rate, r.probes_detected_share,
  r.attack_loss, r.fraud_loss, r.fpr, r.friction, r.clean_auc, r.psi_score, r.psi_max, r.psi_max_feature,
  r.drift_alerts, r.cards_burned, r.agents_active, r.poison, r.scoring_us_per_txn + r.defence_us_per_txn AS us_per_txn
FROM rounds r WHERE r.run_id = ? ORDER BY r.round"""

WEIGHTS_SQL = """
SELECT ring, strategy, round, weight, tries, successes FROM strategy_stats WHERE run_id = ? ORDER BY ring_id, strategy, round"""


def rounds_table(df: pl.DataFrame, title: str) -> Table:
    """One row per round: the attackers' success, the defence's cost, the model's health."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False, caption_justify="left",
              caption="evaded: probes approved; detected: probes caught by probe detection; loss: approved fraud "
              "(attack: the rings' probes); FPR / friction: legitimate declined / not approved at once; AUC of the "
              "model on the round's traffic; PSI of the score and largest PSI of a feature against the model's "
              "training days (table drift); µs: defence and scoring time per transaction; ↻ retrained after this round")
    for name in ("round", "model", "probes", "evaded", "detected", "attack loss", "fraud loss", "FPR", "friction",
                 "AUC", "PSI", "PSI max", "µs"):
        t.add_column(name, justify="right", no_wrap=True)
    pct = lambda v, d=0: "–" if v is None else f"{100 * v:.{d}f}%"
    for r in df.iter_rows(named=True):
        t.add_row(f"{r['round']}{' ↻' if r['retrained'] else ''}", f"v{r['model_version']}", str(r["probes"]),
                  pct(r["attack_success_rate"]), pct(r["probes_detected_share"]), f"{r['attack_loss']:,.0f}",
                  f"{r['fraud_loss']:,.0f}", pct(r["fpr"], 2), pct(r["friction"], 1),
                  "–" if r["clean_auc"] is None else f"{r['clean_auc']:.3f}", f"{r['psi_score']:.3f}",
                  f"{r['psi_max']:.3f}", f"{r['us_per_txn']:.1f}")
    return t


def weights_table(df: pl.DataFrame, title: str) -> Table:
    """Each ring's bandit weight per strategy at each round (the weight the round was played with)."""
    rounds = sorted(df["round"].unique().to_list())
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False, caption_justify="left",
              caption="weight (%) each strategy had when the round was played; playbook: replaying the ring's shared "
              "evading patterns; evaded: approved / probes over the campaign")
    t.add_column("ring", no_wrap=True)
    t.add_column("strategy", no_wrap=True)
    for r in rounds:
        t.add_column(str(r), justify="right")
    t.add_column("evaded", justify="right")
    for (ring, strategy), g in df.group_by(["ring", "strategy"], maintain_order=True):
        w = dict(zip(g["round"].to_list(), g["weight"].to_list()))
        tries, wins = int(g["tries"].sum()), int(g["successes"].sum())
        t.add_row(ring, strategy, *[f"{100 * w.get(r, 0.0):.0f}" for r in rounds],
                  f"{wins}/{tries}" if tries else "–")
    return t


def print_campaign(out, prep, res, summary_table) -> None:
    sc = prep.scenario
    card = prep.model_card
    auc = card.get("test_auc")
    dfc, adv = prep.defence, prep.adversaries
    ws = sc.world_spec
    out.print(f"[bold]{sc.name}[/]: campaign of {prep.rounds} rounds (days {ws.days}–{ws.days + prep.rounds - 1}) on a "
              f"world of {ws.customers:,} customers; {prep.model.kind} model v1 declines at ≥ {prep.threshold:.4g}, "
              f"reviews at ≥ {prep.fit.bands.review:.4g} ({prep.threshold_rule})"
              + (f", validation AUC {auc:.3f}" if isinstance(auc, float) else ""), highlight=False)
    pd, rt = dfc.probe_detection, dfc.retrain
    rings = ", ".join(f"{r.name} ({r.agents}×{r.probes_per_day}/day, {r.knowledge}/{r.feedback}"
                      f"{', poisoning' if r.poison else ''})" for r in adv.rings)
    out.print(f"rings: {rings}; each agent attacks one caught fraud (template) with its stolen cards. Defence: "
              f"probe detection {pd.action if pd.enabled else 'off'}, "
              f"retrain {'every ' + str(rt.every) + ' rounds' if rt.every else 'never'}, "
              f"labels after {dfc.labels.delay_days} days", highlight=False)
    out.print(summary_table(res.summary(), f"Attack success per strategy over the campaign ({res.run_id})"))
    out.print(rounds_table(res.sql(ROUND_SQL, [res.run_id]), "Arms race per round"))
    out.print(weights_table(res.sql(WEIGHTS_SQL, [res.run_id]), "Strategy weights per ring and round"))
    out.print(f"results: [bold]{escape(str(res.path))}[/] (DuckDB: rounds, strategy_stats, ring_rounds, agents, transactions, "
              "queries, targets, model_versions, training_runs, training_labels, drift, defence_events)",
              highlight=False)
