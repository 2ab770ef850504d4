"""SecretService: per-user secrets, encrypted at rest with Fernet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from opendps.service.context import Services


class SecretService:
    def __init__(self, services: Services) -> None:
        self.accounts = services.accounts
        self._fernet = Fernet(services.secret_key.encode())

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
