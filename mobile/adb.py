"""A thin driver of the real ``adb`` executable: device selection, shell, push, pull.

It only moves bytes and runs commands (what to run lives in ``benchmark_model.py``).
Remote commands are given as argv lists and sent as ONE shell word list in which
every argument is quoted with ``shlex.quote``: ``adb shell`` joins its arguments
with spaces and hands them to the device's ``/system/bin/sh``, so a model file name
with spaces or shell characters can neither break nor inject into the command.
Every call has a timeout.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from typing import Optional, Sequence

INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install adb) or pass --adb PATH"


class AdbError(RuntimeError):
    """adb is missing, no usable device is attached, or an adb command failed; the message says which."""


@dataclasses.dataclass(frozen=True)
class Device:
    """One line of ``adb devices -l``: serial, state (device/unauthorized/offline/...), description."""

    serial: str
    state: str
    description: str = ""


def quote_remote(argv: Sequence[str]) -> str:
    """The remote command line: each argument one single-quoted shell word."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class Adb:
    """Runs ``adb`` for one device.

    Args:
      serial: device serial (``adb -s``); None picks the only attached device.
      adb_path: the adb executable; default: ``adb`` on ``PATH``.
      timeout_s: default per-command timeout in seconds (> 0).
      select: pick (and check) a device now; False only lists devices (``devices()``).

    Raises:
      AdbError: adb not installed; no device; several devices and no serial; the
        chosen device unauthorized, offline or absent.
    """

    def __init__(self, serial: Optional[str] = None, adb_path: Optional[str] = None, timeout_s: float = 60,
                 select: bool = True):
        self.adb = adb_path or shutil.which("adb")
        if not self.adb or not shutil.which(self.adb):
            raise AdbError(f"adb not found ({adb_path or 'not on PATH'}); {INSTALL_HINT}")
        if not timeout_s > 0:
            raise AdbError(f"the adb timeout must be > 0 seconds, got {timeout_s}")
        self.timeout_s = timeout_s
        self.serial = self._select(serial) if select else serial

    def _run(self, args: Sequence[str], timeout_s: Optional[float] = None, check: bool = True,
             device: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.adb] + (["-s", self.serial] if device else []) + list(args)
        timeout = timeout_s or self.timeout_s
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AdbError(f"`{' '.join(cmd[1:])}` timed out after {timeout:g} s") from e
        except OSError as e:
            raise AdbError(f"cannot run {self.adb}: {e}; {INSTALL_HINT}") from e
        if check and proc.returncode != 0:
            msg = (proc.stderr.strip() or proc.stdout.strip() or "(no output)").splitlines()[-5:]
            raise AdbError(f"`adb {' '.join(args[:2])}` failed (exit {proc.returncode}): " + " / ".join(msg))
        return proc

    def devices(self) -> list[Device]:
        """Parses ``adb devices -l``."""
        proc = self._run(["devices", "-l"], device=False)
        out = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line or line.startswith("List of devices") or line.startswith("*"):
                continue
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            serial, rest = parts
            # adb prints "no permissions (<why>); see [<url>]" as the state of a device it may not open.
            m = re.match(r"(no permissions(?: \([^)]*\))?(?:; see \[[^\]]*\])?)\s*(.*)$", rest)
            if m:
                out.append(Device(serial, "no permissions", (m.group(1)[len("no permissions"):].strip() + " "
                                                              + m.group(2)).strip()))
                continue
            state, _, desc = rest.partition(" ")
            out.append(Device(serial, state, desc.strip()))
        return out

    def _select(self, serial: Optional[str]) -> str:
        devs = self.devices()
        if serial is not None:
            match = [d for d in devs if d.serial == serial]
            if not match:
                listed = ", ".join(f"{d.serial} ({d.state})" for d in devs) or "none"
                raise AdbError(f"device {serial!r} is not attached (attached: {listed}); check `adb devices -l`")
            dev = match[0]
        elif not devs:
            raise AdbError("no Android device attached: `adb devices -l` lists none. Connect a phone with USB "
                           "debugging enabled (or start an emulator) and accept the debugging prompt")
        elif len(devs) > 1:
            listed = ", ".join(f"{d.serial} ({d.state})" for d in devs)
            raise AdbError(f"several devices attached ({listed}); choose one with --serial")
        else:
            dev = devs[0]
        if dev.state == "unauthorized":
            raise AdbError(f"device {dev.serial} is unauthorized: unlock it and accept the 'Allow USB debugging' "
                           f"prompt, then run again")
        if dev.state == "no permissions":
            raise AdbError(f"device {dev.serial}: adb has no permission to open it ({dev.description or 'USB'}); "
                           f"add a udev rule for the phone and your user to the plugdev group "
                           f"(Debian: apt-get install android-sdk-platform-tools-common), replug it and run "
                           f"`adb kill-server`, or run adb as root")
        if dev.state == "offline":
            raise AdbError(f"device {dev.serial} is offline: reconnect the cable or run `adb reconnect`")
        if dev.state != "device":
            raise AdbError(f"device {dev.serial} is in state {dev.state!r}, not ready for commands")
        return dev.serial

    def shell(self, argv: Sequence[str], timeout_s: Optional[float] = None,
              check: bool = True) -> subprocess.CompletedProcess:
        """Runs ``argv`` on the device (each element one quoted word); returns the completed process."""
        return self._run(["shell", quote_remote(argv)], timeout_s, check)

    def push(self, local: str, remote: str, timeout_s: Optional[float] = None) -> None:
        """Copies a local file to the device."""
        self._run(["push", local, remote], timeout_s)

    def pull(self, remote: str, local: str, timeout_s: Optional[float] = None) -> None:
        """Copies a device file to the host."""
        self._run(["pull", remote, local], timeout_s)

    def getprop(self, name: str) -> str:
        """``getprop NAME`` on the device, stripped."""
        return self.shell(["getprop", name]).stdout.strip()
