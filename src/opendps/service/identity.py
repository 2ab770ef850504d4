"""Who is asking: users, their API tokens, and job-scoped tokens (DESIGN §4, §2)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from opendps.errors import NoSuchJob, Unauthorized

if TYPE_CHECKING:
    from opendps.service.context import Services

ANONYMOUS = "anonymous"
JOB_TOKEN_PREFIX = "dpsjob."


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._key = services.secret_key.encode()

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
            job = self.services.job_store.get_job(job_id)
        except NoSuchJob:
            return None
        return None if job.status.terminal else job_id

    # -- users ----------------------------------------------------------------------------

    def create_user(self, name: str, *, is_admin: bool = False, is_guest: bool = False) -> str:
        """Create (or re-key) a user; answers a new API token, shown once."""
        token = secrets.token_urlsafe(32)
        self.services.accounts.ensure_user(
            name, token_hash=_hash(token), is_admin=is_admin, is_guest=is_guest
        )
        return token

    def authenticate(self, token: str | None) -> str:
        """The user a request acts as. With auth off: the job's owner for a job token, else
        ``anonymous``. With auth on: a valid user or job token is required."""
        if token:
            job_id = self.job_of_token(token)
            if job_id is not None:
                return self.services.job_store.get_job(job_id).owner
            if token.startswith(JOB_TOKEN_PREFIX) and self.services.settings.auth:
                raise Unauthorized("this job token is not valid (the job has ended)")
            user = self.services.accounts.user_by_token(_hash(token))
            if user is not None:
                return user["name"]
        if self.services.settings.auth:
            raise Unauthorized("a valid token is required (Authorization: Bearer <token>)")
        return ANONYMOUS

    def is_admin(self, name: str) -> bool:
        user = self.services.accounts.get_user(name)
        return bool(user and user["is_admin"])

    def is_guest(self, name: str) -> bool:
        user = self.services.accounts.get_user(name)
        return user is None or bool(user["is_guest"])
