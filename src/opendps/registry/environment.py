"""The algorithm's own Python environment (DESIGN §9 "Build environment").

Each algorithm gets a virtualenv. Its build command runs with that virtualenv
activated, so a plain ``pip install`` lands there and never in the server's
environment; its run command sees the same environment, login shells included.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from opendps.errors import BuildError

# A shebang longer than this is cut by older kernels; pip's own launchers switch to a
# /bin/sh trampoline past it, and so do we.
MAX_SHEBANG = 127
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PROFILE_PREFIXES = ("DPS_", "MAAP_")
_PIP_LOCATION = (
    "import os, sys, pip; d = os.path.dirname(pip.__file__); print(d); "
    "print(os.path.join(os.path.dirname(d), 'pip-' + pip.__version__ + '.dist-info')); "
    "print('python%d.%d' % sys.version_info[:2])"
)


def algorithm_environment(env_dir: Path | None, base: Mapping[str, str]) -> dict[str, str]:
    """The environment a build or run command sees: ``base`` with the virtualenv activated.

    Parameters
    ----------
    env_dir
        The algorithm's virtualenv, or None for an algorithm without one (``base`` is
        then returned as is, minus ``PYTHONHOME``).
    base
        The host environment, usually ``os.environ``.

    Returns
    -------
    dict
        A new mapping: ``VIRTUAL_ENV=env_dir``, ``env_dir/bin`` first on ``PATH``,
        ``PYTHONHOME`` removed. Like ``bin/activate``, a previously active
        virtualenv (the server's own) is taken off ``PATH``.
    """
    env = dict(base)
    # PYTHONHOME would point the venv's interpreter at another installation's stdlib.
    env.pop("PYTHONHOME", None)
    if env_dir is None:
        return env
    env_bin = str(Path(env_dir).absolute() / "bin")
    drop = {env_bin}
    if env.get("VIRTUAL_ENV"):
        drop.add(os.path.join(env["VIRTUAL_ENV"], "bin"))
    path = env.get("PATH", os.defpath)
    kept = [p for p in path.split(os.pathsep) if p and p not in drop]
    env["PATH"] = os.pathsep.join([env_bin, *kept])
    env["VIRTUAL_ENV"] = str(Path(env_dir).absolute())
    return env


def write_login_profile(home: Path, env: Mapping[str, str]) -> None:
    """Make login shells started in ``home`` restore the algorithm's environment.

    ``/etc/profile`` resets ``PATH``, so a run script started as
    ``#!/usr/bin/env -S bash --login`` (MAAP's tutorial does this) would lose the
    virtualenv. ``home/.bash_profile`` (bash) and ``home/.profile`` (sh, and bash when
    there is no ``.bash_profile``) re-export ``PATH``, ``VIRTUAL_ENV`` and every
    ``DPS_*`` / ``MAAP_*`` variable of ``env``.

    Parameters
    ----------
    home
        The folder used as ``HOME``; created if missing.
    env
        The environment to restore, as built by :func:`algorithm_environment` plus the
        job's variables.
    """
    lines = [
        "# Written by opendps: restores the job's environment in login shells.",
        "unset PYTHONHOME",
    ]
    for name in sorted(env):
        wanted = name in ("PATH", "VIRTUAL_ENV") or name.startswith(_PROFILE_PREFIXES)
        if wanted and _SHELL_NAME.fullmatch(name):
            lines.append(f"export {name}={shlex.quote(env[name])}")
    text = "\n".join(lines) + "\n"
    home.mkdir(parents=True, exist_ok=True)
    for name in (".bash_profile", ".profile"):
        path = home / name
        path.write_text(text)
        # It may hold the job token (DPS_JOB_TOKEN, MAAP_PGT).
        path.chmod(0o600)


def create_virtualenv(env_dir: Path, *, python: str, log: BinaryIO, timeout: float) -> None:
    """Create a virtualenv with pip at ``env_dir``, output appended to ``log``.

    ``python -m venv`` spends ~3 s installing pip from its bundled wheel. Copying the
    creating interpreter's own pip (same Python, pure Python code) takes ~0.1 s, so
    that is tried first; ``ensurepip`` is the fallback when ``python`` has no pip.

    Raises
    ------
    BuildError
        If the virtualenv cannot be created in time.
    """
    _run(
        [python, "-m", "venv", "--without-pip", str(env_dir)], log, timeout, "create the virtualenv"
    )
    if not _copy_pip(env_dir, python):
        python_in_env = str(env_dir / "bin" / "python")
        _run([python_in_env, "-m", "ensurepip", "--default-pip"], log, timeout, "install pip")


def _run(argv: list[str], log: BinaryIO, timeout: float, what: str) -> None:
    log.flush()
    try:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"the build timed out after {timeout:.0f} s (could not {what} in time)")
    except OSError as exc:
        raise BuildError(f"could not {what}: {exc}")
    if done.returncode != 0:
        raise BuildError(f"could not {what}: {argv[0]} exited {done.returncode} (see build log)")


def _copy_pip(env_dir: Path, python: str) -> bool:
    """Copy ``python``'s pip into the new virtualenv; False if that is not possible."""
    try:
        found = subprocess.run(
            [python, "-c", _PIP_LOCATION], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = found.stdout.splitlines()
    if found.returncode != 0 or len(lines) != 3:
        return False
    pip_dir, dist_info, python_name = Path(lines[0]), Path(lines[1]), lines[2]
    site = env_dir / "lib" / python_name / "site-packages"
    if not (pip_dir.is_dir() and site.is_dir()):
        return False
    shutil.copytree(pip_dir, site / "pip")
    if dist_info.is_dir():
        shutil.copytree(dist_info, site / dist_info.name)
    for name in ("pip", "pip3", f"pip{python_name.removeprefix('python')}"):
        _write_pip_launcher(env_dir / "bin" / name, env_dir / "bin" / "python")
    return True


def _write_pip_launcher(path: Path, python: Path) -> None:
    # The same launcher pip writes for its console script.
    body = (
        "import re\nimport sys\nfrom pip._internal.cli.main import main\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n"
    )
    shebang = f"#!{python}"
    if len(shebang) > MAX_SHEBANG or " " in str(python):
        quoted = shlex.quote(str(python))
        shebang = f"#!/bin/sh\n'''exec' {quoted} \"$0\" \"$@\"\n' '''"
    path.write_text(f"{shebang}\n{body}")
    path.chmod(0o755)
