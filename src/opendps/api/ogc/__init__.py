"""OGC API - Processes specifics: execution (sync/async negotiation, value encodings,
raw and document results), callbacks, the OpenAPI 3.0 document, and the conformance
classes that depend on them.

``install(app)`` is called by ``create_app``; see docs/ogc.md for what is claimed.
"""

from __future__ import annotations

from fastapi import FastAPI

from opendps.api.ogc.execute import DEFAULT_SYNC_WAIT, router
from opendps.api.ogc.openapi import install_openapi
from opendps.service.packages import cwl_available

PART2 = "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/"
CWL_CLASSES = [PART2 + "cwl", PART2 + "ogcapppkg"]


def install(app: FastAPI) -> None:
    services = app.state.services
    app.include_router(router)
    app.state.ogc_sync_wait = float(
        getattr(services.settings, "sync_execute_wait", None) or DEFAULT_SYNC_WAIT
    )
    if cwl_available():  # CWL packages are accepted and run only with cwltool installed
        app.state.conformance.extend(c for c in CWL_CLASSES if c not in app.state.conformance)
    install_openapi(app)
