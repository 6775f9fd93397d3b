"""Loaded (through PYTHONPATH) by the worker processes test_clock_skew runs under libfaketime.

libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 fails clock_nanosleep on an absolute
monotonic deadline with EINVAL, and that is how Python's `time.sleep` sleeps; faking the
monotonic clock instead hangs every timed condition wait (`threading.Event.wait`). So monotonic
stays real and `time.sleep` waits in `select`, which libfaketime leaves alone."""

import select
import time


def sleep_in_select(seconds: float) -> None:
    select.select([], [], [], seconds)


time.sleep = sleep_in_select
