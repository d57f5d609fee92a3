"""``flask --app wsgi <command>`` (or ``python -m service <command>``): Marquee's command line.

Commands: init-db, demo-catalog, import-catalog, learn, warm-start, evaluate, export-log, import-log,
keys, backup, prune, simulate.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app, render_template
from flask.cli import AppGroup

from assets.bulk import import_folder, iter_refusals, read_manifest
from assets.demo import build_demo_catalog
from bandits.evaluate import offline
from bandits.learn import warmstart
from bandits.learn.learner import Learner, serve_forever
from bandits.log import datasets, logexport, maintenance
from bandits.log.logimport import FORMATS
from bandits.simulator import REWARDS, World
from service import auth, charts, errors, schemas, simulate, workers
from service import config as settings
from service.db import open_db

# Every command of the command line; ``register`` adds them to an app's ``flask`` group.
commands = AppGroup("marquee")


@commands.command("init-db", short_help="Create the database and its tables.")
def init_db() -> None:
    """Create the database file and its tables (idempotent)."""
    open_db(current_app.config)
    click.echo(f"database ready: {current_app.config['DATABASE']}")


@commands.command("demo-catalog", short_help="Add demo titles with Pillow-drawn posters.")
@click.option("--seed", default=7, show_default=True, help="Random seed; the same seed draws the same catalog.")
@click.option("--titles", "count", default=60, show_default=True, help="How many titles.")
@click.option(
    "--artworks",
    "artworks",
    type=click.IntRange(1, 20),
    default=None,
    help="Posters per title (default: 3 to 6, drawn by the seed).",
)
def demo_catalog(seed: int, count: int, artworks: int | None) -> None:
    """Add a demo catalog of titles with Pillow-drawn posters (titles already present are kept)."""
    db = open_db(current_app.config)
    with click.progressbar(length=count, label="demo catalog") as bar:
        summary = build_demo_catalog(
            db,
            data_dir=current_app.config["DATA_DIR"],
            seed=seed,
            count=count,
            artworks_per_title=artworks,
            progress=bar.update,
            keep_in_database=current_app.config["IMAGE_STORE"] == "database",
        )
    click.echo(
        f"{summary['titles_added']} titles and {summary['artworks_added']} artworks added "
        f"({count - summary['titles_added']} already present)"
    )
    for role, key in auth.first_keys(current_app, db).items():
        click.echo(f"{role} key (shown once; X-API-Key): {key}")


@commands.command("import-catalog", short_help="Import titles and artworks from a folder.")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV or JSON manifest (default: manifest.csv or manifest.json in FOLDER).",
)
def import_catalog(folder: Path, manifest: Path | None) -> None:
    """Import titles and artworks from a folder of images and a manifest; exit 1 if a row was refused."""
    if manifest is None:
        found = [folder / name for name in ("manifest.csv", "manifest.json") if (folder / name).is_file()]
        if not found:
            raise click.UsageError(f"no manifest.csv or manifest.json in {folder}; name one with --manifest")
        manifest = found[0]
    try:
        rows = len(read_manifest(manifest))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"the manifest cannot be read: {exc}") from None
    db = open_db(current_app.config)
    with click.progressbar(length=rows, label="importing") as bar:
        summary = import_folder(
            db,
            folder=folder,
            manifest=manifest,
            data_dir=current_app.config["DATA_DIR"],
            check_title=schemas.check_title,
            progress=bar.update,
            keep_in_database=current_app.config["IMAGE_STORE"] == "database",
        )
    click.echo(
        f"{summary.titles_created} titles created, {summary.artworks_added} artworks added, "
        f"{len(summary.refused)} rows refused"
    )
    for line in iter_refusals(summary):
        click.echo(f"  refused: {line}")
    if summary.refused:
        raise SystemExit(1)


@commands.command("learn", short_help="Run the learner in the foreground.")
@click.option("--once", is_flag=True, help="Learn what is due now and exit, instead of running until stopped.")
def learn(once: bool) -> None:
    """Run the learner in the foreground (the service normally starts it by itself)."""
    config = dict(current_app.config)
    if once:
        for result in Learner(open_db(config), settings.deployment()).run_once().values():
            click.echo(
                f"{result.policy}: learned {result.events} events, {result.examples} examples, version {result.version}"
            )
        return
    raise SystemExit(serve_forever(settings.deployment(), checks=workers.learner_checks(config)))


@commands.command("warm-start", short_help="Train a policy on an imported log.")
@click.option(
    "--policy",
    type=click.Choice(["titles", "artwork", "actions"]),
    required=True,
    help="The policy to train (its options, and where the new version is published).",
)
@click.option("--dataset", required=True, help="An imported dataset in the policy's encoding.")
@click.option(
    "--start",
    type=click.Choice(["empty", "newest"]),
    default="empty",
    show_default=True,
    help="A new model with the policy's options, or the newest version.",
)
@click.option(
    "--passes",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="How many times to learn the dataset (the progressive estimates are of the first pass).",
)
def warm_start_command(policy: str, dataset: str, start: str, passes: int) -> None:
    """Train a policy on an imported log into a new model version, before it serves."""
    config = dict(current_app.config)
    db = open_db(config)
    try:
        result = warmstart.warm_start(db, settings.deployment(), policy, dataset, start=start, passes=passes)
    except warmstart.WarmStartError as exc:
        raise click.ClickException(str(exc)) from None
    found = result["progressive"]
    click.echo(
        f"{policy}: version {result['version']} learned {result['decisions']} decisions of {dataset} "
        f"({passes} pass{'es' if passes > 1 else ''})"
    )
    for label, key in (
        ("greedy model", "greedy_model"),
        ("baseline", "baseline"),
        ("logged", "logged"),
        ("greedy - baseline", "greedy_minus_baseline"),
    ):
        value = found[key]
        click.echo(
            f"  {label:<18} {value['value']:+.4f} [{value['ci_low']:+.4f}, {value['ci_high']:+.4f}]"
            if value["ci_low"] is not None
            else f"  {label:<18} {value['value']}"
        )


@commands.command("evaluate", short_help="Estimate candidate policies on the log.")
@click.option(
    "--policy",
    type=click.Choice(["titles", "artwork", "actions"]),
    default=None,
    help="The policy whose log to evaluate [required, unless --dataset names a dataset a Marquee policy "
    "logged] (with --dataset: whose VW options and models to use).",
)
@click.option("--dataset", default=None, help="Evaluate this imported dataset instead of the service's log.")
@click.option(
    "--candidate",
    "candidates",
    multiple=True,
    metavar="CANDIDATE",
    help="logged, uniform, default, greedy, vw:<VW options>, or a JSON object "
    "(repeatable; default: logged, uniform, default, greedy).",
)
@click.option("--since", default=None, help="Only decisions from this time on (ISO 8601 or unix seconds).")
@click.option("--until", default=None, help="Only decisions before this time (ISO 8601 or unix seconds).")
@click.option("--segment-by", default=None, help="A viewer feature whose values the results are broken down by.")
@click.option("--folds", default=2, show_default=True, help="Time-ordered folds of the cross-fitted reward model.")
@click.option("--limit", type=int, default=None, help="Only the most recent LIMIT events of the range.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Also write the whole report as JSON to this file (- for standard output, instead of the table).",
)
def evaluate(
    policy: str | None,
    dataset: str | None,
    candidates: tuple[str, ...],
    since: str | None,
    until: str | None,
    segment_by: str | None,
    folds: int,
    limit: int | None,
    json_path: str | None,
) -> None:
    """Estimate how candidate policies would have done on the logged decisions (IPS, SNIPS, DM, DR)."""
    if policy is None and dataset is None:
        raise click.UsageError("name the log to evaluate: --policy titles|artwork|actions, or --dataset ID")
    request: dict[str, Any] = {
        "policy": policy,
        "dataset": dataset,
        "folds": folds,
        "segment_by": segment_by,
        "limit": limit,
        "since": since,
        "until": until,
    }
    if candidates:
        request["candidates"] = [_candidate_option(text) for text in candidates]
    try:
        spec = offline.parse_spec(request)
    except offline.SpecError as exc:
        raise click.UsageError(str(exc)) from None
    config = dict(current_app.config)
    db = open_db(config)
    with click.progressbar(length=1000, label="evaluating", file=sys.stderr) as bar:

        def progress(fraction: float, stage: str) -> None:
            bar.label = stage
            bar.update(int(fraction * 1000) - bar.pos)

        try:
            report = offline.evaluate(db, settings.deployment(), spec, progress=progress)
        except offline.SpecError as exc:
            raise click.UsageError(str(exc)) from None
        progress(1.0, "done")
    if json_path is not None:
        with click.open_file(json_path, "w") as out:
            json.dump(report, out, indent=1)
        if json_path == "-":
            return
    click.echo(format_report(report))


@commands.command("export-log", short_help="Write a policy's decisions as DSJson, JSON or Parquet.")
@click.option(
    "--policy",
    type=click.Choice(["titles", "artwork", "actions"]),
    default="artwork",
    show_default=True,
    help="The policy whose closed decisions to write.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(logexport.EXPORT_FORMATS)),
    default="dsjson",
    show_default=True,
    help="dsjson: VW's DSJson, as VW's tools read it; jsonl: flat JSON with the VW lines as logged; parquet: "
    "the same columns as jsonl, typed, for pandas, Spark or DuckDB.",
)
@click.option("--since", default=None, help="Only decisions from this time on (ISO 8601 or unix seconds).")
@click.option("--until", default=None, help="Only decisions before this time (ISO 8601 or unix seconds).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="File to write (- for standard output).",
)
def export_log(policy: str, fmt: str, since: str | None, until: str | None, output: str) -> None:
    """Write a policy's closed decisions as VW DSJson, flat JSON lines (one line per decision) or Parquet.

    The log is read a chunk of events at a time: a log larger than memory exports in the memory of one chunk.
    """
    try:
        start = offline.parse_time(since, where="--since")
        end = offline.parse_time(until, where="--until")
    except offline.SpecError as exc:
        raise click.UsageError(str(exc)) from None
    config = dict(current_app.config)
    db = open_db(config)
    chunks = offline.policy_chunks(db, settings.deployment(), policy, since=start, until=end)
    if fmt == logexport.PARQUET:
        with click.open_file(output, "wb") as binary:
            written = logexport.write_parquet(chunks, binary)
    else:
        written = 0
        with click.open_file(output, "w") as out:
            for chunk in chunks:
                out.writelines(logexport.lines(chunk, fmt))
                written += len(chunk)
    if output != "-":
        click.echo(f"{written} decisions written to {output}", err=True)


@commands.command("import-log", short_help="Import a DSJson or JSON-lines log.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="dsjson",
    show_default=True,
    help="dsjson: VW's DSJson (Marquee's export, Personalizer's logs); jsonl: Marquee's flat JSON lines.",
)
@click.option("--name", default=None, help="A name for the dataset (default: its id).")
@click.option(
    "--policy",
    default=None,
    type=click.Choice(["actions"]),
    help="Read another service's DSJson as the actions policy encodes rankings (to evaluate and warm-start it).",
)
def import_log(path: str, fmt: str, name: str | None, policy: str | None) -> None:
    """Import a DSJson or JSON-lines log (Marquee's or another VW-based service's) as a dataset to evaluate."""
    config = dict(current_app.config)
    db = open_db(config)
    with click.open_file(path, "rb") as source:
        try:
            summary = datasets.import_lines(db, config["DATABASE"], source, fmt=fmt, name=name, policy=policy)
        except datasets.ImportRefused as exc:
            raise click.ClickException(str(exc)) from None
    skipped = sum(summary["skipped"].values())
    click.echo(
        f"dataset {summary['id']} ({summary['name']}): {summary['decisions']} decisions in "
        f"{summary['events']} events, {skipped} lines skipped"
    )
    for reason, count in summary["skipped"].items():
        click.echo(f"  skipped {count}: {reason}")


keys = AppGroup(
    "keys",
    help="API keys kept in the database (only their SHA-256 digests are stored).",
    short_help="Make, list and revoke API keys.",
)
commands.add_command(keys)


@keys.command("create", short_help="Make a key and print it, once.")
@click.option("--name", required=True, help="A name to list and revoke the key by.")
@click.option(
    "--role",
    type=click.Choice(list(auth.ROLES)),
    default=auth.CLIENT,
    show_default=True,
    help="client: rank, reward, read the catalog; admin: everything.",
)
def keys_create(name: str, role: str) -> None:
    """Make a key and print it, once."""
    db = open_db(current_app.config)
    try:
        key = auth.create_key(db, name=name, role=role)
    except (errors.Invalid, errors.Conflict) as exc:
        raise click.ClickException(exc.message) from None
    # The key alone on standard output, for scripts; what it is on standard error, for people.
    click.echo(
        f"{role} key {name!r}, shown this once (only its SHA-256 digest is kept); send it in X-API-Key:", err=True
    )
    click.echo(key)


@keys.command("list", short_help="List the stored keys.")
def keys_list() -> None:
    """List the stored keys: name, role, created, revoked."""
    db = open_db(current_app.config)
    for key in auth.list_keys(db):
        revoked = f"revoked {_when(key['revoked_at'])}" if key["revoked_at"] else "active"
        click.echo(f"{key['name']}\t{key['role']}\tcreated {_when(key['created_at'])}\t{revoked}")


@keys.command("revoke", short_help="Revoke a stored key by name.")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke a stored key: requests with it are refused from the next one on."""
    db = open_db(current_app.config)
    try:
        auth.revoke_key(db, name)
    except errors.NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked {name}")


