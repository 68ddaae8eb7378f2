"""Two processes racing for one file or folder: which one was refused."""

import time


def refused_first(first, second, *, timeout_s, poll_s, what):
    """Wait until one of two racing processes has exited; ``(refused, still running)``."""
    deadline = time.monotonic() + timeout_s
    while first.poll() is None and second.poll() is None:
        assert time.monotonic() < deadline, f"neither {what} was refused"
        time.sleep(poll_s)
    return (first, second) if first.poll() is not None else (second, first)
