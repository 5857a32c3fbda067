"""Removing what killed clusters left behind: stores in /dev/shm and session directories.

A process that dies by SIGKILL cleans nothing up. So each such directory names the
process it belongs to (a `.owner` file: pid and start time, so a reused pid does not
count), and the next embedded cluster to start deletes the directories whose owner is gone:
a node's store (and its spill directory) belongs to its daemon, a session directory to
the driver that started it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import psutil

from redray.objectstore.shm_store import SHM_ROOT, spill_directory

OWNER_FILE = ".owner"
SESSION_PREFIX = "redray-session-"
_LEGACY_MIN_AGE = 60.0


def claim(directory: Path | str, pid: int | None = None) -> None:
    """Record that `directory` lives as long as process `pid` (default: this one)."""
    pid = pid or os.getpid()
    started = psutil.Process(pid).create_time()
    Path(directory, OWNER_FILE).write_text(f"{pid} {started}")


def _owner_gone(directory: Path) -> bool:
    """True only when the directory names an owner and that process no longer exists."""
    try:
        pid_text, started = Path(directory, OWNER_FILE).read_text().split()
        process = psutil.Process(int(pid_text))
        return abs(process.create_time() - float(started)) > 0.01
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return False  # not ours to judge (or being written right now)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _dead_legacy_session(session: Path) -> bool:
    """A session directory from before owner files: stale once its Redis socket is dead
    (and it is old enough not to be one being set up right now)."""
    if (session / OWNER_FILE).exists():
        return False
    try:
        if time.time() - session.stat().st_mtime < _LEGACY_MIN_AGE:
            return False
    except FileNotFoundError:
        return False
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(session / "redis.sock"))
        except OSError:
            return True
    return False


def sweep() -> list[Path]:
    """Delete every store and session directory whose owner died; returns them."""
    removed = []
    for store in SHM_ROOT.glob("redray-*"):
        if _owner_gone(store):
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(spill_directory(store.name[len("redray-") :]), ignore_errors=True)
            removed.append(store)
    for session in Path(tempfile.gettempdir()).glob(SESSION_PREFIX + "*"):
        if _owner_gone(session) or _dead_legacy_session(session):
            shutil.rmtree(session, ignore_errors=True)
            removed.append(session)
    return removed
