"""Progress where no terminal is attached: plain lines that a log keeps."""

from __future__ import annotations

from ferdata.progress import PlainProgress, duration, epoch_line, progress_bar


def test_a_bar_without_a_terminal_prints_its_count_and_time_when_done(capsys):
    with progress_bar("align", total=300) as advance:
        for _ in range(3):
            advance(100)
    assert capsys.readouterr().out == "align  300/300  0 s\n"


def test_plain_progress_prints_at_most_every_interval_with_the_time_left():
    now = [0.0]
    lines: list[str] = []
    counter = PlainProgress("align", 1000, every=10, write=lines.append, clock=lambda: now[0])
    for t, n in ((4, 100), (11, 100), (15, 100), (22, 200), (40, 500)):
        now[0] = t
        counter.advance(n)
    counter.finish()
    assert lines == ["align  200/1,000  11 s  eta 44 s", "align  500/1,000  22 s  eta 22 s",
                     "align  1,000/1,000  40 s"]


def test_work_without_a_total_counts_what_was_done():
    lines: list[str] = []
    counter = PlainProgress("ingest fer2013", None, write=lines.append, clock=lambda: 0.0)
    counter.advance(35887)
    counter.finish()
    assert lines == ["ingest fer2013  35,887  0 s"]


def test_epoch_lines_and_durations():
    logs = {"loss": 1.23449, "accuracy": 0.5121, "val_loss": 1.4, "val_accuracy": 0.498}
    assert epoch_line("train", 3, 30, logs, 41.2, 27 * 41.2) == (
        "train epoch 3/30  loss 1.234  accuracy 0.512  val_loss 1.400  val_accuracy 0.498  41 s  eta 19 min")
    assert epoch_line("train", 30, 30, {"loss": 0.5}, 40, 0) == "train epoch 30/30  loss 0.500  40 s"
    assert [duration(s) for s in (0.4, 99, 100, 5999, 6000, 9000)] == [
        "0 s", "99 s", "2 min", "100 min", "1.7 h", "2.5 h"]
