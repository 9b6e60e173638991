"""A CPU dry run of scripts/gpu_window.sh (tiny sizes, the smoke profile) and of scripts/gpu_unpack.sh.

It protects the one command a GPU window runs: every step runs even when one times out, the campaign
gets the time that is left, and what lands in $OUT is what the GPU machine can send back (at most 8
files, 16 MiB each, 64 MiB in all, no more than 2 folders down, plain names). Then the runs that came
back merge into a runs directory as finished runs without checkpoints.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
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
               PYTHONPATH=str(REPO), WINDOW_DEVICE="cpu", WINDOW_PROFILE="smoke", WINDOW_BUDGET="120",
               WINDOW_BENCH_SIZE="tiny", WINDOW_BENCH_S="5", WINDOW_TESTS_S="60", WINDOW_PACK_S="5",
               WINDOW_CAMPAIGN_SET="epochs=1", WINDOW_ROWS="core", WINDOW_RUNS_DIR=str(runs), WINDOW_WHEELS="none")
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


def _archive(files: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], pieces: int = 2) -> None:
    """``files/runs.tar.gz.0``, ``.1``, ...: one gzip stream of ``members`` (a name and its bytes for a
    plain file, else a TarInfo), cut in pieces as the window cuts it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    data = buffer.getvalue()
    files.mkdir(parents=True, exist_ok=True)
    cut = len(data) // pieces + 1
    for i in range(pieces):
        (files / f"runs.tar.gz.{i}").write_bytes(data[i * cut:(i + 1) * cut])


