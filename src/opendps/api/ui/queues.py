"""The queues page: limits, depth, running, oldest wait, workers, and why jobs wait."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from opendps.api.deps import services_of
from opendps.api.ui.render import render, ui_user
from opendps.models import JobStatus
from opendps.service.queries import JobQuery
from opendps.service.queues import queue_note, why_waiting

router = APIRouter(prefix="/ui", include_in_schema=False)
WAITING_SHOWN = 5  # oldest waiting jobs explained per queue


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request) -> HTMLResponse:
    from opendps.api.meta import list_queues

    services = services_of(request)
    user = ui_user(request)
    queues = list_queues(request)["queues"]
    for queue in queues:
        queue["note"] = queue_note(queue)
        queue["waiting"] = []
        if queue.get("depth"):
            oldest = JobQuery(
                queue=queue["name"],
                statuses=(JobStatus.ACCEPTED,),
                limit=WAITING_SHOWN,
                sort="created",
                count=False,
            )
            page = services.jobs.list_jobs(oldest, user)
            explain = services.algorithms.get_by_id
            queue["waiting"] = [(job, why_waiting(explain, job, queue)) for job in page.items]
    return render(request, "queues.html", {"queues": queues})
