"""Builds with real git repositories, real virtualenvs and real build scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opendps.errors import BuildError
from opendps.registry.build import BuildResult, build_algorithm, resolve_run_command
from opendps.registry.environment import (
    algorithm_environment,
    create_virtualenv,
    write_login_profile,
)
from opendps.registry.spec import AlgorithmSpec
from tests.support.git_repos import commit_files, git

MakeRepo = Callable[..., Path]

# A PEP 517 backend that needs nothing but the standard library, so that
# `pip install --no-index ./pkg` works without a network.
TINY_BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION = "opendps_tinypkg", "0.1"


def _record(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{NAME}-{VERSION}.dist-info"
    with open(os.path.join(NAME, "__init__.py"), "rb") as source:
        files = {f"{NAME}/__init__.py": source.read()}
    metadata = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"
    wheel_info = "Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\n"
    wheel_info += "Tag: py3-none-any\\n"
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = wheel_info.encode()
    record = [_record(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    filename = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", "\\n".join(record) + "\\n")
    return filename
"""

TINY_PYPROJECT = """
[build-system]
requires = []
build-backend = "tiny_backend"
backend-path = ["."]

[project]
name = "opendps_tinypkg"
version = "0.1"
"""

BUILD_SCRIPT = """\
set -euo pipefail
echo "home is $HOME"
echo "python is $(command -v python)"
cd "$(dirname "$0")"
pip install --no-index ./pkg
"""


def spec_for(url: str | Path, version: str = "main", **fields: str) -> AlgorithmSpec:
    return AlgorithmSpec(
        name="algo", version=version, repository_url=str(url), run_command="algo/run.sh", **fields
    )


def build(tmp_path: Path, spec: AlgorithmSpec, **options: float) -> BuildResult:
    return build_algorithm(spec, tmp_path / "build", tmp_path / "build.log", **options)


def imports(python: str | Path, module: str) -> bool:
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return done.returncode == 0


# --- build_algorithm ---------------------------------------------------------------


def test_build_script_pip_installs_into_the_algorithm_venv(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo(
        {
            "build.sh": BUILD_SCRIPT,
            "run.sh": "#!/bin/bash\necho hi\n",
            "pkg/pyproject.toml": TINY_PYPROJECT,
            "pkg/tiny_backend.py": TINY_BACKEND,
            "pkg/opendps_tinypkg/__init__.py": "ANSWER = 42\n",
        },
        executable=["run.sh"],
    )
    result = build(tmp_path, spec_for(repo, build_command="algo/build.sh"))

    assert result.algorithm_dir == tmp_path / "build" / "src"
    assert result.repo_dir == result.algorithm_dir / "algo"
    assert result.env_dir == tmp_path / "build" / "env"
    assert result.commit == git(repo, "rev-parse", "HEAD")
    assert imports(result.env_dir / "bin" / "python", "opendps_tinypkg")
    assert not imports(sys.executable, "opendps_tinypkg")
    log = (tmp_path / "build.log").read_text()
    assert f"home is {tmp_path / 'build' / 'home'}" in log
    assert f"python is {result.env_dir / 'bin' / 'python'}" in log
    assert "Successfully installed opendps_tinypkg-0.1" in log
    assert "build succeeded" in log


def test_without_build_command_clones_and_makes_a_venv_with_pip(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"run.sh": "echo hi\n"})
    result = build(tmp_path, spec_for(repo.as_uri()))

    assert (result.repo_dir / "run.sh").read_text() == "echo hi\n"
    pip = subprocess.run(
        [result.env_dir / "bin" / "pip", "--version"], capture_output=True, text=True, check=True
    )
    assert str(result.env_dir) in pip.stdout
    assert not (tmp_path / "build" / "home").exists()


def test_rebuild_in_the_same_target_replaces_the_previous_build(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"run.sh": "echo 1\n"})
    build(tmp_path, spec_for(repo))
    second = commit_files(repo, {"run.sh": "echo 2\n"})
    result = build(tmp_path, spec_for(repo))

    assert result.commit == second
    assert (result.repo_dir / "run.sh").read_text() == "echo 2\n"


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-url"])
def test_clone_at_a_tag_behind_the_branch_head(
    tmp_path: Path, make_algorithm_repo: MakeRepo, as_uri: bool
) -> None:
    repo = make_algorithm_repo({"VERSION": "1\n"}, tags=["v1.0"])
    tagged = git(repo, "rev-parse", "HEAD")
    commit_files(repo, {"VERSION": "2\n"})
    url = repo.as_uri() if as_uri else str(repo)
    result = build(tmp_path, spec_for(url, version="v1.0"))

    assert result.commit == tagged
    assert (result.repo_dir / "VERSION").read_text() == "1\n"


@pytest.mark.parametrize("length", [40, 10])
def test_clone_at_a_commit_hash(tmp_path: Path, make_algorithm_repo: MakeRepo, length: int) -> None:
    repo = make_algorithm_repo({"VERSION": "1\n"})
    first = git(repo, "rev-parse", "HEAD")
    commit_files(repo, {"VERSION": "2\n"})
    result = build(tmp_path, spec_for(repo.as_uri(), version=first[:length]))

    assert result.commit == first
    assert (result.repo_dir / "VERSION").read_text() == "1\n"


