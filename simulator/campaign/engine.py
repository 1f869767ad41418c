"""Runs a prepared campaign: the run lifecycle and the table writes of :mod:`simulator.recorder` (shared with
single-round runs), the round's phases (:mod:`.phases`) in order, the collector (:mod:`.collector`) after each.

The prepared campaign is only read: :class:`~.state.CampaignState` copies what a run advances, so one prepared
campaign can run twice with the same tables."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import raise_if_signalled
from ..recorder import derive, now, recording
from ..result import CampaignResult
from . import phases
from .collector import Collector
from .setup import CampaignPrepared, Progress, _no_progress, campaign_run_id, release_memory
from .state import CampaignState


def play_round(st: CampaignState, col: Collector, r: int) -> None:
    """One round (a simulated day): plan, probe, decide, feedback, label -> record; evolve -> record; retrain ->
    record."""
    d = phases.Day(r=r, day=st.world.day, clock=time.perf_counter())
    st.oracle.new_day()
    phases.plan(st, d)
    phases.probe(st, d)
    raise_if_signalled()  # a cancellation point: a Ctrl-C whose exception got lost stops the round here
    phases.decide(st, d)
    phases.feedback(st, d)
    phases.label(st, d)
    col.record_day(d)
    clock = st.tick("store", d.clock)
    raise_if_signalled()
    phases.evolve(st, d)
    col.record_evolution(d)
    clock = st.tick("evolution", clock)
    phases.retrain(st, d)
    col.record_retrain(d)
    st.tick("retrain", clock)


def execute_campaign(prep: CampaignPrepared, *, output: Path | None = None,
                     progress: Progress = _no_progress) -> CampaignResult:
    """Run the rounds and write the run (to ``<output>.partial`` first, moved into place when finished)."""
    sc = prep.scenario
    path = Path(output) if output is not None else sc.output_path()
    run_id = campaign_run_id(prep)
    with recording(path, prep.names, run_id, background=True) as rec:
        timings = dict(prep.timings)
        rings = prep.adversaries.rings
        feedback = rings[0].feedback if len({r.feedback for r in rings}) == 1 else "mixed"
        budget = max(r.probes_per_day for r in rings) * prep.rounds
        rec.start(scenario=sc, model=prep.model, threshold=prep.threshold, feedback=feedback, budget=budget,
                  started_at=now())
        log = rec.query_log()
        st = CampaignState(prep, log)
        col = Collector(rec, st)
        col.record_fit(prep.fit)
        t0 = time.perf_counter()
        col.record_history()
        timings["history_store_s"] = time.perf_counter() - t0
        col.record_agents()
        advance = progress("campaign rounds", prep.rounds)
        t1 = time.perf_counter()
        for r in range(1, prep.rounds + 1):
            play_round(st, col, r)
            release_memory()
            advance(1)
        log.flush()
        col.record_targets()
        timings["campaign_s"] = time.perf_counter() - t1
        timings["campaign_transactions"] = st.transactions
        timings.update({f"round_{k}_s": v for k, v in st.phase_s.items()})
        rec.close_writer()
        path = rec.finish()  # the run is safe on disk before anything derived from it (derive)
    return CampaignResult(path=path, run_id=run_id, scenario=sc, timings=timings, warnings=derive(path))
