"""The notebooks: committed stripped, executed with small smoke parameters, served by Jupyter."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lt_paper.analysis import TABLE1, TABLE4, TABLE5
from lt_paper.workflows.reproduce import NOTEBOOK_DIR, NOTEBOOKS, notebook_parameters, reproduce

REPO = Path(__file__).resolve().parent.parent
# 5 epochs: the router switches on at round(0.8 * 5) = 4 (smoke router_at), so the last epoch trains it
SMALL = {"epochs": 5}


def _load(name: str) -> dict:
    return json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())


def test_every_notebook_exists_is_stripped_and_has_a_typed_parameters_cell():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = _load(name)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name
        assert "papermill" not in nb["metadata"], name
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, name
        for line in "".join(tagged[0]["source"]).splitlines():
            assignment, _, comment = line.partition("#")
            target, _, value = assignment.partition("=")
            assert target.strip().isidentifier() and comment.strip(), f"{name}: {line!r}"
            ast.literal_eval(value.strip())  # a literal, not an expression
        # papermill reads the same cell to list the parameters it may inject; a line it cannot parse
        # (e.g. a second "=" in the comment) makes it warn "Passed unknown parameter" at every run
        import papermill as pm
        listed = [p["name"] for p in pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb")).values()]
        assert listed == notebook_parameters(name), name


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=clone, check=True, capture_output=True, text=True).stdout


def test_notebooks_are_committed_stripped_and_jupyterlab_saving_them_changes_nothing_for_git(tmp_path):
    """In a clone with the git filter ``.ci/setup`` installs (``.ci/git-filters``): the notebooks are
    stripped as that filter strips them, and a notebook run and saved in JupyterLab (language_info with
    the editor mode and the kernel's Python version, the kernelspec, execution counts, outputs, cell
    metadata) stages nothing but its edited source lines.

    (``git status`` lists a notebook whose file size changed until ``git add`` finds it unchanged:
    git takes a new size for new content without running the filter. Each nbstripout call starts Python:
    the test makes three.)"""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "clone"
    name = "notebooks/table4_ala_ablation.ipynb"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True, capture_output=True)
    # only what the test reads is checked out: git checks each file checked out in the same second as
    # its index through the filter (one Python start per notebook) the next time it writes the index
    _git(clone, "sparse-checkout", "set", "--no-cone", "/.ci/", "/.gitattributes", f"/{name}")
    _git(clone, "checkout", "-q")
    subprocess.run(["bash", ".ci/git-filters", sys.executable], cwd=clone, check=True, capture_output=True)
    # the notebooks of this checkout, checked with the keys the filter strips (read from the clone's config)
    verify = subprocess.run([sys.executable, "-m", "nbstripout", "--verify",
                             *(str(NOTEBOOK_DIR / f"{n}.ipynb") for n in NOTEBOOKS)],
                            cwd=clone, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    notebook = json.loads((clone / name).read_text())
    notebook["metadata"].update({  # as JupyterLab 4 writes them with the lt-paper kernel
        "kernelspec": {"display_name": "lt-paper", "language": "python", "name": "lt-paper"},
        "language_info": {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                          "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                          "pygments_lexer": "ipython3", "version": "3.11.2"}})
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for count, cell in enumerate(code, 1):
        cell["execution_count"] = count
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["runs: runs\n"]},
                           {"data": {"text/plain": ["0.5"]}, "execution_count": count, "metadata": {},
                            "output_type": "execute_result"}]
        cell["metadata"]["scrolled"] = True
    code[0]["source"].insert(0, "# an edited line\n")
    (clone / name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    _git(clone, "add", name)  # what a commit would hold: the edited line, nothing else
    changed = [line for line in _git(clone, "diff", "--cached", "--no-textconv").splitlines()
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ['+    "# an edited line\\n",'], changed


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    result = reproduce("smoke", out_root=root, runs_dir=str(root / "runs"), overrides=SMALL)
    assert result["failed"] == {}, result["failed"]
    return root / "smoke", result


def _summary(smoke, folder):
    return json.loads((smoke[0] / folder / "summary.json").read_text())


def _table(smoke, folder, name):
    return pd.read_csv(smoke[0] / folder / f"{name}.csv", index_col=0)


def test_reproduce_runs_every_notebook_and_writes_one_report(smoke):
    out, result = smoke
    assert sorted(result["ok"]) == sorted(NOTEBOOKS)
    report = Path(result["report"]).read_text()
    for folder in NOTEBOOKS:
        summary = _summary(smoke, folder)
        assert summary["parameters"]["epochs"] == SMALL["epochs"]
        assert summary["provenance"]["commit"]
        assert (out / folder / f"{folder}.ipynb").is_file()  # the executed copy
        for figure in summary["figures"]:
            assert (out / folder / figure["png"]).stat().st_size > 1000
            assert f"({folder}/{figure['png']})" in report
        for table in summary["tables"]:
            assert (out / folder / table["markdown"]).read_text() in report


def _outputs(folder: Path, notebook: str) -> list[dict]:
    """Every output of every code cell of the executed copy of ``notebook``."""
    nb = json.loads((folder / f"{notebook}.ipynb").read_text())
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def _text(output: dict) -> str:
    data = output.get("data", {})
    text = output.get("text", "") or data.get("text/plain", "") or data.get("text/markdown", "")
    return "".join(text) if isinstance(text, list) else text


def test_every_executed_notebook_shows_its_figures_and_tables_and_prints_numbers(smoke):
    """What a person sees: one PNG per figure, tables as HTML, no '<Figure ...>' text, no f-string
    template printed, no red stderr box, and a last cell with real numbers."""
    out, _ = smoke
    for folder in NOTEBOOKS:
        summary, outputs = _summary(smoke, folder), _outputs(out / folder, folder)
        pngs = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == len(summary["figures"]), folder
        # tables as HTML; a widget (the explorer) carries its static HTML beside its widget view
        html = [o for o in outputs if "text/html" in o.get("data", {})
                and "application/vnd.jupyter.widget-view+json" not in o["data"]]
        assert len(html) == len(summary["tables"]), folder
        texts = [_text(o) for o in outputs]
        assert not [t for t in texts if "<Figure size" in t], folder
        assert not [t for t in texts if re.search(r"\{\{?(len|summary|output_dir)\b", t)], folder
        assert not [o for o in outputs if o.get("name") == "stderr"], (folder, [_text(o) for o in outputs])
        last = texts[-1]
        assert re.search(rf"{len(summary['tables'])} table\(s\), {len(summary['figures'])} figure\(s\) in "
                         r".+ \(\d+\.\d s, commit \w+", last), last


def _check_results_table(frame: pd.DataFrame, ours: dict, paper_table, setting):
    assert {"Many", "Medium", "Few", "All", "All paper", "All diff"} <= set(frame.columns)
    for row, groups in ours.items():
        for group, label in (("all", "All"), ("many", "Many"), ("medium", "Medium"), ("few", "Few")):
            assert frame.loc[row, label] == pytest.approx(100 * np.mean(groups[group]))
        paper = paper_table.value(row, "all", setting) if row in paper_table.keys else None
        if paper is not None:
            assert frame.loc[row, "All paper"] == pytest.approx(paper)
            assert frame.loc[row, "All diff"] == pytest.approx(frame.loc[row, "All"] - paper)


def test_main_results_table(smoke):
    ours = _summary(smoke, "table1_3_main_results")["records"]["top1"]
    assert set(ours) == {"ce", "focal", "ldam_drw", "la", "ala", "ala_distill", "ala_moe3", "ala_moe4"}
    frame = _table(smoke, "table1_3_main_results", "main_results")
    assert list(frame.index[: len(TABLE1.keys)]) == list(TABLE1.keys)  # the paper's rows, in order
    _check_results_table(frame, ours, TABLE1, "resnext50")
    accuracies = [np.mean(v["all"]) for v in ours.values()]
    assert min(accuracies) > 0.1 and np.mean(accuracies) > 0.3  # 10 classes: chance is 0.1


def test_table4_has_the_seven_ablation_rows_and_our_row_without_drw(smoke):
    ours = _summary(smoke, "table4_ala_ablation")["records"]["top1"]
    frame = _table(smoke, "table4_ala_ablation", "table4")
    assert list(TABLE4.keys) == ["ce", "ldam", "ains", "acls", "focal_acls", "ldam_ains", "ala"]
    assert list(frame.index) == [*TABLE4.keys, "ala_nodrw"]  # the last row is ours, not the paper's
    assert "not in the paper" in frame.loc["ala_nodrw", "method"]
    # the same adjusting terms as ALA (row 7): only DRW differs
    assert frame.loc["ala_nodrw", ["A_ins", "A_cls"]].tolist() == frame.loc["ala", ["A_ins", "A_cls"]].tolist()
    assert {"Focal", "LDAM", "A_ins", "A_cls"} <= set(frame.columns)
    _check_results_table(frame, ours, TABLE4, None)
    # the rows shared with Table 1 are the same cached runs
    main = _summary(smoke, "table1_3_main_results")["records"]["top1"]
    assert ours["ala"] == main["ala"] and ours["ldam"] == main["ldam_drw"]


def test_table5_has_the_eight_router_rows(smoke):
    ours = _summary(smoke, "table5_router_ablation")["records"]["top1"]
    frame = _table(smoke, "table5_router_ablation", "table5")
    assert list(frame.index) == list(TABLE5.keys)
    assert {"K", "Style", "Router"} <= set(frame.columns)
    _check_results_table(frame, ours, TABLE5, None)


def test_figure1_records_and_shares(smoke):
    summary = _summary(smoke, "figure1_hard_samples")
    names = {f["name"] for f in summary["figures"]}
    galleries = {"figure1_gallery_ldam_drw_hard", "figure1_gallery_ce_hard"}
    assert {"figure1_abc", "figure1_d"} <= names <= {"figure1_abc", "figure1_d"} | galleries
    for hard, easy in (("LDAM-DRW", "CE"), ("CE", "LDAM-DRW")):  # a gallery wherever a sample was found
        found = summary["records"][f"hard_for_{hard}_easy_for_{easy}"]
        assert set(found) == {"many", "medium", "few"}
        assert (f"figure1_gallery_{hard.lower().replace('-', '_')}_hard" in names) == (sum(found.values()) > 0)
    main = _summary(smoke, "table1_3_main_results")["records"]["top1"]
    assert summary["records"]["accuracy"]["CE"]["many"] == pytest.approx(main["ce"]["many"][0])
    shares = pd.read_csv(smoke[0] / "figure1_hard_samples" / "hard_easy_shares.csv")  # no row counter
    assert list(shares["method"].unique()) == ["CE", "LDAM-DRW"]
    assert ((shares["hard %"] >= 0) & (shares["hard %"] + shares["easy %"] <= 100)).all()
    recorded = summary["records"]["hard_easy"]["CE/all"]
    assert shares.query("method == 'CE' and group == 'all'")["hard %"].item() == pytest.approx(100 * recorded["hard"])


def test_figure2_is_the_analytic_curves(smoke):
    summary = _summary(smoke, "figure2_adjusting_terms")  # the curves themselves: tests/test_losses.py
    assert [f["name"] for f in summary["figures"]] == ["figure2a", "figure2b"]
    assert summary["records"]["focal_gradient_monotonic_on_minus5_0"] is False  # the paper's point about FL


def test_figure3_shapes_come_from_the_model(smoke):
    summary = _summary(smoke, "figure3_moe_architecture")
    assert summary["records"]["shapes"] == {"input": "3×8×8", "trunk": "16×8×8", "expert": "48×2×2",
                                            "logits": "10", "weights": "3"}
    sizes = summary["records"]["sizes"]
    assert sizes["single"]["parameters (M)"] < sizes["MoE-3"]["parameters (M)"] < sizes["MoE-4"]["parameters (M)"]


def test_figure4_router_weights_moved_and_match_expert_count(smoke):
    records = _summary(smoke, "figure4_router_weights")["records"]
    # every network with a learned router: the MoE with 3, 4 and 6 experts (the teacher), RIDE* with it
    for name, k in (("MoE-3", 3), ("MoE-4", 4), ("MoE-6", 6), ("RIDE-3", 3), ("RIDE-4", 4)):
        weights = records[f"{name} seed 0"]["router_weight"]
        for group, per_expert in weights.items():
            assert len(per_expert) == k and sum(per_expert.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(abs(w - 1 / k) for w in weights["all"].values()) > 1e-4  # trained after the switch-on


def test_a_failing_notebook_is_named_and_earlier_outputs_are_kept(tmp_path, capsys):
    good = reproduce("smoke", out_root=tmp_path, only="figure3")
    assert good["ok"] == ["figure3_moe_architecture"]
    folder = tmp_path / "smoke" / "figure3_moe_architecture"
    before = (folder / "figure3.png").read_bytes()
    bad = reproduce("smoke", out_root=tmp_path, only="figure3", overrides={"arch": "no_such_arch"})
    assert list(bad["failed"]) == ["figure3_moe_architecture"]
    assert "no_such_arch" in bad["failed"]["figure3_moe_architecture"]
    assert "FAILED figure3_moe_architecture" in capsys.readouterr().err
    assert (folder / "figure3.png").read_bytes() == before
    assert json.loads((folder / "summary.json").read_text())["parameters"]["arch"] == "resnet8"
    with pytest.raises(ValueError, match="unknown profile"):
        reproduce("nope", out_root=tmp_path)


def test_published_runs_are_read_without_training_and_missing_rows_show_as_missing(smoke, tmp_path):
    """train=False: the finished runs of a runs directory are found (also after the directory moved:
    a distilled run names its teacher by run name), missing rows stay empty, nothing trains."""
    from lt_paper.workflows.experiments import finished_rows, run_rows

    out, _ = smoke
    moved = tmp_path / "published" / "runs"
    shutil.copytree(out.parent / "runs", moved)
    rows = {"ce": "ce", "ala_distill": "ala_distill", "ala_moe3": "ala_moe3"}
    found = run_rows("smoke", "resnet8", rows, seeds=[0, 1], runs_dir=moved, train=False, device="cpu",
                     data_root=None, **SMALL)
    main = _summary(smoke, "table1_3_main_results")["records"]["top1"]
    assert {row: [r["all"] for r in rs] for row, rs in found.items()} == {
        row: main[row]["all"] for row in rows}  # seed 1 was never trained: left out, not zero
    before = sorted(p.name for p in moved.iterdir())
    empty = finished_rows("smoke", "resnet8", rows, runs_dir=tmp_path / "nothing", device="cpu", **SMALL)
    assert empty == {row: [] for row in rows}
    assert sorted(p.name for p in moved.iterdir()) == before and not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("notebook", ["table4_ala_ablation", "figure1_hard_samples"])
def test_a_notebook_with_train_false_shows_missing_rows_and_fails_when_no_row_has_a_run(tmp_path, notebook):
    """A runs_dir with a run for some rows shows the others as missing; one with no run for any row (here
    empty) fails the notebook, saying what the folder holds, rather than finishing with empty outputs."""
    partial = tmp_path / "partial"
    published_ce = next(PUBLISHED_SMOKE_RUNS.glob("digits_lt-resnet8-ce-s0-*"))
    shutil.copytree(published_ce, partial / published_ce.name)
    result = reproduce("smoke", out_root=tmp_path, only=notebook, runs_dir=str(partial), overrides={"train": False})
    assert result["ok"] == [notebook], result["failed"]
    assert sorted(p.name for p in partial.iterdir()) == [published_ce.name]  # nothing trained
    summary = json.loads((tmp_path / "smoke" / notebook / "summary.json").read_text())
    assert summary["runs"] == [str(partial / published_ce.name)]
    if notebook == "table4_ala_ablation":
        table = pd.read_csv(tmp_path / "smoke" / notebook / "table4.csv", index_col=0)
        assert (table["seeds"] == 0).sum() == len(table) - 1 and table["All"].isna().sum() == len(table) - 1

    (tmp_path / "empty").mkdir()
    result = reproduce("smoke", out_root=tmp_path / "second", only=notebook, runs_dir=str(tmp_path / "empty"),
                       overrides={"train": False})
    assert list(result["failed"]) == [notebook]
    assert f"runs_dir {tmp_path / 'empty'} holds no finished run" in result["failed"][notebook]
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("notebook", ["figure4_router_weights", "table5_router_ablation"])
def test_a_notebook_whose_rows_have_not_trained_opens_beside_other_rows_of_its_recipe(tmp_path, notebook):
    """The runs of one recipe trained so far may all belong to other notebooks (the paper's recipe on a
    CPU: LDAM-DRW and ALA, no network with a router): Figure 4 and Table 5 then open, say so and show
    their rows as missing. A folder of another recipe only still fails, naming the profile that reads it."""
    partial = tmp_path / "partial"
    published_ce = next(PUBLISHED_SMOKE_RUNS.glob("digits_lt-resnet8-ce-s0-*"))
    shutil.copytree(published_ce, partial / published_ce.name)
    result = reproduce("smoke", out_root=tmp_path, only=notebook, runs_dir=str(partial), overrides={"train": False})
    assert result["ok"] == [notebook], result["failed"]
    summary = json.loads((tmp_path / "smoke" / notebook / "summary.json").read_text())
    assert summary["runs"] == [] and "1 finished run(s) of this recipe" in summary["notes"]["no_runs"]
    assert sorted(p.name for p in partial.iterdir()) == [published_ce.name]  # nothing trained
    if notebook == "table5_router_ablation":
        table = pd.read_csv(tmp_path / "smoke" / notebook / "table5.csv", index_col=0)
        assert (table["seeds"] == 0).all() and table["All"].isna().all()

    other = tmp_path / "other"
    published_cpu = next((REPO / "results" / "cifar10_lt_if100_cpu" / "runs").glob("cifar10_lt-resnet8-ce-s0-*"))
    shutil.copytree(published_cpu, other / published_cpu.name)
    result = reproduce("smoke", out_root=tmp_path / "second", only=notebook, runs_dir=str(other),
                       overrides={"train": False})
    assert list(result["failed"]) == [notebook] and "set profile = 'cifar-cpu'" in result["failed"][notebook]


def test_papermill_exits_non_zero_for_a_runs_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "no_such_runs"
    done = subprocess.run(
        [sys.executable, "-m", "papermill", "-k", "python3", str(NOTEBOOK_DIR / "figure4_router_weights.ipynb"),
         str(tmp_path / "f4.ipynb"), "-p", "runs_dir", str(missing), "-p", "train", "False",
         "-p", "output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode != 0, done.stderr[-2000:]
    assert f"ParameterError: runs_dir {missing} does not exist" in done.stderr
    assert not missing.exists()


def test_notebook_parameters_fail_in_one_line_naming_what_is_valid(monkeypatch, tmp_path):
    from lt_paper.workflows.outputs import NotebookOutputs, ParameterError

    good = dict(prefix="smoke", dataset="digits_lt", arch="resnet8", epochs=2, seeds=[0], device="cpu",
                data_root=None, runs_dir="runs", train=True, parallel=1, run_overrides={}, output_dir=None)
    cases = {  # wrong parameters -> what the message must name
        "prefix": ({"prefix": "cifar"}, "'cifar10_lt'"),
        "arch": ({"prefix": "cifar10_lt", "dataset": "cifar10_lt", "arch": "resnet50"},
                 "prefix 'cifar10_lt': 'resnet32', 'resnet8'"),
        "dataset": ({"dataset": "cifar10_lt"}, "set dataset = 'digits_lt'"),
        "data_root": ({"prefix": "cifar10_lt", "dataset": "cifar10_lt", "arch": "resnet32"}, "data_root"),
        "seeds": ({"seeds": 0}, "list of ints"),
        "repeated seeds": ({"seeds": [0, 1, 0]}, "seeds = [0, 1, 0] repeats seed(s) [0]"),  # one run counted twice
        "train": ({"train": "no"}, "True"),
        "a bool seed": ({"seeds": [0, True]}, "seeds = [0, True] must be a non-empty list of ints"),
        "runs_dir list": ({"runs_dir": ["runs"]}, "runs_dir = ['runs'] is of type list; it must be a path"),
        "runs_dir number": ({"runs_dir": 3}, "runs_dir = 3 is of type int; it must be a path"),
        "data_root list": ({"data_root": ["data"]}, "data_root = ['data'] is of type list; it must be a path"),
        "output_dir number": ({"output_dir": 1.5}, "output_dir = 1.5 is of type float; it must be a path"),
        "runs_dir None": ({"runs_dir": None}, "runs_dir = None is of type NoneType; it must be a path"),
    }
    monkeypatch.setenv("LT_PAPER_ROOT", str(tmp_path))
    for name, (change, needle) in cases.items():
        with pytest.raises(ParameterError) as err:
            NotebookOutputs.from_parameters("figure1_hard_samples", dict(good, **change))
        message = str(err.value)
        assert needle in message and "\n" not in message and len(message) < 300, (name, message)
        assert err.value._render_traceback_() == [f"\x1b[31mParameterError\x1b[0m: {message}"]
    with pytest.raises(ParameterError, match=r"counts_json = \['a.json'\] is of type list; it must be a path"):
        NotebookOutputs.from_parameters("figure2_adjusting_terms", dict(good, counts_json=["a.json"]),
                                        extra=("counts_json",), trains=False)
    # read-only CIFAR needs no data; paths resolve against the root, one output folder per notebook
    out = NotebookOutputs.from_parameters("figure4_router_weights", dict(
        good, prefix="cifar10_lt", dataset="cifar10_lt", arch="resnet32", train=False))
    assert out.dir == tmp_path / "outputs" / "notebook" / "figure4_router_weights"
    assert out.run_kwargs["runs_dir"] == str(tmp_path / "runs") and out.run_kwargs["train"] is False
    assert out.summary["parameters"]["prefix"] == "cifar10_lt"


def test_reproduce_refuses_a_path_or_seed_of_the_wrong_type_before_any_notebook_runs(tmp_path, monkeypatch):
    """papermill passes lists and numbers as readily as strings: once a TypeError traceback in every notebook
    (a path), or a seed True that passed the duplicate check and failed in the config."""
    import lt_paper.workflows.reproduce as R
    from lt_paper.workflows.outputs import ParameterError

    ran = []
    monkeypatch.setattr(R, "execute_notebook", lambda notebook, *args, **kwargs: ran.append(notebook))
    for overrides, message in (({"data_root": ["x.tar.gz"]}, r"data_root = \['x.tar.gz'\] is of type list"),
                               ({"runs_dir": 7}, r"runs_dir = 7 is of type int; it must be a path"),
                               ({"seeds": [0, True]}, r"--set seeds = \[0, True\] must be a non-empty list of ints")):
        with pytest.raises(ParameterError, match=message):
            reproduce("smoke", out_root=tmp_path, overrides=overrides)
    assert ran == [] and not (tmp_path / "smoke").exists()


# ------------------------------------------------------------------ reading notes against the figures
PUBLISHED_SMOKE_RUNS = REPO / "results" / "smoke" / "runs"


@pytest.fixture(scope="module")
def published_records():
    """The published smoke runs of Figures 1 and 4, read as their notebooks read them (train=False)."""
    from lt_paper.analysis import load_run
    from lt_paper.workflows.experiments import finished_rows
    from lt_paper.workflows.rows import FIGURE1_ROWS, FIGURE4_ROWS

    found = finished_rows("smoke", "resnet8", {**FIGURE1_ROWS, **FIGURE4_ROWS}, runs_dir=PUBLISHED_SMOKE_RUNS,
                          progress=False, epochs=30, device="cpu", data_root=None)
    missing = [row for row, results in found.items() if not results]
    assert not missing, f"no published run in {PUBLISHED_SMOKE_RUNS} for {missing}: re-publish results/smoke"
    return {row: load_run(results[0]["run_dir"]) for row, results in found.items()}


def _reading_note(notebook: str, draws: str) -> str:
    """The Markdown cell after the code cell whose source contains ``draws``, whitespace collapsed."""
    cells = _load(notebook)["cells"]
    drawing = next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and draws in "".join(c["source"]))
    note = next(c for c in cells[drawing + 1:] if c["cell_type"] == "markdown")
    return " ".join("".join(note["source"]).split())


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def _check_probability_curves(records):
    """Figure 1(a-c): panels Many / Medium / Few; each method's line is its group's p sorted ascending
    (low probabilities on the left), labelled with its accuracy, in one colour across the panels."""
    from lt_paper.analysis import per_group_accuracy, plot_probability_curves, record_groups

    runs = {m: records[m] for m in ("CE", "LDAM-DRW")}
    fig = plot_probability_curves(runs)
    colours: dict[str, set] = {}
    for ax, group in zip(fig.axes, ("many", "medium", "few")):
        assert ax.get_title() == f"{group.capitalize()}-shot"
        dashed = {round(float(line.get_ydata()[0]), 3) for line in ax.get_lines() if line.get_linestyle() == "--"}
        assert dashed == {0.2, 0.8}
        curves = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert len(curves) == len(runs)
        for line in curves:
            method = line.get_label().split(" (acc ")[0]
            record = runs[method]
            assert line.get_label() == f"{method} (acc {100 * per_group_accuracy(record)[group]:.1f}%)"
            assert np.array_equal(line.get_ydata(), np.sort(record.p_gt[record_groups(record)[group]]))
            colours.setdefault(method, set()).add(_hex(line.get_color()))
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == len(runs)


def _check_probability_by_class(records):
    """Figure 1(d): the groups' labels run few, medium, many from left to right (tail on the left); the
    dots are CE's probabilities of the true class."""
    from lt_paper.analysis import plot_probability_by_class

    fig = plot_probability_by_class({"CE": records["CE"]}, seed=0)
    ax = fig.axes[0]
    label_x = {t.get_text(): t.get_position()[0] for t in ax.texts}
    assert label_x["few"] < label_x["medium"] < label_x["many"], label_x
    (dots,) = ax.collections
    assert dots.get_label() == "CE" and set(dots.get_offsets()[:, 1].tolist()) <= set(records["CE"].p_gt.tolist())


