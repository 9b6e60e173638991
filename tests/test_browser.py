"""What a person meets: JupyterLab in headless Chromium opens a notebook, Run All, and its figure shows.

Skipped, with the command that enables it, where Chromium, its driver or selenium are absent
(``.ci/run`` installs them). The notebook reads a small runs directory the test trains (train=False,
the published-results mode), so the browser part takes well under a minute.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("screenshots", REPO / "scripts" / "screenshots.py")
screenshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshots)


def test_jupyterlab_runs_a_notebook_on_published_runs_and_shows_its_figure(tmp_path):
    why = screenshots.missing_browser()
    if why:
        pytest.skip(why)
    from lt_paper.experiments import run_rows

    runs_dir = tmp_path / "runs"  # MoE-3 finished, MoE-4 missing: one figure, one missing row
    run_rows("smoke", "resnet8", {"MoE-3": "ala_moe3"}, runs_dir=runs_dir, epochs=2, device="cpu",
             data_root=None, progress=False)
    trained = sorted(p.name for p in runs_dir.iterdir())
    params = dict(runs_dir=str(runs_dir), train=False, epochs=2, output_dir=str(tmp_path / "outputs"))
    notebook = screenshots.parameterized_copy("figure4_router_weights", params, tmp_path)
    with screenshots.JupyterLabInChromium(tmp_path) as lab:
        shown = lab.run_all(notebook)
        picture = lab.screenshot(tmp_path / "figure4.png")
    assert shown["executed"] == shown["cells"] > 0, shown
    assert shown["images"] == 1, shown  # the MoE-3 figure, rendered as an <img>
    assert shown["errors"] == [] and shown["stderr"] == [], shown
    assert picture.stat().st_size > 20_000
    assert sorted(p.name for p in runs_dir.iterdir()) == trained  # train=False trained nothing


def _run_all(lab, tmp_path: Path, name: str, notebook: str, params: dict) -> dict:
    """Run All on a parameterized copy of ``notebook`` in its own folder ``name``."""
    folder = tmp_path / name
    folder.mkdir()
    params = dict(params, output_dir=str(folder / "outputs"))
    return lab.run_all(screenshots.parameterized_copy(notebook, params, folder))


def test_one_profile_parameter_reads_a_published_profile_and_a_wrong_runs_dir_says_what_it_holds(tmp_path):
    """``profile`` alone (with train = False) names the published runs and everything that identifies them;
    a runs_dir without any run of the notebook's rows stops it with one line saying what it holds."""
    why = screenshots.missing_browser()
    if why:
        pytest.skip(why)
    with screenshots.JupyterLabInChromium(tmp_path) as lab:
        smoke = _run_all(lab, tmp_path, "smoke", "figure4_router_weights", dict(profile="smoke", train=False))
        cpu = _run_all(lab, tmp_path, "cpu", "figure4_router_weights", dict(profile="cifar-cpu", train=False))
        wrong = _run_all(lab, tmp_path, "wrong", "figure4_router_weights",
                         dict(profile="cifar-cpu", runs_dir="results/smoke/runs", train=False))
        absent = _run_all(lab, tmp_path, "absent", "figure4_router_weights",
                          dict(profile="smoke", runs_dir=str(tmp_path / "no_such_runs"), train=False))
    for shown, images in ((smoke, 2), (cpu, 1)):  # smoke: MoE-3 and MoE-4; cifar-cpu's core set: MoE-3
        assert shown["executed"] == shown["cells"] and shown["images"] == images, shown
        assert shown["errors"] == [] and shown["stderr"] == [], shown
    assert wrong["images"] == 0 and len(wrong["errors"]) == 1, wrong
    assert wrong["errors"][0].startswith("ParameterError: runs_dir ") and wrong["errors"][0].endswith(
        "it holds 20 runs of smoke/resnet8, 30 epochs, seeds [0]: set profile = 'smoke'"), wrong
    assert len(absent["errors"]) == 1 and "no_such_runs does not exist" in absent["errors"][0], absent
    assert not (tmp_path / "no_such_runs").exists()
