"""Tests for lt_paper.analysis on synthetic run directories written in the run-record format.

Expected values are worked out by hand in the test (or with plain numpy), never with the package.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lt_paper import analysis as A  # noqa: E402

# --------------------------------------------------------------------------------------------
# synthetic run directories, in the layout engine.finish_run writes (analysis/records.py describes it)

# 6 classes: many = {0, 1} (n > 100), medium = {2, 3} (20 <= n <= 100), few = {4, 5} (n < 20);
# class 3 has n = 20, so it moves to few under the paper's Table 2 rule (n <= 20).
COUNTS = [200, 150, 50, 20, 10, 5]
LABELS = np.repeat(np.arange(6), 4)  # 4 test samples per class, N = 24
# correct per class: 4, 2 | 1, 3 | 0, 1
CORRECT = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
PRED = np.where(CORRECT, LABELS, (LABELS + 1) % 6)


def metrics_dict(many, medium, few, all_, best=None, epoch=9):
    best = best or {"epoch": epoch, "all": all_, "many": many, "medium": medium, "few": few}
    return {"all": all_, "many": many, "medium": medium, "few": few, "per_class": [0.5] * 6, "epoch": epoch,
            "best": best, "shot_rule": {"many": 100, "few": 20, "few_inclusive": False},
            "wall_time_s": 1.0, "provenance": {"commit": "abc123"}}


def history_list(epochs=3, offset=0.0):
    return [{"epoch": e, "lr": 0.1 / (e + 1), "train_loss": 2.0 - 0.5 * e + offset, "train_acc": 0.2 * e,
             "test_all": 0.1 * e + offset, "test_many": 0.2 * e, "test_medium": 0.1 * e, "test_few": 0.05 * e}
            for e in range(epochs)]


def write_run(run_dir: Path, label, pred, p_gt, train_counts, metrics=None, history=None, moe=None,
              skip=()):
    run_dir.mkdir(parents=True)
    files = {"config.json": {"loss": "ce", "seed": 0},
             "metrics.json": metrics or metrics_dict(0.5, 0.5, 0.5, 0.5),
             "history.json": history if history is not None else history_list()}
    for name, content in files.items():
        if name not in skip:
            (run_dir / name).write_text(json.dumps(content))
    if "records.npz" not in skip:
        arrays = {"label": np.asarray(label, np.int64), "pred": np.asarray(pred, np.int64),
                  "p_gt": np.asarray(p_gt, np.float32), "target_logit": np.asarray(p_gt, np.float32) * 2 - 1,
                  "train_counts": np.asarray(train_counts, np.int64)}
        arrays.update(moe or {})
        np.savez(run_dir / "records.npz", **arrays)
    return run_dir


@pytest.fixture
def single_run(tmp_path):
    p_gt = np.linspace(0.0, 1.0, LABELS.size)
    return A.load_run(write_run(tmp_path / "run_ce", LABELS, PRED, p_gt, COUNTS))


# MoE: 3 classes, one per group (200 many, 50 medium, 5 few), 2 test samples each, K = 3 experts
MOE_COUNTS = [200, 50, 5]
MOE_LABELS = np.array([0, 0, 1, 1, 2, 2])
MOE_EXPERT_PRED = np.array([[0, 0, 1],
                            [0, 1, 1],   # many: expert accuracies 1.0, 0.5, 0.0
                            [1, 1, 0],
                            [0, 1, 1],   # medium: 0.5, 1.0, 0.5
                            [2, 2, 2],
                            [0, 2, 2]])  # few: 0.5, 1.0, 1.0
MOE_WEIGHTS = np.array([[0.6, 0.3, 0.1],
                        [0.4, 0.4, 0.2],  # many mean: 0.5, 0.35, 0.15
                        [0.2, 0.5, 0.3],
                        [0.2, 0.7, 0.1],  # medium mean: 0.2, 0.6, 0.2
                        [0.1, 0.1, 0.8],
                        [0.3, 0.3, 0.4]])  # few mean: 0.2, 0.2, 0.6
EXPERT_ACC = {"many": [1.0, 0.5, 0.0], "medium": [0.5, 1.0, 0.5], "few": [0.5, 1.0, 1.0]}
ROUTER_MEAN = {"many": [0.5, 0.35, 0.15], "medium": [0.2, 0.6, 0.2], "few": [0.2, 0.2, 0.6]}


@pytest.fixture
def moe_run(tmp_path):
    moe = {"expert_pred": MOE_EXPERT_PRED, "router_weights": MOE_WEIGHTS.astype(np.float32),
           "expert_p_gt": np.full(MOE_EXPERT_PRED.shape, 0.5, np.float32)}
    return A.load_run(write_run(tmp_path / "run_moe", MOE_LABELS, MOE_EXPERT_PRED[:, 1], np.full(6, 0.5),
                                MOE_COUNTS, moe=moe))


# --------------------------------------------------------------------------------------------
# paper numbers


def test_paper_numbers_structure_and_spot_values():
    assert len(A.TABLE1.rows) == 14 and A.TABLE1.settings == ("resnet50", "resnext50")
    assert [r.line for r in A.TABLE1.rows] == list(range(1, 15))
    assert len(A.TABLE3.rows) == 14 and A.TABLE3.settings == ("resnet50",)
    assert A.TABLE4.keys == ("ce", "ldam", "ains", "acls", "focal_acls", "ldam_ains", "ala")
    assert A.TABLE4.flag_columns == ("Focal", "LDAM", "A_ins", "A_cls")
    assert len(A.TABLE5.rows) == 8 and A.TABLE5.flag_columns == ("K", "Style", "Router")
    assert A.CIFAR_PUBLISHED.keys == ("ce", "focal", "ldam_drw", "la", "ride3")
    # values read off the paper text by hand
    assert A.TABLE1.value("ala", "all", "resnext50") == 52.8
    assert A.TABLE1.value("ce", "few", "resnet50") == 5.8
    assert A.TABLE1.value("focal", "all", "resnet50") is None  # "-" in the paper
    assert A.TABLE1.value("ride4", "medium", "resnext50") == 53.8
    assert A.TABLE3.value("ala_moe4", "all") == 74.5
    assert A.TABLE3.value("bbn", "many") == 49.4
    assert A.TABLE3.value("ldam_drw", "many") is None and A.TABLE3.value("ldam_drw", "all") == 68.0
    assert A.TABLE4.rows[2].numbers["resnext50"]["few"] == 28.6
    assert A.TABLE4.row("focal_acls").flags == {"Focal": True, "LDAM": False, "A_ins": False, "A_cls": True}
    assert A.TABLE4.row("ldam_ains").flags == {"Focal": False, "LDAM": True, "A_ins": True, "A_cls": False}
    assert A.TABLE5.value("moe4_router", "all") == 58.0
    assert A.TABLE5.row("moe4_router").flags == {"K": 4, "Style": "MoE", "Router": True}
    assert A.TABLE5.row("ride3_mean").flags == {"K": 3, "Style": "RIDE*", "Router": False}
    assert A.TABLE5.value("ride3_mean", "many") == 67.3
    assert A.CIFAR_PUBLISHED.value("la", "all", "cifar10_lt") == 77.9
    assert A.CIFAR_PUBLISHED.value("ride3", "all", "cifar100_lt") == 48.0
    assert A.CIFAR_PUBLISHED.value("ride3", "all", "cifar10_lt") is None
    # frame: "-" stays NaN, never 0
    frame = A.TABLE1.frame("resnet50")
    assert list(frame.columns[-4:]) == ["Many", "Medium", "Few", "All"]
    assert math.isnan(frame.loc["focal", "All"]) and frame.loc["ala_moe4", "All"] == 56.7
    with pytest.raises(KeyError, match="valid names"):
        A.paper_table("table2")
    with pytest.raises(KeyError, match="rows are"):
        A.TABLE1.row("nope")


# --------------------------------------------------------------------------------------------
# records and groups


def test_load_run_reads_all_files(single_run):
    r = single_run
    assert r.num_samples == 24 and r.num_classes == 6 and not r.is_moe and r.num_experts == 1
    assert r.config == {"loss": "ce", "seed": 0} and len(r.history) == 3
    np.testing.assert_array_equal(r.pred, PRED)
    assert r.shot_rule == {"many": 100, "few": 20, "few_inclusive": False}


@pytest.mark.parametrize("missing", ["config.json", "metrics.json", "history.json", "records.npz"])
def test_load_run_names_missing_file(tmp_path, missing):
    run_dir = write_run(tmp_path / "r", LABELS, PRED, np.zeros(24), COUNTS, skip=(missing,))
    with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
        A.load_run(run_dir)


def test_load_run_names_missing_array(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    for name in ("config.json", "metrics.json", "history.json"):
        (run_dir / name).write_text("{}" if name != "history.json" else "[]")
    np.savez(run_dir / "records.npz", label=LABELS, pred=PRED, train_counts=np.array(COUNTS))
    with pytest.raises(ValueError, match="p_gt"):
        A.load_run(run_dir)


def test_shot_rule_boundaries():
    counts = np.array([101, 100, 20, 19])
    g = A.shot_groups(counts)
    assert g["many"].tolist() == [True, False, False, False]
    assert g["medium"].tolist() == [False, True, True, False]
    assert g["few"].tolist() == [False, False, False, True]
    assert A.shot_groups(counts, few_inclusive=True)["few"].tolist() == [False, False, True, True]


def test_per_group_accuracy_hand_computed(single_run):
    acc = A.per_group_accuracy(single_run)
    assert acc == pytest.approx({"many": 6 / 8, "medium": 4 / 8, "few": 1 / 8, "all": 11 / 24})
    paper_rule = A.per_group_accuracy(single_run, few_inclusive=True)  # class 3 (n = 20) becomes few
    assert paper_rule == pytest.approx({"many": 6 / 8, "medium": 1 / 4, "few": 4 / 12, "all": 11 / 24})


def test_group_accuracy_is_mean_of_class_accuracies(tmp_path):
    # unbalanced test set: many = classes 0 (2 samples, both right) and 1 (1 sample, wrong);
    # few = class 2 (3 samples, 1 right). Group = mean over classes (1.0 + 0.0) / 2, not 2/3 of samples.
    labels, pred = [0, 0, 1, 2, 2, 2], [0, 0, 0, 2, 0, 0]
    run = A.load_run(write_run(tmp_path / "r", labels, pred, np.zeros(6), [300, 200, 5, 50]))
    with pytest.warns(A.EmptyGroupWarning, match="medium"):  # class 3 (medium) has no test sample
        acc = A.per_group_accuracy(run)
    assert acc["many"] == pytest.approx(0.5) and acc["few"] == pytest.approx(1 / 3)
    assert acc["all"] == pytest.approx(3 / 6) and math.isnan(acc["medium"])


def test_group_accuracy_agrees_with_the_engine(tmp_path):
    """metrics.json and the analysis must give the same group numbers (skipped until the engine exists)."""
    evaluate = pytest.importorskip("lt_paper.train.evaluate")
    if not hasattr(evaluate, "metrics_from_records"):
        pytest.skip("lt_paper.train.evaluate.metrics_from_records not available")
    rng = np.random.default_rng(0)
    counts = [300, 150, 80, 40, 19, 5]
    labels = rng.integers(0, 6, 200)  # unbalanced on purpose
    pred = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, 200))
    run = A.load_run(write_run(tmp_path / "r", labels, pred, np.zeros(200), counts))
    engine = evaluate.metrics_from_records({"label": labels, "pred": pred}, counts, many=100, few=20,
                                           few_inclusive=False)
    ours = A.per_group_accuracy(run)
    for g in ("many", "medium", "few", "all"):
        assert ours[g] == pytest.approx(engine[g])


def test_empty_group_is_nan_with_warning(tmp_path):
    run = A.load_run(write_run(tmp_path / "r", [0, 1, 1], [0, 1, 0], [0.9, 0.8, 0.1], [500, 300]))
    with pytest.warns(A.EmptyGroupWarning) as caught:
        acc = A.per_group_accuracy(run)
    messages = " ".join(str(w.message) for w in caught)
    assert "'few'" in messages and "'medium'" in messages and "NaN" in messages
    assert math.isnan(acc["few"]) and math.isnan(acc["medium"])
    assert acc["many"] == pytest.approx((1.0 + 0.5) / 2)  # class 0: 1/1, class 1: 1/2


def test_expert_accuracy_and_router_weight_per_group(moe_run):
    assert moe_run.num_experts == 3
    acc = A.expert_group_accuracy(moe_run)
    weights = A.router_weight_by_group(moe_run)
    assert list(acc.index) == [1, 2, 3]
    for g in ("many", "medium", "few"):
        np.testing.assert_allclose(acc[g].to_numpy(), EXPERT_ACC[g])
        np.testing.assert_allclose(weights[g].to_numpy(), ROUTER_MEAN[g], rtol=1e-6)
    np.testing.assert_allclose(acc["all"].to_numpy(), [4 / 6, 5 / 6, 3 / 6])


def test_router_verdict_compares_the_top_weight_expert_with_the_most_accurate(moe_run, tmp_path):
    verdict = A.router_verdict(moe_run)
    assert list(verdict.index) == ["many", "medium", "few", "all"]
    assert list(verdict["top-weight expert"]) == [1, 2, 3, 2]
    assert verdict.loc["many", "weight spread"] == pytest.approx(0.5 - 0.15)
    # two images per group: expert 1 gets one more right than expert 2 in many, within 1.96 * sqrt(1)
    assert list(verdict["agrees"]) == ["tie", "tie", "tie", "tie"]
    assert (verdict.loc["many", "closest rival"], verdict.loc["many", "difference (images)"]) == (2, 1)
    assert verdict.loc["many", "sampling error (images)"] == pytest.approx(1.96)
    assert set(A.router_verdict(moe_run, flat=0.5)["agrees"]) == {"flat"}  # weights too close to call


def _group_run(tmp_path, name, right: dict, weights: dict):
    """An MoE run of 3 experts on two classes (many: 200 train images, medium: 50), 1000 test images
    each; ``right``: {group: per expert, the [start, stop) range of the group's images it gets right};
    ``weights``: {group: the router weights of every image of the group}."""
    labels = np.repeat([0, 1], 1000)
    expert_pred = np.empty((2000, 3), np.int64)
    router = np.empty((2000, 3), np.float32)
    for c, group in enumerate(("many", "medium")):
        rows = slice(1000 * c, 1000 * (c + 1))
        for k, (start, stop) in enumerate(right[group]):
            expert_pred[rows, k] = np.where((np.arange(1000) >= start) & (np.arange(1000) < stop), c, 1 - c)
        router[rows] = weights[group]
    moe = {"expert_pred": expert_pred, "router_weights": router, "expert_p_gt": np.full((2000, 3), 0.5, np.float32)}
    return A.load_run(write_run(tmp_path / name, labels, expert_pred[:, 0], np.full(2000, 0.5), [200, 50],
                                moe=moe))


# many: expert 1 right on 700 images, expert 2 on 705 (75 only expert 1, 80 only expert 2: 5 images, 0.5
# points, against an error of 1.96 * sqrt(155) = 24.4), expert 3 on 500; medium: expert 1 beats both others
# by 100 images or more
RIGHT = {"many": [(0, 700), (75, 780), (0, 500)], "medium": [(0, 800), (0, 700), (100, 700)]}


def test_a_difference_in_expert_accuracy_within_its_sampling_error_is_a_tie(tmp_path):
    """The cifar-cpu case: the top-weight expert is 5 images behind another on the group; that is no
    "no", and a top-weight expert ahead of every other by more than the error is a "yes"."""
    run = _group_run(tmp_path, "global", RIGHT, {"many": [0.455, 0.318, 0.227], "medium": [0.465, 0.313, 0.222]})
    verdict = A.router_verdict(run)
    assert verdict.loc["many", "most accurate expert"] == 2  # 70.5 % against 70.0 %: a ranking by chance
    assert verdict.loc["many", "agrees"] == "tie"
    assert (verdict.loc["many", "closest rival"], verdict.loc["many", "difference (images)"]) == (2, -5)
    assert verdict.loc["many", "sampling error (images)"] == pytest.approx(1.96 * np.sqrt(155))
    assert verdict.loc["medium", "agrees"] == "yes"
    assert verdict.loc["medium", "difference (images)"] == 100  # over expert 2: 100 only expert 1 gets right
    assert A.paired_difference([1, 1, 0, 1], [0, 1, 1, 0], z=1.0) == (1, pytest.approx(np.sqrt(3)))
    # the same experts with the router's largest weight on expert 2 in medium: 100 images behind, a "no"
    follows = _group_run(tmp_path, "follows", RIGHT, {"many": [0.455, 0.318, 0.227], "medium": [0.2, 0.6, 0.2]})
    assert A.router_verdict(follows).loc["medium", "agrees"] == "no"


def test_router_variation_says_whether_the_weights_differ_between_groups(tmp_path):
    """0.455/0.318/0.227 on many against 0.465/0.313/0.222 on medium, the same for every image: one
    global weighting; 0.2/0.6/0.2 on medium: weights that follow the groups."""
    run = _group_run(tmp_path, "global", RIGHT, {"many": [0.455, 0.318, 0.227], "medium": [0.465, 0.313, 0.222]})
    variation = A.router_variation(run)
    assert variation["between_groups"] == pytest.approx(0.010, abs=1e-6) and variation["global"] is True
    assert variation["expert"] == 1 and variation["groups"] == ["medium", "many"]
    assert variation["per_image_std"] == pytest.approx(np.mean([0.005, 0.0025, 0.0025]), abs=1e-6)
    assert variation["reading"].startswith("the mean weights differ between groups by at most 0.010 (expert 1: "
                                           "0.465 on medium, 0.455 on many;")
    assert "one global weighting for every group" in variation["reading"]
    follows = _group_run(tmp_path, "follows", RIGHT, {"many": [0.455, 0.318, 0.227], "medium": [0.2, 0.6, 0.2]})
    variation = A.router_variation(follows)
    assert variation["global"] is False and variation["between_groups"] == pytest.approx(0.282, abs=1e-6)
    assert variation["reading"].endswith("the router weights the groups differently.")


def test_the_verdict_table_shows_weights_at_3_decimals_and_accuracies_at_1(moe_run):
    lines = A.table_markdown(A.router_verdict(moe_run), decimals=3).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert rows["many"]["its weight"] == "0.500" and rows["many"]["weight spread"] == "0.350"
    assert rows["all"]["its accuracy %"] == "83.3"  # expert 2: 5 of 6, not 83.333



def test_expert_numbers_stay_whole_beside_an_empty_group(tmp_path):
    # CIFAR-10-LT at imbalance 100 has no few-shot class: that row is empty, the others name experts 1, 2
    moe = {"expert_pred": MOE_EXPERT_PRED[:4], "router_weights": MOE_WEIGHTS[:4].astype(np.float32),
           "expert_p_gt": np.full(MOE_EXPERT_PRED[:4].shape, 0.5, np.float32)}
    run = A.load_run(write_run(tmp_path / "no_few", MOE_LABELS[:4], MOE_EXPERT_PRED[:4, 1], np.full(4, 0.5),
                               MOE_COUNTS, moe=moe))
    with pytest.warns(A.EmptyGroupWarning, match="no test samples"):
        verdict = A.router_verdict(run)
    lines = A.table_markdown(verdict, decimals=3).splitlines()
    assert lines[2].startswith("| many | 1 | 0.500 |") and "| 1 | 100.0 | 2 | 1 | 2.0 | tie |" in lines[2], lines[2]
    assert lines[3].startswith("| medium | 2 | 0.600 |"), lines[3]
    assert lines[4] == "| few | - | - | - | - | - | - | - | - | - |"


def test_an_empty_group_panel_says_so_instead_of_drawing_nan(tmp_path):
    moe = {"expert_pred": MOE_EXPERT_PRED[:4], "router_weights": MOE_WEIGHTS[:4].astype(np.float32),
           "expert_p_gt": np.full(MOE_EXPERT_PRED[:4].shape, 0.5, np.float32)}
    run = A.load_run(write_run(tmp_path / "no_few", MOE_LABELS[:4], MOE_EXPERT_PRED[:4, 1],
                               np.linspace(0.1, 0.9, 4), MOE_COUNTS, moe=moe))
    with pytest.warns(A.EmptyGroupWarning):
        figures = {"curves": A.plot_probability_curves({"CE": run}), "router": A.plot_router_weights(run)}
    for name, fig in figures.items():
        many, medium, few = fig.axes[:3]
        assert few.get_title() == "Few-shot" and [t.get_text() for t in few.texts] == ["no few-shot class\nin this dataset"]
        assert not few.lines and not few.patches and not few.get_legend(), name  # nothing drawn, no "acc nan%"
        assert many.lines or many.patches, name
    assert len(figures["curves"].axes[0].get_yticks()) > 2  # the shared y axis keeps its ticks for the others
    legend = [t.get_text() for t in figures["curves"].axes[0].get_legend().get_texts()]
    assert legend == ["CE (acc 50.0%)"] and "nan" not in " ".join(legend)

def test_a_row_counter_index_is_not_shown(tmp_path):
    shares = pd.DataFrame({"method": ["CE", "CE"], "group": ["many", "few"], "hard %": [1.0, 2.5]})
    assert A.to_markdown(shares).splitlines()[:3] == ["| method | group | hard % |", "|---|---|---|",
                                                      "| CE | many | 1.0 |"]
    assert A.to_markdown(shares.set_index("method")).startswith("| method | group | hard % |")


def test_disagreeing_samples_are_hard_for_one_run_and_easy_for_the_other(tmp_path):
    a_p, b_p = [0.1, 0.9, 0.1, 0.15, 0.5, 0.05], [0.9, 0.1, 0.85, 0.95, 0.9, 0.81]
    a = A.load_run(write_run(tmp_path / "a", MOE_LABELS, MOE_LABELS, a_p, MOE_COUNTS))
    b = A.load_run(write_run(tmp_path / "b", MOE_LABELS, MOE_LABELS, b_p, MOE_COUNTS))
    picks = A.disagreeing_samples(a, b)
    assert {g: list(v) for g, v in picks.items()} == {"many": [0], "medium": [2, 3], "few": [5]}
    assert {g: list(v) for g, v in A.disagreeing_samples(b, a).items()} == {"many": [1], "medium": [],
                                                                            "few": []}
    other = A.load_run(write_run(tmp_path / "c", MOE_LABELS[::-1], MOE_LABELS, a_p, MOE_COUNTS))
    with pytest.raises(ValueError, match="same test set"):
        A.disagreeing_samples(a, other)
    images = {i: np.full((8, 8, 3), 40 * i, np.uint8) for i in range(6)}
    fig = A.plot_sample_gallery(picks, images, {"A": a, "B": b}, class_names=["zero", "one", "two"])
    assert_png(A.save_figure(fig, tmp_path / "gallery.png"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "#0 true zero\nA: zero, p(true)=0.10\nB: zero, p(true)=0.90"


def _texts(fig) -> list:
    """Every visible, non-empty text of ``fig`` (titles, headings, labels), subfigures included."""
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_gallery_says_what_p_is_which_images_it_shows_and_is_legible_at_jupyterlab_width(tmp_path):
    """p is the true class's probability, each row says which of the N images found it shows (the
    lowest p(true) under the run that ranked them), a shot group without a class says "no few-shot
    class" as the figures' panels do, and the figure fits JupyterLab's width (shown at full size) with
    labels of at least 9 pt (12.5 px there) that do not run into their neighbours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lt_paper.workflows.outputs import SHOWN_PX_PER_INCH

    counts = [200, 150, 50]  # many, many, medium: no few-shot class
    labels = np.repeat(np.arange(3), 4)  # 12 test images
    a = A.load_run(write_run(tmp_path / "a", labels, labels, np.linspace(0.0, 0.1, 12), counts))
    b = A.load_run(write_run(tmp_path / "b", labels, (labels + 1) % 3, np.linspace(0.9, 1.0, 12), counts))
    picks = {"many": [0, 1, 2, 3, 4, 5, 6, 7], "medium": [8], "few": []}
    images = {i: np.full((32, 32, 3), 20 * i, np.uint8) for i in range(12)}
    names = ["automobile", "airplane", "ship"]  # the longest CIFAR-10 name in every title line
    fig = A.plot_sample_gallery(picks, images, {"LDAM-DRW": b, "CE": a}, names, per_group=6, ranked_by="CE")
    FigureCanvasAgg(fig).draw()
    texts = [t.get_text() for t in _texts(fig)]
    assert "Many-shot: the 6 of 8 with the lowest p(true) under CE" in texts
    assert "Medium-shot: all 1, the lowest p(true) under CE first" in texts
    assert "Few-shot: no few-shot class in this dataset" in texts
    assert "#0 true automobile\nLDAM-DRW: airplane, p(true)=0.90\nCE: automobile, p(true)=0.00" in texts
    assert not [t for t in texts if "p=" in t.replace("p(true)=", "")]
    # shown at full size: JupyterLab's output area is about 950 px wide in a 1400 px window (the browser
    # test measures it); a wider figure is shrunk, its labels with it
    assert fig.get_figwidth() * SHOWN_PX_PER_INCH <= 950
    assert min(t.get_fontsize() for t in _texts(fig)) >= 9
    renderer = fig.canvas.get_renderer()
    images_axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(images_axes) == 7
    for ax in images_axes:  # a title no wider than its image plus the gap to the next one
        width = ax.title.get_window_extent(renderer).width
        assert width <= ax.get_window_extent(renderer).width * 1.05, (ax.get_title(), width)