def _check_router_weights(records):
    """Figure 4: per group (Many, Medium, Few) a bar per expert whose height is its mean router weight
    and whose number is its accuracy (percent)."""
    from lt_paper.analysis import expert_group_accuracy, plot_router_weights, router_weight_by_group

    for name in ("MoE-3", "MoE-4"):
        record = records[name]
        fig = plot_router_weights(record)
        weights, accuracy = router_weight_by_group(record), 100 * expert_group_accuracy(record)
        for ax, group in zip(fig.axes, ("many", "medium", "few")):
            assert ax.get_title() == f"{group.capitalize()}-shot"
            assert np.allclose([bar.get_height() for bar in ax.patches], weights[group])
            assert [t.get_text() for t in ax.texts] == [f"{v:.1f}" for v in accuracy[group]]


# (notebook, a snippet of the code cell that draws the figure, what its reading note must say, the check
# that the figure draws what that says)
READING_NOTES = [
    ("figure1_hard_samples", "plot_probability_curves(records)",
     ("sorted by the probability of their true class", "the dashed lines are p = 0.2 and 0.8",
      "The legend gives each method's accuracy on the group"), _check_probability_curves),
    ("figure1_hard_samples", "plot_probability_by_class(",
     ("classes left to right from the smallest to the largest train class",
      "the tail (few) on the left, the head (many) on the right", "Look for low dots on the right"),
     _check_probability_by_class),
    ("figure4_router_weights", "plot_router_weights(recs[0])",
     ("Bars are each expert's mean router weight on a group, the number on a bar is that expert's "
      "accuracy there",), _check_router_weights),
]


