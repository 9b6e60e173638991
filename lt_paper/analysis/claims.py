"""The paper's comparisons read on our runs: for each pair of rows the paper compares, what its numbers
say, what ours say, and whether the difference is larger than the noise of our runs.

A *claim* is a pair of rows (``better``, ``worse``) of one notebook, taken from the paper's text, with
the paper's own difference ``better - worse`` in each shot group computed from its printed numbers
(:mod:`.paper_numbers`), never typed in. Our difference is paired by seed: for every seed both rows
ran, ``d_s = acc(better, s) - acc(worse, s)`` in points; we report the mean over seeds and their std.

The noise a difference must exceed before it is read as an effect (docs/results.md says the same for a reader):

* the **sampling error of the test images**: two accuracies on ``n`` test images of a group differ by
  chance by about ``2 * sqrt(p_a (1 - p_a) / n + p_b (1 - p_b) / n)`` (two standard errors, the runs
  treated as independent: an upper bound for two runs on the same images);
* the **seed spread**: the std over seeds of the paired differences when there are several seeds;
  with one seed, the largest std over seeds of any row of the same table in that group (the spread
  this recipe shows elsewhere), when some row has several seeds.

Verdicts: ``agrees`` when every seed's difference has the paper's sign and the mean exceeds the
noise; ``disagrees`` when every seed's difference has the other sign and the mean exceeds the noise;
``tie`` otherwise (within the noise, or seeds that disagree). ``no <group> class`` when the data set
has none (CIFAR-10-LT at imbalance 100 has no few-shot class), ``missing`` when a row has no run,
``paper level`` when the paper prints equal numbers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .groups import record_groups
from .paper_numbers import GROUP_LABELS, GROUPS, PaperTable, paper_table
from .records import load_run


class Claim(NamedTuple):
    """A comparison the paper makes between two rows (keys of a notebook's rows and of ``table``):
    ``better`` is the row its text says wins overall; per group its own numbers say which does."""

    better: str
    worse: str
    table: str  # the paper table whose numbers give the paper's difference
    setting: str | None = None  # its column block (default: the table's last)
    paper_keys: tuple[str, str] | None = None  # the rows' keys in that table, where they differ


# Table 4 (section 4.4.1): A_ins against CE, LDAM and A_cls; A_cls against LDAM; A_ins against focal
# loss beside A_cls (#7 vs #5); A_ins + LDAM against both parts; ALA (#7) against every other row.
TABLE4_CLAIMS = tuple(Claim(b, w, "table4") for b, w in (
    ("ains", "ce"), ("ains", "ldam"), ("ains", "acls"), ("acls", "ldam"), ("ala", "focal_acls"),
    ("ldam_ains", "ldam"), ("ldam_ains", "ains"), ("ala", "ldam_ains"), ("ala", "ains"), ("ala", "acls"),
    ("ala", "ldam"), ("ala", "ce")))

# Table 5 (section 4.4.2): the instance-aware router against the mean of the experts, for RIDE* and for
# the MoE, with 3 and 4 experts.
TABLE5_CLAIMS = tuple(Claim(f"{net}{k}_router", f"{net}{k}_mean", "table5")
                      for k in (3, 4) for net in ("ride", "moe"))

# Table 1 (section 4.3), ResNet-50 block (the only one with logit adjustment): ALA against LDAM-DRW,
# logit adjustment and CE; distillation from the 6-expert MoE against ALA alone; the MoE against ALA,
# and 4 experts against 3.
TABLE1_CLAIMS = tuple(Claim(b, w, "table1", "resnet50") for b, w in (
    ("ala", "ldam_drw"), ("ala", "la"), ("ala", "ce"), ("ala_distill", "ala"), ("ala_moe3", "ala"),
    ("ala_moe4", "ala_moe3")))


def run_seed(result: Mapping[str, Any]) -> int:
    """The seed a run of ``run_rows`` trained with (from its ``config.json``)."""
    return int(load_run(result["run_dir"]).config["seed"])


def group_sizes(result: Mapping[str, Any]) -> dict[str, int]:
    """Test images per group {"many", "medium", "few", "all"} of one run (its own shot rule)."""
    return {g: int(mask.sum()) for g, mask in record_groups(load_run(result["run_dir"])).items()}


def _by_seed(results: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {run_seed(r): r for r in results}


def _paper_difference(claim: Claim, group: str) -> float | None:
    table: PaperTable = paper_table(claim.table)
    setting = table.resolve_setting(claim.setting)
    better, worse = claim.paper_keys or (claim.better, claim.worse)
    a, b = (table.row(k).numbers[setting][group] for k in (better, worse))
    return None if a is None or b is None else round(a - b, 1)


def _pct(result: Mapping[str, Any], group: str) -> float:
    value = result[group]
    return float("nan") if value is None else 100.0 * float(value)


def table_seed_spread(runs: Mapping[str, Sequence[Mapping[str, Any]]], group: str) -> float:
    """The largest std over seeds (points) of any row with several seeds in ``group``; NaN if none."""
    spreads = [np.std([_pct(r, group) for r in results], ddof=1) for results in runs.values() if len(results) > 1]
    spreads = [s for s in spreads if not math.isnan(s)]
    return float(max(spreads)) if spreads else float("nan")


def verdict(paper: float | None, diffs: Sequence[float], noise: float) -> str:
    """``agrees`` / ``disagrees`` / ``tie`` / ``paper level`` for paired differences ``diffs`` (points)."""
    if paper is None:
        raise ValueError("no paper difference to compare with")
    if paper == 0:
        return "paper level"
    sign = math.copysign(1.0, paper)
    mean = float(np.mean(diffs))
    if abs(mean) <= noise:
        return "tie"
    if all(d * sign > 0 for d in diffs):
        return "agrees"
    if all(d * sign < 0 for d in diffs):
        return "disagrees"
    return "tie"


def _label(claim: Claim, key: str) -> str:
    """A row as the paper prints its method ("A_ins", "LDAM-DRW"), or its key if the paper lacks it."""
    table = paper_table(claim.table)
    keys = dict(zip((claim.better, claim.worse), claim.paper_keys or (claim.better, claim.worse)))
    return table.row(keys[key]).method if keys[key] in table.keys else key


def claims_frame(runs: Mapping[str, Sequence[Mapping[str, Any]]], claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim and shot group ("ALA > LDAM-DRW, All"): the paper's difference (points), ours
    (mean and std over paired seeds),
    the seeds, the noise it is read against and the verdict (module docstring)."""
    records = []
    for claim in claims:
        name = f"{_label(claim, claim.better)} vs {_label(claim, claim.worse)}"
        a, b = (_by_seed(runs.get(k, ())) for k in (claim.better, claim.worse))
        seeds = sorted(set(a) & set(b))
        sizes = group_sizes(a[seeds[0]]) if seeds else {}
        for group in GROUPS:
            paper = _paper_difference(claim, group)
            if paper is None:
                continue  # the paper prints no number for one of the rows in this group
            rec: dict[str, Any] = {"comparison": f"{name}, {GROUP_LABELS[group]}", "paper Δ": paper,
                                   "ours Δ": float("nan"), "ours Δ std": float("nan"), "seeds": len(seeds),
                                   "noise": float("nan"), "verdict": "missing"}
            if seeds and sizes[group] == 0:
                rec["verdict"] = f"no {GROUP_LABELS[group].lower()}-shot class"
            elif seeds:
                pa = np.array([_pct(a[s], group) for s in seeds])
                pb = np.array([_pct(b[s], group) for s in seeds])
                diffs = pa - pb
                n = sizes[group]
                sampling = 2 * 100 * math.sqrt(sum(p / 100 * (1 - p / 100) / n for p in (pa.mean(), pb.mean())))
                spread = float(diffs.std(ddof=1)) if len(seeds) > 1 else table_seed_spread(runs, group)
                noise = max(sampling, 0.0 if math.isnan(spread) else spread)
                rec.update({"ours Δ": float(diffs.mean()),
                            "ours Δ std": float(diffs.std(ddof=1)) if len(seeds) > 1 else float("nan"),
                            "noise": noise, "verdict": verdict(paper, list(diffs), noise)})
            records.append(rec)
    # column names avoid the " diff" / " paper" suffixes that ``format_results`` and ``as_reference`` rework
    return pd.DataFrame.from_records(
        records, columns=["comparison", "paper Δ", "ours Δ", "ours Δ std", "seeds", "noise", "verdict"])


def claims_summary(frame: pd.DataFrame) -> str:
    """One sentence counting the verdicts of ``claims_frame`` (tested comparisons only)."""
    tested = frame[frame["verdict"].isin(["agrees", "disagrees", "tie"])]
    counts = tested["verdict"].value_counts()
    if tested.empty:
        return "No claim could be tested on these runs (rows missing or groups empty)."
    return (f"Of {len(tested)} comparisons the paper makes that these runs can test, {counts.get('agrees', 0)} "
            f"agree with it beyond the noise, {counts.get('disagrees', 0)} disagree beyond the noise and "
            f"{counts.get('tie', 0)} are ties (within the noise of the seeds or of the test images).")
