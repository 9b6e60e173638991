"""What a person meets: JupyterLab in headless Chromium opens a notebook, Run All, and its figure shows.

Skipped, with the command that enables it, where Chromium, its driver or selenium are absent
(``.ci/run`` installs them). The notebook reads a small runs directory the test trains (train=False,
the published-results mode), so the browser part takes well under a minute.
"""

from __future__ import annotations

import importlib.util
import json
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
    from lt_paper.workflows.experiments import run_rows

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
        # the paper's recipe: LDAM-DRW alone so far (trained on a CPU): Figure 1 draws it, Figure 4 (every
        # row a network of several experts) opens and says its rows have not trained
        paper_f1 = _run_all(lab, tmp_path, "paper_f1", "figure1_hard_samples", dict(profile="cifar", train=False))
        paper_f4 = _run_all(lab, tmp_path, "paper_f4", "figure4_router_weights", dict(profile="cifar", train=False))
    for shown in (paper_f1, paper_f4):
        assert shown["executed"] == shown["cells"] and shown["errors"] == [] and shown["stderr"] == [], shown
    assert paper_f1["images"] >= 1 and not paper_f1["nothing_yet"], paper_f1
    assert paper_f4["images"] == 0 and paper_f4["nothing_yet"], paper_f4
    # smoke: MoE-3, -4 and -6 and RIDE-3 and -4 with the router; cifar-cpu: those of them published
    for shown, images in ((smoke, 5), (cpu, _router_networks(PUBLISHED_CIFAR_RUNS))):
        assert shown["executed"] == shown["cells"] and shown["images"] == images, shown
        assert shown["errors"] == [] and shown["stderr"] == [], shown
    assert wrong["images"] == 0 and len(wrong["errors"]) == 1, wrong
    assert wrong["errors"][0].startswith("ParameterError: runs_dir ") and wrong["errors"][0].endswith(
        "it holds 20 runs of smoke/resnet8, 30 epochs, seeds [0]: set profile = 'smoke'"), wrong
    assert len(absent["errors"]) == 1 and "no_such_runs does not exist" in absent["errors"][0], absent
    assert not (tmp_path / "no_such_runs").exists()


PUBLISHED_CIFAR_RUNS = REPO / "results" / "cifar10_lt_if100_cpu" / "runs"


def _router_networks(runs_dir: Path) -> int:
    """Figure 4 draws one figure per network with the learned router (its rows: MoE-3, -4, -6, RIDE-3 and
    -4) whose first-seed run is finished in ``runs_dir``: count those runs from their configs."""
    configs = [json.loads((p / "config.json").read_text()) for p in runs_dir.iterdir() if (p / "metrics.json").is_file()]
    return sum(c["seed"] == 0 and c["num_experts"] > 1 and c["router"] == "instance" for c in configs)
# what the explorer's panel shows, read from the page: the summary's counts, each grid's image indices
READ_EXPLORER = """
const s = document.querySelector('.lt-summary-pane .lt-summary');
const grids = {};
document.querySelectorAll('.lt-grids-pane [data-grid]').forEach(g => {
  grids[g.dataset.grid] = Array.from(g.querySelectorAll('.lt-tile')).map(t => Number(t.dataset.index)); });
const image = document.querySelector('.lt-detail-pane .lt-image');
return {cls: s.dataset.class, text: s.textContent, images: Number(s.dataset.images), hard_a: Number(s.dataset.hardA),
        hard_b: Number(s.dataset.hardB), hard_both: Number(s.dataset.hardBoth), grids: grids,
        image: image ? Number(image.dataset.index) : null,
        experts: document.querySelectorAll('.lt-detail-pane table.lt-experts tbody tr').length,
        pictures: document.querySelectorAll('.lt-grids-pane .lt-tile img').length};
"""


