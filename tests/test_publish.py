"""publish: only results/NAME and figures/NAME change, completely or not at all; runs merge; compact records.
And reproduce's own guards: one reproduce per output folder, ``--set`` only with known keys."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_paper.analysis import load_run
from lt_paper.cli import main
from lt_paper.workflows.publication import whole_publication
from lt_paper.workflows.publish import compact_records, publish
from lt_paper.workflows.reproduce import NOTEBOOKS, output_lock, reproduce, split_overrides

REPO = Path(__file__).resolve().parent.parent


# The runs of these tests, by label: each a seed of one config, so that each has its own run name.
RUN_SEEDS = {"run-a": 0, "run-b": 1, "run-new": 2, "run-teacher": 3, "run-unrelated": 4, "run-x": 5}


def _config(label: str):
    from lt_paper.train.config import Config

    return Config(dataset="digits_lt", arch="resnet8", loss="ce", epochs=1, seed=RUN_SEEDS[label])


def _name(label: str) -> str:
    """The folder name of the run ``label`` (named from its config, as the engine names runs)."""
    from lt_paper.train.run_config import run_name

    return run_name(_config(label))


def _run(cache: Path, label: str, accuracy: float, n: int = 40) -> Path:
    """A finished run directory as the engine writes it: small synthetic records, ``accuracy`` of them
    right, and the metrics.json and history.json the engine computes from them."""
    from lt_paper.train.config import config_hash, shot_rule, to_dict
    from lt_paper.train.evaluate import metrics_from_records

    config = _config(label)
    run = cache / _name(label)
    run.mkdir(parents=True)
    rng = np.random.default_rng(n)
    label_ = rng.integers(0, 10, n)
    right = np.arange(n) < round(accuracy * n)
    records = dict(label=label_, pred=np.where(right, label_, (label_ + 1) % 10),
                   p_gt=rng.random(n).astype(np.float32), target_logit=rng.uniform(-1, 1, n).astype(np.float32),
                   train_counts=np.arange(10, 0, -1) * 13)
    np.savez_compressed(run / "records.npz", **records)
    metrics = metrics_from_records(records, list(records["train_counts"]), **shot_rule(config))
    groups = {g: metrics[g] for g in ("all", "many", "medium", "few")}
    (run / "config.json").write_text(json.dumps(to_dict(config)))
    (run / "metrics.json").write_text(json.dumps({
        **metrics, "epoch": 1, "best": {"epoch": 1, **groups}, "shot_rule": shot_rule(config),
        "train_counts": [int(c) for c in records["train_counts"]], "config_hash": config_hash(config),
        "provenance": {"host": str(cache)}, "wall_time_s": rng.random()}))
    (run / "history.json").write_text(json.dumps([{"epoch": 1, **{f"test_{g}": v for g, v in groups.items()}}]))
    (run / "model.pt").write_bytes(b"weights stay behind")
    return run


def _output(root: Path, notebooks=NOTEBOOKS, tag: str = "v1", runs=(("run-a", 0.5),)) -> Path:
    """A finished ``reproduce --profile smoke`` output with the given notebooks, whose summaries list
    the given runs; the runs lie in a run cache beside it (``root/runs``), as in the repository's runs/."""
    out, cache = root / "smoke", root / "runs"
    listed = [str(cache / _name(label)) for label, _ in runs]
    report = ["# lt-paper reproduction: profile `smoke`", ""]
    for nb in notebooks:
        folder = out / nb
        folder.mkdir(parents=True)
        summary = {"parameters": {"profile": "smoke", "dataset": "digits_lt", "runs_dir": str(cache)},
                   "runs": listed}
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "table.md").write_text(f"{nb} {tag}\n")
        (folder / "plot.png").write_bytes(tag.encode())
        (folder / f"{nb}.ipynb").write_text("{}")
        report += [f"## {nb}", "", f"{nb} {tag}", f"![plot]({nb}/plot.png)", ""]
    (out / "report.md").write_text("\n".join(report))
    for name, accuracy in runs:
        _run(cache, name, accuracy)
    return out


