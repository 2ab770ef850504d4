"""SecretService: per-user secrets, encrypted at rest with Fernet.

Secrets are addressed by (user, name): every method takes the acting user and reaches only
that user's secrets, so another user's secret is "no secret named …" like a missing one.

Decryption also accepts the keys a rotation leaves beside ``secret.key`` (MultiFernet), so a
rotation interrupted half-way never makes secrets unreadable; a value that no key can read
is skipped with a warning when masking logs (a key change must not fail unrelated jobs).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from opendps.errors import ConfigError
from opendps.settings import Settings
from opendps.store import AccountStore

log = logging.getLogger(__name__)


def check_secret_key(key: str, where: str) -> str:
    """A clear start-up error for a key Fernet cannot use (instead of a crash per job)."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"the secret key from {where} is not a valid key ({exc}): it must be 32 bytes in "
            "url-safe base64 (44 characters), e.g. from `dps secrets rotate-key`"
        ) from exc
    return key


def previous_secret_keys(settings: Settings) -> list[str]:
    """Keys a rotation left beside secret.key (still accepted for decryption, see
    rotate_key), newest first."""
    keys = []
    for name in ("secret.key.new", "secret.key.old"):
        path = Path(settings.data_dir) / name
        if path.is_file():
            keys.append(path.read_text().strip())
    return keys


class SecretService:
    def __init__(self, accounts: AccountStore, keys: Sequence[str]) -> None:
        """``keys``: the current key first, then older ones still accepted for reading."""
        self.accounts = accounts
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

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


def rotate_key(
    settings: Settings, accounts: AccountStore, current: SecretService, new_key: str | None = None
) -> tuple[int, str]:
    """Re-encrypt every secret with a new key; answers (secrets re-encrypted, new key).

    With the key in the data dir: the new key is written to ``secret.key.new`` first, the
    secrets are re-encrypted in one transaction, then ``secret.key`` becomes
    ``secret.key.old`` and the new key ``secret.key`` (any step may crash: every key that
    may have been used stays readable). With ``secret_key`` set in the settings, the
    operator puts the printed key there. Restart servers and workers afterwards (job tokens
    are signed with the key too).
    """
    new_key = check_secret_key(new_key or Fernet.generate_key().decode(), "the new key")
    data = Path(settings.data_dir)
    in_file = not settings.secret_key
    if in_file:
        _write_private(data / "secret.key.new", new_key)
    new = Fernet(new_key.encode())
    count = accounts.reencrypt_secrets(
        lambda token: new.encrypt(current.decrypt(token).encode()).decode()
    )
    if in_file:
        os.replace(data / "secret.key", data / "secret.key.old")
        os.replace(data / "secret.key.new", data / "secret.key")
    return count, new_key


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
