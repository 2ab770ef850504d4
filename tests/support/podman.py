"""podman for tests: a tiny base image imported from a busybox rootfs (no registry needed).

The image holds ``/marker`` (a file no host has), so a job that reads it proves it ran
inside. Without a working podman or busybox the tests that need them skip, unless
``CI=true``: then they fail (CI installs podman, runc and busybox-static).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from opendps.registry.images import Podman, find_podman
from opendps.settings import Settings

MARKER = "made by the opendps test base image\n"


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    found, why = find_podman(Settings(data_dir=tmp_path_factory.mktemp("podman-probe")))
    if found is None:
        _unavailable(f"podman cannot run containers here: {why}")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def base_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost/opendps-test/base-<id>:1``: busybox with every applet, plus /marker."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        _unavailable("busybox is not installed (apt-get install busybox-static)")
    if b"ld-linux" in Path(busybox).read_bytes()[:4096]:  # it names a dynamic loader
        _unavailable(f"{busybox} is dynamically linked (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    (root / "tmp").mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "marker").write_text(MARKER)
    archive = root.parent / f"{root.name}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    tag = f"localhost/opendps-test/base-{uuid.uuid4().hex[:10]}:1"
    subprocess.run(
        podman.command("import", "--quiet", str(archive), tag),
        check=True,
        capture_output=True,
        timeout=120,
    )
    yield tag
    subprocess.run(podman.command("rmi", "--force", tag), capture_output=True, timeout=120)


def remove_images(podman: Podman, prefix: str) -> None:
    """Remove the algorithm images a test built (``localhost/opendps/<prefix>…``)."""
    listed = subprocess.run(
        podman.command("images", "--format", "{{.Repository}}:{{.Tag}}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    for image in listed.stdout.split():
        if image.startswith(f"localhost/opendps/{prefix}"):
            subprocess.run(podman.command("rmi", "--force", image), capture_output=True, timeout=60)
