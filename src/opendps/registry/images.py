"""Container images for algorithms (DESIGN §15), built with podman.

A registration with ``docker_container_url`` gets its own image, as on MAAP: FROM that
base, with the cloned repository copied in at the build's own path (so ``run_command``,
``DPS_WORK_DIR`` and log messages name the same places inside and outside) and the build
command run inside (``RUN``). The image is tagged
``localhost/opendps/<name>:<version>-<commit>``; podman's build output is the build log.

When the image cannot be used — no podman, ``container_engine: none``, or a base image that
is neither here nor pullable within ``container_pull_timeout`` — ``container_fallback``
decides: ``host`` builds on the host as if there were no ``docker_container_url`` and
records why (``host (podman not installed)``); ``refuse`` fails the build naming the image.

Two podman settings this code always passes (see shared/reference/engines.md §3.2): the OCI
runtime (``runc`` when installed: crun fails on cgroup v1/v2 hybrid hosts) and explicit
ulimits (podman asks for more open files than an unprivileged sandbox may have).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from opendps.errors import BuildError

if TYPE_CHECKING:
    from opendps.registry.spec import AlgorithmSpec
    from opendps.settings import Settings
    from opendps.storage.base import Storage

ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
QUERY_TIMEOUT = 30.0  # podman info / image exists / inspect: local questions
BUILD_TIMEOUT = 3600.0  # an image build without an overall deadline
KILL_GRACE = 5.0
# Runs a script with bash when the image has it, else with sh (busybox, alpine bases).
SCRIPT_SHELL = (
    'if command -v bash >/dev/null 2>&1; then exec bash "$0" "$@"; else exec sh "$0" "$@"; fi'
)
LABEL = "org.opendps"
# In scale-out mode the builder saves each image here in the object storage, and a worker
# that lacks it loads it from there (podman save / load: a docker-archive keeps the tag).
IMAGES_PREFIX = "_opendps/images"


@dataclass(frozen=True)
class Podman:
    """How podman is called on this host."""

    binary: str
    runtime: str | None

    def command(self, *args: str) -> list[str]:
        runtime = ["--runtime", self.runtime] if self.runtime else []
        return [self.binary, *runtime, *args]


@dataclass(frozen=True)
class ContainerPlan:
    """What a build does about ``docker_container_url``."""

    base: str | None  # the base image; None: the registration names none
    podman: Podman | None  # set: build the image; None: build on the host
    description: str | None  # "podman <image>" / "host (<why>)"; None without a base

    def builder(self, scope: str, storage: Storage | None = None) -> ImageBuilder | None:
        """The image build, or None (host). ``scope`` labels the image with the deployment
        that owns it (its data dir); ``storage``: save the image there too."""
        if self.podman is None or self.base is None:
            return None
        return ImageBuilder(self.podman, self.base, scope, storage)


def find_podman(settings: Settings) -> tuple[Podman | None, str]:
    """(podman, "") when containers can run here, else (None, why not)."""
    if settings.container_engine == "none":
        return None, "container_engine is none"
    binary = shutil.which("podman")
    if binary is None:
        return None, "podman not installed"
    runtime = settings.container_runtime or ("runc" if shutil.which("runc") else None)
    problem = _podman_problem(binary, runtime)
    if problem:
        return None, f"podman does not work here: {problem}"
    return Podman(binary, runtime), ""


@functools.lru_cache(maxsize=8)
def _podman_problem(binary: str, runtime: str | None) -> str:
    """Why ``podman info`` fails ("" when it works); asked once per process."""
    argv = Podman(binary, runtime).command("info", "--format", "{{.Host.OCIRuntime.Name}}")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["podman info failed"])[-1]
    return ""


def plan_container(spec: AlgorithmSpec, settings: Settings, log_path: Path) -> ContainerPlan:
    """Decide where the algorithm builds and runs; the decision goes into the build log.

    Raises ``BuildError`` naming the image when the image cannot be used and
    ``container_fallback`` is ``refuse``.
    """
    base = (spec.docker_container_url or "").strip() or None
    if base is None or not spec.repository_url:
        return ContainerPlan(None, None, None)
    podman, why = find_podman(settings)
    with log_path.open("ab") as log:
        if podman is not None:
            why = ensure_image(podman, base, settings.container_pull_timeout, log)
            if not why:
                return ContainerPlan(base, podman, None)  # described once the tag is known
        if settings.container_fallback == "refuse":
            note(log, f"container_fallback is refuse: not building on the host ({why})")
            raise BuildError(f"cannot use the container image {base}: {why}")
        note(log, f"building and running on the host instead of in {base}: {why}")
    return ContainerPlan(base, None, f"host ({why})")


def ensure_image(
    podman: Podman, image: str, pull_timeout: float, log: BinaryIO, what: str = "base image"
) -> str:
    """Empty when ``image`` is here (pulled now if need be), else why it cannot be had."""
    if image_exists(podman, image):
        note(log, f"{what} {image} is present")
        return ""
    note(log, f"pulling the {what} {image} (at most {pull_timeout:.0f} s)")
    offset = _offset(log)
    code = run_logged(podman.command("pull", image), log, pull_timeout, "podman pull")
    if code is None:
        return f"pulling the {what} {image} took more than {pull_timeout:.0f} s"
    if code != 0:
        return f"the {what} {image} could not be found or pulled: {_tail(log, offset)}"
    return ""


def image_exists(podman: Podman, image: str) -> bool:
    try:
        done = subprocess.run(
            podman.command("image", "exists", image), capture_output=True, timeout=QUERY_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def image_tag(spec: AlgorithmSpec, commit: str) -> str:
    """``localhost/opendps/<name>:<version>-<commit>`` in the characters tags allow."""
    name = re.sub(r"[^a-z0-9._-]+", "-", spec.name.lower()).strip("._-") or "algorithm"
    version = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.version)
    return f"localhost/opendps/{name}:{version[:100]}-{commit[:12]}"


@dataclass(frozen=True)
class ImageBuilder:
    """Builds one algorithm's image FROM ``base`` (called by the build after the clone)."""

    podman: Podman
    base: str
    scope: str  # the owning deployment (its data dir): old images are removed only there
    storage: Storage | None = None  # set in scale-out mode: workers load the image from it

    def build(
        self,
        spec: AlgorithmSpec,
        commit: str,
        algorithm_dir: Path,
        build_argv: list[str] | None,
        log: BinaryIO,
        deadline: float | None,
    ) -> str:
        """Build the image; answers its tag. ``build_argv`` runs inside (None: no RUN)."""
        tag = image_tag(spec, commit)
        context = algorithm_dir
        containerfile = algorithm_dir.parent / "Containerfile"
        containerfile.write_text(
            containerfile_text(self.base, spec, commit, algorithm_dir, build_argv, self.scope)
        )
        note(log, f"building the image {tag} FROM {self.base}")
        limit = BUILD_TIMEOUT if deadline is None else max(deadline - time.monotonic(), 1.0)
        argv = self.podman.command(
            "build",
            "--pull=never",  # the base was found or pulled (with a time limit) already
            "--network",
            "host",  # as host builds: pip/conda may download
            *ULIMITS,
            "--file",
            str(containerfile),
            "--tag",
            tag,
            str(context),
        )
        offset = _offset(log)
        code = run_logged(argv, log, limit, "podman build")
        if code is None:
            raise BuildError(f"the image build of {tag} timed out after {limit:.0f} s")
        if code != 0:
            raise BuildError(f"the image build FROM {self.base} failed: {_tail(log, offset)}")
        note(log, f"image {tag} built")
        if self.storage is not None:
            save_image(self.podman, tag, self.storage, algorithm_dir.parent, log)
        return tag


