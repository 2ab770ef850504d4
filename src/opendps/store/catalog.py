"""CatalogStore: algorithms, their builds, and the queue table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from opendps.errors import DuplicateProcess, Forbidden, InvalidTransition, NoSuchProcess
from opendps.models import Algorithm, Build, BuildStatus, Page
from opendps.settings import QueueConfig
from opendps.store.db import Database, utcnow
from opendps.store.jobstore import decode_cursor, encode_cursor
from opendps.store.tables import algorithms, builds, queues


def _build_from_row(row: Mapping[str, Any]) -> Build:
    return Build(
        id=row["id"],
        algorithm_id=row["algorithm_id"],
        status=BuildStatus(row["status"]),
        commit=row["commit"],
        log_path=row["log_path"],
        algorithm_dir=row["algorithm_dir"],
        env_dir=row["env_dir"],
        message=row["message"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        image=row.get("image"),
        container=row.get("container"),
    )


def _algorithm_from_row(row: Mapping[str, Any], build: Build | None) -> Algorithm:
    return Algorithm(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        owner=row["owner"],
        spec=dict(row["spec"]),
        package=row["package"],
        package_type=row["package_type"],
        builtin=bool(row["builtin"]),
        created=row["created"],
        updated=row["updated"],
        build=build,
    )


_BUILD_COLUMNS = [c.label(f"b_{c.name}") for c in builds.c]


def _joined() -> sa.Select:
    return sa.select(algorithms, *_BUILD_COLUMNS).select_from(
        algorithms.outerjoin(builds, builds.c.id == algorithms.c.build_id)
    )


def _from_joined(row: Mapping[str, Any]) -> Algorithm:
    build = None
    if row["b_id"] is not None:
        build = _build_from_row({c.name: row[f"b_{c.name}"] for c in builds.c})
    return _algorithm_from_row(row, build)


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- algorithms -----------------------------------------------------------------------

    def save_algorithm(
        self,
        *,
        name: str,
        version: str,
        owner: str,
        spec: dict[str, Any],
        package: str | None,
        package_type: str | None,
        builtin: bool = False,
        replace: bool = False,
        build_status: BuildStatus = BuildStatus.QUEUED,
        owner_must_be: str | None = None,
    ) -> Algorithm:
        """Insert (or, with ``replace``, overwrite) an algorithm and give it a new build.

        An existing algorithm keeps its owner. With ``owner_must_be``, an existing one owned
        by someone else is left as it is and :class:`Forbidden` is raised, checked in this
        transaction so that no concurrent registration slips between check and write.
        """
        now = utcnow()
        with self.db.write() as conn:
            self.db.lock(conn, "algorithm", f"{name}\0{version}")
            existing = (
                conn.execute(
                    sa.select(algorithms.c.id, algorithms.c.owner).where(
                        algorithms.c.name == name, algorithms.c.version == version
                    )
                )
                .mappings()
                .first()
            )
            values = {
                "spec": spec,
                "package": package,
                "package_type": package_type,
                "builtin": builtin,
                "updated": now,
            }
            if existing is not None:
                if owner_must_be is not None and existing["owner"] != owner_must_be:
                    raise Forbidden(
                        f"process {name}:{version} belongs to {existing['owner']}; only its "
                        "owner or an admin may replace it"
                    )
                if not replace:
                    raise DuplicateProcess(f"process {name}:{version} is already registered")
                conn.execute(
                    algorithms.update().where(algorithms.c.id == existing["id"]).values(**values)
                )
                algorithm_id = existing["id"]
            else:
                algorithm_id = conn.execute(
                    algorithms.insert().values(
                        name=name, version=version, created=now, owner=owner, **values
                    )
                ).inserted_primary_key[0]
            build_id = conn.execute(
                builds.insert().values(
                    algorithm_id=algorithm_id,
                    status=build_status.value,
                    created=now,
                    finished=now if build_status == BuildStatus.READY else None,
                )
            ).inserted_primary_key[0]
            conn.execute(
                algorithms.update().where(algorithms.c.id == algorithm_id).values(build_id=build_id)
            )
            row = conn.execute(_joined().where(algorithms.c.id == algorithm_id)).mappings().one()
        return _from_joined(row)

    def get_algorithm(self, name: str, version: str | None = None) -> Algorithm:
        """``version`` None: the most recently registered version of ``name``."""
        query = _joined().where(algorithms.c.name == name)
        if version is not None:
            query = query.where(algorithms.c.version == version)
        query = query.order_by(algorithms.c.updated.desc(), algorithms.c.id.desc()).limit(1)
        with self.db.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            what = f"{name}:{version}" if version else name
            raise NoSuchProcess(f"no process (algorithm) {what!r} is registered")
        return _from_joined(row)

    def get_algorithm_by_id(self, algorithm_id: int) -> Algorithm:
        if not _fits(algorithm_id):  # the drivers raise OverflowError beyond 64 bits
            raise NoSuchProcess(f"no process (algorithm) with id {algorithm_id}")
        with self.db.read() as conn:
            row = conn.execute(_joined().where(algorithms.c.id == algorithm_id)).mappings().first()
        if row is None:
            raise NoSuchProcess(f"no process (algorithm) with id {algorithm_id}")
        return _from_joined(row)

    def list_algorithms(
        self,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        name: str | None = None,
        owner: str | None = None,
        version: str | None = None,
    ) -> Page:
        query = _joined().order_by(algorithms.c.id).limit(limit + 1)
        where = []
        if name:
            where.append(algorithms.c.name == name)
        if version:
            where.append(algorithms.c.version == version)
        if owner:
            where.append(algorithms.c.owner == owner)
        query = query.where(*where)
        if cursor:
            query = query.where(algorithms.c.id > decode_cursor(cursor))
        with self.db.read() as conn:
            rows = conn.execute(query).mappings().all()
            total = conn.execute(
                sa.select(sa.func.count()).select_from(algorithms).where(*where)
            ).scalar_one()
        items = [_from_joined(r) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
        return Page(items=items, number_matched=total, next_cursor=next_cursor)

    def delete_algorithm(self, algorithm_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(algorithms.delete().where(algorithms.c.id == algorithm_id))
            conn.execute(builds.delete().where(builds.c.algorithm_id == algorithm_id))

    # -- builds ---------------------------------------------------------------------------

    def get_build(self, build_id: int) -> Build:
        if not _fits(build_id):
            raise NoSuchProcess(f"no build with id {build_id}")
        with self.db.read() as conn:
            row = conn.execute(sa.select(builds).where(builds.c.id == build_id)).mappings().first()
        if row is None:
            raise NoSuchProcess(f"no build with id {build_id}")
        return _build_from_row(row)

    def queued_builds(self) -> list[Build]:
        """Current builds waiting to run, oldest first."""
        with self.db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(builds)
                    .join(algorithms, algorithms.c.build_id == builds.c.id)
                    .where(builds.c.status == BuildStatus.QUEUED.value)
                    .order_by(builds.c.id)
                )
                .mappings()
                .all()
            )
        return [_build_from_row(r) for r in rows]

    def start_build(self, build_id: int) -> Build:
        """queued -> building, compare-and-set (two servers never build the same one)."""
        with self.db.write() as conn:
            changed = conn.execute(
                builds.update()
                .where(builds.c.id == build_id, builds.c.status == BuildStatus.QUEUED.value)
                .values(status=BuildStatus.BUILDING.value, started=utcnow())
            ).rowcount
            if changed != 1:
                raise InvalidTransition(f"build {build_id} is not queued")
            row = conn.execute(sa.select(builds).where(builds.c.id == build_id)).mappings().one()
        return _build_from_row(row)

    def finish_build(self, build_id: int, status: BuildStatus, **fields: Any) -> Build:
        with self.db.write() as conn:
            conn.execute(
                builds.update()
                .where(builds.c.id == build_id)
                .values(status=status.value, finished=utcnow(), **fields)
            )
            row = conn.execute(sa.select(builds).where(builds.c.id == build_id)).mappings().one()
        return _build_from_row(row)

    def update_build(self, build_id: int, **fields: Any) -> None:
        with self.db.write() as conn:
            conn.execute(builds.update().where(builds.c.id == build_id).values(**fields))

    def requeue_interrupted_builds(self) -> int:
        """Builds left ``building`` by a process that died go back to ``queued``."""
        with self.db.write() as conn:
            return conn.execute(
                builds.update()
                .where(builds.c.status == BuildStatus.BUILDING.value)
                .values(status=BuildStatus.QUEUED.value, started=None)
            ).rowcount

    # -- queues ---------------------------------------------------------------------------

    def sync_queues(self, configured: Iterable[QueueConfig]) -> None:
        """Make the queue table match the configuration."""
        configured = list(configured)
        with self.db.write() as conn:
            # Servers and workers starting at once would otherwise both insert each row.
            self.db.lock(conn, "queues", "sync")
            conn.execute(queues.delete())
            conn.execute(
                queues.insert(),
                [
                    {
                        "name": q.name,
                        "memory": q.memory,
                        "cpus": q.cpus,
                        "time_limit": q.time_limit,
                        "slots": q.slots,
                        "guest": q.guest,
                        "is_default": q.default,
                    }
                    for q in configured
                ],
            )

    def list_queues(self) -> list[QueueConfig]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(queues).order_by(queues.c.name)).mappings().all()
        return [
            QueueConfig(
                name=r["name"],
                memory=r["memory"],
                cpus=r["cpus"],
                time_limit=r["time_limit"],
                slots=r["slots"],
                guest=r["guest"],
                default=r["is_default"],
            )
            for r in rows
        ]


def _fits(number: int) -> bool:
    """Whether an id from a URL can be a row id (a 64-bit integer)."""
    return -(2**63) <= number < 2**63
