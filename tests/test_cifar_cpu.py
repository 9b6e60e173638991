"""The `cifar-cpu` profile: its reduced recipe, its campaign plan and budget, its labels, its gallery.

Nothing here trains on CIFAR: the plan needs only the run identities (a tree of empty files), the
budget is checked with a fake trainer on a fake clock, and the gallery reads a tiny tree of PNGs.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from lt_paper.workflows import campaign as C  # noqa: E402
from lt_paper.analysis import as_reference, cifar_frame, format_results, load_run, plot_sample_gallery  # noqa: E402
from lt_paper.cli import PROFILE_NAMES  # noqa: E402
from lt_paper.workflows.experiments import load_test_images  # noqa: E402
from lt_paper.workflows.outputs import NotebookOutputs  # noqa: E402
from lt_paper.workflows.reproduce import PROFILES  # noqa: E402
from lt_paper.workflows.rows import CLAIM_METHODS, CORE_METHODS  # noqa: E402
from lt_paper.train.presets import CPU_EPOCHS, get_preset, reduced_recipe_label  # noqa: E402

from test_campaign import CIFAR10, cifar_root  # noqa: E402, F401 (a fixture: a tree of empty files, for plans)

LABEL = f"ResNet-8, {CPU_EPOCHS} epochs, CPU, reduced recipe, not the paper's"


@pytest.fixture(scope="module")
def png_tree(tmp_path_factory):
    """10 CIFAR-10 classes x 6 train / 2 test PNGs of 32x32, each image one random pattern."""
    root = tmp_path_factory.mktemp("cifar_png") / "cifar10"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for name in CIFAR10:
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k:04d}.png")
    return root


def method(run) -> str:
    return run.config.name.rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------------------ recipe
def test_the_resnet8_cifar_presets_keep_the_recipe_shape_and_the_resnet32_runs_keep_their_hashes():
    cpu, paper = get_preset("cifar10_lt/resnet8/ala_moe3"), get_preset("cifar10_lt/resnet32/ala_moe3")
    assert (cpu.arch, cpu.epochs, cpu.device, cpu.channels_last) == ("resnet8", CPU_EPOCHS, "cpu", True)
    # the same fractions of the epochs, batch and optimizer as the paper's recipe
    for key in ("lr_decay_at", "lr_decay_factors", "drw_at", "router_at", "batch_size", "lr", "momentum",
                "weight_decay"):
        assert getattr(cpu, key) == getattr(paper, key), key
    # LDAM-DRW's 5 warm-up epochs of 200, scaled to the shorter run
    assert cpu.warmup_epochs == max(1, round(5 * CPU_EPOCHS / 200))
    assert 1 < cpu.eval_every < cpu.epochs
    assert paper.epochs == 200 and paper.arch == "resnet32"
    # the ResNet-32 presets did not change (their published hashes stay valid): no CPU field leaks in
    assert (paper.channels_last, paper.eval_every, paper.warmup_epochs, paper.device) == (None, 1, 5, "auto")


def test_reduced_recipe_label_names_network_epochs_and_device_and_only_for_reduced_recipes():
    assert reduced_recipe_label("cifar10_lt", "resnet8", CPU_EPOCHS, "cpu") == LABEL
    assert reduced_recipe_label("cifar10_lt", "resnet32", 60, "cuda") == \
        "ResNet-32, 60 epochs, GPU, reduced recipe, not the paper's"
    assert reduced_recipe_label("cifar10_lt", "resnet32", 200, "cuda") is None  # the paper's recipe
    assert reduced_recipe_label("imagenet_lt", "resnext50", 100, "cuda") is None
    assert reduced_recipe_label("smoke", "resnet8", 30, "cpu") is None  # digits: no paper recipe


def test_profile_names_of_the_command_line_are_the_profiles():
    assert set(PROFILE_NAMES) == set(PROFILES)
    params = [p for jobs in PROFILES["cifar-cpu"].values() for _, p in jobs]
    assert all((p["prefix"], p["arch"], p["epochs"], p["seeds"], p["device"])
               == ("cifar10_lt", "resnet8", CPU_EPOCHS, [0], "cpu") for p in params)


# --------------------------------------------------------------------------------------------- plan
def test_core_plan_is_figure1_the_ala_rows_and_the_3_expert_moe_one_run_per_pack(tmp_path, cifar_root):
    core = C.planned_runs("cifar-cpu", tmp_path, data_root=cifar_root, rows="core")
    assert [method(r) for r in core] == ["ce", "ldam_drw", "ala", "ala_nodrw", "ala_moe3"]
    assert set(map(method, core)) == set(CORE_METHODS)
    assert all(r.config.device == "cpu" and r.config.arch == "resnet8" and r.config.epochs == CPU_EPOCHS
               and r.config.channels_last for r in core)
    ce = core[0]
    assert {"figure1_hard_samples", "table4_ala_ablation"} <= set(ce.needed_by)
    assert "figure4_router_weights" in core[-1].needed_by
    # the whole profile: the same runs (same directories) first among its own, then the rest, one seed
    everything = C.planned_runs("cifar-cpu", tmp_path, data_root=cifar_root)
    assert len(everything) == 20 and {r.seed for r in everything} == {0}
    assert {r.run_dir for r in core} <= {r.run_dir for r in everything}
    names = [method(r) for r in everything]
    assert names.index("ala_moe6") == names.index("ala_distill") - 1  # the teacher before its student
    # on the CPU a pack is one run, trained by train() one after another
    assert C.default_max_members(everything) == 1
    assert all(len(p) == 1 for p in C.make_packs(everything, C.default_max_members(everything)))
    with pytest.raises(ValueError, match="--rows 'some'"):
        C.planned_runs("cifar-cpu", tmp_path, data_root=cifar_root, rows="some")


def test_claims_plan_is_the_core_set_and_the_mean_router_moe_for_every_seed_first_seed_first(tmp_path, cifar_root):
    claims = C.planned_runs("cifar-cpu", tmp_path, data_root=cifar_root, rows="claims", seeds=[0, 1, 2])
    assert set(CLAIM_METHODS) == set(CORE_METHODS) | {"ala_moe3_mean"}
    assert len(claims) == 3 * len(CLAIM_METHODS)
    assert {(method(r), r.seed) for r in claims} == {(m, s) for m in CLAIM_METHODS for s in (0, 1, 2)}
    assert [r.seed for r in claims] == sorted(r.seed for r in claims)  # seed 0 whole before seed 1
    # the same run directories as the whole profile's seed-0 runs: a claim run is never trained twice
    everything = C.planned_runs("cifar-cpu", tmp_path, data_root=cifar_root)
    assert {r.run_dir for r in claims if r.seed == 0} <= {r.run_dir for r in everything}


def test_the_profile_finds_the_tarball_under_the_repository_root_wherever_it_runs(tmp_path, monkeypatch, cifar_root):
    root = tmp_path / "clone"
    (root / "data" / "downloads").mkdir(parents=True)
    with tarfile.open(root / "data" / "downloads" / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(cifar_root, arcname="cifar10")
    monkeypatch.setenv("LT_PAPER_ROOT", str(root))
    monkeypatch.chdir(tmp_path)  # not the repository: a relative data_root must not resolve against it
    runs = C.planned_runs("cifar-cpu", tmp_path / "runs", rows="core")
    assert {r.config.data_root for r in runs} == {str(root / "data" / "downloads" / "cifar10-jpeg.tar.gz")}
    assert len({r.config.data_fingerprint for r in runs}) == 1 and runs[0].config.data_fingerprint


class KindClock:
    """A fake clock and trainer: a pack costs ``fixed`` + epochs x the per-epoch seconds of its network."""

    def __init__(self, per_epoch: dict, fixed: float = 5.0):
        self.now, self.per_epoch, self.fixed = 0.0, per_epoch, fixed

    def __call__(self):
        return self.now

    def train(self, configs, runs_dir):
        results = []
        for config in configs:
            kind = "distilled" if config.distill else config.num_experts
            self.now += self.fixed + config.epochs * self.per_epoch[kind]
            run_dir = C.expected_run_dir(config, runs_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "model.pt").write_bytes(b"")
            (run_dir / "metrics.json").write_text("{}")
            results.append({"run_dir": str(run_dir)})
        return results


@pytest.mark.parametrize("rows, budget_s", [("core", 3600.0), ("all", 4 * 3600.0)])
def test_the_core_set_fits_an_hour_and_the_whole_profile_four_hours_probes_included(tmp_path, cifar_root, rows,
                                                                                    budget_s):
    # seconds per CIFAR-10-LT epoch (training, plus a fifth of a test pass) of each network on the
    # profile's path: docs/real-data-on-a-laptop.md (the slowest rates measured in quiet windows on the
    # 2-core build machine), raised by a tenth for a machine a little slower
    per_epoch = {1: 9.8, 3: 16.3, 4: 17.7, 6: 24.1, "distilled": 16.1}
    clock = KindClock({k: 1.1 * v for k, v in per_epoch.items()})
    runs = C.planned_runs("cifar-cpu", tmp_path / rows, data_root=cifar_root, rows=rows)
    packs = C.make_packs(runs, C.default_max_members(runs))
    runner = C.Campaign(tmp_path / rows, budget_s, trainer=clock.train, clock=clock, log=lambda _: None)
    outcomes = runner.run(packs, set())
    assert [o.status for o in outcomes] == ["trained"] * len(runs), [(o.status, o.reason) for o in outcomes]
    assert clock.now <= budget_s


# ------------------------------------------------------------------------------------------- labels
def _cifar_cpu_outputs(tmp_path) -> NotebookOutputs:
    (_, params), = PROFILES["cifar-cpu"]["table1_3_main_results"]
    namespace = dict(params, runs_dir=str(tmp_path / "runs"), train=False, parallel=1, run_overrides={},
                     output_dir=str(tmp_path / "out"), profile="cifar-cpu")
    return NotebookOutputs.from_parameters("table1_3_main_results", namespace)


def test_every_title_of_the_profile_names_the_recipe_and_the_paper_is_a_reference(tmp_path):
    out = _cifar_cpu_outputs(tmp_path)
    assert out.recipe_label == LABEL
    ours = {"ce": [{"all": 0.6, "many": 0.9, "medium": 0.6, "few": None, "best": {}}]}
    out.table("main_results", cifar_frame(ours, dataset="cifar10_lt"), "Main results")
    import matplotlib.figure

    fig = matplotlib.figure.Figure()
    fig.add_subplot().plot([0, 1])
    out.figure("curve", fig, "Training curves")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [t["title"] for t in summary["tables"] + summary["figures"]] == \
        [f"Main results [{LABEL}]", f"Training curves [{LABEL}]"]
    assert any(text.get_text() == LABEL for text in fig.texts)  # on the PNG itself
    markdown = (tmp_path / "out" / "main_results.md").read_text()
    assert LABEL in markdown and "All (reference)" in markdown and "70.4" in markdown
    assert "Δ" not in markdown and "(paper)" not in markdown and "not a shortfall" in markdown
    # the paper's recipe keeps the paper's columns and their differences
    frame = format_results(cifar_frame(ours, dataset="cifar10_lt"))
    assert "All (paper)" in frame.columns and "All Δ" in frame.columns


def test_as_reference_renames_paper_columns_drops_differences_and_leaves_other_tables_alone():
    ours = {"ldam_drw": [{"all": 0.7, "many": 0.9, "medium": 0.7, "few": None, "best": {}}]}
    frame = as_reference(cifar_frame(ours, dataset="cifar10_lt"), LABEL)
    assert "All reference" in frame.columns and not any(str(c).endswith((" paper", " diff")) for c in frame.columns)
    assert frame.loc["ldam_drw", "All reference"] == 77.0 and frame.loc["ldam_drw", "All"] == pytest.approx(70.0)
    assert LABEL in frame.attrs["caption"] and frame.attrs["reference_only"]
    import pandas as pd

    plain = pd.DataFrame({"hard %": [1.0]})
    assert as_reference(plain, LABEL) is plain


def test_the_profiles_table1_notebook_labels_its_tables_without_runs_or_data(tmp_path):
    from lt_paper.workflows.reproduce import execute_notebook

    (_, params), = PROFILES["cifar-cpu"]["table1_3_main_results"]
    out = tmp_path / "table1"
    ce = next((PUBLISHED / "runs").glob("cifar10_lt-resnet8-ce-s0-*"))  # one row's run: a runs_dir with no
    shutil.copytree(ce, tmp_path / "runs" / ce.name)  # run for any row stops the notebook
    execute_notebook("table1_3_main_results", out, dict(params, runs_dir=str(tmp_path / "runs"), train=False,
                                                        profile="cifar-cpu", data_root=None))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tables"] and all(t["title"].endswith(f"[{LABEL}]") for t in summary["tables"])
    assert "All (reference)" in (out / "main_results.md").read_text()



PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "cifar10_lt_if100_cpu"


@pytest.mark.parametrize("notebook", ["figure4_router_weights", "table4_ala_ablation"])
def test_the_published_core_set_opens_without_training_and_gives_the_published_numbers(tmp_path, notebook):
    """What a reader of the README does: the notebook on the published runs with train=False (no data)."""
    from lt_paper.workflows.reproduce import execute_notebook

    (_, params), = PROFILES["cifar-cpu"][notebook]
    published = json.loads((PUBLISHED / notebook / "summary.json").read_text())
    seeds = published["parameters"]["seeds"]  # the core set was published with a second seed
    out = tmp_path / notebook
    execute_notebook(notebook, out, dict(params, runs_dir=str(PUBLISHED / "runs"), train=False, seeds=seeds,
                                         profile="cifar-cpu", data_root=None))
    summary = json.loads((out / "summary.json").read_text())
    # no red boxes: the empty few-shot group is drawn and tabled as such, not warned about in every cell
    executed = json.loads((out / f"{notebook}.ipynb").read_text())
    stderr = [o["text"] for c in executed["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, stderr
    assert all(t["title"].endswith(f"[{LABEL}]") for t in summary["tables"] + summary["figures"])
    if notebook == "figure4_router_weights":
        # publish keeps records.npz in float16: the weights agree to that precision, the verdict exactly
        weights, published_weights = (np.array([[w for w in group.values()] for group in
                                                s["records"]["MoE-3 seed 0"]["router_weight"].values()], float)
                                      for s in (summary, published))
        np.testing.assert_allclose(weights, published_weights, rtol=1e-3)  # NaN: the empty few-shot group
        verdict = "figure4_verdict_moe-3.md"
        assert (out / verdict).read_text() == (PUBLISHED / notebook / verdict).read_text()
    else:
        assert (out / "table4.md").read_text() == (PUBLISHED / notebook / "table4.md").read_text()
        rows = {line.split("|")[1].strip(): line for line in (out / "table4.md").read_text().splitlines()
                if line.startswith("| ")}
        assert all(f"| {len(seeds)} |" in rows[key] for key in ("ce", "ldam", "ala", "ala_nodrw")), rows

# ------------------------------------------------------------------------------------------ gallery
def _write_run(run_dir: Path, labels, data_root: str) -> Path:
    """A finished run's files as the engine writes them, on the tree's test set (imbalance 4)."""
    run_dir.mkdir(parents=True)
    config = {"dataset": "cifar10_lt", "data_root": data_root, "imbalance": 4.0, "allow_incomplete_data": True,
              "loss": "ce", "seed": 0}
    n = len(labels)
    metrics = {"all": 0.5, "many": 0.5, "medium": 0.5, "few": 0.5, "per_class": [0.5] * 10, "best": {},
               "shot_rule": {"many": 100, "few": 20, "few_inclusive": False}}
    for name, content in (("config.json", config), ("metrics.json", metrics), ("history.json", [])):
        (run_dir / name).write_text(json.dumps(content))
    np.savez(run_dir / "records.npz", label=np.asarray(labels, np.int64), pred=np.zeros(n, np.int64),
             p_gt=np.full(n, 0.1, np.float32), target_logit=np.zeros(n, np.float32),
             train_counts=np.array([6, 5, 5, 4, 3, 3, 2, 2, 1, 1], np.int64))
    return run_dir


def test_gallery_shows_real_cifar_images_scaled_up_with_class_names(tmp_path, png_tree, monkeypatch):
    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    labels = np.repeat(np.arange(10), 2)  # the tree's balanced test set, in CIFAR order
    # published from another machine: the recorded data_root is not here, the default location is
    record = load_run(_write_run(tmp_path / "run", labels, "/elsewhere/cifar10-jpeg.tar.gz"))
    monkeypatch.setenv("LT_PAPER_DATA", str(png_tree))
    images, names = load_test_images(record, [0, 19])
    assert names == CIFAR10
    original = np.asarray(Image.open(png_tree / "test" / "truck" / "0001.png"))
    assert images[19].shape == (96, 96, 3)  # 32 px x 3, each pixel a 3 x 3 block
    np.testing.assert_array_equal(images[19][::3, ::3], original)
    np.testing.assert_array_equal(images[19][2::3, 2::3], original)
    fig = plot_sample_gallery({"many": [0], "medium": [], "few": [19]}, images, {"CE": record}, names)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("true airplane" in t for t in titles) and any("true truck" in t for t in titles)


def test_gallery_without_the_data_or_on_other_data_says_so(tmp_path, png_tree, monkeypatch):
    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LT_PAPER_DATA", str(tmp_path / "empty"))
    record = load_run(_write_run(tmp_path / "run", np.repeat(np.arange(10), 2), "/elsewhere/x.tar.gz"))
    with pytest.raises(FileNotFoundError, match="no cifar10_lt source at .*empty"):
        load_test_images(record, [0])
    other = load_run(_write_run(tmp_path / "other", np.repeat(np.arange(10), 2)[::-1], str(png_tree)))
    with pytest.raises(ValueError, match="not the data the run saw"):
        load_test_images(other, [0])


@pytest.fixture(scope="module")
def png_tarball(png_tree, tmp_path_factory):
    """The PNG tree packed as the JPEG tarball is: members train/<class>/..., test/<class>/..."""
    path = tmp_path_factory.mktemp("cifar_tar") / "cifar10-jpeg.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(png_tree / split, arcname=split)
    return path


def test_the_gallery_decodes_only_the_images_it_shows_and_caches_nothing(tmp_path, png_tarball, monkeypatch):
    import lt_paper.data.cifar as cifar

    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    decoded = []
    real_decode = cifar._decode
    monkeypatch.setattr(cifar, "_decode", lambda data, where: decoded.append(where) or real_decode(data, where))
    record = load_run(_write_run(tmp_path / "run", np.repeat(np.arange(10), 2), str(png_tarball)))
    images, names = load_test_images(record, [0, 19])
    assert sorted(images) == [0, 19] and names == CIFAR10
    assert [w.rsplit(":", 1)[1] for w in decoded] == ["test/airplane/0000.png", "test/truck/0001.png"]
    assert not (tmp_path / "cache").exists()  # no decoded copy of the whole set


def test_runs_are_read_and_shown_with_another_verified_source_of_the_same_images(tmp_path, png_tree, png_tarball,
                                                                                 monkeypatch, capsys):
    """Runs trained on the tarball, explored with the same images as a folder (another fingerprint): found by
    preset and seed, one line saying the source differs, the gallery's images from the folder."""
    from lt_paper.workflows.experiments import finished_rows, run_rows

    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    settings = dict(epochs=1, device="cpu", imbalance=2.0, allow_incomplete_data=True)
    trained = run_rows("cifar10_lt", "resnet8", {"ce": "ce"}, runs_dir=tmp_path / "runs", progress=False,
                       data_root=str(png_tarball), **settings)
    capsys.readouterr()
    found = finished_rows("cifar10_lt", "resnet8", {"ce": "ce"}, runs_dir=tmp_path / "runs", data_root=str(png_tree),
                          **settings)
    assert [r["run_dir"] for r in found["ce"]] == [trained["ce"][0]["run_dir"]]
    printed = capsys.readouterr().out.splitlines()
    note = [line for line in printed if line.startswith("data: the runs trained on another source")]
    assert len(note) == 1 and "tarball" in note[0] and "image folder" in note[0], printed
    images, _ = load_test_images(load_run(found["ce"][0]["run_dir"]), [19], data_root=str(png_tree))
    original = np.asarray(Image.open(png_tree / "test" / "truck" / "0001.png"))
    np.testing.assert_array_equal(images[19][::3, ::3], original)


