"""Ends TFF's local ``worker_binary`` when the driver dies, however it dies (``kill -9``, a segfault).

TFF 0.87 starts ``worker_binary`` itself (``executor_factory.local_cpp_executor_factory``: a plain
``subprocess.Popen``, no ``PR_SET_PDEATHSIG``) and stops it only from a finaliser, so a driver killed with
SIGKILL or crashed in native code (the TFLite converter, say) leaves a ~200 MB worker listening without
authentication. The CLI calls :func:`start` first: it starts this file as a small watcher process (standard
library only, no TensorFlow) holding the read end of a pipe whose write end only the driver holds. The
watcher notes the driver's ``worker_binary`` children every ``POLL_SECONDS``; when the pipe reaches EOF (the
driver is gone: the kernel closes its descriptors on any exit) it SIGKILLs those it noted that still run
(same PID and start time, so a reused PID is never hit), then exits. A worker started less than
``POLL_SECONDS`` before the driver died can escape; ``process.stop_worker_processes`` covers the ordinary
exits.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from typing import Optional

POLL_SECONDS = 0.25
_watcher: Optional[subprocess.Popen] = None
_write_end: Optional[int] = None


def _start_time(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _worker_children(parent: int) -> list[int]:
    pids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
    except OSError:
        return []
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"worker_binary" in f.read().split(b"\0")[0]:
                    out.append(pid)
        except OSError:
            pass
    return out


def watch(parent: int, fd: int) -> None:
    """The watcher's loop: note ``parent``'s worker_binary children until ``fd`` reaches EOF, then kill them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's business; we follow its end
    noted: dict[int, str] = {}
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
        if ready and not os.read(fd, 64):
            break
        for pid in _worker_children(parent):
            start = _start_time(pid)
            if start is not None:
                noted[pid] = start
    for pid, start in noted.items():
        if _start_time(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start() -> int:
    """Starts the watcher for this process (once; Linux only: needs ``/proc``).

    Returns:
      the watcher's PID (0 where ``/proc`` is missing and nothing was started).
    """
    global _watcher, _write_end
    if _watcher is not None:
        return _watcher.pid
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        return 0
    read_end, _write_end = os.pipe()  # both non-inheritable: worker_binary never holds the write end
    _watcher = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()),
                                 str(read_end)], pass_fds=(read_end,), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read_end)
    return _watcher.pid


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
