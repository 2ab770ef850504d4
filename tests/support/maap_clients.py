"""The real maap-py clients, driving a real ``dps server``.

* maap-py 5.1.0 is a dev dependency of opendps: ``maap5(server.url, token)`` answers a
  ``MAAP`` client for it. maap-py reads ``MAAP_PGT`` (its ``proxy-ticket``) from the
  environment on every call, so the client returned sets it around each call: several
  users' clients can live in one test. Its config is cached per host string; every
  server has its own port, so clients of different servers never share one.
* maap-py 4.2.0 has the same package name, so it lives in its own virtualenv, built once
  by ``maap42_python()`` (called from a session fixture) under ``~/.cache/opendps-tests`` (or
  ``$OPENDPS_TEST_CACHE``) and reused by later runs. ``run_maap42(python, code, ...)``
  runs a script with it and answers what the script printed as JSON on its last line.
* ``maap_users(server.data_dir, "alice", guest=("bob",))`` creates users on an auth-on
  server's data dir and answers their tokens.
* ``checksum_repo``/``checksum_yaml`` and ``secret_reader_repo``/``secret_reader_yaml``
  are the algorithms the tests register; ``wait_built`` polls a build to the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

MAAP42_VERSION = "4.2.0"
INSTALL_TIMEOUT = 900  # seconds for pip to install maap-py 4.2.0 and its dependencies


# -- maap-py 5.1.0, in process -------------------------------------------------------------


@contextlib.contextmanager
def proxy_ticket(token: str | None) -> Iterator[None]:
    """``MAAP_PGT`` set to ``token`` (or unset) for the duration."""
    before = os.environ.get("MAAP_PGT")
    if token:
        os.environ["MAAP_PGT"] = token
    else:
        os.environ.pop("MAAP_PGT", None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MAAP_PGT", None)
        else:
            os.environ["MAAP_PGT"] = before


class Maap5:
    """A maap-py 5.1.0 ``MAAP`` whose every call carries ``token`` as its proxy-ticket."""

    def __init__(self, url: str, token: str | None = None) -> None:
        from maap.maap import MAAP

        self.token = token
        with proxy_ticket(token):
            self.maap = MAAP(maap_host=url)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.maap, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with proxy_ticket(self.token):
                return attribute(*args, **kwargs)

        return call


def maap5(url: str, token: str | None = None) -> Maap5:
    return Maap5(url, token)


# -- maap-py 4.2.0, in its own virtualenv --------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("OPENDPS_TEST_CACHE", Path.home() / ".cache" / "opendps-tests"))


def _maap42_works(python: Path) -> bool:
    if not python.exists():
        return False
    check = (
        "import importlib.metadata as m, maap.maap; "
        f"assert m.version('maap-py') == {MAAP42_VERSION!r}"
    )
    done = subprocess.run([str(python), "-c", check], capture_output=True, timeout=120)
    return done.returncode == 0


def build_maap42_venv(venv: Path) -> Path:
    """Create ``venv`` with maap-py 4.2.0 from PyPI (idempotent; safe across processes)."""
    python = venv / "bin" / "python"
    marker = venv / ".opendps-complete"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and _maap42_works(python):
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, capture_output=True
        )
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"maap-py=={MAAP42_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        if done.returncode != 0 or not _maap42_works(python):
            raise RuntimeError(
                f"installing maap-py {MAAP42_VERSION} failed:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        marker.write_text(MAAP42_VERSION)
    return python


def maap42_python() -> Path:
    """The python of a virtualenv holding maap-py 4.2.0 (built on first use, then cached).

    Call it from a session-scoped fixture: it skips the test (fails it under CI) when the
    virtualenv cannot be built.
    """
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = cache_root() / f"maap-py-{MAAP42_VERSION}-{tag}"
    try:
        return build_maap42_venv(venv)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"cannot build the maap-py {MAAP42_VERSION} virtualenv: {exc}")
        pytest.skip(f"cannot build the maap-py {MAAP42_VERSION} virtualenv: {exc}")


def run_python(
    python: Path | str,
    code: str,
    *,
    token: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> Any:
    """Run ``code`` with ``python``; answers the JSON it printed on its last stdout line."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MAAP_", "DPS_", "VIRTUAL_ENV"))
    }
    environment.update(env or {})
    if token:
        environment["MAAP_PGT"] = token
    done = subprocess.run(
        [str(python), "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    if done.returncode != 0:
        raise AssertionError(f"script failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"script printed nothing; stderr:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])


def run_maap42(
    python: Path, url: str, code: str, *, token: str | None = None, timeout: float = 180
) -> Any:
    """Run ``code`` with maap-py 4.2.0; ``maap`` is a ``MAAP(maap_host=url)`` there and
    ``out(value)`` prints the value as the script's JSON answer."""
    prelude = (
        "import json, sys\n"
        "from maap.maap import MAAP\n"
        f"maap = MAAP(maap_host={url!r})\n"
        "def out(value):\n"
        "    print(json.dumps(value, default=str))\n"
    )
    return run_python(python, prelude + textwrap.dedent(code), token=token, timeout=timeout)


# -- users on an auth-on server -------------------------------------------------------------


def maap_users(
    data_dir: Path, *names: str, guest: tuple[str, ...] = (), admin: tuple[str, ...] = ()
) -> dict[str, str]:
    """Create users in a server's data dir (auth on); answers {name: token}."""
    from opendps.service.context import Services
    from opendps.settings import Settings

    services = Services(Settings(data_dir=data_dir, auth=True))
    try:
        return {
            name: services.identity.create_user(
                name, is_guest=name in guest, is_admin=name in admin
            )
            for name in (*names, *guest, *admin)
        }
    finally:
        services.close()


# -- algorithms -----------------------------------------------------------------------------

BUILD = """#!/bin/bash
set -euo pipefail
echo "building in $PWD"
"""

# Checksums every downloaded input, echoes the message, sleeps on request.
RUN = """#!/bin/bash
set -euo pipefail
mkdir -p output
for f in input/*; do
  sha256sum "$f" | cut -d' ' -f1 > "output/$(basename "$f").sha256"
done
echo "$1" > output/message.txt
echo "run ok: $1"
sleep "${2:-0}"
"""


def checksum_repo(make_algorithm_repo: Callable[..., Path], name: str = "checksum_algo") -> Path:
    return make_algorithm_repo(
        {"build.sh": BUILD, "run.sh": RUN}, executable=["build.sh", "run.sh"], name=name
    )


def checksum_yaml(
    repo: Path, *, name: str = "checksum", version: str = "main", queue: str = "maap-dps-worker-8gb"
) -> str:
    """A MAAP algorithm YAML exactly as the MAAP Register Algorithm UI writes one."""
    folder = repo.name
    return f"""algorithm_description: Checksums each input file
algorithm_name: {name}
algorithm_version: {version}
build_command: {folder}/build.sh
disk_space: 1GB
docker_container_url: mas.maap-project.org/root/maap-workspaces/base_images/vanilla:v4.1.0
inputs:
  config: []
  file:
  - default: ''
    description: a file to checksum
    name: input_file
    required: true
  positional:
  - default: hello
    description: a message
    name: message
    required: false
  - default: '0'
    description: seconds to sleep after the work
    name: sleep_seconds
    required: false
    data_type: number
queue: {queue}
repository_url: {repo}
run_command: {folder}/run.sh
"""


def secret_reader_repo(make_algorithm_repo: Callable[..., Path]) -> Path:
    """Reads a secret with maap-py *inside the job* and writes its sha256 to output/.

    The run script calls the test's own interpreter (which has maap-py 5.1.0), so it works
    on any fresh clone; it also leaves MAAP_PGT where the test can find it, to check that
    the token stops working when the job ends.
    """
    reader = (
        "import hashlib, os, sys\n"
        "from maap.maap import MAAP\n"
        "maap = MAAP()\n"
        "value = maap.secrets.get_secret(sys.argv[1])\n"
        "if not isinstance(value, str):\n"
        "    sys.exit(f'get_secret answered {value!r}')\n"
        "open('output/secret.sha256', 'w').write(hashlib.sha256(value.encode()).hexdigest())\n"
        "open(sys.argv[2], 'w').write(os.environ['MAAP_PGT'])\n"
        "print('the secret is', value)\n"
        "print('user:', maap.profile.account_info()['username'])\n"
    )
    run = (
        "#!/bin/bash\nset -euo pipefail\n"
        f'exec "{sys.executable}" "$(dirname "$0")/reader.py" "$@"\n'
    )
    return make_algorithm_repo(
        {"reader.py": reader, "run.sh": run}, executable=["run.sh"], name="secret_reader"
    )


def secret_reader_yaml(repo: Path) -> dict[str, Any]:
    return {
        "algorithm_name": "secret_reader",
        "algorithm_version": "main",
        "algorithm_description": "reads a MAAP secret inside the job",
        "repository_url": str(repo),
        "run_command": f"{repo.name}/run.sh",
        "docker_container_url": "vanilla",
        "inputs": {"positional": [{"name": "secret_name"}, {"name": "token_file"}]},
    }


def wait_built(
    url: str, process_id: str, headers: dict[str, str] | None = None, timeout: float = 180
) -> dict[str, Any]:
    """Poll the MAAP describe route until the build is ready (fail on a failed build)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = httpx.get(
            f"{url}/api/ogc/processes/{process_id}", headers=headers or {}, timeout=30
        ).json()
        build = doc.get("build") or {}
        if build.get("buildStatus") == "ready":
            return doc
        if build.get("buildStatus") == "failed":
            raise AssertionError(f"build of {process_id} failed: {build.get('message')}")
        time.sleep(0.2)
    raise AssertionError(f"build of {process_id} not ready after {timeout} s")
