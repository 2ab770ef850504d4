"""A plain ``pip install opendps`` (no extras) serves CWL (DESIGN §15): installed into a
fresh virtualenv from this source tree, its ``dps server`` deploys a CWL application
package with ``POST /processes`` and runs it to a staged output.

The virtualenv reuses pip's wheel cache, so this takes about half a minute once the
dependencies have been downloaded a first time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer
from tests.support.ogc import wait_job

ROOT = Path(__file__).resolve().parents[1]
# This tree's sources must not shadow the installed copy.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
id: shout
$namespaces: {s: https://schema.org/}
s:softwareVersion: 1.0.0
baseCommand: [sh, -c]
arguments: ['echo "$(inputs.word)!" > shout.txt']
inputs:
  word: {type: string}
outputs:
  shout: {type: File, outputBinding: {glob: shout.txt}}
"""


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("plain-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        env=CLEAN_ENV,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return python


@pytest.mark.slow
def test_plain_pip_install_deploys_and_runs_a_cwl_package(
    plain_install: Path, tmp_path: Path
) -> None:
    extras = subprocess.run(
        [str(plain_install), "-c", "import opendps, cwltool; print(opendps.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=CLEAN_ENV,
    )
    assert extras.returncode == 0, extras.stderr
    assert str(plain_install.parents[1]) in extras.stdout  # the venv's copy, not this tree
    server = LiveServer(
        tmp_path / "data",
        python=str(plain_install),
        env={"PYTHONPATH": ""},
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            conformance = http.get("/conformance").json()["conformsTo"]
            assert any(c.endswith("/conf/cwl") for c in conformance)
            deployed = http.post(
                "/processes",
                content=TOOL,
                headers={"Content-Type": "application/cwl+yaml"},
            )
            assert deployed.status_code == 201, deployed.text
            started = http.post(
                "/processes/shout:1.0.0/execution",
                json={"inputs": {"word": "hello"}},
                headers={"Prefer": "respond-async"},
            )
            assert started.status_code == 201, started.text
            job_id = started.json()["jobID"]
            info = wait_job(http, job_id, timeout=120)
            assert info["status"] == "successful", info
            outputs = http.get(f"/jobs/{job_id}/outputs").json()["outputs"]
            shout = next(o for o in outputs if o["path"] == "shout.txt")
            assert http.get(shout["href"]).text == "hello!\n"
    finally:
        server.close()
