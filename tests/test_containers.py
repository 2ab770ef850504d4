"""Algorithms with ``docker_container_url`` (DESIGN §15), with the real podman and a base
image imported locally from a busybox rootfs: the image build FROM the base, a job that
proves it ran inside, the memory limit, cancel, and both fallbacks.

Each test runs the real code path through run-local (registration, build, ``run_job``).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from opendps.api.documents import build_info
from opendps.executors.local_run import LocalBuildFailed, local_settings, run_local
from opendps.models import JobStatus, Reason
from opendps.registry.images import Podman
from opendps.registry.scaffold import init_algorithm
from opendps.runner.container import container_exists, container_name
from opendps.service.context import Services
from tests.support.podman import MARKER, remove_images

pytestmark = pytest.mark.slow


@pytest.fixture
def prefix(podman: Podman) -> Iterator[str]:
    """A unique algorithm-name prefix; the images built under it are removed afterwards."""
    name = f"ctr{uuid.uuid4().hex[:8]}"
    yield name
    remove_images(podman, name)


def make_algorithm(folder: Path, base: str, run_body: str, build_body: str = "") -> Path:
    init_algorithm(folder)
    spec = folder / "algorithm.yml"
    spec.write_text(
        spec.read_text().replace('docker_container_url: ""', f"docker_container_url: {base}")
    )
    (folder / "run.sh").write_text(f'#!/bin/sh\nset -eu\nout="$DPS_OUTPUT_DIR"\n{run_body}\n')
    (folder / "build.sh").write_text(f"#!/bin/sh\nset -eu\n{build_body}\n")
    subprocess.run(["git", "commit", "-qam", "container test"], cwd=folder, check=True)
    return spec


def config(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "config.yaml"
    values = {
        "kill_grace": 1,
        "queues": [{"name": "q", "memory": "256MB", "cpus": 1, "slots": 1, "default": True}],
        **settings,
    }
    path.write_text(yaml.safe_dump(values))
    return path


def test_the_image_is_built_from_the_base_and_the_job_runs_inside(
    base_image: str, prefix: str, tmp_path: Path
) -> None:
    spec = make_algorithm(
        tmp_path / f"{prefix}-in",
        base_image,
        run_body='cat /marker > "$out/marker.txt"; cat /built.txt > "$out/built.txt"; '
        'echo "work=$DPS_WORK_DIR pwd=$(pwd)"; echo "path=$PATH"; sh -l -c \'echo "login=$PATH"\'',
        build_body='echo "built inside" > /built.txt',
    )
    result = run_local(
        spec,
        {"input_file": str(tmp_path / f"{prefix}-in" / "data" / "input" / "sample.txt")},
        data_dir=tmp_path / "rl",
        output_dir=tmp_path / "out",
        config=config(tmp_path),
    )
    assert result.ok, (result.job.message, result.logs)
    assert (tmp_path / "out" / "marker.txt").read_text() == MARKER  # only the image has it
    assert (tmp_path / "out" / "built.txt").read_text() == "built inside\n"  # RUN build.sh
    commit = result.build.commit or ""
    image = f"localhost/opendps/{prefix}-in:main-{commit[:12]}"
    assert result.build.image == image
    assert result.metrics["container"] == f"podman {image}"
    assert result.metrics["memory_enforcement"] == "container"
    work_dir = result.logs["stdout"].split("work=")[1].split()[0]
    assert f"pwd={work_dir}" in result.logs["stdout"]  # the work dir at its own path
    path = result.logs["stdout"].split("path=")[1].split()[0]
    assert f"login={path}\n" in result.logs["stdout"]  # a login shell keeps the image's PATH
    build_log = Path(result.build.log_path or "").read_text()
    assert f"FROM {base_image}" in build_log and "COMMIT" in build_log  # podman's own output
    services = Services(local_settings(tmp_path / "rl", config=config(tmp_path)))
    try:
        described = build_info(services.algorithms.get(f"{prefix}-in:main"), "http://x")
        assert described is not None and described["container"] == f"podman {image}"
    finally:
        services.close()


def test_over_the_memory_limit_is_oom(base_image: str, prefix: str, tmp_path: Path) -> None:
    spec = make_algorithm(
        tmp_path / f"{prefix}-oom",
        base_image,
        run_body='x=$(head -c 400000000 /dev/zero | tr "\\0" a); echo "${#x}"',
    )
    queues = [{"name": "small", "memory": "64MB", "slots": 1, "default": True}]
    result = run_local(
        spec,
        {"input_file": str(tmp_path / f"{prefix}-oom" / "data" / "input" / "sample.txt")},
        data_dir=tmp_path / "rl",
        output_dir=tmp_path / "out",
        config=config(tmp_path, queues=queues),
    )
    assert result.job.status == JobStatus.FAILED
    assert result.job.reason == Reason.OOM, (result.job.message, result.logs)
    assert "memory limit" in (result.job.message or "")


def test_cancel_stops_and_removes_the_container(
    base_image: str, prefix: str, podman: Podman, tmp_path: Path
) -> None:
    spec = make_algorithm(
        tmp_path / f"{prefix}-cancel", base_image, run_body="echo started; sleep 120"
    )
    settings_file = config(tmp_path)
    started: list[str] = []
    results: list[object] = []

    def progress(message: str) -> None:
        if message.startswith("running job "):
            started.append(message.split()[2])

    def run() -> None:
        results.append(
            run_local(
                spec,
                {
                    "input_file": str(
                        tmp_path / f"{prefix}-cancel" / "data" / "input" / "sample.txt"
                    )
                },
                data_dir=tmp_path / "rl",
                output_dir=tmp_path / "out",
                config=settings_file,
                on_progress=progress,
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not (started and container_exists(podman, container_name(started[0]))):
        assert time.monotonic() < deadline and thread.is_alive(), "the container never started"
        time.sleep(0.2)
    services = Services(local_settings(tmp_path / "rl", config=settings_file))
    try:
        services.job_store.request_cancel(started[0])
    finally:
        services.close()
    thread.join(60)
    assert not thread.is_alive()
    result = results[0]
    assert result.job.status == JobStatus.DISMISSED  # type: ignore[attr-defined]
    assert not container_exists(podman, container_name(started[0]))


def test_a_missing_base_with_refuse_fails_the_build_naming_it(
    podman: Podman, prefix: str, tmp_path: Path
) -> None:
    missing = f"localhost/opendps-test/{prefix}-missing:1"
    spec = make_algorithm(tmp_path / f"{prefix}-refuse", missing, run_body="echo never")
    with pytest.raises(LocalBuildFailed) as failure:
        run_local(
            spec,
            {"input_file": str(tmp_path / f"{prefix}-refuse" / "data" / "input" / "sample.txt")},
            data_dir=tmp_path / "rl",
            config=config(tmp_path, container_fallback="refuse", container_pull_timeout=60),
        )
    assert f"cannot use the container image {missing}" in failure.value.message
    assert "could not be found or pulled" in failure.value.message


@pytest.mark.parametrize("engine", ["podman", "none"])
def test_host_fallback_runs_on_the_host_and_says_so(
    podman: Podman, prefix: str, tmp_path: Path, engine: str
) -> None:
    missing = f"localhost/opendps-test/{prefix}-absent:1"
    spec = make_algorithm(
        tmp_path / f"{prefix}-host",
        missing,
        run_body='[ -e /marker ] || echo "on the host" > "$out/where.txt"',
    )
    result = run_local(
        spec,
        {"input_file": str(tmp_path / f"{prefix}-host" / "data" / "input" / "sample.txt")},
        data_dir=tmp_path / "rl",
        output_dir=tmp_path / "out",
        config=config(tmp_path, container_engine=engine, container_pull_timeout=60),
    )
    assert result.ok, (result.job.message, result.logs)
    assert (tmp_path / "out" / "where.txt").read_text() == "on the host\n"
    said = result.metrics["container"]
    if engine == "none":
        assert said == "host (container_engine is none)"
    else:
        assert said.startswith(f"host (the base image {missing} could not be found or pulled")
    assert result.build.image is None and result.build.container == said


CWL_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
id: {name}
$namespaces: {{s: https://schema.org/}}
s:softwareVersion: 1.0.0
requirements:
  DockerRequirement: {{dockerPull: "{image}"}}
baseCommand: [cat, /marker]
stdout: marker.txt
inputs: []
outputs:
  marker: {{type: stdout}}
"""


