"""Real git repositories for algorithm tests.

``make_algorithm_repo`` writes files into a new repository under ``tmp_path``,
commits them and answers its path, usable as a ``repository_url`` as is or as
``path.as_uri()`` (``file://``). ``commit_files`` adds later commits, for tests
that need history (a tag behind the branch head, an older commit).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

Files = Mapping[str, str | bytes]

# Hermetic git: no user or system config, a fixed identity, no signing.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "opendps tests",
    "GIT_AUTHOR_EMAIL": "tests@opendps.invalid",
    "GIT_COMMITTER_NAME": "opendps tests",
    "GIT_COMMITTER_EMAIL": "tests@opendps.invalid",
}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; answers its stdout, stripped."""
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def commit_files(
    repo: Path,
    files: Files,
    executable: Iterable[str] = (),
    tags: Iterable[str] = (),
    message: str = "update",
) -> str:
    """Write ``files`` into ``repo``, commit them, tag the commit; answers its full hash."""
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for name in executable:
        (repo / name).chmod(0o755)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    for tag in tags:
        git(repo, "tag", tag)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def make_algorithm_repo(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_algorithm_repo(files, executable=(), tags=(), branch="main", name="algo")``.

    Each call makes a new repository whose folder is named ``name`` (the clone's
    folder name, see ``repo_dir_name``) and answers its path.
    """
    counter = itertools.count()

    def make(
        files: Files,
        executable: Iterable[str] = (),
        tags: Iterable[str] = (),
        branch: str = "main",
        name: str = "algo",
    ) -> Path:
        repo = tmp_path / "repos" / str(next(counter)) / name
        repo.mkdir(parents=True)
        git(repo, "init", "--quiet", "--initial-branch", branch)
        commit_files(repo, files, executable, tags, message="initial commit")
        return repo

    return make
