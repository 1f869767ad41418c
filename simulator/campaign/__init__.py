"""Campaigns: a run as rounds (simulated days) in which fraudster rings probe the deployed defence through the
stream, learn what passes and evolve, while the defender decides, detects probes, waits for labels, retrains and
watches drift.

* :mod:`.config` the scenario sections ``adversaries``, ``defence``, ``rounds``
* :mod:`.setup` the history days, the baseline model, the templates (:func:`prepare_campaign`)
* :mod:`.state` what a run advances (copied from the prepared campaign, which is never changed)
* :mod:`.phases` a round's phases: plan, probe, decide, feedback, label, evolve, retrain
* :mod:`.collector` what each campaign table records, written through the run's recorder
* :mod:`.engine` the rounds in order and the run lifecycle (:func:`execute_campaign`)
* :mod:`.adversaries` agents and cards as arrays, rings, bandit and genetic evolution, playbooks
* :mod:`.mapping` strategy candidates -> raw events of the world
* :mod:`.detect` stateful probe detection (Numba)
* :mod:`.defence` policy bands, rules, review, chargeback labels, drift, AUC
* :mod:`.retrain` the labelled stream as known on a day, and model fits on it
* :mod:`.report` the per-round table

Importing this package loads only :mod:`.config` (the scenario's types); the engine loads on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["CampaignResult", "execute_campaign", "prepare_campaign"]

if TYPE_CHECKING:
    from ..result import CampaignResult
    from .engine import execute_campaign
    from .setup import prepare_campaign
