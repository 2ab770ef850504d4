"""Reading files in a job's work dir, which the job controls.

A job can replace any file there by a symbolic link (``_stdout.txt -> ../../dps.db`` once
had the server open its own database on ``GET /logs``) or by a FIFO (a read blocks
forever). The server reads such files only through :func:`open_in_work_dir`.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)


def open_in_work_dir(work_dir: Path, name: str) -> BinaryIO | None:
    """A regular file directly inside the job's work dir, or None.

    The job owns its work dir and may replace a log by a link (``_stdout.txt ->
    ../../dps.db`` once had the server open its own database) or a FIFO (a read would
    block forever): neither the work dir nor the file is followed if it is a link
    (O_NOFOLLOW), and only regular files are read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        folder = os.open(work_dir, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fd = os.open(name, flags, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            log.warning(
                "not reading %s/%s: it is a symbolic link",
                work_dir,
                name,
                extra={"action": "log_link_refused"},
            )
        return None
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
