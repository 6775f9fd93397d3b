"""Peak memory of a process tree, read from /proc (Linux), for tests and the benchmark."""

import threading
import time
from pathlib import Path


class PeakMemory:
    """Samples the resident memory of a process and its descendants every 50 ms, keeping
    the highest reading of any one of them (a Celery pool child, say)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kib = 0
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def processes(self) -> list[int]:
        found, frontier = [], [self.pid]
        while frontier:
            pid = frontier.pop()
            found.append(pid)
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                frontier += [int(child) for child in children.read_text().split()]
        return found

    def sample(self) -> None:
        while self.running:
            for pid in self.processes():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            time.sleep(0.05)

    def stop(self) -> float:
        """The peak, in MiB."""
        self.running = False
        self.thread.join()
        return self.peak_kib / 1024
