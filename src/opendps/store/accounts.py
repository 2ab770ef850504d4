"""AccountStore: users and their (encrypted) secrets."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from opendps.errors import Conflict, NotFound
from opendps.store.db import Database, utcnow
from opendps.store.tables import secrets, users


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set_user(self, name: str, *, token_hash: str, is_admin: bool, is_guest: bool) -> bool:
        """Create ``name`` or re-key it (the old token stops working) with these roles, in
        one transaction; answers whether the user is new."""
        values = {"token_hash": token_hash, "is_admin": is_admin, "is_guest": is_guest}
        with self.db.write() as conn:
            self.db.lock(conn, "user", name)
            exists = conn.execute(sa.select(users.c.id).where(users.c.name == name)).scalar()
            if exists is None:
                conn.execute(users.insert().values(name=name, created=utcnow(), **values))
                return True
            conn.execute(users.update().where(users.c.id == exists).values(**values))
            return False

    def list_users(self) -> list[dict]:
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(
                        users.c.name, users.c.is_admin, users.c.is_guest, users.c.created
                    ).order_by(users.c.name)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def delete_user(self, name: str) -> None:
        """Remove the user (their token with them); their jobs and secrets stay."""
        with self.db.write() as conn:
            deleted = conn.execute(users.delete().where(users.c.name == name)).rowcount
        if deleted == 0:
            raise NotFound(f"no user named {name!r}")

    def user_by_token(self, token_hash: str) -> dict | None:
        with self.db.read() as conn:
            row = (
                conn.execute(sa.select(users).where(users.c.token_hash == token_hash))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def get_user(self, name: str) -> dict | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
        return dict(row) if row else None

    # -- secrets: values arrive and leave encrypted; the service layer holds the key --------

    def list_secrets(self, owner: str) -> list[dict]:
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(secrets.c.name, secrets.c.created, secrets.c.updated)
                    .where(secrets.c.owner == owner)
                    .order_by(secrets.c.name)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def get_secret(self, owner: str, name: str) -> str:
        with self.db.read() as conn:
            value = conn.execute(
                sa.select(secrets.c.value).where(secrets.c.owner == owner, secrets.c.name == name)
            ).scalar()
        if value is None:
            raise NotFound(f"no secret named {name!r}")
        return value

    def add_secret(self, owner: str, name: str, encrypted: str, *, replace: bool = False) -> None:
        now = utcnow()
        with self.db.write() as conn:
            self.db.lock(conn, "secret", f"{owner}\0{name}")
            exists = conn.execute(
                sa.select(secrets.c.id).where(secrets.c.owner == owner, secrets.c.name == name)
            ).scalar()
            if exists is not None and not replace:
                raise Conflict(f"a secret named {name!r} already exists")
            if exists is not None:
                conn.execute(
                    secrets.update()
                    .where(secrets.c.id == exists)
                    .values(value=encrypted, updated=now)
                )
            else:
                conn.execute(
                    secrets.insert().values(
                        owner=owner, name=name, value=encrypted, created=now, updated=now
                    )
                )

    def delete_secret(self, owner: str, name: str) -> None:
        with self.db.write() as conn:
            deleted = conn.execute(
                secrets.delete().where(secrets.c.owner == owner, secrets.c.name == name)
            ).rowcount
        if deleted == 0:
            raise NotFound(f"no secret named {name!r}")

    def all_secret_values(self, owner: str) -> list[str]:
        with self.db.read() as conn:
            return list(
                conn.execute(sa.select(secrets.c.value).where(secrets.c.owner == owner)).scalars()
            )

    def reencrypt_secrets(self, convert: Callable[[str], str]) -> int:
        """Replace every stored secret by ``convert(value)``, all in one transaction (a key
        rotation either happens for every secret or for none)."""
        with self.db.write() as conn:
            rows = conn.execute(sa.select(secrets.c.id, secrets.c.value)).all()
            for row_id, value in rows:
                conn.execute(
                    secrets.update().where(secrets.c.id == row_id).values(value=convert(value))
                )
        return len(rows)
