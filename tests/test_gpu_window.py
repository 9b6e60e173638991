"""A CPU dry run of scripts/gpu_window.sh (tiny sizes, the smoke profile) and of scripts/gpu_unpack.sh.

It protects the one command a GPU window runs: every step runs even when one times out, the campaign
gets the time that is left, and what lands in $OUT is what the GPU machine can send back (at most 8
files, 16 MiB each, 64 MiB in all, no more than 2 folders down, plain names). Then the runs that came
back merge into a runs directory as finished runs without checkpoints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES, MAX_FOLDERS_DOWN = 8, 16 * 2**20, 64 * 2**20, 2
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _run(cmd, env, timeout):
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_window_dry_run_fits_what_comes_back_and_its_runs_unpack(tmp_path):
    out, runs = tmp_path / "OUT", tmp_path / "window-runs"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path),
               PYTHONPATH=str(REPO), WINDOW_DEVICE="cpu", WINDOW_PROFILE="smoke", WINDOW_BUDGET="60",
               WINDOW_BENCH_SIZE="tiny", WINDOW_BENCH_S="5", WINDOW_TESTS_S="60", WINDOW_PACK_S="5",
               WINDOW_CAMPAIGN_SET="epochs=1", WINDOW_RUNS_DIR=str(runs), WINDOW_WHEELS="none")
    _run(["bash", "scripts/gpu_window.sh"], env, timeout=200)

    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= MAX_FILES
    assert all(p.stat().st_size <= MAX_FILE_BYTES for p in files)
    assert sum(p.stat().st_size for p in files) <= MAX_TOTAL_BYTES
    assert all(len(p.relative_to(out).parts) - 1 <= MAX_FOLDERS_DOWN for p in files)
    assert all(NAME.match(part) for p in out.rglob("*") for part in p.relative_to(out).parts)

    log = (out / "window.log").read_text()
    summary = log[log.rindex("summary"):]
    assert re.search(r"tests: exit 0 ", summary)  # every CUDA test skipped cleanly on the CPU
    assert re.search(r"bench: exit (0|124|137) ", summary)  # finished, or stopped by its 5 s limit
    assert re.search(r"campaign: exit 0 ", summary)  # the next step ran all the same, inside its time
    assert "testsuite" in (out / "pytest-gpu.xml").read_text()
    campaign = json.loads((out / "campaign.json").read_text())
    assert campaign["profile"] == "smoke" and campaign["trained"] > 0

    # the pieces merge back as finished runs, small files only
    merged = tmp_path / "merged"
    _run(["bash", "scripts/gpu_unpack.sh", str(out), str(merged), str(tmp_path / "record")], env, timeout=60)
    run_dirs = sorted(p for p in merged.iterdir() if p.is_dir())
    assert len(run_dirs) == campaign["trained"]
    for run in run_dirs:
        assert {"config.json", "metrics.json", "history.json", "records.npz"} == {p.name for p in run.iterdir()}
    assert (tmp_path / "record" / "window.log").is_file() and (tmp_path / "record" / "campaign.json").is_file()
    # unpacking again keeps the runs already there
    again = _run(["bash", "scripts/gpu_unpack.sh", str(out), str(merged), str(tmp_path / "record")], env, timeout=60)
    assert f"0 run(s) merged into {merged}, {len(run_dirs)} already there" in again
