"""SecretService: per-user secrets, encrypted at rest with Fernet.

Decryption also accepts the keys a rotation leaves beside ``secret.key`` (MultiFernet), so a
rotation interrupted half-way never makes secrets unreadable; a value that no key can read
is skipped with a warning when masking logs (a key change must not fail unrelated jobs).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)


class SecretService:
    def __init__(self, services: Services) -> None:
        from opendps.service.context import previous_secret_keys

        self.accounts = services.accounts
        keys = [services.secret_key, *previous_secret_keys(services.settings)]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in dict.fromkeys(keys)])

    def list(self, owner: str) -> list[dict]:
        return self.accounts.list_secrets(owner)

    def get(self, owner: str, name: str) -> str:
        return self._fernet.decrypt(self.accounts.get_secret(owner, name).encode()).decode()

    def add(self, owner: str, name: str, value: str, *, replace: bool = False) -> None:
        token = self._fernet.encrypt(value.encode()).decode()
        self.accounts.add_secret(owner, name, token, replace=replace)

    def delete(self, owner: str, name: str) -> None:
        self.accounts.delete_secret(owner, name)

    def values(self, owner: str) -> list[str]:
        """Every plain value of the owner's secrets, to mask them in a job's logs."""
        values = []
        for token in self.accounts.all_secret_values(owner):
            try:
                values.append(self._fernet.decrypt(token.encode()).decode())
            except InvalidToken:
                log.warning("a secret of %s cannot be decrypted with the current key", owner)
        return values


def rotate_key(services: Services, new_key: str | None = None) -> tuple[int, str]:
    """Re-encrypt every secret with a new key; answers (secrets re-encrypted, new key).

    With the key in the data dir: the new key is written to ``secret.key.new`` first, the
    secrets are re-encrypted in one transaction, then ``secret.key`` becomes
    ``secret.key.old`` and the new key ``secret.key`` (any step may crash: every key that
    may have been used stays readable). With ``secret_key`` set in the settings, the
    operator puts the printed key there. Restart servers and workers afterwards (job tokens
    are signed with the key too).
    """
    from opendps.service.context import check_secret_key

    new_key = check_secret_key(new_key or Fernet.generate_key().decode(), "the new key")
    data = Path(services.settings.data_dir)
    in_file = not services.settings.secret_key
    if in_file:
        _write_private(data / "secret.key.new", new_key)
    old = SecretService(services)._fernet
    new = Fernet(new_key.encode())
    count = services.accounts.reencrypt_secrets(
        lambda token: new.encrypt(old.decrypt(token.encode())).decode()
    )
    if in_file:
        os.replace(data / "secret.key", data / "secret.key.old")
        os.replace(data / "secret.key.new", data / "secret.key")
    return count, new_key


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