def test_torchvision_test_order_is_matched_to_the_jpeg_trees_by_class_and_rank():
    from types import SimpleNamespace

    from lt_paper.workflows.experiments import cifar_test_positions

    batch_order = np.array([3, 1, 3, 0, 1, 0])  # torchvision: the test batch's order
    tree = SimpleNamespace(label=np.sort(batch_order), num_samples=6, run_dir=Path("run"),
                           config={"dataset": "cifar10_lt"}, metrics={"data_source": {"kind": "tarball"}})
    positions = cifar_test_positions(tree, batch_order, "torchvision")
    # the tree's k-th image of a class is the batch's k-th image of that class
    assert positions.tolist() == [3, 5, 1, 4, 0, 2]
    assert (batch_order[positions] == tree.label).all()
    with pytest.raises(ValueError, match="not the data the run saw"):  # other per-class counts
        cifar_test_positions(tree, np.array([3, 3, 3, 0, 1, 0]), "torchvision")
    with pytest.raises(ValueError, match="not the data the run saw"):  # two trees: the order must be the same
        cifar_test_positions(tree, batch_order, "image folder")


def test_the_explorer_shows_two_methods_by_default_where_runs_have_several_seeds():
    """Run B defaults to the first run of another method: CE against LDAM-DRW, not CE seed 0 against
    CE seed 1 (the cifar-cpu runs have three seeds of each); with one method finished, A twice."""
    from lt_paper.workflows.explore import HardSampleExplorer

    def run(key, seed):
        return load_run(next((PUBLISHED / "runs").glob(f"cifar10_lt-resnet8-{key}-s{seed}-*")))

    runs = {"CE, seed 0": run("ce", 0), "CE, seed 1": run("ce", 1), "LDAM-DRW, seed 0": run("ldam", 0)}
    explorer = HardSampleExplorer(runs, None)
    assert (explorer.a, explorer.b) == ("CE, seed 0", "LDAM-DRW, seed 0")
    alone = HardSampleExplorer({"LDAM-DRW, seed 0": runs["LDAM-DRW, seed 0"]}, None)
    assert (alone.a, alone.b) == ("LDAM-DRW, seed 0", "LDAM-DRW, seed 0")
    assert HardSampleExplorer(runs, None, run_b="CE, seed 1").b == "CE, seed 1"  # a choice is kept