def test_publish_name_must_be_one_plain_folder_and_nothing_outside_is_touched(tmp_path, capsys):
    out = _output(tmp_path / "out")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    repo = tmp_path / "repo"
    for name in ("", ".", "..", "../../escaped", str(outside), "a/b", ".hidden", "smoke\n"):
        with pytest.raises(ValueError, match="publish name"):
            publish(out, name, repo_root=repo, force=True)
    assert (outside / "keep.txt").read_text() == "mine" and not repo.exists()
    publish(out, "smoke", repo_root=repo)
    with pytest.raises(ValueError, match="is published content, not a reproduce output"):
        publish(repo / "results" / "smoke", "smoke", repo_root=repo, force=True)
    assert list((repo / "figures" / "smoke").rglob("*.png"))
    with pytest.raises(SystemExit) as done:
        main(["publish", str(out), "", "--force"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: publish name ''") and len(err.strip().splitlines()) == 1


def test_publish_copies_notebooks_figures_report_and_small_run_files(tmp_path):
    out = _output(tmp_path / "out")
    done = publish(out, "smoke", repo_root=tmp_path / "repo")
    results, figures = tmp_path / "repo" / "results" / "smoke", tmp_path / "repo" / "figures" / "smoke"
    assert done["notebooks"] == len(NOTEBOOKS) and done["runs_published"] == 1 and done["missing"] == []
    assert sorted(p.name for p in (results / "runs" / _name("run-a")).iterdir()) == [
        "config.json", "history.json", "metrics.json", "records.npz"]  # no weights
    assert (figures / "figure1_hard_samples" / "plot.png").read_bytes() == b"v1"
    assert not list(results.rglob("*.ipynb")) and not list(results.rglob("*.png"))
    report = (results / "report.md").read_text()
    assert "](../../figures/smoke/figure1_hard_samples/plot.png)" in report
    assert not list((tmp_path / "repo" / "results").glob(".*")), "a staging folder was left"


def test_only_the_runs_the_notebooks_read_are_published_from_wherever_they_live(tmp_path):
    out = _output(tmp_path / "out", runs=[("run-a", 0.5)])
    _run(tmp_path / "out" / "runs", "run-unrelated", 0.9)  # finished in the same cache, read by no notebook
    elsewhere = _run(tmp_path / "published" / "runs", "run-teacher", 0.8)  # e.g. results/<name>/runs
    summary = out / "table1_3_main_results" / "summary.json"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()),
                                       runs=[str(tmp_path / "out" / "runs" / _name("run-a")), str(elsewhere)])))
    done = publish(out, "smoke", repo_root=tmp_path / "repo")
    results = tmp_path / "repo" / "results" / "smoke"
    assert sorted(p.name for p in (results / "runs").iterdir()) == sorted([_name("run-a"), _name("run-teacher")])
    assert done["runs"] == 2 and done["runs_copied"] == 2


def test_a_listed_run_that_is_gone_or_unfinished_or_an_unlisting_summary_is_refused(tmp_path):
    repo = tmp_path / "repo"
    out = _output(tmp_path / "gone", runs=[("run-a", 0.5)])
    shutil.rmtree(tmp_path / "gone" / "runs" / _name("run-a"))
    with pytest.raises(ValueError, match=rf"[a-z0-9_]+/summary.json lists run .*{_name('run-a')}, "
                                         r"which is missing"):
        publish(out, "smoke", repo_root=repo)
    out = _output(tmp_path / "unfinished", runs=[("run-a", 0.5)])
    (tmp_path / "unfinished" / "runs" / _name("run-a") / "metrics.json").unlink()
    with pytest.raises(ValueError, match=rf"{_name('run-a')}, which is not finished \(no metrics.json\)"):
        publish(out, "smoke", repo_root=repo)
    out = _output(tmp_path / "old")
    summary = out / "table4_ala_ablation" / "summary.json"
    summary.write_text(json.dumps({"parameters": {"profile": "smoke", "dataset": "digits_lt"}}))
    with pytest.raises(ValueError, match="table4_ala_ablation/summary.json lists no 'runs'"):
        publish(out, "smoke", repo_root=repo)
    assert not repo.exists()  # refused before anything was written


def test_partial_output_is_refused_unless_asked_and_then_merged(tmp_path):
    repo = tmp_path / "repo"
    publish(_output(tmp_path / "full"), "smoke", repo_root=repo)
    partial = _output(tmp_path / "part", notebooks=["figure2_adjusting_terms"], tag="v2",
                      runs=[("run-b", 0.7)])
    with pytest.raises(ValueError, match="partial smoke output: it lacks table1_3_main_results"):
        publish(partial, "smoke", repo_root=repo, force=True)
    with pytest.raises(FileExistsError, match="figure2_adjusting_terms.*--force"):
        publish(partial, "smoke", repo_root=repo, partial=True)
    done = publish(partial, "smoke", repo_root=repo, partial=True, force=True)
    results = repo / "results" / "smoke"
    assert (results / "figure2_adjusting_terms" / "table.md").read_text() == "figure2_adjusting_terms v2\n"
    assert (results / "table1_3_main_results" / "table.md").read_text() == "table1_3_main_results v1\n"
    assert (repo / "figures" / "smoke" / "table4_ala_ablation" / "plot.png").read_bytes() == b"v1"
    assert sorted(p.name for p in (results / "runs").iterdir()) == sorted([_name("run-a"), _name("run-b")])  # runs accumulate
    assert done["runs_copied"] == 1 and done["runs_published"] == 2
    assert len(done["missing"]) == len(NOTEBOOKS) - 1
    report = (results / "report.md").read_text()
    assert "figure2_adjusting_terms v2" in report and "table1_3_main_results v1" in report
    assert report.count("## ") == len(NOTEBOOKS)


def test_a_run_with_the_same_hash_and_other_metrics_is_refused(tmp_path):
    repo = tmp_path / "repo"
    publish(_output(tmp_path / "a", runs=[("run-a", 0.5)]), "smoke", repo_root=repo)
    before = (repo / "results" / "smoke" / "runs" / _name("run-a") / "metrics.json").read_text()
    same = publish(_output(tmp_path / "b", runs=[("run-a", 0.5)]), "smoke", repo_root=repo, force=True)
    assert same["runs_copied"] == 0  # same result elsewhere (other host, wall time): the published copy stays
    changed = _output(tmp_path / "c", tag="v3", runs=[("run-a", 0.6)])
    with pytest.raises(ValueError, match=f"{_name('run-a')} is published with other metrics"):
        publish(changed, "smoke", repo_root=repo, force=True)
    assert (repo / "results" / "smoke" / "runs" / _name("run-a") / "metrics.json").read_text() == before
    assert (repo / "results" / "smoke" / "figure1_hard_samples" / "table.md").read_text().endswith("v1\n")


