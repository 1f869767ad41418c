"""Agent-based synthetic card-transaction world.

Populations (customers, merchants, fraudsters) are struct-of-arrays built from one seed; a clock
steps them a day at a time with vectorised behaviour; a Numba streaming pipeline turns the raw
event stream into the model features. See :class:`World`.
"""

from simulator.world.population import FRAUD_TYPES
from simulator.world.world import FEATURES, LABEL, SCHEMA, World, WorldConfig, default_feature_specs

__all__ = ["FEATURES", "FRAUD_TYPES", "LABEL", "SCHEMA", "World", "WorldConfig", "default_feature_specs"]