@commands.command("backup", short_help="Copy the database and artwork, online.")
@click.argument("dest", type=click.Path(path_type=Path))
def backup_command(dest: Path) -> None:
    """Copy the database (SQLite's online backup, while serving) and its artwork into the new folder DEST."""
    config = current_app.config
    try:
        summary = maintenance.backup(
            config["DATABASE"],
            config["DATA_DIR"],
            dest,
            progress=lambda step: click.echo(f"copying {step}", err=True),
        )
    except maintenance.BackupRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"backup written to {summary.folder}: database {summary.database_bytes:,} bytes "
        f"({summary.events:,} events, {summary.titles:,} titles), {summary.artworks:,} artwork masters "
        f"({summary.artwork_bytes:,} bytes), integrity ok, in {summary.seconds:.1f} s"
    )
    click.echo(f"to run from it: stop the service, then start it with MARQUEE_DATA_DIR={summary.folder}")


@commands.command("prune", short_help="Delete decisions older than some days.")
@click.option(
    "--days",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Prune decisions older than this many days (default: MARQUEE_RETENTION_DAYS).",
)
def prune_command(days: float | None) -> None:
    """Delete decisions (events, impressions, rewards) older than --days, in small batches, while serving."""
    config = current_app.config
    days = days if days is not None else float(config["RETENTION_DAYS"])
    if days <= 0:
        raise click.UsageError("give --days, or set MARQUEE_RETENTION_DAYS above 0")
    db = open_db(config)
    summary = maintenance.prune(db, older_than=time.time() - days * 86400.0)
    click.echo(
        f"pruned {summary.events:,} events older than {days:g} days ({summary.impressions:,} impressions, "
        f"{summary.rewards:,} rewards) in {summary.batches} batches"
    )


