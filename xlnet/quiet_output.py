"""Keeps the libraries' start-up chatter out of a run's output unless `xlnet --verbose`.

Three kinds reach a user's terminal: Python log records (Beam's runner relaying every worker
event, absl's checkpoint timings, TensorBoard's plugin notes), lines TensorFlow's C++ runtime
writes to file descriptor 2 before its logging is set up (TF_CPP_MIN_LOG_LEVEL no longer
reaches them), and lines Beam's worker processes write to the stderr they inherit before their
log handler exists. Only the known harmless lines below are dropped: every other warning and
error, and anything a library starts to say later, still shows.
"""

import contextlib
import logging
import os
import re
import sys
import threading

_HARMLESS_LINES = re.compile("|".join((
    # TensorFlow's C++ runtime at import and on its first look for a GPU.
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I0000 .*\] oneDNN custom operations are on\.",
    r"I0000 .*\] Could not find cuda drivers on your machine, GPU will not be used\.",
    r"E0000 .*\] failed call to cuInit: ",
    # Beam: importing its BigQuery client without the [gcp] extra; a worker's first log
    # lines; the main session a local job never pickles.
    r"(WARNING:root:)?apitools not found, and bigquery client libraries are not available",
    r"INFO:__main__:Logging handler created\.",
    r"(WARNING:__main__:)?No semi_persistent_directory found",
    r"Worker: severity: WARN .*No semi_persistent_directory found",
)))

# Loggers that speak at INFO about their own workings; their warnings still show.
_CHATTY_LOGGERS = ("apache_beam", "absl", "tensorboard")


def is_harmless(line):
    return _HARMLESS_LINES.match(line) is not None


class _DropHarmless(logging.Filter):

    def filter(self, record):
        return not is_harmless(record.getMessage())


def quiet_libraries(level):
    """Raises the chatty libraries' loggers to WARNING (or `level` if higher) and drops the
    harmless records from every root handler."""
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropHarmless())


def harmless_stderr_lines_dropped():
    """Routes file descriptor 2 (this process's and its children's) through a filter that
    drops the harmless lines; every other line passes on at once, in order."""
    return stderr_filtered(lambda line: not is_harmless(line))


@contextlib.contextmanager
def stderr_filtered(keep):
    """File descriptor 2 through `keep(line) -> bool` (called in a thread, in order); yields
    a text stream to the real stderr, for output that must not pass the filter (a live bar
    drawn from `keep`)."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    relay = threading.Thread(target=_relay, args=(read_end, original, keep), daemon=True)
    relay.start()
    direct = os.fdopen(os.dup(original), "w", buffering=1)
    try:
        yield direct
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end this process holds
        # Children that outlive the block keep the pipe open: do not wait for them.
        relay.join(timeout=5)
        direct.close()
        if not relay.is_alive():
            os.close(original)


def _relay(read_end, destination, keep):
    pending = b""
    with open(read_end, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            pending += chunk
            *lines, pending = re.split(rb"(?<=[\r\n])", pending)
            _write_kept(lines, destination, keep)
    _write_kept([pending], destination, keep)


def _write_kept(lines, destination, keep):
    kept = b"".join(line for line in lines if line and keep(line.decode("utf-8", "replace")))
    while kept:
        kept = kept[os.write(destination, kept):]


def start_tensorflow_quietly():
    """Imports TensorFlow and looks for devices with the runtime's start-up lines dropped
    (they are written before any log level applies)."""
    with harmless_stderr_lines_dropped():
        import tensorflow as tf

        tf.config.list_physical_devices()
