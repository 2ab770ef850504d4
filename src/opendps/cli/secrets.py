"""``dps secrets``: operator commands for the secret store (run on the server's machine)."""

from __future__ import annotations

from pathlib import Path

import typer

from opendps.cli.common import ConfigFile, DataDir, load_settings

secrets_app = typer.Typer(help="Operate the encrypted secret store.", no_args_is_help=True)


@secrets_app.command("rotate-key")
def rotate_key_command(
    new_key: str | None = typer.Option(
        None, "--new-key", help="Use this Fernet key instead of a generated one."
    ),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Re-encrypt every user's secrets with a new key (then restart servers and workers)."""
    from opendps.errors import OpenDPSError
    from opendps.service.context import Services
    from opendps.service.secrets import rotate_key

    settings = load_settings(config, data_dir=data_dir)
    try:
        services = Services(settings)
        count, key = rotate_key(services.settings, services.accounts, services.secrets, new_key)
    except OpenDPSError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2)
    typer.echo(f"re-encrypted {count} secret(s)")
    if settings.secret_key:
        typer.echo("secret_key is set in your settings: replace it with the new key below")
        typer.echo(key)
    else:
        typer.echo(f"the new key is in {settings.data_dir / 'secret.key'}")
    typer.echo("restart servers and workers so they use it")