def test_a_cwl_docker_requirement_runs_in_podman(
    base_image: str, prefix: str, tmp_path: Path
) -> None:
    package = tmp_path / "tool.cwl"
    package.write_text(CWL_TOOL.format(name=f"{prefix}-cwl", image=base_image))
    result = run_local(
        package, {}, data_dir=tmp_path / "rl", output_dir=tmp_path / "out", config=config(tmp_path)
    )
    assert result.ok, (result.job.message, result.logs["stderr"][-2000:])
    assert (tmp_path / "out" / "marker.txt").read_text() == MARKER
    assert result.metrics["container"] == "podman (cwltool)"


def test_a_cwl_image_that_cannot_be_pulled_runs_on_the_host_or_is_refused(
    podman: Podman, prefix: str, tmp_path: Path
) -> None:
    package = tmp_path / "tool.cwl"
    missing = f"localhost/opendps-test/{prefix}-nope:1"
    package.write_text(
        CWL_TOOL.format(name=f"{prefix}-cwlhost", image=missing).replace(
            "baseCommand: [cat, /marker]", "baseCommand: [echo, on-the-host]"
        )
    )
    result = run_local(
        package, {}, data_dir=tmp_path / "rl", output_dir=tmp_path / "out", config=config(tmp_path)
    )
    assert result.ok, (result.job.message, result.logs["stderr"][-2000:])
    assert (tmp_path / "out" / "marker.txt").read_text() == "on-the-host\n"
    assert result.metrics["container"].startswith(f"host (the CWL image {missing} could not")
    assert any("moved to hints" in w for w in result.job.warnings)
    refused = run_local(
        package,
        {},
        data_dir=tmp_path / "rl2",
        output_dir=tmp_path / "out2",
        config=config(tmp_path, container_fallback="refuse"),
    )
    assert refused.job.status == JobStatus.FAILED and refused.job.reason == Reason.BUILD_ERROR
    assert f"cannot use the container image {missing}" in (refused.job.message or "")


