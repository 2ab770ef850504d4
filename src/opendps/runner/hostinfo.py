"""Facts about the machine a job ran on, recorded with each attempt's metrics."""

from __future__ import annotations

import functools
import os
import platform
import socket
from typing import Any

import psutil

import opendps
from opendps.runner import limits


def host_facts() -> dict[str, Any]:
    """Hostname, CPUs, memory, platform and versions; computed once per process.

    Returns a fresh copy each time, so a caller may add to it without changing the cache.
    """
    return dict(_host_facts())


@functools.cache
def _host_facts() -> dict[str, Any]:
    hostname = socket.gethostname()
    return {
        "hostname": hostname,
        "fqdn": _fqdn(hostname),
        "cpus": os.cpu_count(),
        "memory_total": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "opendps": opendps.__version__,
        "memory_control": limits.memory_control(),
    }


def _fqdn(hostname: str) -> str:
    try:
        return socket.getfqdn(hostname)
    except (OSError, UnicodeError):
        return hostname