def test_expert_functions_reject_single_network(single_run):
    with pytest.raises(ValueError, match="expert_pred"):
        A.expert_group_accuracy(single_run)


# --------------------------------------------------------------------------------------------
# tables

SEEDS = {"many": [0.60, 0.62, 0.65], "medium": [0.40, 0.41, 0.45], "few": [0.10, 0.20, 0.15],
         "all": [0.45, 0.47, 0.50]}


def seed_metrics(shift=0.0):
    return [metrics_dict(*(SEEDS[g][i] + shift for g in ("many", "medium", "few", "all"))) for i in range(3)]


def test_mean_std_over_seeds_matches_numpy():
    frame = A.results_table({"mine": seed_metrics()})
    for g, label in (("many", "Many"), ("medium", "Medium"), ("few", "Few"), ("all", "All")):
        pct = 100 * np.array(SEEDS[g])
        assert frame.loc["mine", label] == pytest.approx(np.mean(pct))
        assert frame.loc["mine", f"{label} std"] == pytest.approx(np.std(pct, ddof=1))
    assert frame.loc["mine", "seeds"] == 3
    one = A.results_table({"mine": seed_metrics()[:1]})
    assert math.isnan(one.loc["mine", "Many std"]) and one.loc["mine", "Many"] == pytest.approx(60.0)


