"""``python -m service``: Marquee's command line under its own name and help.

The commands are those ``flask --app wsgi`` runs (``service.cli``); only the group differs: Flask's
own command prints its generic paragraph before it loads any application, this one says what
Marquee's commands do.
"""

from __future__ import annotations

from flask.cli import FlaskGroup

from service import create_app

HELP = """Marquee's command line: set up the database and catalog, learn, evaluate, simulate, keys.

Every command acts on the data folder of the deployment's settings (MARQUEE_DATA_DIR, default
./data). `flask --app wsgi COMMAND` runs the same commands.
"""

cli = FlaskGroup(name="python -m service", help=HELP, create_app=lambda: create_app(), add_version_option=False)
# The application is Marquee's, so Flask's options for choosing one (--app, --env-file) do not apply.
cli.params = [param for param in cli.params if param.name not in ("app", "env_file")]

if __name__ == "__main__":
    cli.main(prog_name="python -m service")
