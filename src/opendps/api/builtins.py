"""Registers the built-in processes (``echo``, ``hello-world``) when the app is created."""

from __future__ import annotations

from fastapi import FastAPI

from opendps.builtins import BUILTIN_SPECS
from opendps.errors import NoSuchProcess


def install(app: FastAPI) -> None:
    services = app.state.services
    for spec in BUILTIN_SPECS:
        try:
            current = services.catalog.get_algorithm(spec.name, spec.version)
        except NoSuchProcess:
            current = None
        # Only when new or changed: every save is a new build row.
        if current is None or not current.builtin or current.spec != spec.model_dump(mode="json"):
            services.algorithms.ensure_builtin(spec)
