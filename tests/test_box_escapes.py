"""Each attack of issue #9 as a job: with the server as root, a job tries to escape its box
and reports what it reached. Every attempt must fail with ``isolation: bwrap``.

``isolation: process`` runs the same attacks; what that mode cannot stop is listed in
``PROCESS_LACKS`` (and in docs/security.md), and everything else must fail there too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from opendps.errors import InvalidInput
from opendps.models import JobStatus, Reason
from opendps.runner import limits
from opendps.service.jobs import Submission
from tests.support.box import BoxedDPS
from tests.support.dps import wait_until

#: Attacks that ``isolation: process`` does not stop (it has no PID namespace, and all
#: jobs share one job user): documented in docs/security.md.
PROCESS_LACKS = {"read_other_environ", "signal_other_jobs"}
ATTACKS = {
    "read_secret_key",
    "read_database",
    "list_other_work_dirs",
    "list_download_cache",
    "list_storage",
    "list_builds",
    "signal_server",
    "write_etc",
    "read_other_environ",
    "write_cgroup_procs",
    "signal_other_users_processes",
    "signal_other_jobs",
}

ATTACK = r"""#!/usr/bin/env bash
# Arguments: the data dir, the server's pid, the folder that holds the job cgroups.
data="$1"; server="$2"; cgroups="$3"
report=output/report.txt
attempt() {  # attempt NAME COMMAND...: ESCAPED if the command succeeds
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then echo "$name ESCAPED"; else echo "$name blocked"; fi >> $report
}
attempt read_secret_key cat "$data/secret.key"
attempt read_database cat "$data/dps.db"
attempt list_other_work_dirs ls "$data/jobs"
attempt list_download_cache ls "$data/cache"
attempt list_storage ls "$data/storage"
attempt list_builds ls "$data/builds"
attempt signal_server kill -0 "$server"
attempt write_etc touch /etc/dps-escape-test
# Another job's live token in /proc/*/environ.
found=blocked
for f in /proc/[0-9]*/environ; do
  token=$(tr '\0' '\n' < "$f" 2>/dev/null | grep '^DPS_JOB_TOKEN=')
  if [ -n "$token" ] && [ "$token" != "DPS_JOB_TOKEN=$DPS_JOB_TOKEN" ]; then found=ESCAPED; fi