def containerfile_text(
    base: str,
    spec: AlgorithmSpec,
    commit: str,
    algorithm_dir: Path,
    build_argv: list[str] | None,
    scope: str = "",
) -> str:
    labels = {
        f"{LABEL}.algorithm": spec.name,
        f"{LABEL}.version": spec.version,
        f"{LABEL}.commit": commit,
        f"{LABEL}.scope": scope,
    }
    lines = [
        f"FROM {base}",
        "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()),
        f"COPY . {json.dumps(str(algorithm_dir))}",
        f"WORKDIR {json.dumps(str(algorithm_dir))}",
    ]
    if build_argv:
        lines.append("RUN " + json.dumps(in_image_argv(build_argv)))
    return "\n".join(lines) + "\n"


def in_image_argv(argv: list[str]) -> list[str]:
    """A host argv for inside an image: ``bash script`` becomes bash-or-sh (the base may
    have no bash); ``bash -c command`` becomes ``/bin/sh -c command``."""
    if argv[:2] == ["bash", "-c"]:
        return ["/bin/sh", "-c", *argv[2:]]
    if argv and argv[0] == "bash":
        return ["/bin/sh", "-c", SCRIPT_SHELL, *argv[1:]]
    return list(argv)


def remove_images(
    podman: Podman, scope: str, name: str, version: str, keep: str | None = None
) -> None:
    """Remove the images this deployment (``scope``) built for ``name:version`` except
    ``keep`` (best effort: an image a running container uses stays)."""
    listed = subprocess.run(
        podman.command(
            "images",
            "--filter",
            f"label={LABEL}.algorithm={name}",
            "--filter",
            f"label={LABEL}.version={version}",
            "--filter",
            f"label={LABEL}.scope={scope}",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ),
        capture_output=True,
        text=True,
        timeout=QUERY_TIMEOUT,
    )
    for image in set(listed.stdout.split()) - {keep}:
        subprocess.run(podman.command("rmi", image), capture_output=True, timeout=QUERY_TIMEOUT)