@commands.command("simulate", short_help="Drive Marquee with a simulated audience.")
@click.option(
    "--impressions",
    default=20_000,
    show_default=True,
    help="Titles to show, counted one by one: rows of --slots each (20,000 at 4 a row are 5,000 rows).",
)
@click.option("--slots", default=4, show_default=True, help="Titles per row.")
@click.option(
    "--reward",
    type=click.Choice(list(REWARDS)),
    default="play",
    show_default=True,
    help="What earns a reward of 1.",
)
@click.option("--seed", default=1, show_default=True, help="Seed of the audience (and of the scratch catalog).")
@click.option(
    "--url",
    default=None,
    help="Drive the running service at this URL (it learns by itself); "
    "default: a scratch service in this process on a fresh demo catalog.",
)
@click.option(
    "--api-key",
    default=None,
    help="An admin key of the service at --url (X-API-Key): the simulation "
    "sets the policies' reward rule, and retires late titles until they arrive.",
)
@click.option("--titles", default=30, show_default=True, help="Titles of the scratch service's demo catalog.")
@click.option("--window", default=1000, show_default=True, help="Impressions per point of the learning curve.")
@click.option(
    "--late-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of titles that arrive during the run: retired from the catalog until then.",
)
@click.option(
    "--late-artwork-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of artworks (other than a title's first) that arrive during the run.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the learning curves, the rewarded rate first, then the other (SVG) "
    "[default: learning-curve.svg in MARQUEE_DATA_DIR].",
)
def simulate_command(
    impressions: int,
    slots: int,
    reward: str,
    seed: int,
    url: str | None,
    api_key: str | None,
    titles: int,
    window: int,
    late_share: float,
    late_artwork_share: float,
    plot: Path | None,
) -> None:
    """Drive Marquee with a simulated audience; print its learning against random, default artwork and oracle."""
    plot = plot or Path(current_app.config["DATA_DIR"]) / "learning-curve.svg"
    with contextlib.ExitStack() as stack:
        learn: Callable[[], None] | None = None
        transport: simulate.Transport
        if url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="marquee-simulate-"))
            transport, learn = simulate.scratch_service(
                folder,
                create_app=current_app.extensions["marquee"]["create_app"],
                seed=seed,
                titles=titles,
                settings={
                    key: current_app.config[key]
                    for key in ("EPSILON", "EXPLORATION", "SQUARECB_GAMMA_SCALE", "SQUARECB_GAMMA_EXPONENT")
                },
            )
        else:
            try:
                transport = simulate.HttpTransport(url, api_key=api_key)
            except ValueError as exc:
                raise click.UsageError(f"--{exc}") from None
        try:
            world = World.build(
                simulate.catalog_from_service(transport),
                seed=seed,
                late_share=late_share,
                late_artwork_share=late_artwork_share,
                impressions=impressions,
            )
            started = time.monotonic()
            shown: list[simulate.Point] = []

            def status(_: Any) -> str:
                if not shown:
                    return "starting"
                point, seconds = shown[-1], max(1e-9, time.monotonic() - started)
                rates = point.expected
                span = rates["oracle"] - rates["uniform"]
                share = f"{(rates['marquee'] - rates['uniform']) / span:.0%}" if span > 0 else "n/a"
                return (
                    f"{point.impressions // slots:,} rows, {point.impressions / slots / seconds:,.0f} rows/s, "
                    f"{share} of the oracle's lift over random in the last {point.shown:,} impressions"
                )

            with click.progressbar(
                length=impressions, label="simulating", file=sys.stderr, item_show_func=status
            ) as bar:

                def progress(point: simulate.Point) -> None:
                    shown.append(point)
                    bar.update(point.impressions - bar.pos, point)
                    if not sys.stderr.isatty():  # a log or a pipe: one line a point instead of a bar
                        click.echo(f"simulating: {status(point)}", err=True)

                curve = simulate.drive(
                    transport,
                    world,
                    impressions=impressions,
                    slots=slots,
                    reward=reward,
                    seed=seed,
                    window=window,
                    learn=learn,
                    progress=progress,
                )
        except (simulate.SimulationError, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
    panels = [
        (
            f"expected {kind}s per impression" + (" (rewarded)" if kind == reward else ""),
            charts.line_chart(
                [(name, [(p.impressions, p.rates[kind][name]) for p in curve.points]) for name in simulate.POLICIES]
            ),
        )
        for kind in sorted(REWARDS, key=lambda kind: kind != reward)
    ]
    plot.write_text(render_template("curves.svg", panels=panels))
    click.echo(simulate.format_summary(curve))
    click.echo(f"learning curve written to {plot}")


def register(app: Flask) -> None:
    """Add every command to the app's command line."""
    for command in commands.commands.values():
        app.cli.add_command(command)


def _candidate_option(text: str) -> Any:
    """Read ``--candidate``: a name, ``vw:<options>``, or a JSON object."""
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"--candidate {text!r}: not valid JSON ({exc})") from None
    if text.startswith("vw:"):
        return {"kind": "vw", "vw_args": text[3:]}
    return text


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ci(interval: dict[str, Any], *, signed: bool = False) -> str:
    if interval.get("value") is None:
        return "undefined"
    sign = "+" if signed else ""
    return f"{interval['value']:{sign}.4f} [{interval['ci_low']:{sign}.4f}, {interval['ci_high']:{sign}.4f}]"


