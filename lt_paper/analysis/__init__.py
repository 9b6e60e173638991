"""Tables and figures of the paper from run records (what ``lt_paper.train`` leaves in a run directory).

Modules, one concern each:

- ``paper_numbers``: the paper's Tables 1, 3, 4, 5 and the published CIFAR-LT numbers, as data.
- ``records``: ``load_run(run_dir) -> RunRecord`` (config.json, metrics.json, history.json, records.npz).
- ``groups``: shot groups and per-group accuracy, expert accuracy, mean router weight (NaN for an
  empty group, never 0).
- ``samples``: hard/easy shares and a test subset drawn with the train distribution (Figure 1).
- ``tables``: our runs (mean ± std over seeds) beside the paper's numbers; Markdown and CSV.
- ``claims``: the comparisons the paper's text makes, read on our runs against their noise (seeds,
  test images): agrees / disagrees / tie.
- ``figures``: Figures 1, 2, 4 and training curves; ``diagram``: Figure 3.
- ``report``: one Markdown report from tables, figures and provenance.

Analysis reads files only: no model, checkpoint or GPU is needed to rebuild a table or a figure.

May import ``data`` and ``train`` (to read runs back); never ``workflows``, ``bench`` or ``cli``.
"""

from .diagram import SHAPE_KEYS, draw_moe_diagram
from .figures import (plot_adjusting_terms, plot_figure2, plot_probability_by_class, plot_probability_curves,
                      plot_router_weights, plot_sample_gallery, plot_target_gradients, plot_training_curves,
                      save_figure)
from .groups import (GROUPS_WITH_ALL, SHOT_GROUPS, EmptyGroupWarning, class_groups, expert_group_accuracy,
                     group_accuracy, paired_difference, per_group_accuracy, record_groups, regroup_metrics,
                     router_variation, router_verdict, router_weight_by_group, sample_groups, shot_groups)
from .paper_numbers import (CIFAR_PUBLISHED, GROUPS, PAPER_TABLES, TABLE1, TABLE3, TABLE4, TABLE5, PaperRow,
                            PaperTable, paper_table)
from .records import RunRecord, load_metrics, load_run
from .report import provenance_markdown
from .samples import disagreeing_samples, hard_easy_shares, sample_like_train, train_like_counts
from .tables import (as_reference, cifar_frame, format_results, results_table, save_table, summarize_seeds,
                     table1_frame, table3_frame, table4_frame, table5_frame, table_markdown, to_markdown)

__all__ = [
    # paper numbers
    "PaperRow", "PaperTable", "PAPER_TABLES", "TABLE1", "TABLE3", "TABLE4", "TABLE5", "CIFAR_PUBLISHED",
    "GROUPS", "paper_table",
    # records and groups
    "RunRecord", "load_run", "load_metrics",
    "SHOT_GROUPS", "GROUPS_WITH_ALL", "EmptyGroupWarning", "shot_groups", "class_groups", "sample_groups",
    "record_groups",
    "group_accuracy", "per_group_accuracy", "regroup_metrics", "expert_group_accuracy", "router_weight_by_group",
    "router_verdict", "router_variation", "paired_difference",
    # samples
    "sample_like_train", "train_like_counts", "hard_easy_shares", "disagreeing_samples",
    # tables
    "summarize_seeds", "results_table", "table1_frame", "table3_frame", "table4_frame", "table5_frame",
    "as_reference", "cifar_frame", "format_results", "to_markdown", "table_markdown", "save_table",
    # figures
    "save_figure", "plot_probability_curves", "plot_probability_by_class", "plot_adjusting_terms",
    "plot_target_gradients", "plot_figure2", "plot_router_weights", "plot_training_curves",
    "plot_sample_gallery",
    "draw_moe_diagram", "SHAPE_KEYS",
    # report
    "provenance_markdown",
]