def test_a_table_says_which_device_trained_its_rows():
    def on(device):
        return dict(metrics_dict(0.5, 0.4, 0.3, 0.42), provenance={"device": device})

    cpu, gpu = "CPU (x86_64)", "NVIDIA H100 80GB HBM3"
    # the thread count is the last epoch's (the engine may choose another one each epoch): left out
    one = A.results_table({"a": [on("CPU (x86_64, 2 threads)")], "b": [on("CPU (x86_64, 1 threads)"),
                                                                        on(cpu)]}).attrs["caption"]
    assert one.endswith(f". Trained on {cpu}.")
    # the cifar profile's CPU runs beside its GPU runs: the caption says which rows trained where
    mixed = A.results_table({"ldam_drw": [on("CPU (x86_64, 1 thread)"), on(gpu)], "ce": [on(gpu)]}).attrs["caption"]
    assert mixed.endswith(f" Trained on {cpu}: ldam_drw; {gpu}: ldam_drw, ce.")
    assert "Trained on" not in A.results_table({"x": [metrics_dict(0.5, 0.4, 0.3, 0.42)]}).attrs["caption"]


def test_best_epoch_and_percent_guard():
    metrics = [metrics_dict(0.5, 0.4, 0.3, 0.42, best={"epoch": 5, "many": 0.6, "medium": 0.5, "few": 0.4,
                                                       "all": 0.52})]
    assert A.results_table({"x": metrics}, epoch="best").loc["x", "All"] == pytest.approx(52.0)
    assert A.results_table({"x": metrics}).attrs["epoch"] == "last"
    assert "many n > 100, few n < 20" in A.results_table({"x": metrics}).attrs["caption"]
    with pytest.raises(ValueError, match="fractions"):
        A.results_table({"x": [metrics_dict(64.0, 40.0, 10.0, 45.0)]})


