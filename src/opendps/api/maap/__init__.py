"""The NASA MAAP dialect under ``/api/`` (DESIGN §6, shared reference maap-api.md).

Unmodified maap-py clients drive opendps through it: 5.x through the OGC-JSON
routes ``/api/ogc/…``, 4.x through the WPS-XML job routes ``/api/dps/job…`` and the
algorithm routes ``/api/mas/algorithm…``; both through ``/api/environment/config``,
``/api/members/self`` and its secrets. Every route calls the same service layer as
the OGC API at ``/``; errors take MAAP's shapes (see ``errors``).
"""

from __future__ import annotations

from fastapi import FastAPI

from opendps.api.maap import config, jobs, mas, members, processes, secrets, wps
from opendps.api.maap.errors import maap_error_shape
from opendps.api.problems import register_error_shape

PREFIX = "/api/"


def install(app: FastAPI) -> None:
    """Add the MAAP routes and claim ``/api/`` for MAAP's error bodies."""
    for module in (config, processes, jobs, wps, mas, secrets, members):
        app.include_router(module.router)
    register_error_shape(app, PREFIX, maap_error_shape)
