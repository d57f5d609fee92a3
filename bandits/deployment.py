"""The deployment's settings that ``bandits/`` reads, typed.

``service.config`` reads the settings once (defaults, ``MARQUEE_*`` variables, overrides), checks
them, and builds one ``Deployment`` from them (``service.config.deployment``); everything below
``service/`` is handed that object and reads typed attributes, never a mapping of strings. Each
field is the lower-case name of the setting it holds (``EPSILON`` -> ``epsilon``); the README's
configuration table says what each does, and ``service.config.SETTINGS`` holds the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Deployment:
    """What the learner, the policies, evaluations and optimizations need of the deployment's settings."""

    database: str  # the SQLite file
    sqlite_synchronous: str
    max_database_mb: float
    retention_days: float
    model_versions_kept: int
    learner_batch: int
    learner_interval_seconds: float
    learner_priority: str
    learner_cpu: str
    # the defaults of every policy's settings (bandits.model.policy.deployment_defaults)
    epsilon: float
    exploration: str
    epsilon_decay_after: float
    epsilon_floor: float
    exploration_bonus: float
    squarecb_gamma_scale: float
    squarecb_gamma_exponent: float
    reward_wait_seconds: float
    default_reward: float
    reward_values: Mapping[str, float]
    max_per_genre: int
    min_genres: int
    # automatic optimization (bandits.evaluate.optimize)
    auto_optimize: bool
    auto_optimize_hours: float
    auto_optimize_events: int
    # processes an evaluation's VW passes run in (bandits.evaluate.passes.processes_for); 0: one per core
    evaluation_processes: int
    # viewers' taste classes (bandits.model.tastes, refitted by bandits.learn.tastes); 0 classes: off
    taste_classes: int
    taste_min_impressions: int
    taste_refit_events: int
    taste_refit_seconds: float
    taste_window_events: int

    @property
    def max_bytes(self) -> int:
        """The cap on the database file in bytes (0: none)."""
        return int(self.max_database_mb * 1024 * 1024)