def test_a_failure_while_publishing_keeps_the_old_content_and_no_staging_folder(tmp_path, monkeypatch):
    import lt_paper.workflows.publish as P

    repo = tmp_path / "repo"
    publish(_output(tmp_path / "a"), "smoke", repo_root=repo)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(P, "compact_records", disk_full)
    with pytest.raises(OSError, match="No space"):
        publish(_output(tmp_path / "b", tag="v2", runs=[("run-new", 0.9)]), "smoke", repo_root=repo,
                force=True)
    results = repo / "results" / "smoke"
    assert (results / "figure1_hard_samples" / "table.md").read_text().endswith("v1\n")
    assert sorted(p.name for p in (results / "runs").iterdir()) == [_name("run-a")]
    assert sorted(p.name for p in (repo / "results").iterdir()) == ["smoke"]
    assert sorted(p.name for p in (repo / "figures").iterdir()) == ["smoke"]


def _published(repo: Path, name: str = "smoke") -> tuple[str, str]:
    """Which version (the tag of ``_output``) results/NAME and figures/NAME hold."""
    table = repo / "results" / name / "figure1_hard_samples" / "table.md"
    plot = repo / "figures" / name / "figure1_hard_samples" / "plot.png"
    return (table.read_text().split()[-1] if table.exists() else "-",
            plot.read_text() if plot.exists() else "-")


def _killed_at(step: int, body) -> bool:
    """Run ``body()`` in a forked child that dies as under SIGKILL (``os._exit``: no cleanup runs) at its
    ``step``-th file-system change (rename, unlink, replace, link, rmtree, folder exchange); False when
    it finished before that step."""
    import os
    import shutil as sh

    import lt_paper.files.folder_swap as F

    pid = os.fork()
    if pid == 0:  # the child: count the changes the body makes, die at the chosen one
        try:
            count = [0]

            def counted(real):
                def change(*args, **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        os._exit(137)
                    return real(*args, **kwargs)
                return change

            for owner, attr in ((Path, "rename"), (Path, "unlink"), (os, "replace"),
                                (os, "link"), (sh, "rmtree"), (F, "exchange")):
                if hasattr(owner, attr):
                    setattr(owner, attr, counted(getattr(owner, attr)))
            body()
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1] != 0


def _killed_publish(out: Path, repo: Path, step: int, exchange: bool = True) -> bool:
    """Publish ``out`` (forced), killed at its ``step``-th change (:func:`_killed_at`). Without
    ``exchange`` the swap takes its fallback (two renames where the system cannot exchange folders)."""
    import lt_paper.files.folder_swap as F
    import lt_paper.workflows.publish as P

    def body():
        if not exchange:  # in the child only
            F.exchange = lambda a, b: False
        P.publish(out, "smoke", repo_root=repo, force=True, partial=True)

    return _killed_at(step, body)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_a_publish_killed_at_any_step_leaves_old_or_new_after_the_next_publish(tmp_path, exchange):
    """SIGKILL at every step of a publish: the next publish, even a refused one, finishes or rolls back
    the interrupted one from its journal, never leaving new results beside old figures or a folder gone."""
    template, one = tmp_path / "template", ["figure1_hard_samples"]  # one notebook: a quick publish
    publish(_output(tmp_path / "a", notebooks=one, tag="v1"), "smoke", repo_root=template, partial=True)
    new = _output(tmp_path / "b", notebooks=one, tag="v2", runs=[("run-b", 0.7)])
    outcomes = set()
    for step in range(1, 200):
        repo = tmp_path / f"repo{step}"
        shutil.copytree(template, repo)
        if not _killed_publish(new, repo, step, exchange):
            break
        with pytest.raises(FileExistsError, match="pass --force"):
            publish(new, "smoke", repo_root=repo, partial=True)  # refused (not forced), after its recovery
        state = _published(repo)
        assert state in (("v1", "v1"), ("v2", "v2")), f"killed at step {step}: {state}"
        runs = sorted(p.name for p in (repo / "results" / "smoke" / "runs").iterdir())
        assert runs == ([_name("run-a")] if state == ("v1", "v1") else sorted([_name("run-a"), _name("run-b")]))
        assert [p.name for p in (repo / "results").iterdir()] == ["smoke"], f"step {step}: leftovers"
        assert [p.name for p in (repo / "figures").iterdir()] == ["smoke"], f"step {step}: leftovers"
        outcomes.add(state)
        shutil.rmtree(repo)
    assert step > 10 and outcomes == {("v1", "v1"), ("v2", "v2")}  # both sides of the commit point seen


