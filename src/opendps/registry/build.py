"""Build an algorithm: clone its repository at its version, make its virtualenv, run its
build command (DESIGN §4, §9 "Build environment").

The layout under ``target`` is::

    target/src/<repo>/   the clone; ``src`` is the algorithm dir that run_command and
                         build_command are relative to (MAAP style ``repo/run.sh``)
    target/env/          the algorithm's virtualenv
    target/home/         HOME during the build, so builds never write to the real home

Everything a build prints (git, venv, the build command) is appended to one log file
with timestamps; nothing is held in memory, and the last lines go into the error.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from opendps.errors import BuildError
from opendps.registry.environment import (
    algorithm_environment,
    create_virtualenv,
    write_login_profile,
)
from opendps.registry.spec import AlgorithmSpec, repo_dir_name

if TYPE_CHECKING:
    from opendps.registry.images import ImageBuilder

# Limits for the steps that have no reason to hang, used when no overall timeout is given.
GIT_TIMEOUT = 900.0  # a large repository over a slow link
VENV_TIMEOUT = 300.0
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a timed-out process group
TAIL_LINES = 20  # lines of output quoted in a BuildError
_TAIL_BYTES = 16_384
# What a program file starts with when the kernel can exec it (a script without a
# shebang makes execve fail with ENOEXEC, so it goes to bash instead).
_EXEC_MAGIC = (b"#!", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
# A tag checkout is a detached HEAD on purpose; git's advice about it is noise in the log.
_GIT = ("git", "-c", "advice.detachedHead=false")


#: Runs the build command: (argv, cwd, env, log, deadline) -> exit code. The service layer
#: passes one that boxes it (runner/build_box.py); the default runs it directly.
CommandRunner = Callable[[list[str], Path, dict[str, str], BinaryIO, float | None], int]


@dataclass(frozen=True)
class BuildResult:
    """Where a successful build put things."""

    commit: str  # full hash of HEAD after checkout
    algorithm_dir: Path  # folder that holds the cloned repo; commands are relative to it
    repo_dir: Path  # algorithm_dir / repo_dir_name(spec.repository_url)
    env_dir: Path  # the algorithm's own virtualenv
    image: str | None = None  # the container image jobs run in (registry/images.py)


def build_algorithm(
    spec: AlgorithmSpec,
    target: Path,
    log_path: Path,
    *,
    timeout: float | None = None,
    python: str = sys.executable,
    run_command: CommandRunner | None = None,
    base_env: Mapping[str, str] | None = None,
    image: ImageBuilder | None = None,
) -> BuildResult:
    """Clone, create the virtualenv and run the build command of ``spec`` under ``target``.

    Parameters
    ----------
    spec
        The algorithm; ``repository_url`` is anything ``git clone`` accepts and
        ``version`` a branch, a tag or a commit hash.
    target
        The build folder (see the module docstring); a previous build there is replaced.
    log_path
        The build log; everything is appended to it.
    timeout
        Seconds for the whole build, or None for no overall limit (git and venv steps
        still have their own generous limits).
    python
        The interpreter the virtualenv is created from.
    run_command
        Runs the build command (default: directly, in its own process group).
    base_env
        The host environment the build command starts from (default: this process's,
        minus ``DPS_*``); the virtualenv is activated on top.
    image
        Build a container image instead of a virtualenv: the clone and the build command
        go into an image FROM the registration's base (see :mod:`opendps.registry.images`).

    Returns
    -------
    BuildResult

    Raises
    ------
    BuildError
        When the clone fails, the version is not a ref of the repository, the build
        command is missing or fails, or the build runs out of time.
    """
    if not spec.repository_url:
        raise BuildError(f"{spec.process_id} has no repository_url to build from")
    target = Path(target).absolute()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    repo_name = repo_dir_name(spec.repository_url)
    if repo_name in ("", ".", ".."):
        raise BuildError(f"cannot name a folder after the repository {spec.repository_url!r}")
    algorithm_dir, env_dir = target / "src", target / "env"
    repo_dir = algorithm_dir / repo_name
    with log_path.open("ab") as log:
        started = time.monotonic()
        _note(log, f"building {spec.process_id} from {_redact(spec.repository_url)}")
        try:
            commit, tag = _build(
                spec, target, repo_dir, log, deadline, python, run_command, base_env, image
            )
        except BuildError as exc:
            _note(log, f"build failed after {time.monotonic() - started:.2f} s: {exc.message}")
            raise
        _note(log, f"build succeeded in {time.monotonic() - started:.2f} s")
    return BuildResult(commit, algorithm_dir, repo_dir, env_dir, image=tag)


def _build(
    spec: AlgorithmSpec,
    target: Path,
    repo_dir: Path,
    log: BinaryIO,
    deadline: float | None,
    python: str,
    run_command: CommandRunner | None = None,
    base_env: Mapping[str, str] | None = None,
    image: ImageBuilder | None = None,
) -> tuple[str, str | None]:
    """The build's steps in order; answers the commit checked out and the image built."""
    algorithm_dir, env_dir, home = repo_dir.parent, target / "env", target / "home"
    for stale in (algorithm_dir, env_dir, home):
        shutil.rmtree(stale, ignore_errors=True)
    algorithm_dir.mkdir(parents=True)
    commit = _checkout(spec.repository_url or "", spec.version, repo_dir, log, deadline)
    _note(log, f"checked out {spec.version} at {commit}")
    if image is not None:  # the build command runs inside the image, not in a virtualenv
        build_argv = (
            _build_argv(spec.build_command, algorithm_dir, repo_dir) if spec.build_command else None
        )
        return commit, image.build(spec, commit, algorithm_dir, build_argv, log, deadline)
    _note(log, f"creating the virtualenv {env_dir}")
    venv_started = time.monotonic()
    create_virtualenv(env_dir, python=python, log=log, timeout=_remaining(deadline, VENV_TIMEOUT))
    _note(log, f"virtualenv ready in {time.monotonic() - venv_started:.2f} s")
    if spec.build_command:
        if base_env is None:
            base_env = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
        env = algorithm_environment(env_dir, base_env)
        env["HOME"] = str(home)
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")  # no PyPI call per build
        # Only what a login shell loses; the server's own DPS_* settings stay off disk.
        write_login_profile(home, {k: env[k] for k in ("PATH", "VIRTUAL_ENV")})
        argv = _build_argv(spec.build_command, algorithm_dir, repo_dir)
        _run_build_command(argv, algorithm_dir, env, log, deadline, run_command)
    return commit, None