@pytest.mark.parametrize("notebook, draws, says, check", READING_NOTES, ids=[n[2][0][:30] for n in READING_NOTES])
def test_each_reading_note_says_what_its_figure_draws(published_records, notebook, draws, says, check):
    """A note under a figure tells the reader where to look (which end of an axis, which bar, which
    line); the figure, drawn from the published smoke runs, must put it there."""
    note = _reading_note(notebook, draws)
    for phrase in says:
        assert phrase in note, (notebook, phrase, note)
    check(published_records)


def test_a_misspelled_papermill_parameter_stops_the_notebook_naming_the_closest(tmp_path):
    """papermill only warns about a name the parameters cell lacks and the notebook would run on its
    defaults; the setup cell sees the injected cell and refuses it."""
    import papermill as pm

    from lt_paper.workflows.outputs import ParameterError, check_injected_parameters

    known = ("runs_dir", "train", "epochs")
    check_injected_parameters({"In": ["", "train = True", "# Parameters\ntrain = False\n"]}, known)
    check_injected_parameters({}, known)  # outside IPython: nothing to check
    with pytest.raises(ParameterError, match=r"unknown parameter 'run_dir' .*did you mean 'runs_dir'\?"):
        check_injected_parameters({"In": ["", "# Parameters\nrun_dir = \"x\"\n"]}, known)
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter 'trian' .*did you mean 'train'\?"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "figure2_adjusting_terms.ipynb"), str(tmp_path / "f2.ipynb"),
                            parameters={"trian": False, "output_dir": str(tmp_path / "out")},
                            kernel_name="python3", progress_bar=False, cwd=str(REPO))
    assert not (tmp_path / "out" / "figure2a.png").exists()  # stopped before any figure