def test_a_reader_of_a_killed_publish_sees_one_whole_publication_at_every_step(tmp_path):
    """SIGKILL at every step of a publish, then look as a reader would, before any publish recovers.
    The raw folders: results/NAME and figures/NAME are there at every step, each the whole old or the whole
    new folder (each switches in by one exchange); the two cannot switch in one system call, so the kill
    between the two back-to-back exchanges shows new results beside old figures, with a journal that says
    the swap is to be finished. A reader going through ``whole_publication`` sees one publication at every
    step, the old or the new: at that step it finishes the swap first."""
    template, one = tmp_path / "template", ["figure1_hard_samples"]
    publish(_output(tmp_path / "a", notebooks=one, tag="v1"), "smoke", repo_root=template, partial=True)
    new = _output(tmp_path / "b", notebooks=one, tag="v2", runs=[("run-b", 0.7)])
    seen, mixed = [], []
    for step in range(1, 200):
        repo = tmp_path / f"repo{step}"
        shutil.copytree(template, repo)
        if not _killed_publish(new, repo, step):
            break
        results, figures = repo / "results" / "smoke", repo / "figures" / "smoke"
        assert results.is_dir() and figures.is_dir(), f"killed at step {step}: a publication folder is missing"
        raw = _published(repo)
        assert "-" not in raw, f"killed at step {step}: a folder is not whole: {raw}"
        runs = sorted(p.name for p in (results / "runs").iterdir())
        assert runs == (sorted([_name("run-a")]) if raw[0] == "v1" else sorted([_name("run-a"), _name("run-b")])), \
            f"step {step}: {runs}"
        if raw[0] != raw[1]:
            journal = json.loads((repo / "results" / ".smoke.publish.json").read_text())
            assert journal["state"] == "swapping", f"step {step}"
            mixed.append(step)
        assert whole_publication("smoke", repo) == (results, figures)
        state = _published(repo)
        assert state in (("v1", "v1"), ("v2", "v2")), f"killed at step {step}: the reader saw {state} (raw {raw})"
        assert state == raw or raw[0] != raw[1], f"step {step}: a whole publication was changed by the reader"
        seen.append(state)
        shutil.rmtree(repo)
    assert ("v1", "v1") in seen and ("v2", "v2") in seen
    assert len(mixed) == 1 and seen[mixed[0] - 1] == ("v2", "v2"), (mixed, seen)  # the mixed step, healed


def _stamps(repo: Path, name: str = "smoke") -> tuple:
    """The stamp of results/NAME and of figures/NAME (None where missing)."""
    files = (repo / "results" / name / "publication.json", repo / "figures" / name / "publication.json")
    return tuple(json.loads(f.read_text()) if f.is_file() else None for f in files)


def test_a_publish_stamps_both_folders_alike_and_a_publication_without_stamps_is_accepted(tmp_path):
    repo = tmp_path / "repo"
    publish(_output(tmp_path / "a"), "smoke", repo_root=repo)
    first = _stamps(repo)
    assert first[0] == first[1] and set(first[0]) == {"id", "published_utc", "profile", "dataset"}
    assert (first[0]["profile"], first[0]["dataset"]) == ("smoke", "digits_lt")
    assert whole_publication("smoke", repo) == (repo / "results" / "smoke", repo / "figures" / "smoke")
    publish(_output(tmp_path / "b", tag="v2"), "smoke", repo_root=repo, force=True)
    second = _stamps(repo)
    assert second[0] == second[1] and second[0]["id"] != first[0]["id"], "each publish has its own id"
    for stamp in (repo / "results" / "smoke" / "publication.json", repo / "figures" / "smoke" / "publication.json"):
        stamp.unlink()  # as published before stamps existed
    assert whole_publication("smoke", repo) == (repo / "results" / "smoke", repo / "figures" / "smoke")


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_publications_mixed_by_hand_are_refused_by_a_reader_naming_both_stamps(tmp_path):
    """Stamps that differ with no journal (folders copied or committed by hand): a one-line ValueError that
    names both stamp files and what each says, and says to publish again; nothing is changed. One stamp
    without the other is such a mix too."""
    from lt_paper.workflows.outputs import NotebookOutputs

    repo, other = tmp_path / "repo", tmp_path / "other"
    publish(_output(tmp_path / "a"), "smoke", repo_root=repo)
    publish(_output(tmp_path / "b", tag="v2"), "smoke", repo_root=other)
    shutil.rmtree(repo / "figures" / "smoke")
    shutil.copytree(other / "figures" / "smoke", repo / "figures" / "smoke")  # v1 results beside v2 figures
    ids = [stamp["id"] for stamp in _stamps(repo)]
    before = _tree(repo)
    with pytest.raises(ValueError) as err:
        whole_publication("smoke", repo)
    message = str(err.value)
    assert "\n" not in message and "nothing was changed" in message and "Publish smoke again" in message
    for folder, id_ in zip(("results", "figures"), ids):
        assert f"{repo / folder / 'smoke' / 'publication.json'} says id {id_!r}" in message, message
    assert _tree(repo) == before
    # a notebook reading these published runs stops there too, before it creates its output folder
    params = dict(profile="smoke", prefix=None, dataset=None, arch=None, epochs=None, seeds=None, device=None,
                  data_root=None, runs_dir=str(repo / "results" / "smoke" / "runs"), train=False,
                  output_dir=str(tmp_path / "notebook"))
    with pytest.raises(ValueError, match=r"publication smoke is two publications"):
        NotebookOutputs.from_parameters("figure1_hard_samples", params)
    assert not (tmp_path / "notebook").exists() and _tree(repo) == before
    (repo / "figures" / "smoke" / "publication.json").unlink()
    with pytest.raises(ValueError, match=r"figures/smoke/publication.json is missing; nothing was changed"):
        whole_publication("smoke", repo)


