"""The queues page: limits, depth, running, oldest wait, workers, and why jobs wait."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from opendps.api.deps import services_of
from opendps.api.ui.jobs import owner_scope
from opendps.api.ui.render import render, ui_user
from opendps.models import JobStatus
from opendps.service.queues import queue_note, why_waiting
from opendps.store.jobstore import JobFilters

router = APIRouter(prefix="/ui", include_in_schema=False)
WAITING_SHOWN = 5  # oldest waiting jobs explained per queue


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request) -> HTMLResponse:
    from opendps.api.meta import list_queues

    services = services_of(request)
    user = ui_user(request)
    owner = owner_scope(request, user)
    queues = list_queues(request)["queues"]
    for queue in queues:
        queue["note"] = queue_note(queue)
        queue["waiting"] = []
        if queue.get("depth"):
            filters = JobFilters(owner=owner, queue=queue["name"], statuses=(JobStatus.ACCEPTED,))
            page = services.jobs.list(filters, limit=WAITING_SHOWN, sort="created")
            queue["waiting"] = [(job, why_waiting(services, job, queue)) for job in page.items]
    return render(request, "queues.html", {"queues": queues})
