"""Progress of ``sweep --once``: a bar in a terminal, a log event every 10 s otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from .sweep import Sweep

log = logging.getLogger("sweeper.progress")

BAR_REFRESH = 0.2
LINE_EVERY = 10.0


def snapshot(sweep: Sweep) -> dict[str, Any]:
    """The figures a progress report shows."""
    s = sweep.summary
    return {
        "images_done": s.images_stored + s.images_failed,
        "images_planned": s.images_planned,
        "images_stored": s.images_stored,
        "images_failed": s.images_failed,
        "in_flight": sweep.drawer.in_flight,
        "budget_left": round(max(0.0, sweep.budget.remaining()), 1),
    }


def follow(sweep: Sweep, *, tty: bool | None = None) -> asyncio.Task[None]:
    """Start reporting on ``sweep`` until it finishes."""
    tty = sys.stderr.isatty() if tty is None else tty
    return asyncio.create_task(_bar(sweep) if tty else _lines(sweep))


async def _lines(sweep: Sweep) -> None:
    while not sweep.finished:
        await asyncio.sleep(LINE_EVERY)
        if not sweep.finished:
            log.info("progress", extra={"event": "progress", **snapshot(sweep)})


async def _bar(sweep: Sweep) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images  {task.fields[detail]}"),
        console=Console(file=sys.stderr),
        redirect_stderr=True,
        redirect_stdout=False,
    )
    with progress:
        moved = _follow_console(sys.stderr)  # log lines go above the bar, not through it
        task = progress.add_task("sweep", total=None, detail="")

        def show() -> None:
            figures = snapshot(sweep)
            total = max(figures["images_planned"], figures["images_done"]) or None
            detail = (
                f"{figures['images_failed']} failed, {figures['in_flight']} in flight, "
                f"{figures['budget_left']:.0f}s left"
            )
            progress.update(task, total=total, completed=figures["images_done"], detail=detail)

        try:
            while not sweep.finished:
                show()
                await asyncio.sleep(BAR_REFRESH)
        finally:
            show()  # the final figures, also when the run ends while we sleep
            for handler, stream in moved:
                handler.setStream(stream)


def _follow_console(proxy: Any) -> list[tuple[logging.StreamHandler[Any], Any]]:
    moved = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
            moved.append((handler, handler.setStream(proxy)))
    return moved
