"""Services: the store, storage and services built once from Settings."""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path

from opendps.settings import Settings
from opendps.store import AccountStore, CatalogStore, Database, JobStore, SampleStore


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
    """Everything a request or a job needs, built from one Settings object."""

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.database_url or "", migrate=migrate)
        self.job_store = JobStore(self.db)
        self.catalog = CatalogStore(self.db)
        self.accounts = AccountStore(self.db)
        self.samples = SampleStore(self.db)
        self.secret_key = load_secret_key(settings)
        # Set by whoever runs jobs in this process, so a submit wakes it at once.
        self.work_available = threading.Event()

    @cached_property
    def storage(self):  # type: ignore[no-untyped-def]
        from opendps.storage import open_storage

        return open_storage(self.settings)

    @cached_property
    def algorithms(self):  # type: ignore[no-untyped-def]
        from opendps.service.algorithms import AlgorithmService

        return AlgorithmService(self)

    @cached_property
    def jobs(self):  # type: ignore[no-untyped-def]
        from opendps.service.jobs import JobService

        return JobService(self)

    @cached_property
    def secrets(self):  # type: ignore[no-untyped-def]
        from opendps.service.secrets import SecretService

        return SecretService(self)

    @cached_property
    def identity(self):  # type: ignore[no-untyped-def]
        from opendps.service.identity import IdentityService

        return IdentityService(self)

    def close(self) -> None:
        self.db.dispose()
