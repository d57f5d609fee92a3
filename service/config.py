"""Configuration: defaults, then ``MARQUEE_*`` environment variables, then test overrides."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from flask import current_app

from bandits.deployment import Deployment
from bandits.model.policy import RANGES, parse_reward_values
from bandits.postgres import check_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


# name -> (default, parser, description). The README's configuration table is checked against this.
SETTINGS: dict[str, tuple[Any, Callable[[str], Any], str]] = {
    "DATA_DIR": (str(PROJECT_ROOT / "data"), str, "Folder for the SQLite file, artwork images and the learner lock."),
    "DATABASE": ("", str, "Path of the SQLite file; empty means `<DATA_DIR>/marquee.sqlite3`."),
    "IMAGE_STORE": (
        "folder",
        str,
        "Where artwork masters are kept: `folder`, in `<DATA_DIR>/artworks` only (nodes share it by a mount); "
        "`database`, in the database as well, each node copying a master to its own folder the first time it "
        "serves it (nodes that share no folder).",
    ),
    "DATABASE_URL": (
        "",
        str,
        "`postgresql://user@host:port/database`: keep every table on this PostgreSQL server instead of the SQLite "
        "file, for one node or many (docs/scaling.md); empty: the SQLite file.",
    ),
    "AUTH": (
        "keys",
        str,
        "`keys`: every request but images, `/healthz` and `/openapi.json` needs an API key; `off`: no checks (only "
        "for a service nobody else can reach).",
    ),
    "API_KEYS": (
        "",
        str,
        "Client keys (rank, reward, read), comma-separated; hashed when the app starts. `flask keys create` stores "
        "more.",
    ),
    "ADMIN_KEYS": ("", str, "Admin keys (everything), comma-separated; hashed when the app starts."),
    "RATE_LIMIT": (
        0.0,
        float,
        "Requests a second each API key may send to each serving process, on average (0: no limit); over it, a 429 "
        "with Retry-After.",
    ),
    "RATE_BURST": (
        0.0,
        float,
        "Requests an API key may send at once before the rate applies (0: twice the rate, at least 1).",
    ),
    "EPSILON": (0.1, float, "Default exploration rate of both policies (each policy can override it)."),
    "EXPLORATION": (
        "epsilon-greedy",
        str,
        "Default exploration rule of both policies: `epsilon-greedy` or `squarecb` (each policy can override it).",
    ),
    "EPSILON_DECAY_AFTER": (
        100.0,
        float,
        "Examples a model learns before epsilon-greedy's rate starts to shrink, as `epsilon * (after / n) ** "
        "(1/3)` after `n` (0: a fixed rate; each policy can override it).",
    ),
    "EPSILON_FLOOR": (0.01, float, "The least epsilon-greedy's rate shrinks to (each policy can override it)."),
    "EXPLORATION_BONUS": (
        2.0,
        float,
        "How far either rule raises an action's estimated reward for being little tried, in standard errors of "
        "its rate: `bonus * sqrt(r (1 - r) / (n + 1))` after `n` learned examples of it (0: none; each policy can "
        "override it).",
    ),
    "AUTO_OPTIMIZE": (
        False,
        _bool,
        "Default of every policy's `auto_optimize`: evaluate a search space of configurations on the recent log "
        "every `AUTO_OPTIMIZE_HOURS` and apply the best only when its DR lower bound beats the serving policy's "
        "estimate (each policy can override it).",
    ),
    "AUTO_OPTIMIZE_HOURS": (24.0, float, "Hours between two automatic optimizations of a policy."),
    "AUTO_OPTIMIZE_EVENTS": (20000, int, "The most recent closed events an optimization evaluates its candidates on."),
    "SQUARECB_GAMMA_SCALE": (
        10.0,
        float,
        "SquareCB's gamma after one learned example; it grows as `scale * n ** exponent` (VW's defaults).",
    ),
    "SQUARECB_GAMMA_EXPONENT": (
        0.5,
        float,
        "How fast SquareCB's gamma grows with the examples a model has learned (0 keeps it fixed).",
    ),
    "REWARD_WAIT_SECONDS": (
        10.0,
        float,
        "Default reward window: an impression is learned this long after it was shown.",
    ),
    "DEFAULT_REWARD": (0.0, float, "Default reward of an impression whose window closed without a reward."),
    "MAX_PER_GENRE": (
        0,
        int,
        "Default row diversity: at most this many titles of one genre in a row (0: no cap); the titles policy and "
        "each request can override it.",
    ),
    "MIN_GENRES": (
        0,
        int,
        "Default row diversity: at least this many genres in a row when the candidates allow (0: no minimum).",
    ),
    "REWARD_VALUES": (
        "click=1,play=1,completed=1,thumbs_up=1,thumbs_down=-1",
        str,
        "Default value of each reward type a client may report by name instead of a number (each policy can "
        "override any of them).",
    ),
    "ARTWORK_TRIAL_HOURS": (
        72.0,
        float,
        "How long a new artwork is on trial: it gets an extra share of its title's draws while older artworks of "
        "the title exist.",
    ),
    "ARTWORK_TRIAL_SHARE": (
        0.2,
        float,
        "The extra share of a title's artwork draws given to its artworks on trial (0 turns the trial off).",
    ),
    "TITLE_TRIAL_HOURS": (
        72.0,
        float,
        "How long a new title is on trial: it gets an extra share of each slot's title draw while older titles are "
        "offered too.",
    ),
    "TITLE_TRIAL_SHARE": (
        0.1,
        float,
        "The exposure floor of new titles: the share of each slot's title draw that goes (uniformly) to the titles "
        "on trial it offers (0 turns it off).",
    ),
    "LEARNER": (True, _bool, "Start the background learner from the serving processes (one per data folder)."),
    "LEARNER_INTERVAL_SECONDS": (
        1.0,
        float,
        "How often the learner looks for impressions whose window closed (and at most how often it publishes a "
        "model version).",
    ),
    "LEARNER_PRIORITY": (
        "idle",
        str,
        "CPU priority of the learner: `idle` (runs only on CPU time serving leaves; Linux SCHED_IDLE), `low` (nice "
        "10) or `normal`.",
    ),
    "LEARNER_CPU": (
        "last",
        str,
        "The CPU the learner keeps to: `last` (the last the process may use), a CPU number, or `any` (wherever the "
        "OS puts it).",
    ),
    "LEARNER_BATCH": (2000, int, "Most events the learner learns into one model version."),
    "MODEL_VERSIONS_KEPT": (20, int, "Model versions kept per policy; older checkpoints are pruned."),
    "SQLITE_SYNCHRONOUS": (
        "normal",
        str,
        "`normal`: survives any process crash, may lose the last commits on a power cut; `full`: syncs every "
        "commit to disk (slower).",
    ),
    "MAX_CONTENT_LENGTH": (16 * 1024 * 1024, int, "Largest request body in bytes (uploads included); larger is a 413."),
    "MAX_IMPORT_BYTES": (
        1024 * 1024 * 1024,
        int,
        "Largest log file `POST /v1/datasets` reads in bytes; larger is a 413 (the `import-log` command has no limit).",
    ),
    "EVALUATION_PROCESSES": (
        0,
        int,
        "Processes an evaluation reads a large log and runs its VW passes (reward model folds, `vw` and `model` "
        "candidates) in: 0, one per core for logs of 100,000 decisions or more and the evaluation's own process "
        "below; 1, always its own process; more, at most that many.",
    ),
    "MAX_SLOTS": (50, int, "Largest `slots` a rank request may ask for."),
    "MAX_DATABASE_MB": (
        0.0,
        float,
        "Cap on the database file in MiB (0: none): past it, writes fail as on a full disk (a 503, nothing stored) "
        "until old decisions are pruned or the cap is raised.",
    ),
    "RETENTION_DAYS": (
        0.0,
        float,
        "Decisions older than this many days are pruned by the learner, hourly, in small batches (0 keeps everything).",
    ),
    "TASTE_CLASSES": (
        8,
        int,
        "Kinds of viewers the learner fits on which artworks each viewer answered; a placed viewer's classes join "
        "their requests' features (0: off).",
    ),
    "TASTE_MIN_IMPRESSIONS": (
        30,
        int,
        "Artworks a viewer must have been shown in the window before their taste classes are sent.",
    ),
    "TASTE_REFIT_EVENTS": (2000, int, "Decisions logged since the last fit before the taste classes are refitted."),
    "TASTE_REFIT_SECONDS": (600.0, float, "Seconds at least between two fits of the taste classes."),
    "TASTE_WINDOW_EVENTS": (100000, int, "The most recent decisions a fit of the taste classes reads."),
}


def load(test_config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the settings: defaults, overridden by ``MARQUEE_*`` variables, then by ``test_config``."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for name, (default, parse, _doc) in SETTINGS.items():
        value = default
        raw = environ.get(f"MARQUEE_{name}")
        if raw is not None:
            try:
                value = parse(raw)
            except ValueError as exc:
                raise ValueError(f"MARQUEE_{name}: {exc}") from None
        config[name] = value
    if test_config:
        config.update(test_config)
    if config["DATABASE_URL"]:
        try:
            check_url(config["DATABASE_URL"])
        except ValueError as exc:
            raise ValueError(f"MARQUEE_DATABASE_URL: {exc}") from None
        config["DATABASE"] = config["DATABASE_URL"]  # the store every part of Marquee opens
    elif not config["DATABASE"]:
        config["DATABASE"] = str(Path(config["DATA_DIR"]) / "marquee.sqlite3")
    _validate(config)
    return config


# How a setting becomes the type its Deployment field declares (the annotation, as written there).
_TYPES: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "Mapping[str, float]": parse_reward_values,
}


def typed(config: Mapping[str, Any]) -> Deployment:
    """Return the settings ``bandits/`` reads as one typed ``Deployment``, from settings ``load`` checked."""
    values: dict[str, Any] = {}
    for item in fields(Deployment):
        raw = config[item.name.upper()]
        values[item.name] = _TYPES[str(item.type)](raw)
    return Deployment(**values)


def deployment() -> Deployment:
    """The running app's ``Deployment``, built once when the app was created."""
    found: Deployment = current_app.extensions["marquee"]["deployment"]
    return found


