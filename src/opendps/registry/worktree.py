"""A working tree as a build source: the developer's loop (``dps test``) builds what is on
disk, uncommitted edits and new files included, not what was last committed.

The tree is snapshotted without touching the developer's repository state: a temporary
index gets every tracked and untracked (not ignored) file (``git add -A``), that index
becomes a commit object (parent: HEAD) with fixed author and dates, and the commit is
pushed as branch ``<version>`` into a bare repository of our own, named like the
algorithm's repository so that ``run_command`` paths stay the same. The build then clones
that bare repository as it would clone any other. An unchanged tree gives the same commit
hash, so an unchanged tree reuses its build.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from opendps.errors import InvalidSpec

GIT_TIMEOUT = 300.0
# Fixed identity and dates: the snapshot's hash depends only on its tree and parent.
_SNAPSHOT_ENV = {
    "GIT_AUTHOR_NAME": "opendps",
    "GIT_AUTHOR_EMAIL": "opendps@localhost",
    "GIT_COMMITTER_NAME": "opendps",
    "GIT_COMMITTER_EMAIL": "opendps@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class Snapshot:
    """What was snapshotted, and where the build can clone it from."""

    top: Path  # the working tree's top folder
    url: str  # the bare repository holding the snapshot as branch ``branch``
    branch: str
    commit: str  # the snapshot commit
    head: str | None  # HEAD of the working tree (None: no commit yet)
    dirty: bool  # uncommitted changes or untracked files were included

    def describe(self) -> str:
        head = f"HEAD {self.head[:12]}" if self.head else "no commit yet"
        extra = ", with uncommitted changes" if self.dirty else ""
        return f"the working tree of {self.top} ({head}{extra})"


def repository_top(path: Path) -> Path | None:
    """The top folder of the git working tree that holds ``path``, or None."""
    folder = path if path.is_dir() else path.parent
    done = _git(["rev-parse", "--show-toplevel"], folder, check=False)
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def snapshot_working_tree(top: Path, store: Path, repo_name: str, branch: str) -> Snapshot:
    """Snapshot the working tree ``top`` into ``store/<repo_name>.git`` as ``branch``."""
    top = top.resolve()
    with tempfile.TemporaryDirectory(prefix="dps-index-") as folder:
        env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        head = _git(["rev-parse", "--verify", "--quiet", "HEAD"], top, check=False).stdout.strip()
        _git(["read-tree", head] if head else ["read-tree", "--empty"], top, env=env)
        _git(["add", "-A"], top, env=env)
        tree = _git(["write-tree"], top, env=env).stdout.strip()
    parents = ["-p", head] if head else []
    message = ["-m", "opendps: snapshot of the working tree"]
    commit = _git(["commit-tree", tree, *parents, *message], top, env=_SNAPSHOT_ENV).stdout.strip()
    dirty = not head or tree != _git(["rev-parse", f"{head}^{{tree}}"], top).stdout.strip()
    bare = store / f"{repo_name}.git"
    if not (bare / "HEAD").exists():
        bare.mkdir(parents=True, exist_ok=True)
        _git(["init", "--bare", "--quiet", str(bare)], store)
    _git(["push", "--quiet", "--force", str(bare), f"{commit}:refs/heads/{branch}"], top)
    return Snapshot(top, str(bare), branch, commit, head or None, dirty)


def snapshot_store(data_dir: Path, top: Path) -> Path:
    """Where the snapshots of one working tree are kept (one bare repository per tree)."""
    key = hashlib.sha256(str(top.resolve()).encode()).hexdigest()[:16]
    return data_dir / "worktrees" / key


def _git(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidSpec(f"git {args[0]} failed in {cwd}: {exc}") from None
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise InvalidSpec(f"git {args[0]} failed in {cwd}: {detail[0]}")
    return done
