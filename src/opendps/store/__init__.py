"""The store: the only package that talks SQL (DESIGN §10)."""

from opendps.store.accounts import AccountStore
from opendps.store.catalog import CatalogStore
from opendps.store.db import Database
from opendps.store.jobstore import JobFilters, JobStore
from opendps.store.samples import SampleStore
from opendps.store.workers import WorkerStore

__all__ = [
    "AccountStore",
    "CatalogStore",
    "Database",
    "JobFilters",
    "JobStore",
    "SampleStore",
    "WorkerStore",
]
