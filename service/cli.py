"""``flask --app wsgi <command>``: init-db, demo-catalog, import-catalog, learn."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app

from assets.bulk import import_folder, iter_refusals, read_manifest
from assets.demo import build_demo_catalog
from bandits.learner import Learner, serve_forever
from bandits.storage import connect


def register(app: Flask) -> None:
    """Attach the commands to the app."""

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the database file and its tables (idempotent)."""
        connect(current_app.config["DATABASE"], synchronous=current_app.config["SQLITE_SYNCHRONOUS"])
        click.echo(f"database ready: {current_app.config['DATABASE']}")

    @app.cli.command("demo-catalog")
    @click.option("--seed", default=7, show_default=True, help="Random seed; the same seed draws the same catalog.")
    @click.option("--titles", "count", default=60, show_default=True, help="How many titles.")
    @click.option("--artworks", "artworks", type=click.IntRange(1, 20), default=None,
                  help="Posters per title (default: 3 to 6, drawn by the seed).")
    def demo_catalog(seed: int, count: int, artworks: int | None) -> None:
        """Add a demo catalog of titles with Pillow-drawn posters (titles already present are kept)."""
        db = connect(current_app.config["DATABASE"], synchronous=current_app.config["SQLITE_SYNCHRONOUS"])
        with click.progressbar(length=count, label="demo catalog") as bar:
            summary = build_demo_catalog(db, data_dir=current_app.config["DATA_DIR"], seed=seed, count=count,
                                         artworks_per_title=artworks, progress=bar.update)
        click.echo(f"{summary['titles_added']} titles and {summary['artworks_added']} artworks added "
                   f"({count - summary['titles_added']} already present)")

    @app.cli.command("import-catalog")
    @click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                  help="CSV or JSON manifest (default: manifest.csv or manifest.json in FOLDER).")
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
        db = connect(current_app.config["DATABASE"], synchronous=current_app.config["SQLITE_SYNCHRONOUS"])
        with click.progressbar(length=rows, label="importing") as bar:
            summary = import_folder(db, folder=folder, manifest=manifest, data_dir=current_app.config["DATA_DIR"],
                                    progress=bar.update)
        click.echo(f"{summary.titles_created} titles created, {summary.artworks_added} artworks added, "
                   f"{len(summary.refused)} rows refused")
        for line in iter_refusals(summary):
            click.echo(f"  refused: {line}")
        if summary.refused:
            raise SystemExit(1)

    @app.cli.command("learn")
    @click.option("--once", is_flag=True, help="Learn what is due now and exit, instead of running until stopped.")
    def learn(once: bool) -> None:
        """Run the learner in the foreground (the service normally starts it by itself)."""
        config = dict(current_app.config)
        if once:
            for result in Learner(connect(config["DATABASE"], synchronous=config["SQLITE_SYNCHRONOUS"]), config).run_once().values():
                click.echo(f"{result.policy}: learned {result.events} events, {result.examples} examples, "
                           f"version {result.version}")
            return
        raise SystemExit(serve_forever(config))
