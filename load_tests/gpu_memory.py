"""The GPU memory a served model takes at peak, read with ``nvidia-smi`` while the bench loads it.

Each sample sums the memory of the GPU's compute processes other than the bench itself (its in-process
ceilings keep a CUDA context); where ``nvidia-smi`` lists no processes (e.g. in a PID namespace), it is the
GPU's memory in use less what was in use before the server started.
"""

from __future__ import annotations

import os
import subprocess
import threading

APPS = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
TOTAL = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]


def _query(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def others_mib(apps: str, own_pid: int) -> float | None:
    """MiB used by the listed compute processes other than ``own_pid`` (None when none is listed)."""
    used = []
    for line in apps.strip().splitlines():
        pid, _, mib = (field.strip() for field in line.partition(","))
        if pid.isdigit() and mib.replace(".", "", 1).isdigit() and int(pid) != own_pid:
            used.append(float(mib))
    return sum(used) if used else None


def total_mib(text: str) -> float | None:
    """MiB in use summed over the GPUs of ``nvidia-smi --query-gpu=memory.used`` (None when unreadable)."""
    values = [line.strip() for line in text.strip().splitlines()]
    return sum(float(v) for v in values) if values and all(v.replace(".", "", 1).isdigit() for v in values) else None


class PeakGpuMemory:
    """Samples every ``interval`` seconds between :meth:`start` and :meth:`stop`; :meth:`stop` gives the peak
    in MiB, or None without a readable ``nvidia-smi``."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak: float | None = None
        self._baseline: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-memory", daemon=True)

    def start(self) -> PeakGpuMemory:
        text = _query(TOTAL)
        self._baseline = total_mib(text) if text is not None else None
        self._thread.start()
        return self

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.peak

    def sample(self) -> float | None:
        apps = _query(APPS)
        used = others_mib(apps, os.getpid()) if apps is not None else None
        if used is None and self._baseline is not None:
            text = _query(TOTAL)
            total = total_mib(text) if text is not None else None
            used = None if total is None else max(0.0, total - self._baseline)
        return used

    def _run(self) -> None:
        while not self._stop.is_set():
            used = self.sample()
            if used is not None:
                self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(self.interval)