def test_table4_frame_rows_columns_and_differences():
    frame = A.table4_frame({"ala": seed_metrics(), "ce": seed_metrics(-0.05)})
    assert list(frame.index) == ["ce", "ldam", "ains", "acls", "focal_acls", "ldam_ains", "ala"]
    assert list(frame.columns[:6]) == ["method", "Focal", "LDAM", "A_ins", "A_cls", "seeds"]
    for g in ("Many", "Medium", "Few", "All"):
        assert {f"{g}", f"{g} std", f"{g} paper", f"{g} diff"} <= set(frame.columns)
    # paper numbers beside ours (Table 4 rows 7 and 3, read off the paper)
    assert frame.loc["ala", "All paper"] == 52.8 and frame.loc["ains", "Few paper"] == 28.6
    assert frame.loc["ala", "All diff"] == pytest.approx(100 * np.mean(SEEDS["all"]) - 52.8)
    assert frame.loc["ce", "Many diff"] == pytest.approx(100 * (np.mean(SEEDS["many"]) - 0.05) - 65.9)
    assert frame.loc["ala", "A_ins"] is True and frame.loc["ala", "Focal"] is False
    assert frame.loc["ldam", "seeds"] == 0 and math.isnan(frame.loc["ldam", "All"])
    assert math.isnan(frame.loc["ldam", "All diff"]) and frame.loc["ldam", "All paper"] == 51.3


