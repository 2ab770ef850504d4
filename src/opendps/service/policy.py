"""Who may see and change what (DESIGN §11): the one rule every dialect applies.

* Jobs, batches, secrets, outputs, logs, metrics and events belong to the user who created
  them. Another user's object is reported exactly like a missing one (the caller passes
  the not-found error to raise), so no answer reveals that it exists.
* Admins see and act on everything. With auth off there is one user, ``anonymous``, who
  owns everything.
* Algorithms are a shared catalogue: everyone may read and run them, only their owner or
  an admin may replace, re-register or delete them (403 for anyone else).
* Guests use only the queues marked ``guest``.

The service layer calls this module; routes never do, and never compare owners.
"""

from __future__ import annotations

from opendps.errors import Forbidden, ImmutableProcess, NotFound
from opendps.models import Algorithm
from opendps.settings import QueueConfig, Settings
from opendps.store import AccountStore

ANONYMOUS = "anonymous"


class Policy:
    """The visibility and ownership rule, from the settings and the users table."""

    def __init__(self, settings: Settings, accounts: AccountStore) -> None:
        self.settings = settings
        self.accounts = accounts

    @property
    def signs_in(self) -> bool:
        """Whether requests must carry a token (auth on)."""
        return self.settings.auth

    def is_admin(self, user: str) -> bool:
        record = self.accounts.get_user(user)
        return bool(record and record["is_admin"])

    def is_guest(self, user: str) -> bool:
        """With auth on, an unknown user counts as a guest; with auth off nobody is one."""
        if not self.settings.auth:
            return False
        record = self.accounts.get_user(user)
        return record is None or bool(record["is_guest"])

    # -- users' own objects ---------------------------------------------------------------

    def sees_all(self, user: str) -> bool:
        return not self.settings.auth or self.is_admin(user)

    def scope(self, user: str) -> str | None:
        """The one owner whose objects a listing may show ``user``; None = everyone's."""
        return None if self.sees_all(user) else user

    def can_see(self, user: str, owner: str) -> bool:
        return owner == user or self.sees_all(user)

    def check_visible(self, user: str, owner: str, missing: NotFound) -> None:
        """Raise ``missing`` (the error a missing object would raise) unless ``user`` may
        see an object of ``owner``."""
        if not self.can_see(user, owner):
            raise missing

    # -- the shared catalogue -------------------------------------------------------------

    def replace_guard(self, user: str) -> str | None:
        """The owner an existing algorithm must have for ``user`` to replace it (checked in
        the store's write transaction); None when ``user`` may replace any."""
        return None if self.sees_all(user) else user

    def check_may_change(self, user: str, algorithm: Algorithm) -> None:
        if algorithm.builtin:
            raise ImmutableProcess(f"process {algorithm.process_id} is built in")
        guard = self.replace_guard(user)
        if guard is not None and algorithm.owner != guard:
            raise Forbidden(
                f"process {algorithm.process_id} belongs to {algorithm.owner}; only its owner "
                "or an admin may replace or delete it"
            )

    # -- queues ---------------------------------------------------------------------------

    def may_use_queue(self, user: str, queue: QueueConfig) -> bool:
        return queue.guest or not self.is_guest(user)

    def usable_queues(self, user: str) -> list[QueueConfig]:
        guest = self.is_guest(user)
        return [q for q in self.settings.queues if q.guest or not guest]
