"""``log_format: json``: the server writes one JSON object per line, and every line about
a job carries its ``job_id``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from opendps.logs import JsonFormatter
from tests.support.cluster import write_config


def test_the_server_logs_json_lines_with_the_job_id(
    tmp_path: Path, start_live_server, make_algorithm_repo
) -> None:
    repo = make_algorithm_repo({"run.sh": "#!/bin/bash\necho hi\n"}, executable=["run.sh"])
    config = write_config(tmp_path / "dps.yml", {"log_format": "json"})
    server = start_live_server(config=config)
    server.client.register(
        f"algorithm_name: demo\nalgorithm_version: main\nrepository_url: {repo}\n"
        f"run_command: {repo.name}/run.sh\ninputs: {{}}\n"
    )
    server.client.wait_for_build("demo:main", timeout=60)
    job_id = server.client.submit("demo:main", {})["jobID"]
    assert server.client.wait(job_id, timeout=60)["status"] == "successful"
    server.client.status(job_id)
    server.stop()
    text = server.log_path.read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    others = [line for line in text.splitlines() if line and not line.startswith("{")]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert others == [line for line in others if line.startswith("opendps http")]  # banner
    about_job = [e for e in entries if job_id in e["message"]]
    assert about_job and all(e.get("job_id") == job_id for e in about_job)
    assert any(e.get("action") == "job_claimed" for e in about_job)


def test_extra_fields_and_exceptions_are_kept() -> None:
    record = logging.makeLogRecord(
        {"msg": "boom %s", "args": ("x",), "levelname": "ERROR", "name": "t", "action": "a"}
    )
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "boom x" and entry["action"] == "a"
    assert "ValueError: bad" in entry["exception"]