def format_report(report: dict[str, Any]) -> str:
    """Return an evaluation report as a readable table (per segment too, if the report has segments)."""
    model = report["reward_model"]
    r_squared = model.get("r_squared")
    dataset = report["source"].get("dataset")
    what = f"dataset {dataset['id']} ({dataset['name']})" if dataset else report["policy"]
    lines = [
        f"{what}: {report['rounds']} decisions in {report['events']} events, "
        f"{_when(report['first_decision_at'])} to {_when(report['last_decision_at'])}; "
        f"mean reward {report['mean_reward']:.4f}",
        f"reward model: VW {' '.join(model['vw_args'])}, {model['folds']} time-ordered folds, R^2 {r_squared:.3f}"
        if r_squared is not None and math.isfinite(r_squared)
        else f"reward model: VW {' '.join(model['vw_args'])}, {model['folds']} time-ordered folds",
        f"95% intervals; {model.get('guidance') or 'DR is the estimate to read, IPS/SNIPS/DM are there to compare'}.",
        "",
    ]
    width = max(9, *(len(entry["name"]) for entry in report["candidates"]))
    header = (
        f"{'candidate':<{width}}  {'DR [95% CI]':<26}  {'IPS':>7}  {'SNIPS':>7}  {'DM':>7}  {'ESS':>8}  "
        "lift over logged (DR)"
    )
    lines += [header, "-" * len(header)]
    for entry in report["candidates"]:
        e = entry["estimates"]
        snips = e["snips"]["value"]
        lines.append(
            f"{entry['name']:<{width}}  {_ci(e['dr']):<26}  {e['ips']['value']:>7.4f}  "
            f"{(f'{snips:.4f}' if snips is not None else 'n/a'):>7}  {e['dm']['value']:>7.4f}  "
            f"{e['ips']['effective_sample_size']:>8.0f}  {_ci(entry['lift_over_logged'], signed=True)}"
            + ("  IN SAMPLE" if entry.get("in_sample") else "")
            + ("  FRAGILE" if entry.get("weight_tail", {}).get("fragile") else "")
        )
    flattered = [entry for entry in report["candidates"] if entry.get("in_sample")]
    if flattered:
        lines += [
            "",
            "IN SAMPLE: a stored model scored on decisions logged before it was published, which it may "
            "have learned; its estimates flatter it and it cannot be applied.",
        ]
        for entry in flattered:
            later = entry.get("out_of_sample")
            lines.append(
                f"  {entry['name']}: {entry['in_sample_rounds']} decisions in sample, "
                f"{entry['out_of_sample_rounds']} after it; DR over those after: "
                + (_ci(later["dr"]) if later else f"too few (under {offline.MIN_OUT_OF_SAMPLE_ROUNDS})")
            )
    for entry in report["candidates"]:
        tail = entry.get("weight_tail", {})
        if tail.get("fragile"):
            lines.append(
                f"FRAGILE: {entry['name']}: {tail['rounds']} decisions weigh over {tail['threshold']:g} times "
                f"their logged probability ({tail['weight_share']:.0%} of the weight), only {tail['rewarded']} "
                "rewarded: its intervals miss that tail's variance; it cannot be applied"
            )
    if report.get("segment_by"):
        lines += [
            "",
            f"by {report['segment_by']} (DR; segments under {offline.MIN_SEGMENT_ROUNDS} decisions are not estimated):",
        ]
        for entry in report["candidates"]:
            for row in entry.get("segments", []):
                estimate = _ci(row["dr"]) if "dr" in row else "too few decisions"
                lines.append(f"  {entry['name']:<{width}}  {row['segment']:<20}  {row['rounds']:>7}  {estimate}")
    return "\n".join(lines)
