"""The rows of every table and figure, in one place: ``{row label: preset method}``.

The notebooks pass these to :func:`lt_paper.workflows.experiments.run_rows`, and ``python -m lt_paper campaign``
reads them to list every run a profile needs, so that what a GPU window trains is exactly what the
notebooks later look for. Methods are those of :mod:`lt_paper.train.presets`; labels are the keys the
analysis functions (``table4_frame``, ``table5_frame``, ``cifar_frame``...) expect.
"""

from __future__ import annotations

from typing import NamedTuple

# Table 1 / Table 3 (and the CIFAR-LT analogue): baselines, ALA, distillation, the MoE.
TABLE1_ROWS = {
    "ce": "ce", "focal": "focal", "ldam_drw": "ldam_drw", "la": "la", "ala": "ala",
    "ala_distill": "ala_distill", "ala_moe3": "ala_moe3", "ala_moe4": "ala_moe4",
}
# Table 4, rows 1-7: which adjusting term is applied (the ALA ablation), then one row of ours that the
# paper does not have: ALA without DRW, which measures what the assumed DRW adds (docs/decisions.md, decision 4).
TABLE4_ROWS = {
    "ce": "ce", "ldam": "ldam_drw", "ains": "ains", "acls": "acls",
    "focal_acls": "focal_acls", "ldam_ains": "ldam_ains", "ala": "ala",
    "ala_nodrw": "ala_nodrw",
}
# Table 5: mean vs instance-aware router, for RIDE* and for our MoE, with 3 and 4 experts.
TABLE5_ROWS = {
    label: method
    for k in (3, 4)
    for label, method in ((f"ride{k}_mean", f"ride{k}"), (f"ride{k}_router", f"ride{k}_router"),
                          (f"moe{k}_mean", f"ala_moe{k}_mean"), (f"moe{k}_router", f"ala_moe{k}"))
}
# Figure 1: CE against LDAM-DRW (hard samples per shot group).
FIGURE1_ROWS = {"CE": "ce", "LDAM-DRW": "ldam_drw"}
# Figure 4: router weights against expert accuracy for every network with a learned router: the MoE with
# 3, 4 and 6 experts (the 6-expert one is the distillation teacher) and RIDE* with the router (Table 5).
FIGURE4_ROWS = {"MoE-3": "ala_moe3", "MoE-4": "ala_moe4", "MoE-6": "ala_moe6", "RIDE-3": "ride3_router",
                "RIDE-4": "ride4_router"}


# The core set: CE and LDAM-DRW (Figure 1), ALA with and without DRW (Table 4's claim, and decision 4's
# check) and the 3-expert MoE (Figure 4), as methods. ``campaign --rows core`` trains these alone: the
# smallest set of runs behind Figures 1 and 4 and the ALA rows (docs/real-data-on-a-laptop.md).
CORE_METHODS = ("ce", "ldam_drw", "ala", "ala_nodrw", "ala_moe3")
# The runs on which the paper's two central claims are decided over several seeds: the core set (Table 4's
# ALA against LDAM-DRW) and the 3-expert MoE with the mean router (Table 5's instance-aware against mean
# router, beside the core set's ``ala_moe3``).
CLAIM_METHODS = CORE_METHODS + ("ala_moe3_mean",)
# The hard-sample explorer (notebooks/explore_hard_samples.ipynb): the core set, by the labels it shows.
EXPLORER_ROWS = {"CE": "ce", "LDAM-DRW": "ldam_drw", "ALA": "ala", "ALA without DRW": "ala_nodrw",
                 "MoE-3": "ala_moe3"}
# What ``campaign --rows`` accepts: the methods each name keeps (None: every row of every notebook).
ROW_SETS: dict[str, tuple[str, ...] | None] = {"all": None, "core": CORE_METHODS, "claims": CLAIM_METHODS}


class NotebookRows(NamedTuple):
    """The rows one notebook trains, and whether it trains them for every seed or the first only."""

    rows: dict[str, str]
    all_seeds: bool


# Notebooks that train runs (Figures 2 and 3 train none). Figures 1 and 4 show one seed.
NOTEBOOK_ROWS: dict[str, NotebookRows] = {
    "table1_3_main_results": NotebookRows(TABLE1_ROWS, all_seeds=True),
    "table4_ala_ablation": NotebookRows(TABLE4_ROWS, all_seeds=True),
    "table5_router_ablation": NotebookRows(TABLE5_ROWS, all_seeds=True),
    "figure1_hard_samples": NotebookRows(FIGURE1_ROWS, all_seeds=False),
    "figure4_router_weights": NotebookRows(FIGURE4_ROWS, all_seeds=False),
}
