"""The store: the only package that talks SQL (DESIGN §10)."""

from opendps.store.accounts import AccountStore
from opendps.store.batchstore import BatchStore
from opendps.store.catalog import CatalogStore
from opendps.store.db import Database
from opendps.store.jobstore import JobFilters, JobStore
from opendps.store.notifications import NotificationStore
from opendps.store.samples import SampleStore
from opendps.store.workers import WorkerStore

__all__ = [
    "AccountStore",
    "BatchStore",
    "CatalogStore",
    "Database",
    "JobFilters",
    "JobStore",
    "NotificationStore",
    "SampleStore",
    "WorkerStore",
]