def resolve_run_command(spec: AlgorithmSpec, algorithm_dir: Path) -> list[str]:
    """The argv that starts ``spec.run_command`` (DESIGN §9 "How the run command is started").

    The command's path is relative to ``algorithm_dir`` (MAAP style
    ``repo/dir/run.sh``); if it is not there, it is looked up relative to the cloned
    repository, as users often write it that way. Extra words of ``run_command`` are
    kept as leading arguments.

    Returns
    -------
    list of str
        ``[path, *words]`` when the file is executable (its shebang decides the
        interpreter), else ``["bash", path, *words]``; ``path`` is absolute.

    Raises
    ------
    BuildError
        If there is no run command, the file is missing, or the path leaves
        ``algorithm_dir`` once symlinks are resolved.
    """
    if not spec.run_command:
        raise BuildError(f"{spec.process_id} has no run_command")
    path, *words = shlex.split(spec.run_command)
    algorithm_dir = Path(algorithm_dir).absolute()
    candidates = [algorithm_dir / path]
    if spec.repository_url:
        candidates.append(algorithm_dir / repo_dir_name(spec.repository_url) / path)
    command = _find_command(candidates, algorithm_dir, "run command")
    if _can_exec(command):
        return [str(command), *words]
    return ["bash", str(command), *words]


def _find_command(candidates: list[Path], algorithm_dir: Path, what: str) -> Path:
    """The first candidate that is a file, refusing any that resolves outside the folder."""
    root = algorithm_dir.resolve()
    for candidate in candidates:
        if not candidate.resolve().is_relative_to(root):
            relative = os.path.relpath(candidate, algorithm_dir)
            raise BuildError(f"the {what} {relative!r} leads outside the algorithm's folder")
        if candidate.is_file():
            return candidate
    relative = os.path.relpath(candidates[0], algorithm_dir)
    raise BuildError(
        f"the {what} {relative!r} does not exist: it is relative to the folder that holds "
        "the cloned repository, e.g. my_repo/run.sh"
    )


def _can_exec(path: Path) -> bool:
    if not os.access(path, os.X_OK):
        return False
    with path.open("rb") as file:
        return file.read(4).startswith(_EXEC_MAGIC)


def _build_argv(build_command: str, algorithm_dir: Path, repo_dir: Path) -> list[str]:
    """``bash <script> <args>`` for a script in the repository, else ``bash -c <command>``."""
    path, *words = shlex.split(build_command)
    candidates = [algorithm_dir / path, repo_dir / path]
    if not words or any(c.is_file() for c in candidates):
        script = _find_command(candidates, algorithm_dir, "build command")
        return ["bash", str(script), *words]
    return ["bash", "-c", build_command]  # e.g. "pip install -r my_repo/requirements.txt"


