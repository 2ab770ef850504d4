"""The build loop (local executor and celery API server): ``build_slots`` threads each run
this, so one slow build does not hold up the others."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)


def build_loop(services: Services, stop: threading.Event) -> None:
    """Until ``stop``: take each queued build (compare-and-set, so two processes never run
    the same one) and run it to its end."""
    from opendps.errors import InvalidTransition

    while not stop.is_set():
        builds = services.catalog.queued_builds()
        if not builds:
            stop.wait(services.settings.poll_interval)
            continue
        for build in builds:
            if stop.is_set():
                return
            try:
                services.algorithms.run_build(build)
                break  # look again: another slot may have taken the next ones
            except InvalidTransition:
                continue  # another slot (or process) started it first
            except Exception:
                log.exception("build %s failed to run", build.id)
