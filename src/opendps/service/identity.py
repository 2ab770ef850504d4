"""Who is asking: users, their API tokens, and job-scoped tokens (DESIGN §4, §2)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from opendps.errors import InvalidInput, NoSuchJob, Unauthorized
from opendps.service.policy import ANONYMOUS
from opendps.settings import Settings
from opendps.store import AccountStore, JobStore

__all__ = ["ANONYMOUS", "IdentityService"]
JOB_TOKEN_PREFIX = "dpsjob."


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(
        self, settings: Settings, accounts: AccountStore, job_store: JobStore, key: bytes
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.job_store = job_store
        self._key = key

    # -- job tokens: HMAC of the job id, valid while the job is not terminal ---------------

    def job_token(self, job_id: str) -> str:
        mac = hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest()[:40]
        return f"{JOB_TOKEN_PREFIX}{job_id}.{mac}"

    def job_of_token(self, token: str) -> str | None:
        """The job id a live job token belongs to, else None."""
        if not token.startswith(JOB_TOKEN_PREFIX):
            return None
        job_id, _, _mac = token[len(JOB_TOKEN_PREFIX) :].rpartition(".")
        if not job_id or not hmac.compare_digest(self.job_token(job_id), token):
            return None
        try:
            job = self.job_store.get_job(job_id)
        except NoSuchJob:
            return None
        if job.status.terminal:
            return None
        # A removed user's jobs keep running, but their tokens act for nobody.
        if self.settings.auth and self.accounts.get_user(job.owner) is None:
            return None
        return job_id

    # -- users ----------------------------------------------------------------------------

    def create_user(self, name: str, *, is_admin: bool = False, is_guest: bool = False) -> str:
        """Create (or re-key) a user with these roles; answers the new token, shown once."""
        return self.set_user(name, is_admin=is_admin, is_guest=is_guest)[0]

    def set_user(
        self, name: str, *, is_admin: bool = False, is_guest: bool = False
    ) -> tuple[str, bool]:
        """``dps user add``: create the user or re-key it with these roles (the old token
        stops working at once); answers the new token (shown once) and whether the user
        is new."""
        name = check_user_name(name)
        token = secrets.token_urlsafe(32)
        created = self.accounts.set_user(
            name, token_hash=_hash(token), is_admin=is_admin, is_guest=is_guest
        )
        return token, created

    def remove_user(self, name: str) -> None:
        """``dps user remove``: the user's token, and their jobs' tokens, stop working."""
        self.accounts.delete_user(name)

    def list_users(self) -> list[dict]:
        return self.accounts.list_users()

    def authenticate(self, token: str | None) -> str:
        """The user a request acts as. With auth off: the job's owner for a job token, else
        ``anonymous``. With auth on: a valid user or job token is required."""
        if token:
            job_id = self.job_of_token(token)
            if job_id is not None:
                return self.job_store.get_job(job_id).owner
            if token.startswith(JOB_TOKEN_PREFIX) and self.settings.auth:
                raise Unauthorized("this job token is not valid (the job has ended)")
            user = self.accounts.user_by_token(_hash(token))
            if user is not None:
                return user["name"]
        if self.settings.auth:
            raise Unauthorized("a valid token is required (Authorization: Bearer <token>)")
        return ANONYMOUS


def check_user_name(name: str) -> str:
    """A user name is a path segment of staged outputs (``<user>/dps_output/…``)."""
    name = name.strip()
    if not name or len(name) > 200 or "/" in name or not name.isprintable() or name in (".", ".."):
        raise InvalidInput(f"user name {name!r} must be 1-200 printable characters without '/'")
    if name in (ANONYMOUS, "system"):
        raise InvalidInput(f"{name!r} is reserved; choose another user name")
    return name
