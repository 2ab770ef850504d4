"""SecretService: per-user secrets, encrypted at rest with Fernet.

Secrets are addressed by (user, name): every method takes the acting user and reaches only
that user's secrets, so another user's secret is "no secret named …" like a missing one.
"""

from __future__ import annotations

from cryptography.fernet import Fernet

from opendps.store import AccountStore


class SecretService:
    def __init__(self, accounts: AccountStore, key: str) -> None:
        self.accounts = accounts
        self._fernet = Fernet(key.encode())

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
        return [
            self._fernet.decrypt(v.encode()).decode()
            for v in self.accounts.all_secret_values(owner)
        ]