def test_every_committed_publication_is_one_publication():
    """Each publication committed under results/ (with its figures/ counterpart) has matching stamps or
    none (published before stamps existed): a mix of two publishes is never committed, nor a journal."""
    assert not list((REPO / "results").glob(".*.publish.json")), "a publish journal is committed"
    names = [folder.name for folder in sorted((REPO / "results").iterdir())
             if folder.is_dir() and (REPO / "figures" / folder.name).is_dir()]
    assert "smoke" in names, names
    for name in names:
        whole_publication(name, REPO)  # read only: with no journal it changes nothing


def test_publish_touches_only_what_its_journal_names(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    results = repo / "results"
    dead = subprocess.Popen(["true"])
    dead.wait()
    others = [f".smoke.x.replaced-{dead.pid}", ".smoke.backup-20240101", f".smoke.staging-{dead.pid}"]
    for name in others:  # another publication's backup, a user's folders
        (results / name).mkdir(parents=True)
        (results / name / "keep.txt").write_text(name)
    publish(_output(tmp_path / "a", tag="v1"), "smoke", repo_root=repo)
    assert sorted(p.name for p in results.iterdir()) == sorted(others + ["smoke"])
    assert all((results / name / "keep.txt").read_text() == name for name in others)
    assert not (results / "smoke" / "keep.txt").exists() and _published(repo) == ("v1", "v1")
    # a journal that names anything but this publication's own folders is refused, changing nothing
    journal = results / ".smoke.publish.json"
    journal.write_text(json.dumps({"state": "staging", "folders": [
        {"final": "results/smoke", "staging": ".smoke.backup-20240101", "backup": "results/.smoke.replaced-0"}]}))
    with pytest.raises(ValueError, match=r"swap journal .*\.smoke\.publish\.json names folders that are not "
                                         r"this swap's.*nothing was changed"):
        publish(_output(tmp_path / "b", tag="v2"), "smoke", repo_root=repo, force=True)
    assert (results / ".smoke.backup-20240101" / "keep.txt").is_file() and _published(repo) == ("v1", "v1")


def test_a_run_whose_config_was_edited_after_it_finished_is_not_published(tmp_path):
    out = _output(tmp_path / "a", runs=[("run-a", 0.5)])
    run = tmp_path / "a" / "runs" / _name("run-a")
    trained = (run / "config.json").read_text()
    (run / "config.json").write_text(json.dumps(dict(json.loads(trained), lr=0.5)))  # edited afterwards
    repo = tmp_path / "repo"
    with pytest.raises(ValueError, match=rf"run .*{_name('run-a')}: config.json is not the config the run "
                                         r"trained with"):
        publish(out, "smoke", repo_root=repo)
    assert not repo.exists()
    (run / "config.json").write_text(trained)  # restored
    assert publish(out, "smoke", repo_root=repo)["runs_copied"] == 1


@pytest.mark.parametrize("name, damage, message", [
    ("records.npz", lambda data: data[:300], r"records.npz: damaged .npz archive \(BadZipFile: "),
    ("records.npz", lambda data: bytes(range(256)) * 8, r"records.npz: not an .npz archive"),
    ("records.npz", lambda data: b"", r"records.npz: not an .npz archive"),
    ("metrics.json", lambda data: data[:50], r"metrics.json: not valid JSON \(line 1: "),
    ("metrics.json", lambda data: b'{"all": "garbage"}', r"metrics.json: key 'all' is 'garbage', expected"),
], ids=["truncated records", "other bytes", "empty records", "truncated metrics", "garbage metrics"])
def test_a_damaged_run_file_is_a_one_line_error_naming_it_and_nothing_is_published(tmp_path, name, damage,
                                                                                   message):
    repo = tmp_path / "repo"
    publish(_output(tmp_path / "a"), "smoke", repo_root=repo)
    out = _output(tmp_path / "b", tag="v2", runs=[("run-new", 0.9)])
    damaged = tmp_path / "b" / "runs" / _name("run-new") / name
    damaged.write_bytes(damage(damaged.read_bytes()))
    with pytest.raises(ValueError, match=message) as err:
        publish(out, "smoke", repo_root=repo, force=True)
    assert str(damaged) in str(err.value) and "\n" not in str(err.value) and "pickle" not in str(err.value)
    results = repo / "results" / "smoke"
    assert (results / "figure1_hard_samples" / "table.md").read_text().endswith("v1\n")
    assert sorted(p.name for p in (results / "runs").iterdir()) == [_name("run-a")]
    if name == "records.npz":  # what the notebooks read says the same
        with pytest.raises(ValueError, match=message):
            load_run(damaged.parent)


def test_an_incomplete_or_busy_output_is_refused(tmp_path):
    out = _output(tmp_path / "a")
    (out / "table4_ala_ablation" / "summary.json").unlink()
    with pytest.raises(ValueError, match="table4_ala_ablation"):
        publish(out, "smoke", repo_root=tmp_path / "repo", force=True, partial=True)
    busy = _output(tmp_path / "b")
    (busy / ".lock").write_text("1")  # pid 1 lives
    with pytest.raises(FileExistsError, match="in use by pid 1"):
        publish(busy, "smoke", repo_root=tmp_path / "repo")


def test_reproduce_lock_names_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    folder = tmp_path / "smoke"
    folder.mkdir()
    (folder / ".lock").write_text("1")
    with pytest.raises(FileExistsError, match="in use by pid 1"):
        with output_lock(folder):
            pass
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / ".lock").write_text(str(dead.pid))
    with output_lock(folder):
        assert (folder / ".lock").read_text() == str(__import__("os").getpid())
    assert not (folder / ".lock").exists()


