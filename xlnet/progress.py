"""Progress of a long stage: a live bar on a terminal, an INFO line now and then elsewhere.

On a terminal the bar is one line on stderr, redrawn in place at most a few times a second;
a log record that arrives meanwhile first clears it, so log lines never land on top of it.
Without a terminal (a log file, CI, a batch system) the same figures go to the stage's logger
every `log_every_s` seconds, or nowhere if the stage logs its own lines (`log_every_s=None`).
"""

import datetime
import logging
import sys
import time

_REDRAW_S = 0.2
_BAR_WIDTH = 24


def duration(seconds):
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def megabytes(count):
    return f"{count / 1e6:,.1f} MB"


class Progress:
    """`update(done, detail)` with `done` counted towards `total` (None: unknown, no ETA);
    `describe(done)` words an amount ("12.3 MB"; None: the percentage only); `finish()` ends
    the bar line."""

    def __init__(self, logger, label, total=None, describe=str, log_every_s=30.0,
                 stream=None, start=0):
        self.logger = logger
        self.label = label
        self.total = total
        self.describe = describe
        self.log_every_s = log_every_s
        self.stream = stream or sys.stderr
        self.live = _is_terminal(self.stream)
        self.started = time.monotonic()
        self.first = start
        self.done = start
        self._drawn_at = float("-inf")  # the first update draws at once
        self._logged_at = self.started
        self._bar_shown = False
        self._clearer = _ClearBarBeforeRecords(self) if self.live else None

    def __enter__(self):
        if self._clearer:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._clearer)
        return self

    def __exit__(self, *exc_info):
        self.finish()

    def update(self, done, detail=""):
        self.done = done
        now = time.monotonic()
        if self.live:
            if now - self._drawn_at >= _REDRAW_S or done == self.total:
                self._draw(self._line(now, detail, bar=True))
                self._drawn_at = now
        elif self.log_every_s is not None and now - self._logged_at >= self.log_every_s:
            self.logger.info("%s", self._line(now, detail, bar=False))
            self._logged_at = now

    def finish(self):
        if self._clearer:
            self.clear()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._clearer)
            self._clearer = None

    def clear(self):
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._bar_shown = False

    def eta(self, now=None):
        """Seconds left at the rate since this Progress began, or None."""
        elapsed = (now or time.monotonic()) - self.started
        if self.total is None or self.done <= self.first or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / (self.done - self.first)

    def _line(self, now, detail, bar):
        parts = [f"{self.label}:"]
        if self.total:
            fraction = min(max(self.done / self.total, 0.0), 1.0)
            if bar:
                filled = round(fraction * _BAR_WIDTH)
                parts.append("[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "]")
            parts.append(f"{fraction:.0%}" if self.describe is None else
                         f"{fraction:.0%} ({self.describe(self.done)} of "
                         f"{self.describe(self.total)})")
        else:
            parts.append(self.describe(self.done))
        if detail:
            parts.append(detail)
        eta = self.eta(now)
        parts.append(f"ETA {duration(eta)}" if eta is not None
                     else f"{duration(now - self.started)} so far")
        return " ".join(parts)

    def _draw(self, line):
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._bar_shown = True


class _ClearBarBeforeRecords(logging.Filter):

    def __init__(self, progress):
        super().__init__()
        self.progress = progress

    def filter(self, record):
        self.progress.clear()
        return True


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