def _checkout(url: str, version: str, repo_dir: Path, log: BinaryIO, deadline: float | None) -> str:
    """Clone ``url`` at ``version`` into ``repo_dir``; answers the full commit hash."""
    env = _git_environment()
    # Fast path: a shallow clone works for branches and tags.
    shallow = [*_GIT, "clone", "--depth", "1", "--branch", version, "--", url, str(repo_dir)]
    if _run(shallow, repo_dir.parent, env, log, deadline, GIT_TIMEOUT, "git clone") != 0:
        # Commit hashes (or servers without shallow support) need the full history.
        _note(log, f"{version!r} is not a branch or tag there; cloning the full history")
        shutil.rmtree(repo_dir, ignore_errors=True)
        full = [*_GIT, "clone", "--no-checkout", "--", url, str(repo_dir)]
        offset = _log_offset(log)
        if _run(full, repo_dir.parent, env, log, deadline, GIT_TIMEOUT, "git clone") != 0:
            tail = _log_tail(log, offset)
            raise BuildError(f"could not clone {_redact(url)}: {tail}")
        commit = _resolve_ref(version, repo_dir, env, deadline)
        if commit is None:
            raise BuildError(
                f"version {version!r} is not a branch, tag or commit of {_redact(url)}"
            )
        checkout = [*_GIT, "checkout", "--quiet", "--detach", commit]
        if _run(checkout, repo_dir, env, log, deadline, GIT_TIMEOUT, "git checkout") != 0:
            raise BuildError(f"could not check out {version!r}: {_log_tail(log, offset)}")
    if (repo_dir / ".gitmodules").is_file():
        submodules = ["git", "submodule", "update", "--init", "--recursive"]
        offset = _log_offset(log)
        if _run(submodules, repo_dir, env, log, deadline, GIT_TIMEOUT, "git submodule") != 0:
            raise BuildError(f"could not fetch the submodules: {_log_tail(log, offset)}")
    commit = _git_output(["rev-parse", "HEAD"], repo_dir, env, deadline)
    if not commit:
        raise BuildError(f"could not read the commit checked out from {_redact(url)}")
    return commit


def _resolve_ref(
    version: str, repo_dir: Path, env: dict[str, str], deadline: float | None
) -> str | None:
    # A full clone makes local branches only for the default one; others are origin/<name>.
    for ref in (version, f"origin/{version}"):
        commit = _git_output(
            ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo_dir, env, deadline
        )
        if commit:
            return commit
    return None


def _git_output(
    args: list[str], cwd: Path, env: dict[str, str], deadline: float | None
) -> str | None:
    """A short git query's stdout, or None if it fails."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=_remaining(deadline, GIT_TIMEOUT),
        )
    except subprocess.TimeoutExpired:
        raise BuildError("the build timed out (git rev-parse)")
    return done.stdout.strip() if done.returncode == 0 else None


def _git_environment() -> dict[str, str]:
    env = dict(os.environ)
    # A private or missing repository must fail, not wait for a password or a host key.
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env["LC_ALL"] = "C"  # error tails in English whatever the server's locale
    return env


def _run_build_command(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    log: BinaryIO,
    deadline: float | None,
    run_command: CommandRunner | None = None,
) -> None:
    offset = _log_offset(log)
    if run_command is None:
        code = _run(argv, cwd, env, log, deadline, None, "build command")
    else:
        _note(log, "$ " + " ".join(shlex.quote(_redact(a)) for a in argv))
        code = run_command(argv, cwd, env, log, deadline)
        _note(log, f"exit code {code}")
    if code != 0:
        raise BuildError(f"the build command exited {code}: {_log_tail(log, offset)}")


def _run(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    log: BinaryIO,
    deadline: float | None,
    step_limit: float | None,
    what: str,
) -> int:
    """Run ``argv`` with its output streamed to ``log``; answers its exit code.

    The process gets its own process group so that a timeout ends everything it
    started (a build script's pip, compilers, ...), not just the shell.
    """
    _note(log, "$ " + " ".join(shlex.quote(_redact(a)) for a in argv))
    limit = _remaining(deadline, step_limit)
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise BuildError(f"could not start the {what}: {exc}")
    try:
        code = process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        _note(log, f"timed out after {limit:.0f} s; stopped")
        raise BuildError(f"the build timed out ({what} still running after {limit:.0f} s)")
    except BaseException:
        _kill_group(process)
        raise
    _note(log, f"exit code {code}")
    return code


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(process.pid, signal.SIGKILL)  # what is left, the leader's children too
    except ProcessLookupError:
        pass  # the whole group is gone already
    process.wait()


def _remaining(deadline: float | None, step_limit: float | None) -> float | None:
    """Seconds left for a step: the overall deadline or the step's own limit, if sooner."""
    if deadline is None:
        return step_limit
    left = max(deadline - time.monotonic(), 0.01)
    return left if step_limit is None else min(left, step_limit)


def _note(log: BinaryIO, message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log.write(f"[opendps {stamp}] {message}\n".encode())
    log.flush()  # before a subprocess writes to the same file


def _log_offset(log: BinaryIO) -> int:
    log.flush()
    return os.fstat(log.fileno()).st_size


def _log_tail(log: BinaryIO, offset: int) -> str:
    """The last output lines written since ``offset``, without our own notes."""
    log.flush()
    with open(log.name, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(offset, size - _TAIL_BYTES))
        text = file.read().decode(errors="replace")
    lines = [line for line in text.splitlines() if line and not line.startswith("[opendps ")]
    return "\n".join(lines[-TAIL_LINES:]) or "(no output)"


def _redact(text: str) -> str:
    """``text`` with any password in a URL hidden (https://user:token@host/...)."""
    try:
        parts = urlsplit(text)
        if parts.password is None:
            return text
        netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    except ValueError:  # not a URL at all
        return text
    return urlunsplit(parts._replace(netloc=netloc))