def test_a_notebook_folder_holds_only_what_its_last_run_produced(tmp_path, capsys):
    import matplotlib.figure

    from lt_paper.workflows.outputs import NotebookOutputs

    first = NotebookOutputs(tmp_path, "nb", {})
    first.figure("curves", matplotlib.figure.Figure(figsize=(2, 2)), "curves")
    first.table("shares", pd.DataFrame({"method": ["CE"], "hard %": [1.0]}), "shares")
    first.finish()
    (tmp_path / "nb.ipynb").write_text("{}")  # papermill's executed copy: not the notebook's to remove
    assert pd.read_csv(tmp_path / "shares.csv").columns.tolist() == ["method", "hard %"]  # no row counter
    second = NotebookOutputs(tmp_path, "nb", {})  # a run with no table and no figure
    second.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb", "summary.json"]


def test_a_runs_dir_that_does_not_exist_is_named_so(tmp_path, capsys):
    from lt_paper.workflows.experiments import finished_rows

    found = finished_rows("smoke", "resnet8", {"ce": "ce"}, runs_dir=tmp_path / "no_such_dir", device="cpu")
    assert found == {"ce": []}
    assert f"runs_dir {tmp_path / 'no_such_dir'} does not exist" in capsys.readouterr().out


def test_an_unknown_preset_says_in_one_line_which_part_is_wrong():
    from lt_paper.train.presets import get_preset

    for name, needle in (("cifar10_lt/resnet50/ala", "arch resnet32, resnet8 only"), ("nope/resnet8/ala", "smoke, "),
                         ("smoke/resnet8/alaa", "method 'alaa'")):
        with pytest.raises(KeyError) as err:
            get_preset(name)
        assert needle in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyter_serves_every_notebook(tmp_path):
    port = _free_port()
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={REPO}"]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        base = f"http://127.0.0.1:{port}/api/contents/notebooks"
        deadline, listing = time.time() + 60, None
        while time.time() < deadline and listing is None:
            try:
                listing = json.load(urllib.request.urlopen(base, timeout=5))
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert listing is not None, "Jupyter did not answer within 60 s"
        assert {c["name"] for c in listing["content"]} >= {f"{n}.ipynb" for n in NOTEBOOKS}
        for name in NOTEBOOKS:
            model = json.load(urllib.request.urlopen(f"{base}/{name}.ipynb", timeout=10))
            assert model["type"] == "notebook"
            assert any("parameters" in c["metadata"].get("tags", []) for c in model["content"]["cells"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_publish_copies_a_complete_output_into_results_and_figures(smoke, tmp_path):
    from lt_paper.workflows.publish import publish

    out, _ = smoke
    done = publish(out, "smoke", repo_root=tmp_path)
    results, figures = tmp_path / "results" / "smoke", tmp_path / "figures" / "smoke"
    assert done["notebooks"] == len(NOTEBOOKS) and done["runs"] >= 19
    report = (results / "report.md").read_text()
    for link in __import__("re").findall(r"\]\((\.\./\.\./figures/[^)]+\.png)\)", report):
        assert (results / link).resolve().is_file(), link
    for run in (results / "runs").iterdir():
        assert json.loads((run / "metrics.json").read_text())["provenance"]["commit"]
    # exactly the runs the notebooks read, the distillation teacher among them; none for Figures 2 and 3
    listed = {Path(run).name for folder in NOTEBOOKS for run in _summary(smoke, folder)["runs"]}
    assert sorted(p.name for p in (results / "runs").iterdir()) == sorted(listed)
    assert any("-moe6-" in name for name in listed)
    assert all(_summary(smoke, folder)["runs"] == [] for folder in ("figure2_adjusting_terms",
                                                                    "figure3_moe_architecture"))
    assert not list(results.rglob("*.ipynb")) and list(figures.rglob("*.png"))
    with pytest.raises(FileExistsError):
        publish(out, "smoke", repo_root=tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "table4_ala_ablation" / "summary.json").unlink()
    with pytest.raises(ValueError, match="table4_ala_ablation"):
        publish(partial, "smoke", repo_root=tmp_path, force=True)
    assert (results / "table4_ala_ablation" / "summary.json").is_file()  # the good copy stays


def test_a_run_trained_in_jupyterlab_is_reused_by_reproduce_and_published_alone(tmp_path, monkeypatch,
                                                                                 capsys):
    """One run cache whatever the starting point: the notebook executed as JupyterLab runs it (kernel in
    notebooks/, its default runs_dir = "runs" relative to the root) trains into <root>/runs; reproduce
    without --runs-dir reuses those runs; publish copies the runs the notebook read, no other run there."""
    import papermill as pm

    from lt_paper.workflows.publish import publish

    monkeypatch.setenv("LT_PAPER_ROOT", str(tmp_path))
    pm.execute_notebook(str(NOTEBOOK_DIR / "figure1_hard_samples.ipynb"), str(tmp_path / "lab.ipynb"),
                        parameters={"epochs": 1}, kernel_name="python3", progress_bar=False,
                        cwd=str(NOTEBOOK_DIR))
    lab = json.loads((tmp_path / "outputs/notebook/figure1_hard_samples/summary.json").read_text())
    assert len(lab["runs"]) == 2 and all(Path(run).parent == tmp_path / "runs" for run in lab["runs"])
    trained = {run: (Path(run) / "metrics.json").stat().st_mtime_ns for run in lab["runs"]}

    result = reproduce("smoke", out_root=tmp_path / "outputs", only="figure1", overrides={"epochs": 1})
    assert result["ok"] == ["figure1_hard_samples"], result["failed"]
    assert f"runs: {tmp_path / 'runs'}" in capsys.readouterr().out
    out = tmp_path / "outputs" / "smoke"
    assert json.loads((out / "figure1_hard_samples" / "summary.json").read_text())["runs"] == lab["runs"]
    printed = "".join(_text(o) for o in _outputs(out / "figure1_hard_samples", "figure1_hard_samples"))
    assert printed.count("reused: ") == 2 and "trained: " not in printed
    assert {run: (Path(run) / "metrics.json").stat().st_mtime_ns for run in lab["runs"]} == trained

    shutil.copytree(lab["runs"][0], tmp_path / "runs" / "digits_lt-resnet8-unrelated-s0-000000000000")
    done = publish(out, "smoke", repo_root=tmp_path / "repo", partial=True)
    published = sorted(p.name for p in (tmp_path / "repo" / "results" / "smoke" / "runs").iterdir())
    assert published == sorted(Path(run).name for run in lab["runs"]) and done["runs"] == 2


def test_a_notebook_trains_its_rows_side_by_side(tmp_path):
    """parallel=2: the runs start as separate processes from inside the Jupyter kernel."""
    result = reproduce("smoke", out_root=tmp_path, only="figure1", runs_dir=str(tmp_path / "runs"),
                       overrides={"epochs": 2, "parallel": 2})
    assert result["failed"] == {} and result["ok"] == ["figure1_hard_samples"]
    summary = json.loads((tmp_path / "smoke" / "figure1_hard_samples" / "summary.json").read_text())
    assert summary["parameters"]["parallel"] == 2
    assert set(summary["records"]["accuracy"]) == {"CE", "LDAM-DRW"}
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 2


def test_reproduce_under_torchrun_trains_with_ddp_and_rank0_writes(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lt_paper",
           "reproduce", "--profile", "smoke", "--only", "figure1", "--out", str(tmp_path), "--set", "epochs=1",
           "--runs-dir", str(tmp_path / "runs")]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "smoke"
    runs = sorted(tmp_path.glob("runs/*/metrics.json"))
    assert len(runs) == 2 and all(json.loads(r.read_text())["world_size"] == 2 for r in runs)
    assert (out / "report.md").is_file() and (out / "figure1_hard_samples" / "summary.json").is_file()
    assert not (out / ".rank1" / "report.md").exists()  # the other rank's outputs are scratch


@pytest.mark.parametrize("notebook, claims", [("table4_ala_ablation", "TABLE4_CLAIMS"),
                                              ("table5_router_ablation", "TABLE5_CLAIMS"),
                                              ("table1_3_main_results", "TABLE1_CLAIMS")])
def test_each_table_notebook_reads_the_papers_comparisons_on_its_recorded_numbers(smoke, notebook, claims):
    from lt_paper.analysis import claims as C

    ours = _summary(smoke, notebook)["records"]["top1"]
    frame = pd.read_csv(smoke[0] / notebook / "claims.csv").set_index("comparison")
    wanted = getattr(C, claims)
    assert len(frame) >= len(wanted) and set(frame["verdict"]) <= {
        "agrees", "disagrees", "tie", "paper level", "missing", "no many-shot class", "no medium-shot class",
        "no few-shot class"}
    label = {"All": "all", "Many": "many", "Medium": "medium", "Few": "few"}
    for name, row in frame.iterrows():
        claim = wanted[[i for i, c in enumerate(wanted)
                        if name.startswith(f"{C._label(c, c.better)} vs {C._label(c, c.worse)},")][0]]
        group = label[name.rsplit(", ", 1)[1]]
        a, b = (np.array(ours[k][group], dtype=float) for k in (claim.better, claim.worse))
        if row["verdict"] in ("agrees", "disagrees", "tie"):  # one seed: the smoke profile
            assert row["ours Δ"] == pytest.approx(100 * (a - b).mean(), abs=1e-9)
    shown = "".join(_text(o) for o in _outputs(smoke[0] / notebook, notebook))
    assert "comparisons the paper makes" in shown or "No claim could be tested" in shown


def test_reproduce_shows_which_row_trains_and_each_epoch_with_the_seconds_left(tmp_path, capsys):
    """A notebook that trains is not silent on the terminal: its run lines and epoch lines come through."""
    result = reproduce("smoke", out_root=tmp_path, only="figure1", runs_dir=str(tmp_path / "runs"),
                       overrides={"epochs": 2})
    assert result["ok"] == ["figure1_hard_samples"], result["failed"]
    out = capsys.readouterr().out
    for row in ("1/2 CE", "2/2 LDAM-DRW"):
        assert f"run {row} (smoke/resnet8/" in out, out
    epochs = re.findall(r"^epoch (\d)/2 .*, (\d+) s left$", out, re.M)
    assert [e for e, _ in epochs] == ["1", "2", "1", "2"], out  # each epoch of each run, as it ends
    assert [left for e, left in epochs if e == "2"] == ["0", "0"]
    assert out.index("run 1/2 CE") < out.index("epoch 1/2") < out.index("run 2/2 LDAM-DRW")


# ------------------------------------------------------------------ the published cifar-cpu runs, as a student reads them
PUBLISHED_CIFAR_RUNS = REPO / "results" / "cifar10_lt_if100_cpu" / "runs"


def _execute_on_published_cifar(notebook: str, tmp_path: Path, **extra) -> dict:
    """``notebook`` executed through papermill with the cifar-cpu profile's parameters on the published
    runs (train=False, seeds 0 and 1); returns its summary.json."""
    import papermill as pm

    from lt_paper.workflows.reproduce import jobs_for

    params = next(dict(p) for nb, _, p in jobs_for("cifar-cpu") if nb == notebook)
    params.update(profile="cifar-cpu", runs_dir=str(PUBLISHED_CIFAR_RUNS), train=False, seeds=[0, 1],
                  output_dir=str(tmp_path / notebook), **extra)
    pm.execute_notebook(str(NOTEBOOK_DIR / f"{notebook}.ipynb"), str(tmp_path / f"{notebook}.ipynb"),
                        parameters=params, kernel_name="python3", progress_bar=False, cwd=str(REPO))
    return json.loads((tmp_path / notebook / "summary.json").read_text())


@pytest.fixture(scope="module")
def cifar_figure4(tmp_path_factory):
    """Figure 4's notebook on the published cifar-cpu runs (seeds 0 and 1): its summary.json."""
    return _execute_on_published_cifar("figure4_router_weights", tmp_path_factory.mktemp("figure4"))


def test_reading_notes_follow_the_profile_in_use_and_the_empty_few_shot_group(cifar_figure4):
    """On CIFAR-10-LT at imbalance 100 (no few-shot class) the notes that point at Few-shot say what to
    look at instead, and "What this profile can show" speaks first of cifar-cpu."""
    notes = cifar_figure4["notes"]
    reading = " ".join(notes["reading"].split())
    assert reading.startswith("**On these runs: no few-shot class (fewer than 20 training images).**"), reading
    assert "look at *Medium-shot* instead: its classes (ship: 83, truck: 50 training images)" in reading
    profile_part = reading[reading.index("**What this profile can show.**"):]
    assert profile_part.startswith("**What this profile can show.** `cifar-cpu` (the profile in use): the real "
                                   "CIFAR-10-LT images"), profile_part
    assert profile_part.index("`smoke`:") > profile_part.index("`cifar-cpu`")


def test_figure4_on_the_cifar_cpu_runs_calls_a_gap_within_the_sampling_error_a_tie_per_seed(cifar_figure4):
    """The published MoE-3, seed 0: on medium the top-weight expert 1 is 5 images (0.2 points) behind
    expert 2, against an error of about 34 images: a tie, not "no"; and the mean weights, 0.455 / 0.318 /
    0.227 on many against 0.465 / 0.314 / 0.221 on medium, are one global weighting. Both seeds."""
    records = cifar_figure4["records"]
    assert {"MoE-3 seed 0", "MoE-3 seed 1"} <= set(records)
    seed0 = records["MoE-3 seed 0"]
    assert seed0["verdict"]["medium"] == "tie" and seed0["verdict"]["few"] == "-"
    for seed in (0, 1):
        variation = records[f"MoE-3 seed {seed}"]["variation"]
        assert variation["global"] is True and variation["between_groups"] < 0.02
    table = pd.read_csv(Path(cifar_figure4["parameters"]["output_dir"]) / "figure4_verdict_moe-3.csv")
    assert list(table["seed"].unique()) == [0, 1] and set(table["agrees"].dropna()) <= {"yes", "no", "tie", "flat", "-"}
    medium = table.query("seed == 0 and group == 'medium'").iloc[0]
    assert (medium["closest rival"], medium["difference (images)"]) == (2, -5)
    assert 30 < medium["sampling error (images)"] < 40
    note = " ".join(cifar_figure4["notes"]["router_moe-3"].split())
    assert "- seed 0: the mean weights differ between groups by at most 0.009" in note
    assert "one global weighting for every group" in note and "- seed 1:" in note


def test_the_explorer_records_its_default_choice_as_the_records_give_it(smoke):
    """The explorer notebook through papermill (reproduce's smoke profile): the default choice (CE and
    LDAM-DRW, seed 0, the rarest class) is recorded, with counts, hardest images and the images one run
    finds hard and the other not, recomputed here from the records; its panel is kept as static HTML."""
    from lt_paper.analysis import load_run

    out, _ = smoke
    summary = _summary(smoke, "explore_hard_samples")
    state = summary["records"]["default"]
    assert (state["run_a"], state["run_b"]) == ("CE, seed 0", "LDAM-DRW, seed 0")  # None: the first two finished
    runs = {Path(r).name.split("-")[2]: load_run(r) for r in summary["runs"]}
    ce, ldam = runs["ce"], runs["ldam"]
    rarest = int(np.argmin(ce.train_counts))
    assert state["class_id"] == rarest and state["class"] == str(rarest)
    mine = ce.label == rarest
    hard_ce, hard_ldam = mine & (ce.p_gt < 0.2), mine & (ldam.p_gt < 0.2)
    assert state["counts"] == {"images": int(mine.sum()), "hard_a": int(hard_ce.sum()),
                               "hard_b": int(hard_ldam.sum()), "hard_both": int((hard_ce & hard_ldam).sum())}
    order = np.flatnonzero(mine)[np.argsort(ce.p_gt[mine], kind="stable")]
    assert state["hardest"] == order[:6].tolist()
    only_ce = np.flatnonzero(hard_ce & ~hard_ldam)
    assert state["hard_for_a_only"]["found"] == only_ce.size
    assert sorted(state["hard_for_a_only"]["shown"]) == sorted(
        only_ce[np.argsort(-(ldam.p_gt[only_ce].astype(float) - ce.p_gt[only_ce]), kind="stable")][:6].tolist())
    panel = [o for o in _outputs(out / "explore_hard_samples", "explore_hard_samples")
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(panel) == 1
    static = "".join(panel[0]["data"]["text/html"])
    assert f'data-hard-a="{state["counts"]["hard_a"]}"' in static
    hardest_grid = static.split('data-grid="hardest">')[1].split('data-grid="a-only"')[0]
    assert [int(i) for i in re.findall(r'data-index="(\d+)"', hardest_grid)] == state["hardest"]


def test_a_profile_fills_what_is_left_none_and_says_what_a_value_given_beside_it_changes(capsys):
    from lt_paper.workflows.outputs import apply_profile

    keys = dict(prefix=None, dataset=None, arch=None, epochs=None, seeds=None, device=None, data_root=None,
                runs_dir=None, train=False)
    p = dict(keys, profile="cifar-cpu")
    filled = apply_profile(p, "table4_ala_ablation")
    assert (p["prefix"], p["arch"], p["epochs"], p["seeds"], p["device"]) == ("cifar10_lt", "resnet8", 40, [0], "cpu")
    assert p["runs_dir"] == "results/cifar10_lt_if100_cpu/runs" and set(filled) == set(keys) - {"train"}
    assert capsys.readouterr().out == ""  # nothing given beside the profile: nothing to say
    # more seeds: the same recipe's other runs; another epoch count: runs the profile did not train
    apply_profile(dict(keys, profile="cifar-cpu", seeds=[0, 1, 2]), "table4_ala_ablation")
    assert capsys.readouterr().out.strip().endswith(
        "(the profile's: seeds = [0]): other seeds of the profile's recipe (seeds without a run show as missing)")
    apply_profile(dict(keys, profile="cifar-cpu", seeds=[0, 1], epochs=20), "table4_ala_ablation")
    assert capsys.readouterr().out.strip().endswith("not the profile's runs")