def test_the_explorer_answers_a_change_of_class_and_run_with_what_the_records_say(tmp_path):
    """The explorer on the published cifar-cpu runs, as a student uses it: Run All, pick the class ship,
    then the MoE as run B; the summary and the grids on the page are those recomputed here from the
    records (CE, seed 0 against MoE-3, seed 0), and the selected image shows the MoE's three experts."""
    why = screenshots.missing_browser()
    if why:
        pytest.skip(why)
    import numpy as np

    from lt_paper.analysis import load_run

    params = dict(screenshots.profile_parameters("cifar-cpu", "explore_hard_samples"), runs_dir=str(PUBLISHED_CIFAR_RUNS),
                  train=False, seeds=[0, 1], output_dir=str(tmp_path / "outputs"))
    notebook = screenshots.parameterized_copy("explore_hard_samples", params, tmp_path)
    with screenshots.JupyterLabInChromium(tmp_path) as lab:
        shown = lab.run_all(notebook, timeout=180)
        assert shown["executed"] == shown["cells"] and shown["errors"] == [] and shown["stderr"] == [], shown
        lab.choose("lt-class", "ship (83 train images)", "document.querySelector('.lt-summary-pane .lt-summary')"
                   ".dataset.class === 'ship'")
        lab.choose("lt-run-b", "MoE-3, seed 0", "document.querySelector('.lt-summary-pane .lt-summary')"
                   ".textContent.includes('under MoE-3, seed 0')")
        page = lab._js(READ_EXPLORER)
    ce, moe = (load_run(next(PUBLISHED_CIFAR_RUNS.glob(f"cifar10_lt-resnet8-{m}-s0-*"))) for m in ("ce", "ala-moe3"))
    ship = ce.label == 8
    hard_ce, hard_moe = ship & (ce.p_gt < 0.2), ship & (moe.p_gt < 0.2)
    assert (page["cls"], page["images"]) == ("ship", int(ship.sum()))
    assert (page["hard_a"], page["hard_b"], page["hard_both"]) == (int(hard_ce.sum()), int(hard_moe.sum()),
                                                                   int((hard_ce & hard_moe).sum()))
    ranked = np.flatnonzero(ship)[np.argsort(ce.p_gt[ship], kind="stable")]
    assert page["grids"]["hardest"] == ranked[:6].tolist()
    for grid, (hard_for, other) in (("a-only", (ce, moe)), ("b-only", (moe, ce))):
        picked = np.flatnonzero(ship & (hard_for.p_gt < 0.2) & (other.p_gt >= 0.2))
        gain = other.p_gt[picked].astype(float) - hard_for.p_gt[picked]
        assert page["grids"][grid] == picked[np.argsort(-gain, kind="stable")][:6].tolist(), grid
    assert page["image"] == page["grids"]["hardest"][0] and page["experts"] == 3  # the MoE's experts, one row each
    if (REPO / "data" / "downloads" / "cifar10-jpeg.tar.gz").exists():
        assert page["pictures"] == sum(len(v) for v in page["grids"].values())  # real test images beside the numbers


def test_figure1_on_the_cifar_cpu_runs_says_what_to_read_and_shows_the_gallery_unshrunk(tmp_path):
    """Figure 1 on the published cifar-cpu runs in JupyterLab: the notes say there is no few-shot class
    and what to look at instead, speak of cifar-cpu first, and the galleries are shown at the width they
    were laid out for (their 9 pt labels not shrunk to fit the notebook)."""
    why = screenshots.missing_browser()
    if why:
        pytest.skip(why)
    params = dict(screenshots.profile_parameters("cifar-cpu", "figure1_hard_samples"), runs_dir=str(PUBLISHED_CIFAR_RUNS),
                  train=False, output_dir=str(tmp_path / "outputs"))
    notebook = screenshots.parameterized_copy("figure1_hard_samples", params, tmp_path)
    with screenshots.JupyterLabInChromium(tmp_path) as lab:
        shown = lab.run_all(notebook, timeout=180)
        page = lab._js("""
            const text = Array.from(document.querySelectorAll('.jp-OutputArea .jp-RenderedMarkdown'))
                .map(m => m.textContent.replace(/\\s+/g, ' '));
            const imgs = Array.from(document.querySelectorAll('.jp-OutputArea-output img'));
            return {notes: text, widths: imgs.map(i => [Number(i.getAttribute('width')), i.clientWidth]),
                    area: document.querySelector('.jp-OutputArea-output').clientWidth};""")
    assert shown["errors"] == [] and shown["stderr"] == [], shown
    notes = " ".join(page["notes"])
    assert "On these runs: no few-shot class" in notes and "look at Medium-shot instead" in notes, notes
    assert "What this profile can show. cifar-cpu (the profile in use)" in notes
    if (REPO / "data" / "downloads" / "cifar10-jpeg.tar.gz").exists():
        galleries = page["widths"][2:]  # after Figure 1(a-c) and (d)
        assert len(galleries) == 2 and all(asked == drawn for asked, drawn in galleries), page
    assert page["area"] >= 900, page  # the output area the gallery's 9 inches (900 px) were laid out for
