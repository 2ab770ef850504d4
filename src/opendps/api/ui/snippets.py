"""Copyable snippets on the job page: run it here with ``dps run-local``, or submit it
again from Python with the opendps client or maap-py."""

from __future__ import annotations

import json
import shlex
from typing import Any

from opendps.models import Job


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def run_local(job: Job, base: str) -> str:
    """Fetch the registration as deployed, then run it here exactly as the job ran."""
    package = f"{base}/processes/{job.process_id}/package"
    args = [f"-i {shlex.quote(f'{k}={_value_text(v)}')}" for k, v in job.inputs.items()]
    fetch = f"curl -fsS -o algorithm.yml {shlex.quote(package)}"
    return fetch + "\n" + " \\\n  ".join(["dps run-local algorithm.yml", *args])


def opendps_python(job: Job, base: str) -> str:
    kwargs = [f"queue={job.queue!r}"]
    if job.tag:
        kwargs.append(f"tag={job.tag!r}")
    inputs = json.dumps(job.inputs, indent=4, ensure_ascii=False)
    return (
        "from opendps.client import Client\n\n"
        f"client = Client({base!r})  # token: Client(url, token=...)\n"
        f"job = client.submit(\n    {job.process_id!r},\n    {_indent(inputs)},\n"
        f"    {', '.join(kwargs)},\n)\n"
        'print(client.wait(job["jobID"]))\n'
    )


def maap_python(job: Job, base: str) -> str:
    """maap-py 5.x (the OGC calls); the server also answers 4.x's ``submitJob``."""
    inputs = json.dumps(job.inputs, indent=4, ensure_ascii=False)
    tag = f", tag={job.tag!r}" if job.tag else ""
    return (
        "from maap.maap import MAAP\n\n"
        f"maap = MAAP(maap_host={base!r})  # scheme included\n"
        f"response = maap.submit_job(\n    {job.process_id!r},\n    {_indent(inputs)},\n"
        f"    {job.queue!r}{tag},\n)\n"
        'job_id = response.json()["jobID"]\n'
        'print(maap.get_job_status(job_id).json()["status"])\n'
    )


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ")