def test_our_row_without_drw_follows_table4_and_says_it_is_ours():
    frame = A.table4_frame({"ala": seed_metrics(), "ala_nodrw": seed_metrics(-0.1)})
    assert list(frame.index)[-2:] == ["ala", "ala_nodrw"]
    assert frame.loc["ala_nodrw", "method"] == "ALA without DRW (ours, not in the paper)"
    assert math.isnan(frame.loc["ala_nodrw", "All paper"])
    # the flag columns are ALA's (the same adjusting terms; only the re-weighting differs)
    flags = ["Focal", "LDAM", "A_ins", "A_cls"]
    assert frame.loc["ala_nodrw", flags].tolist() == frame.loc["ala", flags].tolist() == [False, False, True, True]
    assert frame.loc["ldam", "method"] == "LDAM-DRW"  # Table 4 #2 prints Table 1's LDAM + DRW numbers


def test_table5_frame_rows_and_flags():
    frame = A.table5_frame({"moe4_router": seed_metrics(), "extra_run": seed_metrics()})
    assert list(frame.index) == ["ride3_mean", "ride3_router", "moe3_mean", "moe3_router", "ride4_mean",
                                 "ride4_router", "moe4_mean", "moe4_router", "extra_run"]
    assert frame.loc["moe4_router", "K"] == 4 and frame.loc["moe4_router", "Style"] == "MoE"
    assert frame.loc["ride3_mean", "Router"] is False and frame.loc["ride3_router", "Router"] is True
    assert frame.loc["moe4_router", "All paper"] == 58.0
    assert frame.loc["moe4_router", "All diff"] == pytest.approx(100 * np.mean(SEEDS["all"]) - 58.0)
    assert math.isnan(frame.loc["extra_run", "All paper"])  # not a paper row


