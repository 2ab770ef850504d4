"""``dps``: the command line (DESIGN §7).

``server`` and ``worker`` run opendps; ``run-local`` runs one algorithm here with no
server; ``user`` manages users in the database directly, on the server's machine; ``init``,
``test`` and ``shell`` are the algorithm developer's loop. Every other command talks to a
server through :mod:`opendps.client` and takes ``--url``
(``DPS_URL``), ``--token`` (``DPS_TOKEN``) and ``--json``.

Exit codes: 0 ok; 1 a job (or batch) ended failed or dismissed, a build failed, or the
server failed; 2 bad usage or input (the server's 4xx answers, with its ``detail``);
3 the server could not be reached.
"""

from __future__ import annotations

import typer

from opendps.cli.algorithms import algorithm_app
from opendps.cli.batches import batch_app
from opendps.cli.develop import init_command, shell_command, test_command
from opendps.cli.doctor import doctor_command
from opendps.cli.jobs import job_app
from opendps.cli.local import run_local_command
from opendps.cli.queues import queues_command
from opendps.cli.secrets import secrets_app
from opendps.cli.server import server, worker
from opendps.cli.users import user_app

app = typer.Typer(
    help="opendps: run algorithms from git repositories as jobs on queues.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(algorithm_app, name="algorithm")
app.add_typer(job_app, name="job")
app.add_typer(batch_app, name="batch")
app.add_typer(user_app, name="user")
app.add_typer(secrets_app, name="secrets")
app.command()(server)
app.command()(worker)
app.command("queues")(queues_command)
app.command("doctor")(doctor_command)
app.command("run-local")(run_local_command)
app.command("init")(init_command)
app.command("test")(test_command)
app.command("shell")(shell_command)


def main() -> None:
    app()
