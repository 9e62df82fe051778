"""Map a function over files in worker processes, with an optional rich progress bar."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def mp_context() -> multiprocessing.context.BaseContext:
    """fork when safe (fastest: workers inherit imported modules), else forkserver/spawn."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_batch(fn: Callable[[T], R], batch: Sequence[T]) -> list[R]:
    return [fn(x) for x in batch]


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    progress: bool,
    label: str,
) -> list[R]:
    """``[fn(x) for x in items]`` in ``workers`` processes (in order; 1: in this process).

    ``initializer(*initargs)`` prepares each worker (and this process when ``workers == 1``);
    ``fn`` must be a module-level function.
    """
    workers = max(1, min(workers, len(items) or 1))
    out: list[R] = []
    if workers == 1:
        with progress_bar(progress, len(items), label) as advance:
            initializer(*initargs)
            for x in items:
                out.append(fn(x))
                advance(1)
        return out
    size = max(1, min(16, len(items) // (workers * 8) or 1))
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    # The workers start before the progress bar does: the bar runs a refresh thread, and
    # with another thread alive forking is unsafe, so mp_context() would fall back to
    # forkserver, whose workers import everything again (slower than one process for a
    # few hundred files). With fork, the executor starts all its workers at the first
    # submit, before its own management thread.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp_context(),
        initializer=initializer,
        initargs=initargs,
    ) as pool:
        futures: list[Future[list[R]]] = [pool.submit(_run_batch, fn, b) for b in batches]
        with progress_bar(progress, len(items), label) as advance:
            for fut, b in zip(futures, batches, strict=True):
                out.extend(fut.result())
                advance(len(b))
    return out


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a rich progress bar on stderr when enabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