def test_table1_uses_the_chosen_backbone():
    r50 = A.table1_frame({"ala": seed_metrics()}, backbone="resnet50", rows=["ala", "ce"])
    assert list(r50.index) == ["ala", "ce"] and r50.loc["ala", "All paper"] == 52.3
    assert A.table1_frame({}, backbone="resnext50").loc["ala", "All paper"] == 52.8
    cifar = A.cifar_frame({"ce": seed_metrics()}, dataset="cifar10_lt")
    assert cifar.loc["ce", "All paper"] == 70.4 and math.isnan(cifar.loc["ce", "Many paper"])
    # our rows that CIFAR's published table lacks keep the paper's method names, not their keys
    cifar = A.cifar_frame({"ala": seed_metrics(), "ala_moe3": seed_metrics(), "ala_nodrw": seed_metrics(),
                           "extra_run": seed_metrics()}, dataset="cifar10_lt")
    assert cifar.loc["ala", "method"] == A.TABLE1.row("ala").method == "ALA Loss (single expert)"
    assert cifar.loc["ala_moe3", "method"] == "ALA Loss + MoE (3 experts)"
    assert cifar.loc["ala_nodrw", "method"] == "ALA without DRW (ours, not in the paper)"
    assert cifar.loc["extra_run", "method"] == "extra_run"


def test_markdown_has_header_and_one_line_per_row(tmp_path):
    frame = A.table4_frame({"ala": seed_metrics()})
    md = A.to_markdown(A.format_results(frame))
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(frame)
    assert lines[0].startswith("| key |") and "Many" in lines[0] and "All (paper)" in lines[0]
    assert set(lines[1].replace("|", "")) == {"-"}
    ala_line = next(line for line in lines if line.startswith("| ala |"))
    mean, std = 100 * np.mean(SEEDS["all"]), 100 * np.std(SEEDS["all"], ddof=1)
    assert f"{mean:.1f} ± {std:.1f}" in ala_line and "✓" in ala_line
    assert f"{mean - 52.8:+.1f}" in ala_line
    ldam_line = next(line for line in lines if line.startswith("| ldam |"))
    assert "| - |" in ldam_line  # not run: "-", never 0
    # files
    csv_path = A.save_table(frame, tmp_path / "out" / "t4.csv")
    back = pd.read_csv(csv_path, index_col="key")
    assert back.loc["ala", "All"] == pytest.approx(frame.loc["ala", "All"])
    md_path = A.save_table(frame, tmp_path / "out" / "t4.md")
    assert md_path.read_text().count("\n| ") == len(frame) + 1
    with pytest.raises(ValueError, match="xlsx"):
        A.save_table(frame, tmp_path / "t4.xlsx")


PER_CLASS = [1.0, 0.5, 0.25, 0.75, 0.0, 0.25]  # CORRECT per class (4 test samples each)


def table2_metrics():
    """A run of ours grouped by Table 2 (class 3, n = 20, is few): many {0, 1}, medium {2}, few {3, 4, 5}."""
    m = metrics_dict(0.75, 0.25, 1 / 3, CORRECT.mean())
    m.update(per_class=PER_CLASS, train_counts=COUNTS,
             shot_rule={"many": 100, "few": 20, "few_inclusive": True})
    return m


