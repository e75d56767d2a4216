"""Progress on stderr, so stdout stays clean for tables and --json.

On a terminal: rich progress bars. Elsewhere (CI logs, ``nohup``, a pipe): plain lines -- for a task
that runs longer than two seconds one at each further tenth or every ``interval`` seconds, and for
every task one when it ends.
"""

from __future__ import annotations

import sys
import time


class _Task:
    def __init__(self, owner, task_id, description: str = "", total: int | None = None, unit: str | None = None):
        self.owner, self.task_id = owner, task_id
        self.description, self.total, self.unit = description, total, unit
        self.done_count = 0
        self.started = self.last = time.monotonic()
        self.last_tenth = 0

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.done_count += n
        if self.owner.bars is not None:
            fields = {"status": status} if status is not None else {}
            self.owner.bars.update(self.task_id, advance=n, rate=self.rate(), **fields)
        elif self.owner.plain:
            now = time.monotonic()
            tenth = int(10 * self.done_count / self.total) if self.total else 0
            if now - self.started < 2.0:  # a short task gets only its closing line
                return
            if now - self.last >= self.owner.interval or (tenth > self.last_tenth and tenth < 10):
                self.last, self.last_tenth = now, tenth
                self.owner.line(self._text(status))

    def rate(self) -> str:
        """``12.3 images/s`` for a task counting a unit, once some time has passed."""
        elapsed = time.monotonic() - self.started
        if not self.unit or elapsed <= 0 or not self.done_count:
            return ""
        return f"{self.done_count / elapsed:.1f} {self.unit}/s"

    def _text(self, status: str | None = None) -> str:
        elapsed = time.monotonic() - self.started
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.done_count / self.total:.0f}%)" if self.total else ""
        left = ""
        if self.total and 0 < self.done_count < self.total and status != "done":
            left = f", about {elapsed / self.done_count * (self.total - self.done_count):.0f}s left"
        rate = self.rate()
        rate = f", {rate}" if rate else ""
        return (f"{self.description}: {self.done_count}{of}{pct} {elapsed:.0f}s{rate}{left}"
                f"{' ' + status if status else ''}")

    def done(self) -> None:
        if self.owner.bars is not None:
            self.owner.bars.update(self.task_id, visible=False)
        elif self.owner.plain and self.done_count:
            self.owner.line(self._text("done"))


class Progress:
    """``with Progress(enabled) as p: t = p.task("encode", total=n); t.advance(k)``."""

    def __init__(self, enabled: bool = True, interval: float = 30.0, stream=None):
        self.enabled = enabled
        self.interval = interval
        self.stream = stream or sys.stderr
        self.bars = None
        self.plain = False

    def __enter__(self):
        if not self.enabled:
            return self
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[rate]}"),
                             TextColumn("{task.fields[status]}"),
                             console=Console(file=self.stream), transient=False)
            self.bars.__enter__()
        else:
            self.plain = True
        return self

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.__exit__(*exc)
            self.bars = None
        self.plain = False

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def task(self, description: str, total: int | None, unit: str | None = None) -> _Task:
        """A task of ``total`` steps; with a ``unit`` ("images") its line shows the rate (images/s)."""
        task_id = self.bars.add_task(description, total=total, status="", rate="") if self.bars is not None else None
        return _Task(self, task_id, description, total, unit)

    def log(self, message: str) -> None:
        if self.bars is not None:
            self.bars.console.print(message, highlight=False)
        elif self.enabled:
            self.line(message)
