"""Campaigns: a run as rounds (simulated days) in which fraudster rings probe the deployed defence through the
stream, learn what passes and evolve, while the defender decides, detects probes, waits for labels, retrains and
watches drift.

* :mod:`.config` the scenario sections ``adversaries``, ``defence``, ``rounds``
* :mod:`.adversaries` agents and cards as arrays, rings, bandit and genetic evolution, playbooks
* :mod:`.mapping` strategy candidates -> raw events of the world
* :mod:`.detect` stateful probe detection (Numba)
* :mod:`.defence` policy bands, rules, review, chargeback labels, drift, AUC
* :mod:`.retrain` the labelled stream as known on a day, and model fits on it
* :mod:`.loop` the campaign loop and its store writes
* :mod:`.report` the per-round table
"""
from __future__ import annotations

__all__ = ["CampaignResult", "execute_campaign", "prepare_campaign"]


def __getattr__(name: str):
    if name in __all__:  # late: the loop imports the runner, which imports the scenario, which imports .config
        from . import loop

        return getattr(loop, name)
    raise AttributeError(name)
