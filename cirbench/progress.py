"""Progress bars on stderr (rich), so stdout stays clean for tables and --json."""

from __future__ import annotations

import sys


class _Task:
    def __init__(self, owner, task_id):
        self.owner, self.task_id = owner, task_id

    def advance(self, n: int = 1, status: str | None = None) -> None:
        if self.owner.bars is not None:
            fields = {"status": status} if status is not None else {}
            self.owner.bars.update(self.task_id, advance=n, **fields)

    def done(self) -> None:
        if self.owner.bars is not None:
            self.owner.bars.update(self.task_id, visible=False)


class Progress:
    """``with Progress(enabled) as p: t = p.task("encode", total=n); t.advance(k)``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                             console=Console(file=sys.stderr), transient=False)
            self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.__exit__(*exc)
            self.bars = None

    def task(self, description: str, total: int | None) -> _Task:
        task_id = self.bars.add_task(description, total=total, status="") if self.bars is not None else None
        return _Task(self, task_id)

    def log(self, message: str) -> None:
        if self.bars is not None:
            self.bars.console.print(message, highlight=False)
        else:
            print(message, file=sys.stderr)
