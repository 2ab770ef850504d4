"""The build a job runs with, on the machine that runs it (DESIGN §13 "no shared filesystem").

The registered build (made by the API server's build loop, or a worker sharing its data dir)
records the commit it checked out. A worker with its own data dir that has never seen that
build makes its own copy by **rebuilding at the recorded commit** into its builds folder:
same commit, same build command, same interpreter. We rebuild rather than fetch an archive
from object storage because a build is a virtualenv, and virtualenvs hard-code absolute
paths (their ``bin/`` scripts, ``pyvenv.cfg``) and the interpreter of the machine that made
them: an archive only works where the data dir path and the Python are the same, which
scale-out machines do not promise. The cost is one build per worker and version, paid once
(the copy is kept beside the others and found again by the next job).
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opendps.errors import BuildError
from opendps.models import Algorithm, Build

if TYPE_CHECKING:
    from opendps.registry.spec import AlgorithmSpec
    from opendps.service.context import Services

MARKER = ".opendps-build.json"  # written last: a folder without it is an unfinished build


@dataclass(frozen=True)
class LocalBuild:
    algorithm_dir: str | None
    env_dir: str | None
    source: str  # "builder": made in this data dir; "rebuilt": just now; "cached": earlier


def ensure_local_build(
    services: Services, algorithm: Algorithm, spec: AlgorithmSpec, build: Build
) -> LocalBuild:
    """This data dir's copy of ``build``: the registered one when it is ours, else a rebuild
    at ``build.commit`` (made once, under a lock, shared by the worker's later jobs)."""
    builds_dir = services.settings.builds_dir.resolve()
    if not spec.repository_url or not build.algorithm_dir:
        return LocalBuild(build.algorithm_dir, build.env_dir, "builder")  # built-in, CWL
    recorded = Path(build.algorithm_dir)
    if recorded.resolve().is_relative_to(builds_dir) and recorded.is_dir():
        return LocalBuild(build.algorithm_dir, build.env_dir, "builder")
    if not build.commit:
        raise BuildError(f"the build of {algorithm.process_id} recorded no commit to rebuild")
    target = builds_dir / algorithm.name / algorithm.version / f"{build.id}-{build.commit[:12]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the worker's other jobs of this version wait
        found = _read_marker(target)
        if found is not None:
            return LocalBuild(found["algorithm_dir"], found["env_dir"], "cached")
        return _rebuild(spec, build, target)


def _rebuild(spec: AlgorithmSpec, build: Build, target: Path) -> LocalBuild:
    import shutil

    from opendps.registry.build import build_algorithm

    assert build.commit is not None
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    pinned = spec.model_copy(update={"version": build.commit})
    result = build_algorithm(pinned, target, target / "build.log")
    if result.commit != build.commit:
        raise BuildError(
            f"the rebuild checked out {result.commit}, not the recorded commit {build.commit}"
        )
    record = {
        "commit": result.commit,
        "algorithm_dir": str(result.algorithm_dir),
        "env_dir": str(result.env_dir),
    }
    (target / MARKER).write_text(json.dumps(record))
    return LocalBuild(record["algorithm_dir"], record["env_dir"], "rebuilt")


def _read_marker(target: Path) -> dict[str, str] | None:
    try:
        return json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return None