def test_clone_a_branch_other_than_the_default(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"VERSION": "main\n"})
    git(repo, "checkout", "--quiet", "-b", "feature-x")
    feature = commit_files(repo, {"VERSION": "feature\n"})
    git(repo, "checkout", "--quiet", "main")
    result = build(tmp_path, spec_for(repo, version="feature-x"))

    assert result.commit == feature


def test_missing_version_names_the_version_and_the_repository(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"run.sh": "echo hi\n"}, tags=["v1"])
    with pytest.raises(BuildError) as caught:
        build(tmp_path, spec_for(repo, version="v2"))
    assert caught.value.message == f"version 'v2' is not a branch, tag or commit of {repo}"


def test_unclonable_repository_quotes_git(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo"
    with pytest.raises(BuildError) as caught:
        build(tmp_path, spec_for(missing))
    message = caught.value.message
    assert message.startswith(f"could not clone {missing}: ")
    assert "does not exist" in message  # git's own words


def test_password_in_the_url_stays_out_of_errors_and_log(tmp_path: Path) -> None:
    # Port 9 (discard) refuses at once; the prompt for credentials must not happen either.
    url = "https://someone:s3cr3t@127.0.0.1:9/org/algo.git"
    with pytest.raises(BuildError) as caught:
        build(tmp_path, spec_for(url), timeout=60)
    assert "could not clone https://someone:***@127.0.0.1:9/org/algo.git" in caught.value.message
    assert "s3cr3t" not in caught.value.message
    assert "s3cr3t" not in (tmp_path / "build.log").read_text()


def test_failing_build_script_reports_exit_code_and_output(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"build.sh": "echo compiling things\necho oops >&2\nexit 3\n"})
    with pytest.raises(BuildError) as caught:
        build(tmp_path, spec_for(repo, build_command="algo/build.sh"))
    message = caught.value.message
    assert message.startswith("the build command exited 3: ")
    assert "compiling things\noops" in message
    log = (tmp_path / "build.log").read_text()
    assert "compiling things" in log
    assert "oops" in log
    assert "$ bash " in log
    assert "exit code 3" in log
    assert "build failed after" in log


def test_missing_build_script_is_named(tmp_path: Path, make_algorithm_repo: MakeRepo) -> None:
    repo = make_algorithm_repo({"run.sh": "echo hi\n"})
    with pytest.raises(BuildError, match=r"'algo/build\.sh' does not exist"):
        build(tmp_path, spec_for(repo, build_command="algo/build.sh"))


def test_build_command_with_arguments_and_repo_relative_script(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"build.sh": 'echo "args: $*" > built.txt\n'})
    result = build(tmp_path, spec_for(repo, build_command="build.sh one two"))

    # cwd is the algorithm dir, the script was found in the repository
    assert (result.algorithm_dir / "built.txt").read_text() == "args: one two\n"


def test_build_command_as_a_shell_command(tmp_path: Path, make_algorithm_repo: MakeRepo) -> None:
    repo = make_algorithm_repo({"run.sh": "echo hi\n"})
    result = build(
        tmp_path, spec_for(repo, build_command='python -c "import sys; print(sys.prefix)"')
    )

    assert f"\n{result.env_dir}\n" in (tmp_path / "build.log").read_text()


def test_timeout_stops_the_whole_process_group(
    tmp_path: Path, make_algorithm_repo: MakeRepo
) -> None:
    repo = make_algorithm_repo({"build.sh": 'sleep 60 &\necho $! > "$HOME/sleep.pid"\nwait\n'})
    started = time.monotonic()
    with pytest.raises(BuildError, match="timed out"):
        build(tmp_path, spec_for(repo, build_command="algo/build.sh"), timeout=3)
    assert time.monotonic() - started < 15
    pid = int((tmp_path / "build" / "home" / "sleep.pid").read_text())
    assert wait_until_gone(pid)


def wait_until_gone(pid: int, seconds: float = 5) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # killed, not yet reaped by its new parent
            return True
        time.sleep(0.05)
    return False


# --- resolve_run_command -------------------------------------------------------------


@pytest.fixture
def algorithm_dir(tmp_path: Path) -> Path:
    """A built algorithm's folder: src/algo/ with scripts of each kind."""
    root = tmp_path / "src"
    scripts = root / "algo" / "dir"
    scripts.mkdir(parents=True)
    (scripts / "run.sh").write_text("#!/usr/bin/env bash\necho run\n")
    (scripts / "run.sh").chmod(0o755)
    (scripts / "plain.sh").write_text("echo plain\n")
    (scripts / "noshebang.sh").write_text("echo no shebang\n")
    (scripts / "noshebang.sh").chmod(0o755)
    (tmp_path / "outside.sh").write_text("#!/bin/sh\necho escaped\n")
    (scripts / "link.sh").symlink_to(tmp_path / "outside.sh")
    return root


