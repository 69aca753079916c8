"""Progress for long work: a rich bar on a terminal, plain lines where no terminal is
attached (``dvc repro`` into a log, CI, ``nohup``), so that a log shows where a run is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Plain progress lines come at most this often (seconds); each bar also ends with one.
PLAIN_EVERY = 10.0

Write = Callable[[str], None]


def is_terminal() -> bool:
    """Whether standard output is a terminal that rich can draw a bar on."""
    return Console().is_terminal


def plain_line(text: str) -> None:
    """Print one line and flush it at once (a pipe would otherwise hold it back)."""
    print(text, flush=True)


def duration(seconds: float) -> str:
    """``41 s``, ``18 min``, ``2.4 h``."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def epoch_line(label: str, epoch: int, epochs: int, logs: dict, seconds: float, left: float) -> str:
    """``train epoch 3/30  loss 1.234  accuracy 0.512  val_accuracy 0.498  41 s  eta 18 min``:
    the epoch's logged figures, its seconds and the time the remaining epochs would take."""
    figures = [f"{key} {logs[key]:.3f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy") if key in logs]
    parts = [f"{label} epoch {epoch}/{epochs}", *figures, duration(seconds)]
    if left > 0:
        parts.append(f"eta {duration(left)}")
    return "  ".join(parts)


def note(text: str) -> None:
    """A step of a stage, as a plain line where no terminal shows a bar or a summary."""
    if not is_terminal():
        plain_line(text)


class PlainProgress:
    """Counts work done and prints ``align 2,048/35,887  12 s  eta 3 min`` at most every
    ``every`` seconds, and a last line when the work is done."""

    def __init__(self, description: str, total: int | None, every: float = PLAIN_EVERY,
                 write: Write = plain_line, clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.total, self.every = description, total, every
        self.write, self.clock = write, clock
        self.done = 0
        self.start = self.last = clock()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every and (self.total is None or self.done < self.total):
            self._line(now)

    def finish(self) -> None:
        self._line(self.clock())

    def _line(self, now: float) -> None:
        self.last = now
        elapsed = now - self.start
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        parts = [self.description, count, duration(elapsed)]
        if self.total and 0 < self.done < self.total:
            parts.append(f"eta {duration(elapsed / self.done * (self.total - self.done))}")
        self.write("  ".join(parts))


@contextmanager
def progress_bar(description: str, total: int | None = None, plain: bool = True
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a bar on a terminal; otherwise plain lines (:class:`PlainProgress`),
    or nothing with ``plain=False`` (for callers that print their own lines)."""
    if not is_terminal():
        counter = PlainProgress(description, total) if plain else None
        yield counter.advance if counter else (lambda n=1: None)
        if counter:
            counter.finish()
        return
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