done
echo "read_other_environ $found" >> $report
# Leave the job's cgroup: any cgroup.procs, the jobs folder, its parent, the root.
found=blocked
for f in "$cgroups/cgroup.procs" "$cgroups/../cgroup.procs" /sys/fs/cgroup/*/cgroup.procs \
         /sys/fs/cgroup/cgroup.procs; do
  if [ -e "$f" ] && (echo $$ > "$f") 2>/dev/null; then found=ESCAPED; fi
done
echo "write_cgroup_procs $found" >> $report
# Signal every process it can see outside its own session: other jobs, their supervisors,
# the server (kill -0 checks the permission without hurting anyone).
mine=$(cut -d' ' -f6 /proc/$$/stat)
others=blocked; own_user=blocked
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$(cut -d' ' -f6 $p/stat 2>/dev/null)" = "$mine" ] && continue
  if kill -0 "$pid" 2>/dev/null; then
    if [ "$(stat -c %u $p)" = "$(id -u)" ]; then own_user=ESCAPED; else others=ESCAPED; fi
  fi
done
echo "signal_other_users_processes $others" >> $report
echo "signal_other_jobs $own_user" >> $report
# Poison the shared download cache and the local source through input/.
echo POISONED-BY-BOB >> input/data.txt 2>/dev/null
env > output/env.txt
id -u > output/uid.txt
"""

VICTIM = "#!/usr/bin/env bash\nsleep 20\n"


def _report(dps: BoxedDPS, job_id: str) -> dict[str, str]:
    lines = dps.output(job_id, "report.txt").split("\n")
    return dict(line.split(" ", 1) for line in lines if line)


@pytest.fixture
def attack_repo(make_algorithm_repo: Callable[..., Path]) -> Path:
    return make_algorithm_repo(
        {"attack.sh": ATTACK, "victim.sh": VICTIM}, executable=["attack.sh", "victim.sh"]
    )


ATTACK_INPUTS = (
    "  positional:\n    - name: data_dir\n    - name: server_pid\n    - name: cgroups\n"
    "  file:\n    - name: data\n"
)


def test_a_job_reaches_nothing_outside_its_box(
    boxed: BoxedDPS, attack_repo: Path, http_files, box_root: Path
) -> None:
    dps = boxed
    # Another user's secret, and the server's own credentials in its environment.
    dps.services.secrets.add("alice", "token", "alice-very-secret-value")
    victim_pid = dps.register(attack_repo, name="victim", run="victim.sh")
    attack_pid = dps.register(attack_repo, name="attack", run="attack.sh", inputs=ATTACK_INPUTS)
    victim = dps.submit(victim_pid)
    wait_until(
        lambda: dps.services.job_store.get_job(victim).status == JobStatus.RUNNING,
        what="the victim job to run",
    )
    http_files.add("data.txt", b"clean data\n")
    base = limits._cgroup_base()
    cgroups = str(base[1]) if base else "/nonexistent"
    inputs = {
        "data_dir": str(dps.data_dir),
        "server_pid": str(os.getpid()),
        "cgroups": cgroups,
        "data": http_files.url("data.txt"),
    }
    job = dps.run(attack_pid, inputs)
    assert job.status == JobStatus.SUCCESSFUL, job.message
    report = _report(dps, job.id)
    lacks = PROCESS_LACKS if dps.isolation == "process" else set()
    escaped = {name for name, verdict in report.items() if verdict == "ESCAPED"}
    assert escaped == lacks, f"escaped: {sorted(escaped)}"
    assert set(report) == ATTACKS
    # It ran as the job user, never as root.
    assert dps.output(job.id, "uid.txt").strip() == str(dps.services.sandbox.user.uid)
    assert job.metrics["isolation"] == dps.isolation
    assert job.metrics["job_user"] == "dps-job"

    # The cache was not poisoned: the next job gets the clean bytes from the cache.
    second = dps.run(attack_pid, inputs)
    assert second.metrics["localize"]["cached"] == 1
    [cached] = list((dps.data_dir / "cache").rglob("data.txt"))
    assert cached.read_bytes() == b"clean data\n"
    dps.services.jobs.cancel(victim, "anonymous")


def test_the_job_environment_has_no_server_credentials(
    boxed_factory: Callable[..., BoxedDPS],
    attack_repo: Path,
    make_algorithm_repo: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # The server's own environment holds storage and cloud credentials.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-of-the-server")
    monkeypatch.setenv("DPS_S3_SECRET_KEY", "s3-secret-of-the-server")
    monkeypatch.setenv("DPS_DATABASE_URL_EXTRA", "postgresql://u:pw@db/x")
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    dps = boxed_factory("bwrap")
    repo = make_algorithm_repo(
        {"build.sh": "env > build-env.txt\n", "run.sh": "#!/usr/bin/env bash\nenv > output/e\n"},
        executable=["run.sh"],
    )
    pid = dps.register(repo, build="build.sh")
    job = dps.run(pid)
    assert job.status == JobStatus.SUCCESSFUL, job.message
    env = dict(line.split("=", 1) for line in dps.output(job.id, "e").splitlines() if "=" in line)
    leaked = [k for k in env if k.startswith("AWS_") or "secret-of-the-server" in env[k]]
    assert not leaked
    contract = {"DPS_JOB_ID", "DPS_INPUT_DIR", "DPS_OUTPUT_DIR", "DPS_WORK_DIR"}
    contract |= {"DPS_API_URL", "DPS_JOB_TOKEN"}
    assert {k for k in env if k.startswith("DPS_")} == contract
    assert env["LC_TIME"] == "C.UTF-8"  # the allowlist: LC_*
    assert env["HOME"] == str(Path(env["DPS_WORK_DIR"]) / "home")
    # The build saw no credentials either.
    build = dps.services.algorithms.get(pid).build
    build_env = (Path(build.algorithm_dir) / "build-env.txt").read_text()
    assert "secret-of-the-server" not in build_env
    assert "AWS_SECRET_ACCESS_KEY" not in build_env


def test_a_decoy_pid_file_cannot_aim_recovery_at_another_process(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    dps = boxed
    decoy = subprocess.Popen(["sleep", "300"], start_new_session=True)
    started = psutil.Process(decoy.pid).create_time()
    script = (
        "#!/usr/bin/env bash\n"
        f'echo "{decoy.pid} {started}" > _run.pid\necho "{decoy.pid}" > output/_run.pid\n'
        "sleep 60\n"
    )
    repo = make_algorithm_repo({"run.sh": script}, executable=["run.sh"])
    pid = dps.register(repo)
    job_id = dps.submit(pid)
    wait_until(lambda: (dps.data_dir / "jobs" / job_id / "_run.pid").exists(), what="decoy")
    attempt = dps.services.job_store.current_attempt(job_id)
    assert attempt.run_pid is not None and attempt.run_pid != decoy.pid
    os.kill(attempt.pid, signal.SIGKILL)  # the supervisor dies
    wait_until(
        lambda: (
            dps.services.job_store.get_job(job_id).attempts >= 2
            or dps.services.job_store.get_job(job_id).status.terminal
        ),
        timeout=30,
        what="recovery",
    )
    try:
        assert decoy.poll() is None, "recovery killed the decoy named by the job"
    finally:
        decoy.kill()
        decoy.wait()
        dps.services.jobs.cancel(job_id, "anonymous")


def test_a_queue_without_network_has_no_network(
    boxed_factory: Callable[..., BoxedDPS], make_algorithm_repo: Callable[..., Path], http_files
) -> None:
    dps = boxed_factory("bwrap")
    http_files.add("ping", b"pong")
    port = re.search(r":(\d+)/", http_files.url("ping")).group(1)
    script = (
        "#!/usr/bin/env bash\n"
        f"if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo reached; "
        "else echo unreachable; fi > output/net.txt\n"
    )
    repo = make_algorithm_repo({"run.sh": script}, executable=["run.sh"])
    pid = dps.register(repo)
    online = dps.run(pid, queue="main")
    offline = dps.run(pid, queue="offline")
    assert dps.output(online.id, "net.txt").strip() == "reached"
    assert dps.output(offline.id, "net.txt").strip() == "unreachable"
    assert (online.metrics["network"], offline.metrics["network"]) == (True, False)


def test_a_tag_that_names_a_parent_folder_is_refused_at_submit(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "#!/usr/bin/env bash\ntrue\n"}, executable=["run.sh"])
    pid = boxed.register(repo)
    for tag in ("..", ".", "a\nb"):
        with pytest.raises(InvalidInput, match="tag"):
            boxed.services.jobs.submit(Submission(pid, {}, tags=[tag]), owner="anonymous")
    job = boxed.run(pid, tags=["../x"])  # "/" becomes "_": one folder, inside
    assert job.status == JobStatus.SUCCESSFUL
    assert job.attempts == 1


def test_links_a_job_leaves_in_its_work_dir_are_not_followed(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    key = boxed.data_dir / "secret.key"
    script = (
        "#!/usr/bin/env bash\n"
        f"ln -sf {key} output/key.txt\nrm -f _stdout.txt\nln -s {key} _stdout.txt\n"
        "mkfifo output/pipe\nexit 3\n"
    )
    repo = make_algorithm_repo({"run.sh": script}, executable=["run.sh"])
    pid = boxed.register(repo)
    job = boxed.run(pid)
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.EXIT_CODE)
    staged = {o["path"] for o in boxed.services.jobs.outputs(job.id, "anonymous")["outputs"]}
    assert "key.txt" not in staged and "pipe" not in staged
    secret = key.read_text().strip()
    logs = boxed.services.jobs.logs(job.id, "anonymous")
    assert secret not in logs["stdout"]
    # Back in the server's hands, nothing of the work dir is the job user's any more.
    work = Path(job.work_dir)
    assert {p.lstat().st_uid for p in [work, *work.rglob("*")]} == {0}
