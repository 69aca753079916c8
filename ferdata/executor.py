"""Where per-face work runs: a local process pool, or a Dask cluster.

The stages whose work is per face (ingest's decoding and hashing, align's detection,
landmarks and warp, split's perceptual hashing and PNG writing) hand it to an
:class:`Executor` as tasks: a module-level function and its arguments. :meth:`Executor.map`
yields the results in task order, with at most a window of tasks in flight, so the calling
process holds a bounded number of results however large the dataset; the caller writes
them out shard by shard.

* ``local``: a process pool on this machine (``workers`` processes, 0: every core); one
  worker, or a single task, runs in this process.
* ``dask``: a ``distributed`` cluster. Without ``address`` a ``LocalCluster`` of worker
  processes starts here; with one (``tcp://scheduler:8786``) the client connects to a
  running cluster. A worker that dies mid-task has its tasks run again elsewhere (Dask
  recomputes what a lost worker held); the results, so the output, do not change.

The same functions run on the same tasks either way, so both kinds write the same bytes.
"""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from multiprocessing import get_context
from typing import Any

from ferdata.params import ParamsError
from ferdata.shards import PARTITION_SIZE

KINDS = ("local", "dask")
#: Tasks in flight per worker: enough to keep every worker busy while results are collected in order.
TASKS_PER_WORKER = 4
#: Messages each Dask comm, and the scheduler's transition log, keep for debugging (Dask's default
#: is 1,000 per comm: every task message sent, its arguments included, so the client holding a
#: LocalCluster's scheduler kept the sample rows of the last thousand tasks per worker).
DASK_MESSAGE_LOG = 16


@dataclass
class ExecutorParams:
    """The ``executor:`` section of params.yaml."""

    kind: str = "local"  # local (a process pool here) | dask (a distributed cluster)
    address: str | None = None  # dask: a running scheduler, tcp://host:8786; none: a LocalCluster here
    partition_size: int = PARTITION_SIZE  # rows per Parquet shard of the manifest, aligned faces and dataset
    workers: int = 0  # local processes, or LocalCluster worker processes; 0 = every core

    def __post_init__(self) -> None:
        where = "params.yaml [executor]"
        if self.kind not in KINDS:
            raise ParamsError(f"{where}.kind: one of {list(KINDS)}, not {self.kind!r}")
        if self.address is not None and (self.kind != "dask" or not isinstance(self.address, str)):
            raise ParamsError(f"{where}.address: a scheduler address (tcp://host:8786) with kind: dask, "
                              f"not {self.address!r} with kind: {self.kind}")
        if isinstance(self.partition_size, bool) or not isinstance(self.partition_size, int) \
                or self.partition_size < 1:
            raise ParamsError(f"{where}.partition_size: an integer >= 1, not {self.partition_size!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ParamsError(f"{where}.workers: an integer >= 0, not {self.workers!r}")


def task_size(rows: int, workers: int, most: int) -> int:
    """Rows per task: at most ``most``, and at least four tasks per worker when rows allow."""
    return max(1, min(most, math.ceil(rows / (4 * workers))))


class Executor(ABC):
    """Runs tasks and yields their results in order; a context manager that frees its workers."""

    def __init__(self, params: ExecutorParams) -> None:
        self.params = params

    @property
    def partition_size(self) -> int:
        return self.params.partition_size

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many tasks run at once."""

    @abstractmethod
    def _submit(self, fn: Callable, args: tuple) -> Any:
        """Start one task; returns a future with ``result()`` and ``cancel()``."""

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[Any]:
        """``fn(*args)`` for each args tuple in ``tasks``, in order; the tasks iterable is
        consumed as results are taken, a window of tasks ahead."""
        tasks = iter(tasks)
        first = list(islice(tasks, 2))
        if len(first) == 1:  # a single task: not worth a trip to a worker
            yield fn(*first[0])
            return
        pending: deque = deque()
        window = TASKS_PER_WORKER * self.workers
        try:
            for args in chain(first, tasks):
                pending.append(self._submit(fn, args))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the workers this executor started."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Done:
    """A finished result, for tasks run in this process."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value

    def cancel(self) -> bool:
        return False


class LocalExecutor(Executor):
    """A process pool on this machine, started at the first task that needs it."""

    def __init__(self, params: ExecutorParams | None = None) -> None:
        super().__init__(params or ExecutorParams())
        self._pool: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        return self.params.workers or os.cpu_count() or 1

    def _submit(self, fn: Callable, args: tuple) -> Any:
        if self.workers == 1:
            return _Done(fn(*args))
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("forkserver"))
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """A ``distributed`` client: to the cluster at ``address``, or to a LocalCluster it starts."""

    def __init__(self, params: ExecutorParams) -> None:
        super().__init__(params)
        import dask
        from distributed import Client, LocalCluster

        self.cluster = None
        # held while the client lives: comms to workers that join later read it then
        self._settings = ExitStack()
        self._settings.enter_context(dask.config.set({"distributed.admin.low-level-log-length": DASK_MESSAGE_LOG}))
        if params.address:
            self.client = Client(params.address)
        else:
            # no dashboard, so no use for the workers' statistical profiler (it costs CPU time)
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                self.cluster = LocalCluster(n_workers=params.workers or os.cpu_count() or 1, threads_per_worker=1,
                                            processes=True, dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)

    @property
    def workers(self) -> int:
        threads = self.client.nthreads()
        return max(1, sum(threads.values()))

    def _submit(self, fn: Callable, args: tuple) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self._settings.close()


@contextmanager
def using(executor: Executor | None) -> Iterator[Executor]:
    """``executor`` itself (left open for its owner), or a local pool for the duration."""
    if executor is not None:
        yield executor
    else:
        with LocalExecutor() as local:
            yield local


@contextmanager
def open_executor(params: ExecutorParams | None = None) -> Iterator[Executor]:
    """The executor ``params`` describes, closed on exit."""
    params = params or ExecutorParams()
    executor = DaskExecutor(params) if params.kind == "dask" else LocalExecutor(params)
    with executor:
        yield executor