def _take_lock_together(folder, barrier, holders, overlaps, wins, trials, stale_pid):
    """One of several processes: in each trial take the output lock at the same moment as the others
    (every other trial starting from a stale lock), and count the moments it had two holders."""
    import os
    import time

    real_kill = os.kill

    def slow_kill(pid, signal):  # is the holder alive? answered slowly, as on a loaded machine
        time.sleep(0.002)
        return real_kill(pid, signal)

    os.kill = slow_kill  # this process only (a forked child)
    for trial in range(trials):
        barrier.wait()
        try:
            with output_lock(folder):
                with holders.get_lock():
                    holders.value += 1
                    overlaps.value += holders.value > 1
                    wins.value += 1
                time.sleep(0.005)  # long enough for a second holder to show up
                with holders.get_lock():
                    holders.value -= 1
        except FileExistsError:
            pass
        if barrier.wait() == 0 and trial % 2 == 0:
            (folder / ".lock").write_text(str(stale_pid))  # left by a killed reproduce
        barrier.wait()


def test_reproduce_lock_has_one_holder_when_processes_start_together(tmp_path):
    """A real race: 6 processes take the lock at once, 40 times (half of them over a stale lock)."""
    import multiprocessing

    dead = subprocess.Popen(["true"])
    dead.wait()
    context = multiprocessing.get_context("fork")  # the children need nothing but the lock
    processes, trials = 6, 40
    barrier = context.Barrier(processes, timeout=60)
    holders, overlaps, wins = context.Value("i", 0), context.Value("i", 0), context.Value("i", 0)
    args = (tmp_path, barrier, holders, overlaps, wins, trials, dead.pid)
    racers = [context.Process(target=_take_lock_together, args=args) for _ in range(processes)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=120)
    assert [r.exitcode for r in racers] == [0] * processes
    assert overlaps.value == 0, f"{overlaps.value} times two processes held the lock together"
    assert wins.value >= trials
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], [".lock"])  # no temporaries left


def test_compact_records_load_like_the_originals(tmp_path):
    run = _run(tmp_path / "runs", "run-x", 0.5, n=2000)
    compact = tmp_path / "pub" / run.name
    compact.mkdir(parents=True)
    for name in ("config.json", "metrics.json", "history.json"):
        (compact / name).write_bytes((run / name).read_bytes())
    np.savez(run / "records.npz", **dict(np.load(run / "records.npz")))  # uncompressed, as the size check had it
    compact_records(run / "records.npz", compact / "records.npz")
    with np.load(compact / "records.npz") as npz:
        assert npz["p_gt"].dtype == np.float16 and npz["target_logit"].dtype == np.float16
        assert npz["label"].dtype.kind == "i"
    original, published = load_run(run), load_run(compact)
    assert np.array_equal(original.label, published.label) and np.array_equal(original.pred, published.pred)
    assert published.p_gt.dtype == np.float32 and published.label.dtype == np.int64
    assert np.allclose(original.p_gt, published.p_gt, atol=5e-4)
    assert np.allclose(original.target_logit, published.target_logit, atol=5e-4)
    assert (compact / "records.npz").stat().st_size < (run / "records.npz").stat().st_size / 2
    # unbounded logits (a linear head's target logit) stay float32
    unbounded = dict(np.load(run / "records.npz"))
    np.savez(run / "records.npz", **dict(unbounded, target_logit=30 * unbounded["target_logit"]))
    compact_records(run / "records.npz", compact / "records.npz")
    with np.load(compact / "records.npz") as npz:
        assert npz["target_logit"].dtype == np.float32 and npz["p_gt"].dtype == np.float16


def test_gitignore_keeps_published_runs_and_ignores_run_caches():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    assert not ignored("results/smoke/runs/digits_lt-resnet8-ala-s0-981e9b11da09/records.npz")
    assert ignored("runs/digits_lt-resnet8-ala-s0-981e9b11da09/records.npz")
    assert ignored("outputs/smoke/runs/x/model.pt")