def test_shell_runs_in_the_algorithms_image(base_image: str, prefix: str, tmp_path: Path) -> None:
    from tests.test_golden import dps_shell

    folder = tmp_path / f"{prefix}-sh"
    make_algorithm(folder, base_image, run_body="true")
    (tmp_path / "config.yaml").write_text(config(tmp_path).read_text())
    done = dps_shell(
        folder,
        tmp_path,
        'cat /marker; echo "cwd=$(pwd)"; ls input; exit 4\n',
        "--config",
        str(tmp_path / "config.yaml"),
    )
    assert done.returncode == 4, done.stderr
    assert MARKER in done.stdout and "sample.txt" in done.stdout
    assert "shell (podman localhost/opendps/" in done.stderr


def test_the_time_limit_stops_the_container(
    base_image: str, prefix: str, podman: Podman, tmp_path: Path
) -> None:
    spec = make_algorithm(tmp_path / f"{prefix}-slow", base_image, run_body="sleep 120")
    queues = [{"name": "short", "time_limit": 2, "slots": 1, "default": True}]
    result = run_local(
        spec,
        {"input_file": str(tmp_path / f"{prefix}-slow" / "data" / "input" / "sample.txt")},
        data_dir=tmp_path / "rl",
        output_dir=tmp_path / "out",
        config=config(tmp_path, queues=queues),
    )
    assert result.job.reason == Reason.TIMEOUT, result.job.message
    assert result.metrics["run_wall_seconds"] < 30
    assert not container_exists(podman, container_name(result.job.id))


