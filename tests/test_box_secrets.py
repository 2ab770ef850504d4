"""Secrets that survive operations (issue #9 item 6): the key is checked at start, can be
rotated, a key change fails no unrelated job, and logs are masked while the job runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from opendps.errors import ConfigError
from opendps.models import JobStatus
from opendps.runner.workdir import mask_text
from opendps.service.context import Services
from tests.support.box import BoxedDPS
from tests.support.dps import fast_settings, wait_until


def _dps(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opendps.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_bad_secret_key_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid key"):
        Services(fast_settings(tmp_path / "a", secret_key="not-a-fernet-key"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "secret.key").write_text("garbage\n")
    done = _dps("worker", "--data-dir", str(tmp_path / "b"))
    assert done.returncode == 2
    assert "secret.key is not a valid key" in done.stderr
    assert "Traceback" not in done.stderr


def test_rotate_key_re_encrypts_every_secret(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "dps")
    services = Services(settings)
    services.secrets.add("alice", "token", "alice-secret-1")
    services.secrets.add("bob", "pw", "bob-secret-2")
    old_key = services.secret_key
    services.close()
    done = _dps("secrets", "rotate-key", "--data-dir", str(settings.data_dir))
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 2 secret(s)" in done.stdout
    new_key = (settings.data_dir / "secret.key").read_text().strip()
    assert new_key != old_key
    assert (settings.data_dir / "secret.key.old").read_text().strip() == old_key
    # Readable with the new key alone.
    (settings.data_dir / "secret.key.old").unlink()
    after = Services(settings)
    assert after.secrets.get("alice", "token") == "alice-secret-1"
    assert after.secrets.get("bob", "pw") == "bob-secret-2"
    after.close()


def test_a_changed_key_fails_no_unrelated_job(
    boxed_factory: Callable[..., BoxedDPS], make_algorithm_repo: Callable[..., Path]
) -> None:
    dps = boxed_factory("bwrap")
    # A secret written under another key (an operator replaced secret.key by hand).
    stray = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    dps.services.accounts.add_secret("anonymous", "old", stray)
    repo = make_algorithm_repo(
        {"run.sh": "#!/usr/bin/env bash\necho fine\n"}, executable=["run.sh"]
    )
    job = dps.run(dps.register(repo))
    assert job.status == JobStatus.SUCCESSFUL, job.message


def test_logs_are_masked_while_the_job_runs(
    boxed_factory: Callable[..., BoxedDPS], make_algorithm_repo: Callable[..., Path]
) -> None:
    dps = boxed_factory("bwrap")
    dps.services.secrets.add("anonymous", "long", "s3cr3t-value-123")
    dps.services.secrets.add("anonymous", "short", "ab1")
    script = (
        "#!/usr/bin/env bash\n"
        "echo 'long=s3cr3t-value-123 short=ab1 word=ab1cd'\n"
        "touch output/printed\nsleep 30\n"
    )
    repo = make_algorithm_repo({"run.sh": script}, executable=["run.sh"])
    job_id = dps.submit(dps.register(repo))
    services = dps.services
    wait_until(
        lambda: (services.settings.jobs_dir / job_id / "output" / "printed").exists(),
        what="the job to print",
    )
    job = services.job_store.get_job(job_id)
    text, offset = services.jobs.read_log_chunk(job, "stdout")
    assert text == "long=******** short=******** word=ab1cd\n"
    assert offset == len(b"long=s3cr3t-value-123 short=ab1 word=ab1cd\n")
    assert "s3cr3t" not in services.jobs.logs(job_id, "anonymous")["stdout"]
    services.jobs.cancel(job_id, "anonymous")
    wait_until(lambda: services.job_store.get_job(job_id).status.terminal, timeout=30)
    assert "s3cr3t" not in services.jobs.logs(job_id, "anonymous")["stdout"]


def test_short_secrets_are_masked_only_as_whole_tokens() -> None:
    text = "pin=42 id=4242 x42 (42) token=abcdefghij abcdefghijk"
    assert mask_text(text, ["42", "abcdefghij"]) == (
        "pin=******** id=4242 x42 (********) token=******** ********k"
    )