def test_reproduce_set_accepts_only_notebook_parameters_and_config_keys(tmp_path, monkeypatch, capsys):
    import lt_paper.workflows.reproduce as R

    with pytest.raises(ValueError,
                       match=r"unknown key\(s\) \['epoch'\]; valid: the notebook parameters .*epochs"):
        reproduce("smoke", out_root=tmp_path, overrides={"epoch": 2})
    with pytest.raises(ValueError, match=r"config key 'lr': 'abc' is not valid"):
        reproduce("smoke", out_root=tmp_path, overrides={"lr": "abc"})
    assert not (tmp_path / "smoke").exists()  # refused before any notebook ran
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "--out", str(tmp_path), "--set", "epoch=2"])
    assert done.value.code == 2 and "unknown key(s) ['epoch']" in capsys.readouterr().err

    assert split_overrides({"epochs": 2, "hard_cos": -0.4, "lr": 0.05}, NOTEBOOKS) == (
        {"epochs": 2, "hard_cos": -0.4}, {"lr": 0.05})
    seen = {}

    def fake_execute(notebook, output_dir, parameters, kernel=None):
        seen[notebook] = parameters
        output_dir.mkdir(parents=True, exist_ok=True)  # reproduce hands it an empty staging folder
        (output_dir / "summary.json").write_text(json.dumps({"parameters": parameters, "tables": [],
                                                             "figures": []}))

    monkeypatch.setattr(R, "execute_notebook", fake_execute)
    with pytest.raises(ValueError, match=r"--set seeds = \[0, 0\] repeats seed\(s\) \[0\]"):
        reproduce("smoke", out_root=tmp_path, overrides={"seeds": [0, 0]})  # one run counted twice
    assert seen == {}  # refused before any notebook ran
    result = reproduce("smoke", out_root=tmp_path, only="figure",
                       overrides={"epochs": 2, "hard_cos": -0.4, "lr": 0.05})
    assert sorted(result["ok"]) == sorted(nb for nb in NOTEBOOKS if nb.startswith("figure"))
    assert seen["figure2_adjusting_terms"]["hard_cos"] == -0.4
    assert "hard_cos" not in seen["figure1_hard_samples"]
    assert all(p["epochs"] == 2 and p["run_overrides"] == {"lr": 0.05} for p in seen.values())
    assert not (tmp_path / "smoke" / ".lock").exists()


def _strict(text: str):
    """json.loads that refuses NaN / Infinity (not JSON)."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_published_files_name_no_folder_of_the_machine_that_made_them(tmp_path):
    """Reports, summaries and run configs name the runs folder, the data root and a teacher by where they
    are on the build machine; published, they name the published runs folder or a relative path, and the
    summaries are strict JSON. The configs still verify (the run hash covers neither path)."""
    from lt_paper.workflows.portable import absolute_paths
    from lt_paper.train.run_config import read_run_config

    out = _output(tmp_path / "out", runs=[("run-a", 0.5), ("run-teacher", 0.6)])
    cache = tmp_path / "out" / "runs"
    # the run's own config names the data by a path of the machine (data_root is not part of the run hash)
    config_file = cache / _name("run-a") / "config.json"
    config_file.write_text(json.dumps(dict(json.loads(config_file.read_text()),
                                           data_root=str(tmp_path / "elsewhere" / "cifar10-jpeg.tar.gz"))))
    summary = out / "figure1_hard_samples" / "summary.json"
    summary.write_text(json.dumps(dict(json.loads(summary.read_text()), records={"few": float("nan")})))
    report = out / "report.md"
    report.write_text(report.read_text() + f"\nParameters: `{{'runs_dir': '{cache}'}}`\n")
    publish(out, "smoke", repo_root=tmp_path / "repo")
    results = tmp_path / "repo" / "results" / "smoke"
    for path in results.rglob("*"):  # a run's metrics are published as they are (the engine writes no path
        # there; this test's stand-in names one in its provenance)
        if path.suffix in (".json", ".md", ".csv") and path.name not in ("metrics.json", "history.json"):
            assert absolute_paths(path.read_text()) == [], path
    for path in results.rglob("summary.json"):
        _strict(path.read_text())
    published = json.loads((results / "figure1_hard_samples" / "summary.json").read_text())
    assert published["runs"] == sorted(f"results/smoke/runs/{_name(label)}" for label in ("run-a", "run-teacher"))
    assert published["parameters"]["runs_dir"] == "results/smoke/runs" and published["records"] == {"few": None}
    config = json.loads((results / "runs" / _name("run-a") / "config.json").read_text())
    assert config["data_root"] == "cifar10-jpeg.tar.gz"
    read_run_config(results / "runs" / _name("run-a"))
    assert "'runs_dir': 'results/smoke/runs'" in (results / "report.md").read_text()


def test_the_committed_results_name_no_absolute_path_and_their_summaries_are_strict_json():
    from lt_paper.workflows.portable import absolute_paths
    from lt_paper.train.run_config import read_run_config

    found = {str(path.relative_to(REPO)): absolute_paths(path.read_text())[:3]
             for path in (REPO / "results").rglob("*")
             if path.is_file() and path.suffix in (".json", ".md", ".csv", ".log")}
    assert {path: paths for path, paths in found.items() if paths} == {}
    for path in (REPO / "results").rglob("summary.json"):
        _strict(path.read_text())
    for run in (REPO / "results").glob("*/runs/*"):
        read_run_config(run)  # a rewritten config.json keeps the hash its run trained with


def _fake_notebook(tag: str, fails: bool = False):
    """An ``execute_notebook`` that writes a notebook's outputs tagged ``tag`` (or fails part-way)."""
    def execute(notebook, output_dir, parameters, kernel=None):
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "table.md").write_text(f"{tag}\n")
        if fails:
            raise RuntimeError("the notebook failed")
        (output_dir / "summary.json").write_text(json.dumps({"parameters": {"profile": "smoke", "tag": tag},
                                                             "tables": [], "figures": []}))
    return execute