def test_scale_out_builds_save_the_image_and_a_worker_without_it_loads_it(
    base_image: str, prefix: str, podman: Podman, tmp_path: Path
) -> None:
    from opendps.registry.images import IMAGES_PREFIX, archive_name, image_exists
    from opendps.registry.spec import parse_registration
    from opendps.runner.container import execute_job_in_image
    from tests.support.dps import fast_settings

    spec_file = make_algorithm(tmp_path / f"{prefix}-out", base_image, run_body="true")
    settings = fast_settings(tmp_path / "dps", executor="celery")
    services = Services(settings)
    try:
        spec = parse_registration(spec_file.read_text())
        algorithm = services.algorithms.register(spec, owner="anonymous")
        assert algorithm.build is not None
        build = services.algorithms.run_build(algorithm.build)
        assert build.image, build.message
        assert services.storage.exists(f"{IMAGES_PREFIX}/{archive_name(build.image)}")
        # A worker on another machine: the image is not in its podman storage.
        subprocess.run(podman.command("rmi", "--force", build.image), check=True, timeout=60)
        assert not image_exists(podman, build.image)
        work = tmp_path / "work"
        work.mkdir()
        result = execute_job_in_image(
            settings,
            build.image,
            ["cat", "/marker"],
            job_id=f"{prefix}-worker",
            work_dir=work,
            env={"DPS_JOB_ID": "x"},
            stdout_path=work / "out.txt",
            stderr_path=work / "err.txt",
            queue=None,
            should_cancel=None,
            cancel_event=None,
            on_start=None,
            storage=services.storage,
        )
        assert result.exit_code == 0, (work / "err.txt").read_text()
        assert (work / "out.txt").read_text() == MARKER
    finally:
        services.close()


def test_a_new_build_replaces_the_old_image_and_delete_removes_it(
    base_image: str, prefix: str, podman: Podman, tmp_path: Path
) -> None:
    from opendps.registry.images import image_exists
    from opendps.registry.spec import parse_registration
    from tests.support.dps import fast_settings

    folder = tmp_path / f"{prefix}-gc"
    spec_file = make_algorithm(folder, base_image, run_body="true")
    services = Services(fast_settings(tmp_path / "dps"))
    try:
        spec = parse_registration(spec_file.read_text())

        def build() -> str:
            algorithm = services.algorithms.register(spec, owner="anonymous", replace=True)
            assert algorithm.build is not None
            built = services.algorithms.run_build(algorithm.build)
            assert built.image, built.message
            return built.image

        first = build()
        (folder / "run.sh").write_text("#!/bin/sh\necho changed\n")
        subprocess.run(["git", "commit", "-qam", "change"], cwd=folder, check=True)
        second = build()
        assert first != second and image_exists(podman, second)
        assert not image_exists(podman, first)
        services.algorithms.delete(spec.process_id, "anonymous")
        assert not image_exists(podman, second)
    finally:
        services.close()


@pytest.mark.parametrize("network", [False, True])
def test_a_queue_without_network_runs_the_container_with_none(
    base_image: str, podman: Podman, tmp_path: Path, network: bool
) -> None:
    from opendps.runner.container import execute_in_container

    work = tmp_path / "work"
    work.mkdir()
    result = execute_in_container(
        podman,
        base_image,
        ["cat", "/proc/net/dev"],
        job_id=f"net-{uuid.uuid4().hex[:8]}",
        work_dir=work,
        env={},
        stdout_path=work / "out.txt",
        stderr_path=work / "err.txt",
        network=network,
    )
    assert result.exit_code == 0, (work / "err.txt").read_text()
    interfaces = {
        line.split(":")[0].strip() for line in (work / "out.txt").read_text().splitlines()[2:]
    }
    if network:
        assert interfaces - {"lo"}, interfaces  # the host's interfaces
    else:
        assert interfaces == {"lo"}
