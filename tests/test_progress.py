import io
import logging

from xlnet.progress import Progress


class Terminal(io.StringIO):

    def isatty(self):
        return True


def test_on_a_terminal_a_bar_is_redrawn_in_place_and_cleared_before_log_lines():
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    logger = logging.getLogger("test.progress")
    logger.setLevel(logging.INFO)
    try:
        with Progress(logger, "work", total=200, stream=terminal) as progress:
            progress.update(50, "detail one")
            progress._drawn_at = 0.0  # redraws are rate-limited; this one is due
            progress.update(100)
            logger.info("a log line")
            progress.update(200)
    finally:
        root.removeHandler(handler)
    text = terminal.getvalue()
    assert "\r\x1b[Kwork: [######------------------] 25% (50 of 200) detail one ETA " in text
    assert "work: [############------------] 50% (100 of 200) ETA" in text
    # The bar is wiped before the record, so the record starts a clean line.
    assert "50% (100 of 200) ETA 0:00:00\r\x1b[Ka log line\n" in text
    assert text.endswith("100% (200 of 200) ETA 0:00:00\r\x1b[K")


def test_without_a_terminal_the_figures_go_to_the_log_at_intervals(caplog):
    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress(logger, "work", total=10, stream=io.StringIO(),
                      log_every_s=0.0) as progress:
            progress.update(4, "four")
        with Progress(logger, "quiet", total=10, stream=io.StringIO(),
                      log_every_s=None) as progress:
            progress.update(4)
    assert [r.getMessage().rsplit(" ETA", 1)[0] for r in caplog.records] == [
        "work: 40% (4 of 10) four"]


def test_eta_follows_the_rate_since_the_start():
    progress = Progress(logging.getLogger("test.progress"), "work", total=100,
                        stream=io.StringIO(), start=20)
    assert progress.eta() is None
    progress.started -= 10.0
    progress.done = 40  # 20 units in 10 s, 60 to go
    assert abs(progress.eta() - 30.0) < 0.5