def _killed_reproduce(out_root: Path, runs: Path, step: int) -> bool:
    """``reproduce --only figure2`` of outputs tagged v2, killed at its ``step``-th change
    (:func:`_killed_at`)."""
    import lt_paper.workflows.reproduce as R

    def body():
        R.execute_notebook = _fake_notebook("v2")  # in the child only
        R.reproduce("smoke", out_root, only="figure2", runs_dir=str(runs))

    return _killed_at(step, body)


def test_a_reproduce_killed_at_any_step_keeps_the_old_outputs_or_the_new(tmp_path, monkeypatch, capsys):
    """A reproduce killed between any two of its file-system changes leaves the notebook's earlier
    outputs or its new ones, whole, never none; a next reproduce whose notebook fails says the earlier
    outputs are kept only where they are."""
    import lt_paper.workflows.reproduce as R

    template = tmp_path / "template"
    monkeypatch.setattr(R, "execute_notebook", _fake_notebook("v1"))
    reproduce("smoke", template, only="figure2", runs_dir=str(tmp_path / "runs"))
    monkeypatch.setattr(R, "execute_notebook", _fake_notebook("v3", fails=True))
    states = set()
    for step in range(1, 100):
        out = tmp_path / f"out{step}"
        shutil.copytree(template, out)
        if not _killed_reproduce(out, tmp_path / "runs", step):
            break
        final = out / "smoke" / "figure2_adjusting_terms"
        assert final.is_dir(), f"killed at step {step}: the notebook's outputs are gone"
        state = (final / "table.md").read_text(), json.loads((final / "summary.json").read_text())["parameters"]["tag"]
        assert state in (("v1\n", "v1"), ("v2\n", "v2")), f"killed at step {step}: {state}"
        capsys.readouterr()
        result = reproduce("smoke", out, only="figure2", runs_dir=str(tmp_path / "runs"))  # fails: keeps
        assert list(result["failed"]) == ["figure2_adjusting_terms"]
        assert f"earlier outputs kept in {final}" in capsys.readouterr().err
        # the old outputs, or the new ones where the kill came after the commit point (its swap finished)
        assert (final / "table.md").read_text() in {state[0], "v2\n"}, f"step {step}"
        assert (final / "summary.json").is_file() and not list(out.glob("smoke/.*.json")), f"step {step}"
        assert (out / "smoke" / ".failed-figure2_adjusting_terms" / "table.md").read_text() == "v3\n"
        assert sorted(p.name for p in (out / "smoke").iterdir()) == [
            ".failed-figure2_adjusting_terms", "figure2_adjusting_terms", "report.md"], f"step {step}: leftovers"
        states.add(state[1])
        shutil.rmtree(out)
    assert step > 5 and states == {"v1", "v2"}


def test_every_published_run_resolves_through_the_one_resolver_to_its_own_finished_folder():
    """Run identity survives the resolver: each published run's preset plus what its config.json changed
    (the machine's fields left to the resolver where the preset leaves them open) resolves, through
    ``resolve_run_config``, to the run's own hash and folder name, and the notebooks' lookup
    (``finished_run``) finds that folder finished."""
    from lt_paper.train.config import config_hash, to_dict
    from lt_paper.train.presets import get_preset
    from lt_paper.train.resolve import resolve_run_config
    from lt_paper.train.run_config import read_run_config, run_name
    from lt_paper.workflows.experiments import finished_run

    run_dirs = sorted(path.parent for path in (REPO / "results").glob("*/runs/*/config.json"))
    assert len(run_dirs) >= 20, run_dirs
    for run_dir in run_dirs:
        saved = read_run_config(run_dir)
        preset = to_dict(get_preset(saved.name))
        overrides = {key: value for key, value in to_dict(saved).items() if key != "name" and value != preset[key]}
        if preset["device"] == "auto" and saved.device == ("cuda" if torch.cuda.is_available() else "cpu"):
            overrides.pop("device")  # "auto" resolves to this machine's device
        for key in ("amp", "channels_last"):  # None: on for CUDA, off for the CPU
            if preset[key] is None and getattr(saved, key) == (saved.device == "cuda"):
                overrides.pop(key)
        resolved = resolve_run_config(saved.name, overrides, data=False)
        assert (run_name(resolved), config_hash(resolved)) == (run_dir.name, config_hash(saved)), run_dir
        overrides.pop("data_fingerprint", None)  # the lookup matches the run on any copy of its data
        found = finished_run(saved.name, run_dir.parent, **overrides)
        assert found is not None and Path(found["run_dir"]).name == run_dir.name, run_dir
