"""Registers the built-in processes (``echo``, ``hello-world``) when the app is created."""

from __future__ import annotations

from fastapi import FastAPI

from opendps.builtins import BUILTIN_SPECS


def install(app: FastAPI) -> None:
    services = app.state.services
    for spec in BUILTIN_SPECS:
        services.algorithms.ensure_builtin(spec)