def archive_name(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", image) + ".tar"


def save_image(podman: Podman, image: str, storage: Storage, scratch: Path, log: BinaryIO) -> None:
    """``podman save`` the image into the object storage, for workers on other machines."""
    folder = scratch / "image-archive"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        archive = folder / archive_name(image)
        argv = podman.command("save", "--quiet", "--output", str(archive), image)
        if run_logged(argv, log, BUILD_TIMEOUT, "podman save") != 0:
            raise BuildError(f"could not save the image {image} for the workers")
        storage.put_dir(folder, IMAGES_PREFIX)
        note(log, f"image saved to the storage as {IMAGES_PREFIX}/{archive.name}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_image(podman: Podman, image: str, storage: Storage, scratch: Path) -> bool:
    """Load ``image`` from the object storage (saved there by its build); True if it is
    here afterwards."""
    key = f"{IMAGES_PREFIX}/{archive_name(image)}"
    if not storage.exists(key):
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    archive = scratch / archive_name(image)
    try:
        with storage.open(key) as source, archive.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        with (scratch / "image-load.log").open("ab") as log:
            run_logged(
                podman.command("load", "--quiet", "--input", str(archive)),
                log,
                BUILD_TIMEOUT,
                "podman load",
            )
    finally:
        archive.unlink(missing_ok=True)
    return image_exists(podman, image)


# -- running podman with a time limit and the output in a log --------------------------------


def run_logged(argv: list[str], log: BinaryIO, limit: float, what: str) -> int | None:
    """Run ``argv`` with its output appended to ``log``; answers its exit code, or None
    when it ran out of time (then its process group was stopped)."""
    note(log, "$ " + " ".join(shlex.quote(a) for a in argv))
    log.flush()
    try:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise BuildError(f"could not start {what}: {exc}")
    try:
        code = process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        _stop(process)
        note(log, f"{what} stopped after {limit:.0f} s")
        return None
    except BaseException:
        _stop(process)
        raise
    note(log, f"exit code {code}")
    return code


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def note(log: BinaryIO, message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log.write(f"[opendps {stamp}] {message}\n".encode())
    log.flush()


def _offset(log: BinaryIO) -> int:
    log.flush()
    return os.fstat(log.fileno()).st_size


def _tail(log: BinaryIO, offset: int, lines: int = 8) -> str:
    log.flush()
    with open(log.name, "rb") as file:
        file.seek(offset)
        text = file.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line and not line.startswith("[opendps ")]
    return " | ".join(kept[-lines:]) or "(no output)"