# Deployment settings that are the defaults of a policy setting, checked against its range
# (bandits.model.policy.RANGES).
POLICY_DEFAULTS = {
    "EPSILON": "epsilon",
    "EPSILON_FLOOR": "epsilon_floor",
    "EXPLORATION_BONUS": "exploration_bonus",
    "SQUARECB_GAMMA_SCALE": "gamma_scale",
    "SQUARECB_GAMMA_EXPONENT": "gamma_exponent",
}


def _validate(config: Mapping[str, Any]) -> None:
    for name, setting in POLICY_DEFAULTS.items():
        if not RANGES[setting].holds(float(config[name])):
            raise ValueError(f"{name} must be in {RANGES[setting].bounds()}, got {config[name]}")
    if config["AUTH"] not in ("keys", "off"):
        raise ValueError(f"AUTH must be keys or off, got {config['AUTH']!r}")
    if float(config["RATE_LIMIT"]) < 0 or float(config["RATE_BURST"]) < 0:
        raise ValueError("RATE_LIMIT and RATE_BURST must be >= 0")
    if 0 < float(config["RATE_BURST"]) < 1:
        raise ValueError(f"RATE_BURST must be 0 (twice the rate) or at least 1, got {config['RATE_BURST']}")
    if float(config["EPSILON_DECAY_AFTER"]) < 0:
        raise ValueError(f"EPSILON_DECAY_AFTER must be >= 0, got {config['EPSILON_DECAY_AFTER']}")
    if float(config["AUTO_OPTIMIZE_HOURS"]) <= 0:
        raise ValueError(f"AUTO_OPTIMIZE_HOURS must be > 0, got {config['AUTO_OPTIMIZE_HOURS']}")
    if not 2 <= int(config["AUTO_OPTIMIZE_EVENTS"]) <= 10_000_000:
        raise ValueError(
            f"AUTO_OPTIMIZE_EVENTS must be an integer in [2, 10000000], got {config['AUTO_OPTIMIZE_EVENTS']}"
        )
    if config["EXPLORATION"] not in ("epsilon-greedy", "squarecb"):
        raise ValueError(f"EXPLORATION must be epsilon-greedy or squarecb, got {config['EXPLORATION']!r}")
    if not 0.0 <= float(config["ARTWORK_TRIAL_SHARE"]) <= 1.0:
        raise ValueError(f"ARTWORK_TRIAL_SHARE must be in [0, 1], got {config['ARTWORK_TRIAL_SHARE']}")
    parse_reward_values(config["REWARD_VALUES"])  # raises ValueError naming the bad part
    for name in ("MAX_PER_GENRE", "MIN_GENRES"):
        if not 0 <= int(config[name]) <= 100:
            raise ValueError(f"{name} must be an integer in [0, 100], got {config[name]}")
    if not 0.0 <= float(config["TITLE_TRIAL_SHARE"]) <= 1.0:
        raise ValueError(f"TITLE_TRIAL_SHARE must be in [0, 1], got {config['TITLE_TRIAL_SHARE']}")
    if float(config["TITLE_TRIAL_HOURS"]) < 0:
        raise ValueError(f"TITLE_TRIAL_HOURS must be >= 0, got {config['TITLE_TRIAL_HOURS']}")
    if float(config["ARTWORK_TRIAL_HOURS"]) < 0:
        raise ValueError(f"ARTWORK_TRIAL_HOURS must be >= 0, got {config['ARTWORK_TRIAL_HOURS']}")
    if config["SQLITE_SYNCHRONOUS"] not in ("normal", "full"):
        raise ValueError(f"SQLITE_SYNCHRONOUS must be normal or full, got {config['SQLITE_SYNCHRONOUS']!r}")
    if config["LEARNER_PRIORITY"] not in ("idle", "low", "normal"):
        raise ValueError(f"LEARNER_PRIORITY must be idle, low or normal, got {config['LEARNER_PRIORITY']!r}")
    learner_cpu = str(config["LEARNER_CPU"])
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if learner_cpu not in ("last", "any") and not (learner_cpu.isdigit() and int(learner_cpu) in usable):
        raise ValueError(
            f"LEARNER_CPU must be last, any or one of the CPUs this process may use "
            f"({', '.join(map(str, usable)) or 'none can be chosen here'}), got {learner_cpu!r}"
        )
    if config["IMAGE_STORE"] not in ("folder", "database"):
        raise ValueError(f"IMAGE_STORE must be folder or database, got {config['IMAGE_STORE']!r}")
    if int(config["EVALUATION_PROCESSES"]) < 0:
        raise ValueError(f"EVALUATION_PROCESSES must be >= 0, got {config['EVALUATION_PROCESSES']}")
    if float(config["MAX_DATABASE_MB"]) < 0:
        raise ValueError(f"MAX_DATABASE_MB must be >= 0, got {config['MAX_DATABASE_MB']}")
    if float(config["MAX_DATABASE_MB"]) > 0 and config["DATABASE_URL"]:
        raise ValueError("MAX_DATABASE_MB caps the SQLite file; with DATABASE_URL, use the PostgreSQL server's limits")
    if float(config["RETENTION_DAYS"]) < 0:
        raise ValueError(f"RETENTION_DAYS must be >= 0, got {config['RETENTION_DAYS']}")
    if not 0 <= int(config["TASTE_CLASSES"]) <= 64:
        raise ValueError(f"TASTE_CLASSES must be an integer in [0, 64], got {config['TASTE_CLASSES']}")
    for name in ("TASTE_MIN_IMPRESSIONS", "TASTE_REFIT_EVENTS", "TASTE_WINDOW_EVENTS"):
        if int(config[name]) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {config[name]}")
    if float(config["TASTE_REFIT_SECONDS"]) < 0:
        raise ValueError(f"TASTE_REFIT_SECONDS must be >= 0, got {config['TASTE_REFIT_SECONDS']}")
    if float(config["REWARD_WAIT_SECONDS"]) < 0:
        raise ValueError(f"REWARD_WAIT_SECONDS must be >= 0, got {config['REWARD_WAIT_SECONDS']}")
    if not -1.0 <= float(config["DEFAULT_REWARD"]) <= 1.0:
        raise ValueError(f"DEFAULT_REWARD must be in [-1, 1], got {config['DEFAULT_REWARD']}")
