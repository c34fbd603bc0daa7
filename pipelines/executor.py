"""Where batch work runs: one interface, a local process pool or a Ray cluster.

A batch is a list of independent tasks ``fn(task) -> result`` (``fn`` a module-level function, the
tasks picklable). :meth:`Executor.run` yields ``(index, result)`` as tasks finish, to one consumer
(the caller writes every output: one writer, appends atomically); a task that raises is retried
once, then reported as ``(index, TaskFailure)`` — never fatal to the batch. Heavy state (head
model, recognizers, detectors) lives in per-process caches (``functools.lru_cache``), so each
worker process loads it once, not once per task.

- ``local`` (the default, no new dependency): ``workers == 1`` runs in this process; more uses a
  ``spawn`` process pool. A worker killed mid-task breaks the pool: the unfinished tasks are
  resubmitted once to a new pool.
- ``ray`` (extra ``headveil[dist]``): ``ray.init(address)`` for a cluster, or, with no address, a
  local runtime started with the CPUs asked for and shut down at the end (no processes left).
  Tasks run as Ray tasks with ``max_retries=1`` (Ray re-runs a task whose worker died); an
  unreachable address is one clear error before any work starts.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from headveil.common.errors import HeadVeilError, MissingDependencyError
from headveil.common.registry import Registry

EXECUTORS = ("local", "ray")


@dataclass
class TaskFailure:
    """A task that failed twice: its error text (the batch goes on)."""

    error: str


class Executor:
    """Runs independent tasks; see the module docstring."""

    name = ""

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started (pools, a local Ray runtime)."""

    def describe(self) -> dict:
        """What the manifest records about it."""
        return {"executor": self.name}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _threads() -> int:
    """The driver's torch intra-op thread count (workers use the same, so float reductions — and
    therefore outputs — match the local executor's bit for bit)."""
    import torch

    return torch.get_num_threads()


def _run_with_threads(fn, threads: int, task):
    """Run ``fn(task)`` in a worker with ``threads`` torch threads (Ray gives workers 1 by default)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return fn(task)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".split("\n", 1)[0]


class LocalExecutor(Executor):
    """This process (``workers == 1``) or a ``spawn`` process pool."""

    name = "local"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise HeadVeilError(f"--workers must be ≥ 1; got {workers}")
        self.workers = workers

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}

    def run(self, fn, tasks):
        if self.workers == 1:
            for i, t in enumerate(tasks):
                try:
                    yield i, fn(t)
                except Exception:  # noqa: BLE001 - retried once, then reported
                    try:
                        yield i, fn(t)
                    except Exception as exc:  # noqa: BLE001
                        yield i, TaskFailure(_error_text(exc))
            return
        yield from self._pool_run(fn, tasks)

    def _pool_run(self, fn, tasks):
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool
        from multiprocessing import get_context

        todo = dict(enumerate(tasks))
        tries = {i: 0 for i in todo}
        while todo:
            # spawn, not fork: the parent may hold threads (torch, onnxruntime, MediaPipe)
            pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
            threads = _threads()
            futs = {pool.submit(_run_with_threads, fn, threads, t): i for i, t in todo.items()}
            broken = False
            try:
                pending = set(futs)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = futs[fut]
                        try:
                            res = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        except Exception as exc:  # noqa: BLE001
                            tries[i] += 1
                            if tries[i] < 2:
                                continue  # stays in todo: resubmitted with the next pool
                            res = TaskFailure(_error_text(exc))
                        todo.pop(i, None)
                        yield i, res
                    if broken:
                        break
            finally:
                pool.shutdown(wait=not broken, cancel_futures=True)
            if broken:  # a worker died: what it and the others had not finished runs once more
                for i in list(todo):
                    tries[i] += 1
                    if tries[i] >= 2:
                        todo.pop(i)
                        yield i, TaskFailure("the worker process died twice running it")
            # what is left in todo (first failures, tasks of a broken pool) runs once more


def _check_address(address: str, timeout_s: float = 3.0) -> None:
    """One clear error when ``HOST:PORT`` does not answer (before Ray spends minutes retrying)."""
    if address == "auto" or (address.startswith("ray://") and ":" not in address[6:]):
        return
    hostport = address[6:] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise HeadVeilError(f"--ray-address must be auto or HOST:PORT; got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise HeadVeilError(f"the Ray cluster at {address} cannot be reached ({exc.strerror or exc}); start it "
                            f"with `ray start --head` or check --ray-address") from None


class RayExecutor(Executor):
    """Ray tasks on a cluster (``address``) or a local runtime of ``workers`` CPUs."""

    name = "ray"

    def __init__(self, workers: int = 1, address: str | None = None):
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("--executor ray", "dist", exc) from exc
        if workers < 1:
            raise HeadVeilError(f"--workers must be ≥ 1; got {workers}")
        if address is not None:
            _check_address(address)
        self._ray = ray
        self.address, self.workers = address, workers
        self._started = False
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            if address is None:
                import os

                kw["num_cpus"] = workers
                # Ray gives each worker one BLAS/OpenMP thread; a local runtime uses this process's
                # setting instead, so numpy's sums (and therefore outputs) match the local executor's
                kw["runtime_env"] = {"env_vars": {v: os.environ.get(v, str(os.cpu_count() or 1))
                                                  for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}}
            try:
                ray.init(address=address, **kw)
            except ConnectionError as exc:
                raise HeadVeilError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            self._started = True

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "address": self.address or "local runtime"}

    def run(self, fn, tasks):
        ray = self._ray
        remote = ray.remote(max_retries=1, retry_exceptions=True, num_cpus=1)(_run_with_threads)
        threads = _threads()
        refs = {remote.remote(fn, threads, t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ref = done[0]
            i = refs[ref]
            try:
                yield i, ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - retried by Ray once already
                cause = getattr(exc, "cause", None) or exc
                yield i, TaskFailure(_error_text(cause))

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


EXECUTOR_CLASSES: Registry[type[Executor]] = Registry("executor")
EXECUTOR_CLASSES.register("local", LocalExecutor)
EXECUTOR_CLASSES.register("ray", RayExecutor)


def make_executor(name: str, workers: int = 1, address: str | None = None) -> Executor:
    """The executor ``name`` (``local`` | ``ray``); ``address`` only for ray."""
    if name not in EXECUTORS:
        raise HeadVeilError(f"--executor must be one of {', '.join(EXECUTORS)}; got {name!r}")
    if name == "local":
        if address is not None:
            raise HeadVeilError("--ray-address applies to --executor ray only")
        return LocalExecutor(workers)
    return RayExecutor(workers, address)