def run_spec(run_command: str) -> AlgorithmSpec:
    # model_construct: the spec validator already refuses "../", resolve must too.
    return AlgorithmSpec.model_construct(
        name="algo",
        version="1",
        repository_url="https://example.org/org/algo.git",
        run_command=run_command,
    )


def test_run_command_maap_style_path_with_extra_words(algorithm_dir: Path) -> None:
    argv = resolve_run_command(run_spec("algo/dir/run.sh --fast 'a b'"), algorithm_dir)
    assert argv == [str(algorithm_dir / "algo" / "dir" / "run.sh"), "--fast", "a b"]
    assert subprocess.run(argv, capture_output=True, text=True).stdout == "run\n"


def test_run_command_relative_to_the_repository(algorithm_dir: Path) -> None:
    argv = resolve_run_command(run_spec("dir/run.sh"), algorithm_dir)
    assert argv == [str(algorithm_dir / "algo" / "dir" / "run.sh")]


@pytest.mark.parametrize("name", ["plain.sh", "noshebang.sh"])
def test_run_command_not_directly_executable_runs_with_bash(algorithm_dir: Path, name: str) -> None:
    argv = resolve_run_command(run_spec(f"algo/dir/{name} x"), algorithm_dir)
    assert argv == ["bash", str(algorithm_dir / "algo" / "dir" / name), "x"]


@pytest.mark.parametrize("command", ["../outside.sh", "algo/../../outside.sh", "algo/dir/link.sh"])
def test_run_command_may_not_leave_the_algorithm_dir(algorithm_dir: Path, command: str) -> None:
    with pytest.raises(BuildError, match="leads outside the algorithm's folder"):
        resolve_run_command(run_spec(command), algorithm_dir)


def test_missing_run_command_is_named(algorithm_dir: Path) -> None:
    with pytest.raises(BuildError, match=r"'algo/dir/nope\.sh' does not exist"):
        resolve_run_command(run_spec("algo/dir/nope.sh"), algorithm_dir)


# --- environment ---------------------------------------------------------------------


def test_algorithm_environment_activates_the_venv(tmp_path: Path) -> None:
    base = {
        "PATH": f"/server/venv/bin{os.pathsep}/usr/bin",
        "VIRTUAL_ENV": "/server/venv",
        "PYTHONHOME": "/elsewhere",
        "KEEP": "me",
    }
    env = algorithm_environment(tmp_path / "env", base)

    assert env["PATH"] == f"{tmp_path / 'env' / 'bin'}{os.pathsep}/usr/bin"
    assert env["VIRTUAL_ENV"] == str(tmp_path / "env")
    assert "PYTHONHOME" not in env
    assert env["KEEP"] == "me"
    assert base["PYTHONHOME"] == "/elsewhere"  # the base is not changed


def test_algorithm_environment_without_venv() -> None:
    assert algorithm_environment(None, {"PATH": "/bin", "PYTHONHOME": "/x"}) == {"PATH": "/bin"}


@pytest.mark.slow
def test_virtualenv_falls_back_to_ensurepip_when_python_has_no_pip(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    with (tmp_path / "venv.log").open("ab") as log:
        create_virtualenv(
            tmp_path / "env", python=str(bare / "bin" / "python"), log=log, timeout=120
        )
    pip = subprocess.run(
        [tmp_path / "env" / "bin" / "pip", "--version"], capture_output=True, text=True, check=True
    )
    assert str(tmp_path / "env") in pip.stdout


def test_login_shells_see_the_job_environment(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    with (tmp_path / "venv.log").open("ab") as log:
        create_virtualenv(env_dir, python=sys.executable, log=log, timeout=120)
    home = tmp_path / "home"
    env = algorithm_environment(env_dir, {"PATH": "/usr/bin:/bin"})
    env |= {"DPS_JOB_ID": "job-1", "MAAP_PGT": 'it\'s $HOME "quoted"', "OTHER": "no"}
    write_login_profile(home, env)
    # Only HOME and a bare PATH: whatever else the shell sees comes from the profile.
    bare = {"HOME": str(home), "PATH": "/usr/bin:/bin"}

    shell = subprocess.run(
        ["bash", "--login", "-c", 'echo $DPS_JOB_ID; which python; echo "$MAAP_PGT|$OTHER"'],
        env=bare,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.splitlines() == [
        "job-1",
        str(env_dir / "bin" / "python"),
        'it\'s $HOME "quoted"|',
    ]

    script = tmp_path / "run.sh"
    script.write_text("#!/usr/bin/env -S bash --login\necho $DPS_JOB_ID $VIRTUAL_ENV\n")
    script.chmod(0o755)
    run = subprocess.run([script], env=bare, capture_output=True, text=True, check=True)
    assert run.stdout == f"job-1 {env_dir}\n"
    assert (home / ".profile").read_text() == (home / ".bash_profile").read_text()
    assert (home / ".profile").stat().st_mode & 0o077 == 0
