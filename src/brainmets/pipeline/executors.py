"""Where stage tasks run: in-process, a local process pool, or a Dask cluster.

All three take the same picklable task (:func:`brainmets.pipeline.worker.execute_stage`
with a :class:`Stage` and a :class:`StageContext`) and give the same outputs. Workers only
read the catalog; the runner records results. A Dask cluster's workers must see the
workspace at the same path (a shared file system), as with any shared-storage cluster.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing as mp
import signal
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from brainmets.fsutil import default_workers


class Executor(Protocol):
    """Submit tasks and wait for some of them to finish."""

    name: str
    workers: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def wait_any(self, pending: Iterable[Any]) -> list[Any]:
        """Block until at least one of ``pending`` is done; return the done ones."""
        ...

    def result(self, handle: Any) -> Any: ...

    def close(self) -> None: ...


class _Done:
    """A finished in-process task."""

    def __init__(self, value: Any) -> None:
        self.value = value


class InlineExecutor:
    """Runs each task in the calling process when submitted (``--workers 1``)."""

    name = "inline"
    workers = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Done:
        return _Done(fn(*args))

    def wait_any(self, pending: Iterable[Any]) -> list[Any]:
        return list(pending)

    def result(self, handle: _Done) -> Any:
        return handle.value

    def close(self) -> None:
        pass


def _die_with_parent() -> None:
    """Worker initializer: ask Linux to SIGKILL this worker when the runner dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:  # pragma: no cover - not Linux
        pass
    # Ctrl-C goes to the runner, which shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """A pool of worker processes on this machine (spawned, so no inherited locks)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool = self._new_pool(self.workers)
        self._generation = 0  # how many times the pool was replaced
        self._submitted_in: dict[int, int] = {}  # id(future) -> generation of its pool

    @staticmethod
    def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        fut = self._pool.submit(fn, *args)
        self._submitted_in[id(fut)] = self._generation
        return fut

    def wait_any(self, pending: Iterable[Any]) -> list[Any]:
        done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: cf.Future[Any]) -> Any:
        try:
            return handle.result()
        finally:
            if not isinstance(handle.exception(), cf.process.BrokenProcessPool):
                self._submitted_in.pop(id(handle), None)

    def reset(self, broken: cf.Future[Any] | None = None) -> None:
        """Replace a broken pool (a worker died, e.g. killed by the OOM killer). With
        ``broken`` (a future that failed with the pool), only when that future's pool is
        still the current one: every task of a broken pool fails with it, and the pool
        must be replaced once, not once per task (which would cancel the re-submitted)."""
        if broken is not None and self._submitted_in.pop(id(broken), None) != self._generation:
            return
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool(self.workers)
        self._generation += 1

    def run_alone(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one task in a pool of its own and wait for it: for a task that was in a pool
        that broke twice, to tell whether it is the one that kills its worker
        (:class:`concurrent.futures.process.BrokenProcessPool` again) or an innocent
        neighbour of it."""
        pool = self._new_pool(1)
        try:
            return pool.submit(fn, *args).result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask distributed cluster (``--scheduler tcp://HOST:PORT``). Its workers
    may be on other machines (``remote``): each patient task carries that patient's catalog
    rows (:meth:`brainmets.catalog.Catalog.patient_snapshot`) instead of reading the
    catalog file."""

    name = "dask"
    remote = True

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        from distributed import Client

        self.address = address
        self._client = Client(address, timeout=timeout, set_as_default=False)
        info = self._client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def wait_any(self, pending: Iterable[Any]) -> list[Any]:
        from distributed import wait

        with self._client.as_current():
            done, _ = wait(list(pending), return_when="FIRST_COMPLETED")
        return list(done)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        self._client.close()


def make_executor(workers: int | None = None, scheduler: str | None = None) -> Executor:
    """``scheduler`` -> Dask; ``workers == 1`` -> in-process; otherwise a process pool."""
    if scheduler:
        return DaskExecutor(scheduler)
    if workers == 1:
        return InlineExecutor()
    return LocalExecutor(workers or None)
