"""Services: the store, storage and services built once from Settings."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from opendps.models import Job
from opendps.service.algorithms import AlgorithmService
from opendps.service.batches import BatchService
from opendps.service.identity import IdentityService
from opendps.service.jobs import JobService
from opendps.service.policy import Policy
from opendps.service.secrets import SecretService, check_secret_key, previous_secret_keys
from opendps.settings import Settings
from opendps.store import (
    AccountStore,
    BatchStore,
    CatalogStore,
    Database,
    JobStore,
    NotificationStore,
    SampleStore,
    WorkerStore,
)

if TYPE_CHECKING:  # opened lazily: fsspec (and S3) only when something is staged or read
    from opendps.executors.celery import CeleryDispatcher
    from opendps.runner.sandbox import Sandbox
    from opendps.storage.base import Storage


def load_secret_key(settings: Settings) -> str:
    """settings.secret_key, else a Fernet key generated once into the data dir (mode 0600)."""
    if settings.secret_key:
        return settings.secret_key
    from cryptography.fernet import Fernet

    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: when two processes start at once, the first one's key wins
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
    return path.read_text().strip()


class Services:
    """Everything a request or a job needs, built from one Settings object.

    Each service gets the parts it uses, not this container, so that no module of
    ``service/`` imports another one back (only this module knows them all).
    """

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.database_url or "", migrate=migrate)
        self.job_store = JobStore(self.db)
        self.batch_store = BatchStore(self.db)
        self.notification_store = NotificationStore(self.db)
        self.catalog = CatalogStore(self.db)
        self.accounts = AccountStore(self.db)
        self.worker_store = WorkerStore(self.db)
        self.samples = SampleStore(self.db)
        where = "secret_key (DPS_SECRET_KEY)" if settings.secret_key else "secret.key"
        self.secret_key = check_secret_key(load_secret_key(settings), where)
        # Set by whoever runs jobs in this process, so a submit wakes it at once.
        self.work_available = threading.Event()
        self.policy = Policy(settings, self.accounts)
        self.identity = IdentityService(
            settings, self.accounts, self.job_store, self.secret_key.encode()
        )
        self.secrets = SecretService(
            self.accounts, [self.secret_key, *previous_secret_keys(settings)]
        )
        self.algorithms = AlgorithmService(
            settings,
            self.catalog,
            self.job_store,
            self.policy,
            self.work_available,
            sandbox=lambda: self.sandbox,
            storage=lambda: self.storage,
        )
        self.jobs = JobService(
            settings,
            self.job_store,
            self.algorithms,
            self.policy,
            self.secrets,
            self.notification_store,
            self.samples,
            storage=lambda: self.storage,
            work_available=self.work_available,
            on_submitted=self._jobs_submitted,
            on_cancelled=self._jobs_cancelled,
        )
        self.batches = BatchService(
            self.batch_store,
            self.job_store,
            self.jobs,
            self.algorithms,
            self.policy,
            self.notification_store,
            self.work_available,
        )

    @cached_property
    def sandbox(self) -> Sandbox:
        """How jobs and builds are boxed (runner/sandbox.py), decided once."""
        from opendps.runner.sandbox import Sandbox

        return Sandbox.from_settings(self.settings)

    @cached_property
    def storage(self) -> Storage:
        """Opened on first use: an S3 store is not contacted by processes that never stage."""
        from opendps.storage import open_storage

        return open_storage(self.settings)

    @cached_property
    def dispatcher(self) -> CeleryDispatcher | None:
        """The celery dispatcher (publish, revoke) when ``executor: celery``, else None."""
        if self.settings.executor != "celery":
            return None
        from opendps.executors.celery import CeleryDispatcher

        return CeleryDispatcher(self)

    def _jobs_submitted(self, jobs: Sequence[Job]) -> None:
        """New jobs are in the store: publish them to the broker (scale-out)."""
        if self.dispatcher is not None:
            self.dispatcher.publish([j for j in jobs if not j.deduped])

    def _jobs_cancelled(self, job_ids: Sequence[str]) -> None:
        """Cancel flags are set in the store: revoke the messages (scale-out)."""
        if self.dispatcher is not None:
            self.dispatcher.revoke(list(job_ids))

    def close(self) -> None:
        if "dispatcher" in self.__dict__ and self.dispatcher is not None:
            self.dispatcher.close()
        self.db.dispose()
