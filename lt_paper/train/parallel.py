"""Several runs side by side on one device, one process per run.

Why: at CIFAR size a ResNet-32 step is launch-bound, so one run leaves an H100 mostly idle (an earlier
probe on one H100: four eager runs side by side took 1.5 s per epoch each, against 1.25 s for one alone). The
rows of a table are independent runs, so running them at the same time finishes the table several
times sooner without touching any run's numbers.

Why processes, not threads or one batched model: each run keeps its own CUDA context, RNG, cuDNN
state and failure domain, and runs the unchanged engine, so its result is the one ``train`` gives in
a single process (on the CPU bit for bit, at the same thread count; on a GPU up to the usual
run-to-run nondeterminism of cuDNN). A crash (an exception, an out-of-memory kill, a segfault) ends
only its own run; the others finish and are cached, then :class:`SideBySideError` reports the failure
with the tail of that run's output.

Processes come from a ``forkserver``, never from a plain ``fork`` of the caller (a CUDA context does
not survive a fork): a fresh server process, which has no CUDA context and has run no kernel, imports
torch and this package once, and each run is forked from it. That is as safe with CUDA as ``spawn``
without paying the 4-5 s of imports once per run. Each child's intra-op threads are set explicitly
(``threads_per_process``): on the CPU the numbers of a run depend on its thread count, and several
processes must not each take every core.

Usage::

    from lt_paper.train.parallel import train_side_by_side
    results = train_side_by_side([f"cifar100_lt/resnet32/{m}" for m in ("ce", "ldam_drw", "ala")],
                                 runs_dir="runs", data_root="data/cifar100")

In a script, call it under ``if __name__ == "__main__":`` (multiprocessing re-imports the main script
in the server); notebooks and ``python -m`` entry points need nothing.

:func:`run_side_by_side` is the general form (any picklable function over a list of payloads); the
benchmark (``python -m lt_paper bench``) uses it with ``start_together=True`` to time runs that
really overlap.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Any, Callable, Sequence

from ..files.atomic import atomic_write_bytes
from .config import Config, config_hash
from .engine import refuse_duplicate_runs
from .resolve import resolve_run_config

LOG_TAIL_CHARS = 4000
BARRIER_TIMEOUT_S = 900.0  # how long a started process waits for the others to reach the start line


class SideBySideError(RuntimeError):
    """One or more side-by-side processes failed; the message holds the first one's output tail.

    ``failures``: one :class:`Failure` per failed process; ``results``: every result in payload order,
    None where the process failed (the others finished and, for training runs, are cached).
    """

    def __init__(self, message: str, failures: list["Failure"], results: list):
        super().__init__(message)
        self.failures = failures
        self.results = results


@dataclass(frozen=True)
class Failure:
    index: int  # position in the payload list
    label: str
    exitcode: int | None
    log_tail: str


# Imported once by the fork server: everything a training or benchmark process needs.
PRELOAD = ["lt_paper.train.parallel"]


def process_context():
    """The multiprocessing context of every side-by-side process: a fork server that preloads torch and
    the package (safe with CUDA: the server never initialises it)."""
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@contextlib.contextmanager
def _main_module_not_from_a_path():
    """Let children start when ``__main__`` is no importable file (``python - <<EOF``, ``python -c``).

    A fork-server child re-runs the parent's main script from its path before it unpickles ``fn``; a
    main module read from stdin has the path ``<stdin>``, which does not exist, and the child dies.
    Without ``__file__`` the child skips that step (the functions it runs live in this package). A
    main module started with ``-m`` (Jupyter's kernel, ``python -m lt_paper``) is imported by name and
    is left alone.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    hide = main is not None and getattr(main, "__spec__", None) is None and path is not None \
        and not os.path.isfile(path)
    if hide:
        del main.__file__
    try:
        yield
    finally:
        if hide:
            main.__file__ = path


def default_threads(concurrent: int) -> int:
    """Intra-op threads per process when ``concurrent`` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, concurrent))


def _child(fn: Callable, payload: Any, barrier, threads: int, result_path: str, log_path: str) -> None:
    """Entry point of one process: output to its log, fixed threads, ``fn``'s result to a pickle."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # C-level output too (a CUDA error, a segfault message)
    os.dup2(log, 2)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for anything this process starts
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    result = fn(payload) if barrier is None else fn(payload, barrier)
    # whole or absent: a process killed while writing leaves no result that the parent would unpickle
    atomic_write_bytes(result_path, lambda f: pickle.dump(result, f))


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    if not text.strip():
        return "(no output: the process failed before its run started; its traceback is on this stderr)"
    return text[-chars:]


def run_side_by_side(fn: Callable, payloads: Sequence[Any], *, max_parallel: int | None = None,
                     threads_per_process: int | None = None, start_together: bool = False,
                     labels: Sequence[str] | None = None, log_dir: str | os.PathLike | None = None) -> list:
    """``[fn(p) for p in payloads]``, each call in its own process, ``max_parallel`` at a time.

    Args:
        fn: a module-level (picklable) function; called as ``fn(payload)``, or ``fn(payload, barrier)``
            with ``start_together``. Its return value must pickle.
        payloads: one per process (picklable).
        max_parallel: processes alive at once (default: all).
        threads_per_process: torch intra-op threads in each process (default: cores // concurrency).
        start_together: give every call the same ``multiprocessing.Barrier``; ``fn`` calls
            ``barrier.wait(timeout)`` where its timed part starts, so that timings really overlap.
            Needs every payload to run at once. If one process fails the barrier is aborted, so the
            others stop waiting (``threading.BrokenBarrierError``).
        labels: names for the error message (default: the payload index).
        log_dir: keep each process's stdout+stderr as ``<log_dir>/<index>.log`` (default: temporary).

    Returns the results in payload order. Raises :class:`SideBySideError` after every process has
    ended if any failed (non-zero exit or no result), with the first failure's output tail.
    """
    payloads = list(payloads)
    n = len(payloads)
    if n == 0:
        return []
    max_parallel = n if max_parallel is None else max_parallel
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    if start_together and max_parallel < n:
        raise ValueError(f"start_together needs all {n} processes at once, but max_parallel is {max_parallel}")
    labels = [str(i) for i in range(n)] if labels is None else [str(x) for x in labels]
    threads = threads_per_process or default_threads(min(max_parallel, n))
    # Our own pool of Process objects, not ProcessPoolExecutor: one child killed by the OOM killer or a
    # segfault breaks an executor (BrokenProcessPool fails every pending run); here it fails only its own.
    ctx = process_context()
    barrier = ctx.Barrier(n) if start_together else None

    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp, _main_module_not_from_a_path():
        logs = Path(log_dir) if log_dir is not None else Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        results: list[Any] = [None] * n
        failures: list[Failure] = []
        waiting = list(range(n))
        running: dict[int, Any] = {}  # payload index -> Process
        try:
            while waiting or running:
                while waiting and len(running) < max_parallel:
                    i = waiting.pop(0)
                    log_path = logs / f"{i}.log"
                    log_path.write_text("")
                    process = ctx.Process(target=_child, name=f"side-by-side-{labels[i]}", args=(
                        fn, payloads[i], barrier, threads, str(Path(tmp) / f"{i}.pkl"), str(log_path)))
                    process.start()
                    running[i] = process
                sentinels = {p.sentinel: i for i, p in running.items()}
                for sentinel in connection.wait(list(sentinels)):
                    i = sentinels[sentinel]
                    process = running.pop(i)
                    process.join()
                    result_path = Path(tmp) / f"{i}.pkl"
                    if process.exitcode == 0 and result_path.is_file():
                        results[i] = pickle.loads(result_path.read_bytes())
                    else:
                        failures.append(Failure(i, labels[i], process.exitcode, _tail(logs / f"{i}.log")))
                        if barrier is not None:
                            barrier.abort()
        finally:
            for process in running.values():  # only on an interrupt or an error in this loop
                process.terminate()
                process.join()
    if failures:
        # the root cause, not the processes that only saw the aborted barrier
        first = next((f for f in failures if "BrokenBarrierError" not in f.log_tail), failures[0])
        others = ", ".join(f"{f.label} (exit {f.exitcode})" for f in failures if f is not first)
        raise SideBySideError(
            f"side-by-side run {first.label} failed (exit code {first.exitcode})"
            + (f"; also failed: {others}" if others else "")
            + f"\n--- last output of {first.label} ---\n{first.log_tail}", failures, results)
    return results


def _train_job(job: dict) -> dict:
    """One ``train`` call in a side-by-side process (module level, so that it pickles by name)."""
    from .engine import train

    return train(job["config"], runs_dir=job["runs_dir"], force=job["force"])


def train_side_by_side(configs: Sequence[str | Config], runs_dir: str | os.PathLike = "runs", *,
                       max_parallel: int | None = None, threads_per_process: int | None = None,
                       force: bool = False, log_dir: str | os.PathLike | None = None, **overrides) -> list[dict]:
    """``[train(c, runs_dir=runs_dir, **overrides) for c in configs]``, run side by side on one device.

    ``configs``: preset names or :class:`Config` objects; ``overrides`` apply to all of them (unknown
    keys raise here, before any process starts). Progress bars are off unless ``progress=True`` is
    passed (several bars would interleave). Finished runs are reused and interrupted ones resume,
    exactly as with ``train``. Returns each run's result dict (with ``run_dir``), in order.

    Two configs that resolve to the same run would write the same directory at once: ValueError.
    """
    overrides.setdefault("progress", False)
    # the data is fingerprinted by each process's train (as before), not once more here
    resolved = [resolve_run_config(c, overrides, data=False) for c in configs]
    refuse_duplicate_runs(resolved)
    jobs = [dict(config=c, runs_dir=str(runs_dir), force=force) for c in resolved]
    labels = [f"{c.name} (seed {c.seed}, config {config_hash(c)})" for c in resolved]
    return run_side_by_side(_train_job, jobs, max_parallel=max_parallel, threads_per_process=threads_per_process,
                            labels=labels, log_dir=log_dir)
