"""AlgorithmService: register, look up, build and delete algorithms."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opendps.errors import Conflict, ImmutableProcess, InvalidSpec, NoSuchProcess, OpenDPSError
from opendps.models import Algorithm, Build, BuildStatus, Page, Phase, Reason
from opendps.registry.spec import AlgorithmSpec

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)


def split_process_id(process_id: str) -> tuple[str, str | None]:
    """``name:version`` or ``name`` (the latest version)."""
    name, sep, version = process_id.partition(":")
    return name, (version if sep and version else None)


class AlgorithmService:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.catalog = services.catalog

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
        """Save the algorithm and queue its build (built-ins are ready at once)."""
        if spec.queue and self.services.settings.queue(spec.queue) is None:
            spec = spec.model_copy(update={"queue": None})  # MAAP names queues we may not have
        try:
            existing = self.catalog.get_algorithm(spec.name, spec.version)
        except NoSuchProcess:
            existing = None
        if existing is not None and existing.builtin:
            raise ImmutableProcess(f"process {spec.process_id} is built in and cannot be replaced")
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
        )
        self.services.work_available.set()
        return algorithm

    def get(self, process_id: str) -> Algorithm:
        name, version = split_process_id(process_id)
        return self.catalog.get_algorithm(name, version)

    def spec_of(self, algorithm: Algorithm) -> AlgorithmSpec:
        return AlgorithmSpec.model_validate(algorithm.spec)

    def list(self, *, limit: int = 1000, cursor: str | None = None, **filters: Any) -> Page:
        return self.catalog.list_algorithms(limit=limit, cursor=cursor, **filters)

    def delete(self, process_id: str) -> Algorithm:
        algorithm = self.get(process_id)
        if algorithm.builtin:
            raise ImmutableProcess(f"process {algorithm.process_id} is built in")
        active = self.services.job_store.active_jobs_of_algorithm(algorithm.id)
        if active:
            raise Conflict(
                f"process {algorithm.process_id} has {active} queued or running job(s); "
                "cancel them first"
            )
        self.catalog.delete_algorithm(algorithm.id)
        return algorithm

    # -- builds ---------------------------------------------------------------------------

    def build_dir(self, algorithm: Algorithm, build: Build) -> Path:
        return (
            self.services.settings.builds_dir / algorithm.name / algorithm.version / str(build.id)
        )

    def build_log(self, process_id: str) -> str:
        algorithm = self.get(process_id)
        if algorithm.build is None or not algorithm.build.log_path:
            return ""
        path = Path(algorithm.build.log_path)
        # The build command could have replaced its log by a link to any file.
        if not path.is_file() or path.is_symlink():
            return ""
        return path.read_text(errors="replace")

    def run_build(self, build: Build) -> Build:
        """Run one queued build to the end (called by the build worker thread)."""
        from opendps.registry.build import build_algorithm

        build = self.catalog.start_build(build.id)
        algorithm = self.catalog.get_algorithm_by_id(build.algorithm_id)
        spec = self.spec_of(algorithm)
        target = self.build_dir(algorithm, build)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        log_path = target / "build.log"
        self.catalog.update_build(build.id, log_path=str(log_path))
        settings = self.services.settings
        queue = settings.queue(spec.queue or "") or settings.queue(settings.default_queue)
        try:
            from opendps.runner.build_box import boxed_build_runner

            result = build_algorithm(
                spec,
                target,
                log_path,
                timeout=settings.build_time_limit,
                run_command=boxed_build_runner(self.services, target, build.id, queue),
                base_env=self.services.sandbox.base_environment(),
            )
        except OpenDPSError as exc:
            log.warning(
                "build of %s failed: %s",
                algorithm.process_id,
                exc.message,
                extra={"action": "build_failed"},
            )
            finished = self.catalog.finish_build(build.id, BuildStatus.FAILED, message=exc.message)
            self._fail_waiting_jobs(algorithm, exc.message)
            return finished
        except Exception as exc:  # never leave a build "building"
            log.exception("build of %s crashed", algorithm.process_id)
            message = f"build crashed: {exc!r}"
            finished = self.catalog.finish_build(build.id, BuildStatus.FAILED, message=message)
            self._fail_waiting_jobs(algorithm, message)
            return finished
        self._remove_old_builds(algorithm, keep=build.id)
        finished = self.catalog.finish_build(
            build.id,
            BuildStatus.READY,
            commit=result.commit,
            algorithm_dir=str(result.algorithm_dir),
            env_dir=str(result.env_dir),
            message=None,
        )
        self.services.work_available.set()
        return finished

    def _fail_waiting_jobs(self, algorithm: Algorithm, message: str) -> None:
        # Only if this build is still the algorithm's current one.
        current = self.catalog.get_algorithm_by_id(algorithm.id)
        if current.build and current.build.status == BuildStatus.FAILED:
            self.services.job_store.fail_waiting_jobs(
                algorithm.id,
                Reason.BUILD_ERROR,
                Phase.BUILD,
                f"the build of {algorithm.process_id} failed: {message}",
            )

    def _remove_old_builds(self, algorithm: Algorithm, keep: int) -> None:
        """Earlier builds of this name+version are replaced; running jobs keep their copy
        only while they run, so remove only folders no current build points at."""
        parent = self.services.settings.builds_dir / algorithm.name / algorithm.version
        if not parent.exists() or self.services.job_store.active_jobs_of_algorithm(algorithm.id):
            return
        for child in parent.iterdir():
            if child.name != str(keep) and child.name.isdigit() and not self._building(child):
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
