"""The output folder of a run: checked before any work, locked while a process uses it, cleared for ``--overwrite``.

- :func:`claim` checks ``--output-dir`` (not a file, not below a file, creatable and writable) and takes an
  exclusive ``flock`` on ``<output_dir>/.tff_prune.lock``, which holds the owner's PID. A second process
  (a second ``--resume`` of a run still going, say) is refused with :class:`OutputDirBusy` naming that PID.
  The kernel drops the lock when its process ends, however it ends (``kill -9`` included), so a stale lock
  never blocks a resume. Claims are re-entrant within one process (the CLI claims, then ``loop.run``).
- :func:`holds_run` says whether a folder holds a run (a checkpoint, or at least one round in
  ``metrics.jsonl``); :func:`clear_run_files` removes the files a run writes, for ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import time
from typing import Iterator

from tff_prune import report
from tff_prune.config import ConfigError

LOCK_FILE = ".tff_prune.lock"
# Every file a run writes into its folder (loop, export, report); --overwrite removes exactly these.
RUN_FILES = (report.METRICS_FILE, report.SUMMARY_FILE, report.CURVES_FILE, "checkpoint.npz", "model.keras",
             "model_qat.h5", "labels.txt", "model*.tflite", "model*.json", ".*.tmp*")


class OutputDirBusy(RuntimeError):
    """Another live process holds the output folder's lock; the message names its PID and the fix."""


_held: dict[str, list] = {}  # realpath -> [fd, claims, created]


def check_output_dir(path: str) -> None:
    """Refuses an output folder that cannot be one, without creating anything.

    Raises:
      ConfigError: ``path`` is empty, is a file, lies below a file, or its nearest existing folder is not
        writable; the message names ``--output-dir``.
    """
    if not path or not path.strip():
        raise ConfigError(f"--output-dir: must name a folder, got {path!r}")
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--output-dir: {path} is a file, not a folder; choose another --output-dir")
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"--output-dir: {path} lies below {probe}, which is a file; choose another --output-dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output-dir: {probe} is not writable; choose a writable --output-dir")


def _read_owner(lock_path: str) -> str:
    for _ in range(20):  # the owner writes its PID right after taking the lock
        try:
            with open(lock_path) as f:
                text = f.read().strip()
        except OSError:
            text = ""
        if text:
            return text.split()[0]
        time.sleep(0.05)
    return "unknown"


def _acquire(path: str) -> tuple[int, bool]:
    created = not os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--output-dir: cannot create {path} ({e.strerror}); choose a writable --output-dir") from e
    lock_path = os.path.join(path, LOCK_FILE)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(f"--output-dir: cannot write in {path} ({e.strerror}); choose a writable "
                              f"--output-dir") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            pid = _read_owner(lock_path)
            raise OutputDirBusy(
                f"--output-dir: {path} is in use by another run (PID {pid}); wait for it to finish, or stop it "
                f"(kill {pid}) and continue with --resume, or choose another --output-dir") from None
        try:  # the owner before us may have removed the file after we opened it: lock the file on disk
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd, created


def _release(path: str, fd: int, created: bool) -> None:
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        os.remove(lock_path)
        if created and not os.listdir(path):  # a run that stopped before writing anything leaves no folder
            os.rmdir(path)
    except OSError:
        pass
    os.close(fd)


@contextlib.contextmanager
def claim(output_dir: str) -> Iterator[str]:
    """Holds ``output_dir`` for this process: checked, created if missing, exclusively locked.

    On exit the lock file is removed, and so is the folder if this claim created it and nothing was
    written there. Re-entrant: nested claims of the same folder in one process share the lock.

    Yields:
      the absolute path of the folder.

    Raises:
      ConfigError: the folder cannot be created or written (see :func:`check_output_dir`).
      OutputDirBusy: another process holds it.
    """
    path = os.path.realpath(os.path.abspath(output_dir))
    check_output_dir(path)
    entry = _held.get(path)
    if entry is None:
        fd, created = _acquire(path)
        entry = _held[path] = [fd, 0, created]
    entry[1] += 1
    try:
        yield path
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            del _held[path]
            _release(path, entry[0], entry[2])


def holds_run(output_dir: str) -> bool:
    """True if ``output_dir`` holds a run: a checkpoint, or at least one finished round in ``metrics.jsonl``."""
    if os.path.isfile(os.path.join(output_dir, "checkpoint.npz")):
        return True
    return bool(report.read_metrics(os.path.join(output_dir, report.METRICS_FILE)))


def clear_run_files(output_dir: str) -> list[str]:
    """Removes the files an earlier run wrote in ``output_dir`` (:data:`RUN_FILES`); other files stay.

    Returns:
      the removed paths, sorted.
    """
    removed = []
    for pattern in RUN_FILES:
        for p in glob.glob(os.path.join(glob.escape(output_dir), pattern), include_hidden=True):
            if os.path.isfile(p) and os.path.basename(p) != LOCK_FILE:
                os.remove(p)
                removed.append(p)
    return sorted(removed)
