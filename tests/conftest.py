"""How the suite shares the machine: one pytest-xdist worker per core (pyproject.toml's ``addopts``),
each worker and everything it starts (papermill kernels, torchrun, training subprocesses) with its share
of the cores as torch threads, and the longest test files first.

Why the thread share: torch's CPU threads spin while they wait for each other. Two workers that each run
torch with as many threads as the machine has cores oversubscribe it, and a test that takes 14 s alone
then takes minutes (measured on the 2-core build machine: the engine tests went from tens of seconds to
528 s). Each worker takes ``cores // workers`` threads (at least one), unless ``OMP_NUM_THREADS`` is
already set, and OpenMP's passive wait policy. The wait policy changes only how threads wait; the
thread count changes the order of floating-point sums, so the tests that compare numbers across runs
hold their tolerances at 1 and 2 threads (tests/test_ensemble.py measures and checks both, setting the
count itself).

Why the order: xdist hands whole files to whichever worker is free (``--dist loadfile``: a file's
module-scoped fixtures, such as the smoke reproduction of tests/test_notebooks.py, run once), in the
collection order (``--no-loadscope-reorder``; by default xdist would start with the files that hold the
most tests, which are not the slow ones). A long file handed out last would run alone at the end while
the other worker idles; started first, the short files fill in around it.

``python -m pytest -n 0`` runs the suite in one process (for ``--pdb`` or ``-s``).
"""

from __future__ import annotations

import os

# the files that take longest (minutes between them, measured on the 2-core machine): started first
LONGEST_FIRST = ("test_notebooks.py", "test_browser.py", "test_ensemble.py", "test_engine.py", "test_bench.py",
                 "test_gpu.py", "test_campaign.py", "test_gpu_window.py")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (a container's limit)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


if "PYTEST_XDIST_WORKER" in os.environ:
    # before torch is imported (conftest.py is read before the test modules), and inherited by subprocesses
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // workers)))
    # threads that sleep rather than spin while they wait: a test that asks for more threads than its
    # share (the ensemble's tolerance at 2 threads) then shares the cores instead of collapsing
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(items):
    """The longest files first, each file's tests in their written order (module docstring)."""
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the written order within a file and among the other files stays