def test_table2_runs_get_the_oltr_rule_medium_and_few_beside_them(tmp_path):
    frame = A.table4_frame({"ala": [table2_metrics()] * 2})
    assert frame.loc["ala", "Medium"] == pytest.approx(25.0)
    assert frame.loc["ala", "Few"] == pytest.approx(100 / 3)
    # OLTR's rule (few n < 20): medium {2, 3}, few {4, 5}, by hand from the per-class accuracies
    assert frame.loc["ala", "Medium (OLTR rule)"] == pytest.approx(50.0)
    assert frame.loc["ala", "Few (OLTR rule)"] == pytest.approx(12.5)
    assert frame.loc["ala", "Few (OLTR rule) std"] == pytest.approx(0.0)
    assert "Many (OLTR rule)" not in frame.columns  # both rules share many n > 100
    assert "many n > 100, few n <= 20" in frame.attrs["caption"] and "few n < 20" in frame.attrs["caption"]
    rendered = A.table_markdown(frame)
    assert "Medium (OLTR rule)" in rendered and "50.0 ± 0.0" in rendered
    # the engine's own numbers under Table 2's rule are what the records give under that rule
    run = A.load_run(write_run(tmp_path / "r", LABELS, PRED, np.zeros(24), COUNTS,
                               metrics=table2_metrics()))
    assert A.per_group_accuracy(run) == pytest.approx({"many": 0.75, "medium": 0.25, "few": 1 / 3,
                                                      "all": CORRECT.mean()})
    oltr = A.per_group_accuracy(run, few_inclusive=False)
    assert (oltr["medium"], oltr["few"]) == pytest.approx((0.5, 0.125))


def test_oltr_runs_and_best_epoch_tables_keep_one_rule():
    cifar_like = metrics_dict(0.75, 0.5, 0.125, CORRECT.mean())
    cifar_like.update(per_class=PER_CLASS, train_counts=COUNTS)
    frame = A.table4_frame({"ala": [cifar_like]})
    assert not any("rule" in c for c in frame.columns)
    assert "shot groups many n > 100, few n < 20" in frame.attrs["caption"]
    assert not any("rule" in c for c in A.table4_frame({"ala": [table2_metrics()]}, epoch="best").columns)
    with pytest.raises(ValueError, match="last epoch"):
        A.results_table({"ala": [table2_metrics()]}, epoch="best", other_rule={"few_inclusive": False})
    explicit = A.results_table({"ala": [cifar_like]}, other_rule={"few_inclusive": True})
    assert explicit.loc["ala", "Few (Table 2 rule)"] == pytest.approx(100 / 3)


# --------------------------------------------------------------------------------------------
# samples


def test_sample_like_train_proportional_and_deterministic():
    counts = [400, 200, 100, 50, 10]  # total 760; size 76 -> exactly 40, 20, 10, 5, 1
    labels = np.repeat(np.arange(5), 50)
    idx = A.sample_like_train(labels, counts, size=76, seed=3)
    assert np.bincount(labels[idx], minlength=5).tolist() == [40, 20, 10, 5, 1]
    assert len(np.unique(idx)) == idx.size  # without replacement
    np.testing.assert_array_equal(idx, A.sample_like_train(labels, counts, size=76, seed=3))
    assert not np.array_equal(idx, A.sample_like_train(labels, counts, size=76, seed=4))
    tiny = A.sample_like_train(labels, counts, size=10, seed=0)  # quotas 5.26, 2.63, 1.32, 0.66, 0.13
    # floors 5, 2, 1, 0, 0; the 2 left go to the largest remainders (0.66, 0.63): the rarest class gets none
    assert np.bincount(labels[tiny], minlength=5).tolist() == [5, 3, 1, 1, 0] and tiny.size == 10
    with pytest.warns(RuntimeWarning, match="fewer test samples"):
        capped = A.sample_like_train(labels, counts, size=152, seed=0)  # class 0 would need 80 > 50
    assert np.bincount(labels[capped], minlength=5)[0] == 50


def test_figure1d_subset_of_imagenet_lt_is_proportional_not_raised_to_one_per_class():
    """The paper draws the subset "according to the label distribution of training set": proportional
    counts, so the rarest ImageNet-LT classes get no dot and few-shot dots keep their train share."""
    repo = Path(__file__).resolve().parent.parent
    counts = np.array(json.loads((repo / "data" / "splits" / "ImageNet_LT_train_cls_freq.json").read_text()))
    assert counts.sum() == 115846 and counts.max() == 1280
    size = 50 * counts.sum() // counts.max()  # the largest subset the 50-per-class test set allows
    n = A.train_like_counts(counts, size)
    assert n.sum() == size and (n == 0).sum() == 73
    np.testing.assert_array_less(np.abs(n - size * counts / counts.sum()), 1.0)  # within rounding
    few = counts < 20
    # the few-shot share of dots is the train share (1.4 %), not 3.0 % as with one dot per class
    assert n[few].sum() / size == pytest.approx(counts[few].sum() / counts.sum(), abs=0.002)


def test_hard_easy_shares_exact(tmp_path):
    # 2 classes: 0 many (300), 1 few (5); p_gt thresholds strict: 0.2 is not hard, 0.8 is not easy
    labels = [0, 0, 0, 0, 0, 1, 1, 1]
    p_gt = [0.1, 0.2, 0.5, 0.8, 0.9, 0.05, 0.15, 0.95]
    run = A.load_run(write_run(tmp_path / "r", labels, labels, p_gt, [300, 5]))
    with pytest.warns(A.EmptyGroupWarning):
        shares = A.hard_easy_shares({"CE": run})
    assert shares.loc[("CE", "many"), "hard"] == pytest.approx(1 / 5)
    assert shares.loc[("CE", "many"), "easy"] == pytest.approx(1 / 5)
    assert shares.loc[("CE", "few"), "hard"] == pytest.approx(2 / 3)
    assert shares.loc[("CE", "few"), "easy"] == pytest.approx(1 / 3)
    assert shares.loc[("CE", "all"), "hard"] == pytest.approx(3 / 8)
    assert shares.loc[("CE", "medium"), "samples"] == 0 and math.isnan(shares.loc[("CE", "medium"), "hard"])


# --------------------------------------------------------------------------------------------
# figures and report