def _finished(name: str) -> list[tuple[str, bytes]]:
    return [(f"{name}/{f}", f"{name} {f}".encode()) for f in ("config.json", "history.json", "metrics.json")]


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _unpack(files: Path, runs: Path, tmp: Path) -> subprocess.CompletedProcess:
    # its temporary folders on another filesystem than the runs (a tmpfs) where there is one: a rename
    # between them is a copy, which followed links before
    tmpdir = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp
    env = dict(os.environ, TMPDIR=str(tmpdir))
    return subprocess.run(["bash", "scripts/gpu_unpack.sh", str(files), str(runs), str(tmp / "record")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def _tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its kind and content: what a refused unpack must leave alone."""
    return {str(p.relative_to(folder)): ("link " + os.readlink(p)) if p.is_symlink()
            else p.read_text() if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


def test_unpack_refuses_links_and_odd_names_and_changes_nothing(tmp_path):
    world = tmp_path / "world"  # what the archive's members point at, and the runs
    outside = world / "outside"
    outside.mkdir(parents=True)
    (outside / "metrics.json").write_text("{}")
    (outside / "private.txt").write_text("mine")
    (world / "secret.txt").write_text("host secret")
    runs = world / "runs"
    (runs / "kept-run").mkdir(parents=True)
    (runs / "kept-run" / "metrics.json").write_text("published")
    before = _tree(world)
    attacks = {
        "linked run folder": ([_link("linkrun", str(outside))], "symbolic link linkrun"),
        "linked file": ([_link("filerun/metrics.json", str(world / "secret.txt"))],
                        "symbolic link filerun/metrics.json"),
        "hard link": ([_link("hardrun/metrics.json", "good-run/metrics.json", tarfile.LNKTYPE)],
                      "hard link hardrun/metrics.json"),
        "fifo": ([_link("fiforun/metrics.json", "", tarfile.FIFOTYPE)], "member of type p fiforun/metrics.json"),
        "parent name": ([("good-run/../escaped.json", b"{}")], "names other than RUN/ and RUN/FILE"),
        "absolute name": ([(str(world / "abs.json"), b"{}")], "names other than RUN/ and RUN/FILE"),
        "deeper name": ([("deep-run/a/metrics.json", b"{}")], "names other than RUN/ and RUN/FILE"),
    }
    for what, (bad, message) in attacks.items():
        files = tmp_path / f"files-{what.replace(' ', '-')}"
        _archive(files, _finished("good-run") + bad)
        done = _unpack(files, runs, tmp_path)
        assert done.returncode == 2, (what, done.stdout, done.stderr)
        assert done.stderr.startswith("gpu_unpack: the runs archive holds") and message in done.stderr, what
        assert done.stderr.strip().endswith("nothing merged") and len(done.stderr.splitlines()) == 1, what
        assert _tree(world) == before, what  # the good run was not merged either


def test_unpack_merges_all_runs_or_none(tmp_path):
    runs = tmp_path / "runs"
    (runs / "kept-run").mkdir(parents=True)
    (runs / "kept-run" / "metrics.json").write_text("published")
    (runs / "b-run").mkdir()
    (runs / "b-run" / "checkpoint.pt").write_text("unfinished")
    (runs / "c-run").write_text("a file where a run would go")
    files = tmp_path / "files"
    _archive(files, _finished("a-run") + _finished("b-run") + _finished("c-run") + _finished("kept-run")
             + [("d-run/config.json", b"{}")])
    before = _tree(runs)
    done = _unpack(files, runs, tmp_path)
    assert done.returncode == 2 and "c-run is not a plain folder" in done.stderr
    assert _tree(runs) == before  # a-run and b-run, fine themselves, were not merged without c-run

    (runs / "c-run").unlink()
    # a rename refused part-way (here an immutable unfinished run in the way) puts back what was merged
    immutable = subprocess.run(["chattr", "+i", str(runs / "b-run")], capture_output=True).returncode == 0
    try:
        if immutable:
            before = _tree(runs)
            done = _unpack(files, runs, tmp_path)
            assert done.returncode == 2 and "could not move the unfinished run" in done.stderr
            assert _tree(runs) == before
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(runs / "b-run")], check=True)
    done = _unpack(files, runs, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 run(s) merged" in done.stdout and "1 already there, 1 not finished" in done.stdout
    assert sorted(p.name for p in runs.iterdir()) == ["a-run", "b-run", "c-run", "kept-run"]  # no staging left
    assert (runs / "b-run" / "metrics.json").read_text() == "b-run metrics.json"
    assert not (runs / "b-run" / "checkpoint.pt").exists()
    assert (runs / "kept-run" / "metrics.json").read_text() == "published"


def test_unpack_reads_a_files_folder_whose_path_has_spaces(tmp_path):
    files, runs = tmp_path / "came back" / "window 1", tmp_path / "runs"
    _archive(files, _finished("a-run"))
    done = _unpack(files, runs, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 run(s) merged" in done.stdout
    assert (runs / "a-run" / "metrics.json").read_text() == "a-run metrics.json"


def test_each_unpack_keeps_its_own_window_record(tmp_path):
    """Two windows unpacked in the same second (a fixed clock) get two record folders, each whole; a
    record folder named on the command line that holds another window's record is refused."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "gpu_unpack.sh", repo / "scripts" / "gpu_unpack.sh")
    clock = tmp_path / "bin"
    clock.mkdir()
    (clock / "date").write_text('#!/bin/sh\nexec /bin/date -d @1700000000 "$@"\n')
    (clock / "date").chmod(0o755)
    env = dict(os.environ, PATH=f"{clock}:{os.environ['PATH']}")
    windows = {}
    for window in ("A", "B"):
        files = tmp_path / f"files-{window}"
        files.mkdir()
        (files / "window.log").write_text(f"window {window}\n")
        (files / "campaign.json").write_text(f'{{"window": "{window}"}}')
        done = subprocess.run(["bash", "scripts/gpu_unpack.sh", str(files)], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        windows[window] = files
    records = sorted((repo / "results" / "gpu_window").iterdir())
    assert [sorted(p.name for p in r.iterdir()) for r in records] == [["campaign.json", "window.log"]] * 2
    assert sorted(r.joinpath("window.log").read_text() for r in records) == ["window A\n", "window B\n"]
    assert all(json.loads(r.joinpath("campaign.json").read_text())["window"] in r.joinpath("window.log").read_text()
               for r in records)  # no record mixes two windows

    # an explicit RECORD_DIR: the same window again is fine, another window's record is kept
    record = next(r for r in records if r.joinpath("window.log").read_text() == "window A\n")
    again = subprocess.run(["bash", "scripts/gpu_unpack.sh", str(windows["A"]), str(tmp_path / "runs"),
                            str(record)], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    other = subprocess.run(["bash", "scripts/gpu_unpack.sh", str(windows["B"]), str(tmp_path / "runs"),
                            str(record)], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and "already holds another window's record" in other.stderr
    assert record.joinpath("window.log").read_text() == "window A\n"
