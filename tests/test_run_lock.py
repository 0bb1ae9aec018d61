"""The model directory's lock: a second run is refused naming the holder, a stale lock (its
process gone) is taken over, the lock goes when the run ends; and two real `xlnet pretrain`
processes on one model dir."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from pretrain.run_lock import RunLock
from xlnet.errors import UserError
from xlnet.formats.model_dir import LOCK_FILE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD = re.compile(r"^error: \S+: in use by another xlnet pretrain \(pid (\d+) on (\S+) since "
                  r"(\S+); lock file \S+LOCK\); wait for it to end, or delete the lock file if "
                  r"that run is gone$")


def _reaped_pid():
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(model_dir, pid, host):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, LOCK_FILE), "w") as f:
        json.dump({"pid": pid, "host": host, "since": "2024-01-01T00:00:00+00:00",
                   "token": "t"}, f)


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    model_dir = str(tmp_path / "model")
    with RunLock(model_dir):
        record = json.loads((tmp_path / "model" / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        for attempt in (RunLock(model_dir).check_free, RunLock(model_dir).acquire):
            with pytest.raises(UserError) as refused:
                attempt()
            assert HELD.match(f"error: {refused.value}"), refused.value
            assert f"pid {os.getpid()} on {socket.gethostname()} since {record['since']}" in \
                str(refused.value)
    # Released, no temporary file left, and the directory it made for the lock removed.
    assert not os.path.exists(model_dir)
    RunLock(model_dir).acquire().release()


def test_released_on_an_exception_leaving_no_directory_it_made(tmp_path):
    model_dir = str(tmp_path / "model")
    with pytest.raises(RuntimeError), RunLock(model_dir):
        raise RuntimeError("the run failed before writing")
    assert not os.path.exists(model_dir)
    os.makedirs(model_dir)
    with pytest.raises(RuntimeError), RunLock(model_dir):
        raise RuntimeError("the run failed")
    assert os.listdir(model_dir) == []  # a directory it found stays


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    model_dir = str(tmp_path / "model")
    dead = _reaped_pid()
    write_lock(model_dir, dead, socket.gethostname())
    RunLock(model_dir).check_free()
    with RunLock(model_dir):
        assert json.loads((tmp_path / "model" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {dead} on {socket.gethostname()}" in caplog.text


def test_a_lock_of_another_host_or_unreadable_is_refused(tmp_path):
    model_dir = str(tmp_path / "model")
    write_lock(model_dir, _reaped_pid(), "some-other-host")
    with pytest.raises(UserError, match="on some-other-host since 2024-01-01"):
        RunLock(model_dir).acquire()
    (tmp_path / "model" / LOCK_FILE).write_text("{")
    with pytest.raises(UserError, match="not a lock file of xlnet pretrain; delete it if no run"):
        RunLock(model_dir).acquire()


def _pretrain(data, model_dir):
    return [sys.executable, "-m", "xlnet", "pretrain", "--config", "tiny", "--data", data,
            "--model-dir", model_dir, "--steps", "100000", "--log-every", "1"]


def _start_and_wait_for_a_step(command, deadline_s=180):
    """Starts a trainer; returns it and its log once it has logged a step."""
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + deadline_s
    lines = []
    for line in process.stderr:
        lines.append(line)
        if re.search(r"step \d+/100000 loss", line):
            return process, "".join(lines)
        if time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    pytest.fail("the trainer logged no step:\n" + "".join(lines[-30:]))


def _stop(process):
    """SIGTERM, as a scheduler preempting it would; returns its status and remaining log."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        rest = process.stderr.read()
        return process.wait(timeout=120), rest
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("the trainer did not stop on SIGTERM")


@pytest.mark.slow
def test_two_pretrain_processes_on_one_model_dir(dataset, tmp_path):
    model_dir = str(tmp_path / "model")
    first, _ = _start_and_wait_for_a_step(_pretrain(dataset, model_dir))
    try:
        second = subprocess.run(_pretrain(dataset, model_dir), cwd=REPO, text=True,
                                capture_output=True, timeout=180)
    finally:
        status, _ = _stop(first)
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 2 and len(errors) == 1, second.stderr[-2000:]
    match = HELD.match(errors[0])
    assert match and int(match.group(1)) == first.pid, errors[0]
    assert match.group(2) == socket.gethostname()
    assert status == 143  # stopped and saved by SIGTERM, and the lock released
    assert not os.path.exists(os.path.join(model_dir, LOCK_FILE))

    # A run killed without cleaning up leaves its lock: the next run takes it over.
    write_lock(model_dir, first.pid, socket.gethostname())
    third, log = _start_and_wait_for_a_step(_pretrain(dataset, model_dir))
    status, _ = _stop(third)
    assert f"taking over the lock of pid {first.pid}" in log
    assert status == 143 and not os.path.exists(os.path.join(model_dir, LOCK_FILE))