def assert_png(path: Path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure1_panels(tmp_path, single_run):
    other = A.load_run(write_run(tmp_path / "run_ldam", LABELS, LABELS, np.full(24, 0.7), COUNTS))
    fig = A.plot_probability_curves({"CE": single_run, "LDAM": other})
    assert len(fig.axes) == 3
    many_ax = fig.axes[0]
    ce_line = many_ax.get_lines()[0]
    np.testing.assert_allclose(ce_line.get_ydata(), np.sort(single_run.p_gt[:8]), rtol=1e-6)  # ascending
    assert "75.0%" in many_ax.get_legend().get_texts()[0].get_text()
    assert_png(A.save_figure(fig, tmp_path / "fig" / "fig1abc.png"))

    names = ["zero", "one", "two", "three", "four", "five"]
    fig_d = A.plot_probability_by_class({"CE": single_run}, size=20, seed=0, class_names=names)
    ax = fig_d.axes[0]
    x = np.asarray(ax.collections[0].get_offsets())[:, 0]
    subset = A.sample_like_train(single_run.label, COUNTS, 20, 0)
    # classes are already in descending size order, so class c's column is centred on x = 5 - c; its dots
    # spread over the column (jitter) instead of sitting on one vertical line
    column = 5 - single_run.label[subset]
    assert np.all(np.abs(x - column) <= 0.35) and len(np.unique(x)) == x.size
    # each tick names its class and its train count, smallest class on the left
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{names[c]}\n{COUNTS[c]}" for c in range(5, -1, -1)]
    assert_png(A.save_figure(fig_d, tmp_path / "fig" / "fig1d.png"))


def test_figure2_panels(tmp_path):
    sizes = np.array([5, 20, 100, 1280])
    terms = {"ALA hard": [0.9, 0.5, 0.3, 0.15], "ALA easy": [0.1, 0.05, 0.03, 0.01],
             "LDAM": [0.5, 0.35, 0.24, 0.13], "A_cls only": [1.0, 0.5, 0.3, 0.1]}
    x = np.linspace(-10, 10, 41)
    grads = {"ALA": -1 / (1 + np.exp(x)), "FL": -np.exp(-np.abs(x)), "CE": -1 / (1 + np.exp(x))}
    fig_a = A.plot_adjusting_terms(sizes, terms)
    assert len(fig_a.axes[0].get_lines()) == 4
    assert_png(A.save_figure(fig_a, tmp_path / "fig2a.png"))
    assert_png(A.save_figure(A.plot_target_gradients(x, grads), tmp_path / "fig2b.png"))
    both = A.plot_figure2(sizes, terms, x, grads)
    assert len(both.axes) == 2
    assert_png(A.save_figure(both, tmp_path / "fig2.png"))
    with pytest.raises(ValueError, match="LDAM"):
        A.plot_adjusting_terms(sizes, {"LDAM": [1.0, 2.0]})


def test_figure3_diagram(tmp_path):
    fig = A.draw_moe_diagram(num_experts=4, shapes={"input": "3×32×32", "trunk": "16×32×32"})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t.startswith("expert ") for t in texts) == 4
    assert any("16×32×32" in t for t in texts)
    assert_png(A.save_figure(fig, tmp_path / "fig3.png"))
    with pytest.raises(ValueError, match="valid"):
        A.draw_moe_diagram(shapes={"bogus": "1"})


def bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def test_figure4_bars(tmp_path, moe_run):
    fig = A.plot_router_weights(moe_run, bar="accuracy")
    assert len(fig.axes) == 3
    for ax, g in zip(fig.axes, ("many", "medium", "few")):
        np.testing.assert_allclose(bar_heights(ax), 100 * np.array(EXPERT_ACC[g]))
    assert_png(A.save_figure(fig, tmp_path / "fig4_acc.png"))
    # default, as in the paper: bars are mean router weights, accuracy printed on top
    fig = A.plot_router_weights(moe_run)
    for ax, g in zip(fig.axes, ("many", "medium", "few")):
        np.testing.assert_allclose(bar_heights(ax), ROUTER_MEAN[g], rtol=1e-6)
        assert [t.get_text() for t in ax.texts] == [f"{100 * a:.1f}" for a in EXPERT_ACC[g]]
    assert_png(A.save_figure(fig, tmp_path / "fig4.png"))


def test_training_curves(tmp_path, single_run):
    fig = A.plot_training_curves({"CE": single_run, "other": history_list(offset=0.1)})
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 6
    loss_ax = fig.axes[0]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [2.0, 1.5, 1.0])
    assert_png(A.save_figure(fig, tmp_path / "curves.png"))
    with pytest.raises(KeyError, match="test_few"):
        A.plot_training_curves({"bad": [{"epoch": 0, "train_loss": 1.0}]}, panels=("train_loss", "test_few"))



def test_training_curves_join_the_epochs_with_a_test_pass_and_name_an_empty_group():
    # eval_every 2: test numbers at epochs 1, 3, 5 only (None in between); no few-shot class at all (NaN
    # where a test pass ran: what history.json holds for an empty group)
    history = [{**entry, **({} if entry["epoch"] % 2 else {"test_all": None, "test_many": None, "test_medium": None}),
                "test_few": None if entry["epoch"] % 2 == 0 else float("nan")} for entry in history_list(epochs=6)]
    fig = A.plot_training_curves({"CE": history})
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    (line,) = panels["test accuracy, all"].get_lines()
    assert list(line.get_xdata()) == [1, 3, 5] and line.get_marker() == "o"
    np.testing.assert_allclose(line.get_ydata(), [0.1, 0.3, 0.5])
    assert panels["train loss"].get_lines()[0].get_marker() in ("None", None, "")  # every epoch: a plain line
    few = panels["test accuracy, few"]
    assert [t.get_text() for t in few.texts] == ["no few-shot class\nin this dataset"]


def test_provenance_markdown_flattens_nested_keys():
    text = A.provenance_markdown({"commit": "abc", "device": {"name": "cpu", "count": 1}, "seeds": [0, 1]})
    lines = text.strip().splitlines()
    assert lines[0].startswith("| key | value |") and len(lines) == 2 + 4
    assert "| device.name | cpu |" in text and "| commit | abc |" in text and "| seeds | [0, 1] |" in text


def test_no_warning_for_nonempty_groups(single_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.per_group_accuracy(single_run)
