"""batchsite/supervise.sh, `make run`'s supervisor, with stand-ins for its two processes: a worker
that dies is started again with a growing delay while the web server runs on, and what the dead
worker left behind goes with it. tests/test_make_run.py runs it with the real processes."""

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from tests.test_make_run import pid_alive

SUPERVISE = Path(settings.BASE_DIR) / "batchsite" / "supervise.sh"


def test_a_worker_that_keeps_dying_is_started_again_with_backoff_and_the_web_runs_on(tmp_path):
    starts, leftovers = tmp_path / "starts", tmp_path / "leftovers"
    # A worker that leaves a process behind (as Celery's embedded beat does) and dies at once.
    worker = tmp_path / "worker.sh"
    worker.write_text(
        f"sleep 600 >/dev/null 2>&1 &\necho $! >> {leftovers}\ndate +%s.%N >> {starts}\nexit 3\n"
    )
    web = tmp_path / "web.sh"
    web.write_text(f"exec {sys.executable} -c 'import time; time.sleep(600)'\n")
    supervisor = subprocess.Popen(
        ["bash", str(SUPERVISE), str(os.getpid()), f"bash {web}", f"bash {worker}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not starts.exists() or len(starts.read_text().split()) < 3:
            assert supervisor.poll() is None, supervisor.stdout.read()
            assert time.monotonic() < deadline, "the worker was not started three times"
            time.sleep(0.2)
        assert supervisor.poll() is None, "the web server was stopped with the worker"
        supervisor.send_signal(signal.SIGTERM)
        output, _ = supervisor.communicate(timeout=30)
    finally:
        supervisor.kill()
    assert supervisor.returncode == 0 and output.endswith("Stopped.\n"), output

    started = [float(when) for when in starts.read_text().split()]
    waits = [later - earlier for earlier, later in itertools.pairwise(started)]
    # 1, then 2 s of delay, each after the moment the supervisor noticed the death.
    assert waits[0] >= 1 and waits[1] >= 2, waits
    assert "The worker exited (status 3); starting it again in 2 s." in output
    left = [int(pid) for pid in leftovers.read_text().split()]
    assert not any(pid_alive(pid) for pid in left), "a dead worker's process was left"
