"""The paper's comparisons read on our runs (lt_paper.analysis.claims): differences paired by seed, the
noise they are read against, and the verdict, checked against values worked out here with numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lt_paper.analysis.claims import (TABLE4_CLAIMS, TABLE5_CLAIMS, Claim, claims_frame, claims_summary,
                                      verdict)
from test_analysis import write_run

# 4 classes: 2 many-shot (n > 100), 2 medium-shot; no few-shot class. 500 test images per class.
COUNTS = [500, 200, 60, 30]
LABELS = np.repeat(np.arange(4), 500)


def run(tmp_path, name: str, seed: int, many: float, medium: float) -> dict:
    """A finished run whose metrics give these group accuracies (fractions), as ``run_rows`` returns it."""
    run_dir = write_run(tmp_path / f"{name}-s{seed}", LABELS, LABELS, np.full(LABELS.size, 0.5), COUNTS)
    (run_dir / "config.json").write_text(json.dumps({"loss": name, "seed": seed}))
    return {"run_dir": str(run_dir), "many": many, "medium": medium, "few": None,
            "all": (many + medium) / 2}


def test_the_verdict_needs_every_seed_and_the_mean_beyond_the_noise():
    assert verdict(1.5, [2.0, 3.0, 2.5], noise=1.0) == "agrees"
    assert verdict(1.5, [-2.0, -3.0, -2.5], noise=1.0) == "disagrees"
    assert verdict(-0.4, [2.0, 3.0], noise=1.0) == "disagrees"  # the paper's sign, not "better > worse"
    assert verdict(1.5, [0.5, 0.9], noise=1.0) == "tie"  # within the noise
    assert verdict(1.5, [4.0, -0.5], noise=1.0) == "tie"  # the mean is beyond it, a seed disagrees
    assert verdict(0.0, [4.0, 5.0], noise=1.0) == "paper level"
    with pytest.raises(ValueError, match="no paper difference"):
        verdict(None, [1.0], noise=1.0)


def test_claims_are_paired_by_seed_and_read_against_the_larger_of_sampling_error_and_seed_spread(tmp_path):
    ala = {0: (0.70, 0.60), 1: (0.72, 0.66), 2: (0.69, 0.58)}
    ldam = {0: (0.71, 0.50), 1: (0.70, 0.52), 2: (0.70, 0.49)}
    # listed in another seed order than ALA's: a pairing by list position would be wrong
    runs = {"ala": [run(tmp_path, "ala", s, *ala[s]) for s in (0, 1, 2)],
            "ldam": [run(tmp_path, "ldam", s, *ldam[s]) for s in (2, 0, 1)]}
    frame = claims_frame(runs, [Claim("ala", "ldam", "table4")]).set_index("comparison")
    assert list(frame.index) == [f"ALA (A_ins + A_cls) vs LDAM-DRW, {g}" for g in ("Many", "Medium", "Few", "All")]

    for group, col in (("Many", 0), ("Medium", 1)):
        row = frame.loc[f"ALA (A_ins + A_cls) vs LDAM-DRW, {group}"]
        d = np.array([100 * (ala[s][col] - ldam[s][col]) for s in (0, 1, 2)])
        pa, pb = (np.mean([v[s][col] for s in (0, 1, 2)]) for v in (ala, ldam))
        sampling = 2 * 100 * math.sqrt(pa * (1 - pa) / 1000 + pb * (1 - pb) / 1000)  # 1,000 test images a group
        assert row["ours Δ"] == pytest.approx(d.mean())
        assert row["ours Δ std"] == pytest.approx(d.std(ddof=1))
        assert row["noise"] == pytest.approx(max(sampling, d.std(ddof=1)))
        assert row["seeds"] == 3
    # Table 4's printed numbers: ALA 64.1 / 49.1 / 34.0 / 52.8, LDAM-DRW 62.9 / 47.5 / 31.9 / 51.3
    assert list(frame["paper Δ"]) == pytest.approx([1.2, 1.6, 2.1, 1.5])
    # Many: -0.33 points, within the noise; Medium: 11 points, every seed the paper's way
    assert list(frame["verdict"]) == ["tie", "agrees", "no few-shot class", "agrees"]


def test_one_seed_is_read_against_the_largest_seed_spread_of_the_table(tmp_path):
    runs = {"ains": [run(tmp_path, "ains", 0, 0.70, 0.55)],
            "ce": [run(tmp_path, "ce", 0, 0.72, 0.50)],
            # a row with three seeds: its medium-shot std sets the spread for single-seed comparisons
            "ala": [run(tmp_path, "ala", s, 0.7, m) for s, m in ((0, 0.50), (1, 0.60), (2, 0.70))]}
    frame = claims_frame(runs, [Claim("ains", "ce", "table4")]).set_index("comparison")
    medium = frame.loc["A_ins vs CE, Medium"]
    spread = 100 * np.std([0.50, 0.60, 0.70], ddof=1)  # 10 points
    assert medium["ours Δ"] == pytest.approx(5.0)
    assert math.isnan(medium["ours Δ std"])
    assert medium["noise"] == pytest.approx(spread)
    assert medium["verdict"] == "tie"  # 5 points of one seed, against 10 points of seed spread
    many = frame.loc["A_ins vs CE, Many"]  # the paper has A_ins 1.2 below CE on many-shot: so do we
    assert many["paper Δ"] == pytest.approx(-1.2) and many["ours Δ"] == pytest.approx(-2.0)


def test_missing_rows_say_so_and_the_summary_counts_only_tested_comparisons(tmp_path):
    runs = {"moe3_router": [run(tmp_path, "r", s, 0.7, 0.6) for s in (0, 1)],
            "moe3_mean": [run(tmp_path, "m", s, 0.4, 0.3) for s in (0, 1)]}
    frame = claims_frame(runs, TABLE5_CLAIMS)
    tested = frame[frame["comparison"].str.startswith("MoE (3 experts")]
    assert set(frame["verdict"]) == {"missing", "agrees", "no few-shot class"}
    assert list(tested["verdict"]) == ["agrees", "agrees", "no few-shot class", "agrees"]
    assert claims_summary(frame).startswith("Of 3 comparisons the paper makes that these runs can test, 3 agree")
    assert claims_summary(claims_frame({}, TABLE4_CLAIMS)).startswith("No claim could be tested")
