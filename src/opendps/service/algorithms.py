"""AlgorithmService: register, look up, build and delete algorithms."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from opendps.errors import (
    Conflict,
    InvalidInput,
    InvalidSpec,
    NoSuchProcess,
    OpenDPSError,
)
from opendps.models import Algorithm, Build, BuildStatus, Page, Phase, Reason
from opendps.net.urls import redact, scheme_of
from opendps.registry.spec import AlgorithmSpec
from opendps.service.policy import Policy
from opendps.service.queries import ProcessQuery, check_limit
from opendps.settings import Settings
from opendps.store import CatalogStore, JobStore

#: Validated specs kept (per registration); past this many the cache starts again.
SPEC_CACHE_SIZE = 512

if TYPE_CHECKING:
    from opendps.runner.sandbox import Sandbox
    from opendps.storage.base import Storage

log = logging.getLogger(__name__)


def split_process_id(process_id: str) -> tuple[str, str | None]:
    """``name:version`` or ``name`` (the latest version)."""
    name, sep, version = process_id.partition(":")
    return name, (version if sep and version else None)


class AlgorithmService:
    """The shared catalogue: anyone signed in reads and runs; owner or admin changes."""

    def __init__(
        self,
        settings: Settings,
        catalog: CatalogStore,
        job_store: JobStore,
        policy: Policy,
        work_available: threading.Event,
        sandbox: Callable[[], Sandbox],
        storage: Callable[[], Storage],
    ) -> None:
        self.settings = settings
        self._sandbox = sandbox  # decided on first use: how builds are boxed
        self._storage = storage  # opened on first use (scale-out: images saved there)
        self.catalog = catalog
        self.job_store = job_store
        self.policy = policy
        self.work_available = work_available
        self._specs: dict[tuple[int, datetime], AlgorithmSpec] = {}

    # -- registering ----------------------------------------------------------------------

    def register(
        self,
        spec: AlgorithmSpec,
        *,
        owner: str,
        package: str | None = None,
        package_type: str | None = None,
        replace: bool = False,
    ) -> Algorithm:
        """Save the algorithm and queue its build (built-ins are ready at once).

        ``owner`` is the registering user. Registering a name+version that exists is
        refused (403) unless they own it or are an admin, whatever ``replace`` says; the
        existing algorithm, its owner and its build are then left as they were.
        """
        self.check_repository(spec)
        spec = self.stored_spec(spec)
        try:
            existing = self.catalog.get_algorithm(spec.name, spec.version)
        except NoSuchProcess:
            existing = None
        if existing is not None:
            self.policy.check_may_change(owner, existing)
        needs_build = spec.repository_url is not None
        algorithm = self.catalog.save_algorithm(
            name=spec.name,
            version=spec.version,
            owner=owner,
            spec=spec.model_dump(mode="json"),
            package=package,
            package_type=package_type,
            builtin=spec.source_format == "builtin",
            replace=replace,
            build_status=BuildStatus.QUEUED if needs_build else BuildStatus.READY,
            owner_must_be=self.policy.replace_guard(owner),
        )
        self.work_available.set()
        return algorithm

    def editable(self, process_id: str, user: str) -> Algorithm:
        """The algorithm ``user`` is about to replace or delete: 404 when missing, 403 when
        built in or someone else's (checked before a body is parsed or fetched)."""
        algorithm = self.get(process_id)
        self.policy.check_may_change(user, algorithm)
        return algorithm

    def replace(
        self,
        current: Algorithm,
        spec: AlgorithmSpec,
        *,
        user: str,
        package: str | None = None,
        package_type: str | None = None,
    ) -> Algorithm:
        """``PUT`` of ``current``: the body must describe the same name and version."""
        if (spec.name, spec.version) != (current.name, current.version):
            raise InvalidInput(
                f"the body describes {spec.process_id}, not {current.process_id}; "
                "name and version must match"
            )
        return self.register(
            spec, owner=user, package=package, package_type=package_type, replace=True
        )

    def check_repository(self, spec: AlgorithmSpec) -> None:
        """A local path or file:// repository is cloned by the server, which can read what
        users cannot: with auth on, only where the operator allows it (§11)."""
        url = spec.repository_url
        if not url or self.settings.local_repositories_allowed:
            return
        scheme = scheme_of(url)
        remote = scheme in ("http", "https", "ssh", "git") or (
            not scheme and re.match(r"^[\w.-]+@[\w.-]+:", url) is not None  # git@host:org/r
        )
        if not remote:
            raise InvalidSpec(
                f"repository_url: {redact(url)!r} is a local repository; this server clones "
                "only remote ones (https://, ssh://, git@host:…)"
            )

    def stored_spec(self, spec: AlgorithmSpec) -> AlgorithmSpec:
        """The spec as ``register`` stores it: a queue this site does not have is dropped
        (MAAP registrations name queues we may not have), so jobs use the default one."""
        if spec.queue and self.settings.queue(spec.queue) is None:
            return spec.model_copy(update={"queue": None})
        return spec

    def get(self, process_id: str) -> Algorithm:
        name, version = split_process_id(process_id)
        return self.catalog.get_algorithm(name, version)

    def get_by_id(self, algorithm_id: int) -> Algorithm:
        """By MAAP's numeric ``processID``."""
        return self.catalog.get_algorithm_by_id(algorithm_id)

    def get_build(self, build_id: int) -> Build:
        """A build (MAAP's deployment job) of any algorithm: the catalogue is shared."""
        return self.catalog.get_build(build_id)

    def spec_of(self, algorithm: Algorithm) -> AlgorithmSpec:
        """The algorithm's spec, validated once per registration (not once per job): a
        registration's spec never changes; replacing it gives a new ``updated``."""
        key = (algorithm.id, algorithm.updated)
        spec = self._specs.get(key)
        if spec is None:
            spec = AlgorithmSpec.model_validate(algorithm.spec)
            if len(self._specs) >= SPEC_CACHE_SIZE:
                self._specs.clear()
            self._specs[key] = spec
        return spec

    def list_processes(self, query: ProcessQuery, user: str) -> Page:
        """The catalogue is shared: every user sees every algorithm (``user`` is asked for
        so that every listing has one signature, and a scope could be added here)."""
        del user
        return self.catalog.list_algorithms(
            limit=check_limit(query.limit),
            cursor=query.cursor,
            name=query.name,
            version=query.version,
            owner=query.owner,
        )

    def delete(self, process_id: str, user: str) -> Algorithm:
        algorithm = self.editable(process_id, user)
        active = self.job_store.active_jobs_of_algorithm(algorithm.id)
        if active:
            raise Conflict(
                f"process {algorithm.process_id} has {active} queued or running job(s); "
                "cancel them first"
            )
        self.catalog.delete_algorithm(algorithm.id)
        if algorithm.build is not None and algorithm.build.image:
            self._remove_images(algorithm, keep=None)
        return algorithm

    def _remove_images(self, algorithm: Algorithm, keep: str | None) -> None:
        """Container images of earlier builds (or all, on delete) go with their builds."""
        from opendps.registry.images import find_podman, remove_images

        podman, _ = find_podman(self.settings)
        if podman is not None:
            try:
                scope = str(self.settings.data_dir)
                remove_images(podman, scope, algorithm.name, algorithm.version, keep)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("could not remove old images of %s: %s", algorithm.process_id, exc)

    # -- builds ---------------------------------------------------------------------------

    def build_dir(self, algorithm: Algorithm, build: Build) -> Path:
        return self.settings.builds_dir / algorithm.name / algorithm.version / str(build.id)

    def build_log(self, process_id: str) -> str:
        algorithm = self.get(process_id)
        if algorithm.build is None or not algorithm.build.log_path:
            return ""
        path = Path(algorithm.build.log_path)
        # The build command could have replaced its log by a link to any file.
        if not path.is_file() or path.is_symlink():
            return ""
        return redact(path.read_text(errors="replace")) or ""  # git may quote the URL

    def run_build(self, build: Build) -> Build:
        """Run one queued build to the end (called by the build worker thread)."""
        from opendps.registry.build import build_algorithm
        from opendps.registry.images import plan_container

        build = self.catalog.start_build(build.id)
        algorithm = self.catalog.get_algorithm_by_id(build.algorithm_id)
        spec = self.spec_of(algorithm)
        target = self.build_dir(algorithm, build)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        log_path = target / "build.log"
        self.catalog.update_build(build.id, log_path=str(log_path))
        settings = self.settings
        sandbox = self._sandbox()
        queue = settings.queue(spec.queue or "") or settings.queue(settings.default_queue)
        container = None
        try:
            from opendps.runner.build_box import boxed_build_runner

            plan = plan_container(spec, settings, log_path)
            container = plan.description
            # Scale-out workers on other machines load the image from the object storage.
            scaled_out = settings.executor == "celery"
            builder = plan.builder(str(settings.data_dir), self._storage() if scaled_out else None)
            result = build_algorithm(
                spec,
                target,
                log_path,
                timeout=settings.build_time_limit,
                run_command=boxed_build_runner(
                    sandbox, settings.kill_grace, target, build.id, queue
                ),
                base_env=sandbox.base_environment(),
                image=builder,
            )
        except OpenDPSError as exc:
            log.warning(
                "build of %s failed: %s",
                algorithm.process_id,
                exc.message,
                extra={"action": "build_failed"},
            )
            message = redact(exc.message) or ""  # git's own errors may quote the URL
            finished = self.catalog.finish_build(
                build.id, BuildStatus.FAILED, message=message, container=container
            )
            self._fail_waiting_jobs(algorithm, message)
            return finished
        except Exception as exc:  # never leave a build "building"
            log.exception("build of %s crashed", algorithm.process_id)
            message = f"build crashed: {exc!r}"
            finished = self.catalog.finish_build(build.id, BuildStatus.FAILED, message=message)
            self._fail_waiting_jobs(algorithm, message)
            return finished
        self._remove_old_builds(algorithm, keep=build.id)
        if result.image and not self.job_store.active_jobs_of_algorithm(algorithm.id):
            self._remove_images(algorithm, keep=result.image)
        finished = self.catalog.finish_build(
            build.id,
            BuildStatus.READY,
            commit=result.commit,
            algorithm_dir=str(result.algorithm_dir),
            env_dir=str(result.env_dir),
            message=None,
            image=result.image,
            container=f"podman {result.image}" if result.image else container,
        )
        self.work_available.set()
        return finished

    def _fail_waiting_jobs(self, algorithm: Algorithm, message: str) -> None:
        # Only if this build is still the algorithm's current one.
        current = self.catalog.get_algorithm_by_id(algorithm.id)
        if current.build and current.build.status == BuildStatus.FAILED:
            self.job_store.fail_waiting_jobs(
                algorithm.id,
                Reason.BUILD_ERROR,
                Phase.BUILD,
                f"the build of {algorithm.process_id} failed: {message}",
            )

    def _remove_old_builds(self, algorithm: Algorithm, keep: int) -> None:
        """Earlier builds of this name+version are replaced; running jobs keep their copy
        only while they run, so remove only folders no current build points at."""
        parent = self.settings.builds_dir / algorithm.name / algorithm.version
        if not parent.exists() or self.job_store.active_jobs_of_algorithm(algorithm.id):
            return
        # Builds run in several slots: a superseded build that ends after the current one
        # must not remove the current one's folder (nor any newer one).
        current = self.catalog.get_algorithm_by_id(algorithm.id).build
        newest = max(keep, current.id if current else keep)
        for child in parent.iterdir():
            if not child.name.isdigit() or int(child.name) >= newest or int(child.name) == keep:
                continue
            if not self._building(child):
                shutil.rmtree(child, ignore_errors=True)

    def _building(self, folder: Path) -> bool:
        """Another build slot may still be building a superseded build in ``folder``."""
        try:
            return self.catalog.get_build(int(folder.name)).status == BuildStatus.BUILDING
        except Exception:  # no such build (a leftover folder): not building
            return False

    def ensure_builtin(self, spec: AlgorithmSpec) -> Algorithm:
        """Register a built-in process, replacing an older definition of it."""
        if spec.source_format != "builtin":
            raise InvalidSpec("only built-in specs can be ensured")
        return self.catalog.save_algorithm(
            name=spec.name,
            version=spec.version,
            owner="system",
            spec=spec.model_dump(mode="json"),
            package=None,
            package_type=None,
            builtin=True,
            replace=True,
            build_status=BuildStatus.READY,
        )
