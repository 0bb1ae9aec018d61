"""`xlnet pretrain` run as a process by the tests: its step losses read from the log, a signal
sent once it logs a chosen step, the whole process group killed at a deadline; and free
loopback ports for worker processes."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_LINE = re.compile(r"step (\d+)/\d+ loss (\S+)")


def run_trainer(command, stop_at=None, sig=None, env=None, deadline_s=240):
    """Runs the trainer; sends `sig` to its process group once it logs step `stop_at`.

    Returns (exit status, {step: loss}, log). The whole group is killed at the deadline."""
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + deadline_s
    losses, lines = {}, []
    try:
        for line in process.stderr:
            lines.append(line)
            match = STEP_LINE.search(line)
            if match:
                losses[int(match.group(1))] = float(match.group(2))
                if stop_at is not None and int(match.group(1)) == stop_at:
                    os.killpg(process.pid, sig)
                    stop_at = None
            if time.monotonic() > deadline:
                raise TimeoutError
        status = process.wait(timeout=max(deadline - time.monotonic(), 1))
    except (TimeoutError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("trainer did not finish in time:\n" + "".join(lines[-30:]))
    return status, losses, "".join(lines)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
