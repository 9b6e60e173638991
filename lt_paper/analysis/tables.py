"""Result tables: our runs (mean ± std over seeds) beside the paper's numbers, as pandas DataFrames.

Input is ``{row key: [metrics dict per seed]}`` where a metrics dict is a run's ``metrics.json``
(top-1 in [0, 1]; what ``train`` and ``experiments.run_rows`` return). Row keys are those of
``paper_numbers`` so that our row lands beside the paper's. Output columns (numbers in percent):

    method, <flag columns of the paper table>, seeds,
    Many, Many std, Many paper, Many diff, Medium ..., Few ..., All ...

``std`` is the sample standard deviation over seeds (ddof=1, NaN for a single seed);
``diff = ours - paper`` in percentage points (NaN where the paper prints "-").
docs/decisions.md, decision 7: the headline is the last epoch (``epoch="last"``); ``epoch="best"`` reads the
best-test-epoch numbers, which is how the published CIFAR baselines were picked. The choice is kept
in ``frame.attrs["epoch"]`` and shown in the Markdown caption.

Shot rules (docs/decisions.md, decision 2): the group columns use the rule each run recorded (the caption names
it). Runs grouped by the paper's Table 2 (few ``n <= 20``: the ImageNet-LT and iNaturalist presets)
also get ``Medium (OLTR rule)`` / ``Few (OLTR rule)`` columns, the same runs grouped by the published
codebases' ``n < 20``, recomputed from each run's per-class accuracies (``other_rule``).

Rendering is our own (``to_markdown``), so the package does not depend on ``tabulate``. A table may set
``frame.attrs["column_decimals"]`` ({column: decimals}) for columns shown at another precision than the
rest; an unnamed 0, 1, 2 ... index is a row counter, not data, and is not shown (``shows_index``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data import OLTR_SHOT_RULE, SHOT_GROUPS, TABLE2_SHOT_RULE
from .groups import regroup_metrics
from .paper_numbers import (CIFAR_PUBLISHED, GROUP_LABELS, GROUPS, PAPER_TABLES, TABLE1, TABLE3, TABLE4,
                            TABLE5, PaperTable, paper_table)

CHECK = "✓"
# Rows of ours that no paper table has, by row key: (method column, the paper row whose flag columns it
# shares). ALA without DRW applies the same adjusting terms as ALA; only the re-weighting differs.
OUR_ROWS = {"ala_nodrw": ("ALA without DRW (ours, not in the paper)", "ala")}


def _paper_method_name(key: str) -> str:
    """The paper's name of row ``key`` in any of its tables (CIFAR's published table lacks the paper's own
    rows, e.g. "ala": "ALA Loss (single expert)" from Table 1), else the key itself."""
    for table in PAPER_TABLES.values():
        if key in table.keys:
            return table.row(key).method
    return key


def _fraction(value: Any, where: str) -> float:
    if value is None:
        return float("nan")
    value = float(value)
    if value > 1.0 + 1e-9 or value < 0.0:
        raise ValueError(f"{where} = {value}: metrics must be top-1 fractions in [0, 1] "
                         f"(the metrics.json convention), not percent")
    return value


def seed_values(metrics: Sequence[Mapping[str, Any]], group: str, epoch: str = "last",
                row: str = "?") -> np.ndarray:
    """Per-seed top-1 fractions of one group, from metrics dicts (``epoch`` "last" or "best")."""
    if epoch not in ("last", "best"):
        raise ValueError(f"epoch must be 'last' or 'best', got {epoch!r}")
    values = []
    for i, m in enumerate(metrics):
        source = m if epoch == "last" else m.get("best")
        if not isinstance(source, Mapping) or group not in source:
            path = group if epoch == "last" else f"best.{group}"
            raise KeyError(f"row {row!r}, seed #{i}: metrics have no {path!r} (keys: {sorted(m)})")
        values.append(_fraction(source[group], f"row {row!r}, seed #{i}, {group}"))
    return np.asarray(values, dtype=float)


def summarize_seeds(metrics: Sequence[Mapping[str, Any]], epoch: str = "last", row: str = "?") -> dict[str, float]:
    """{"seeds": n, "Many": mean %, "Many std": std % (ddof=1, NaN for one seed), ...} for one row."""
    out: dict[str, float] = {"seeds": len(metrics)}
    for g in GROUPS:
        label = GROUP_LABELS[g]
        pct = 100.0 * seed_values(metrics, g, epoch=epoch, row=row)  # (seeds,)
        out[label] = float(pct.mean()) if pct.size else float("nan")
        out[f"{label} std"] = float(pct.std(ddof=1)) if pct.size > 1 else float("nan")
    return out


def results_table(runs: Mapping[str, Sequence[Mapping[str, Any]]], paper: PaperTable | str | None = None,
                  setting: str | None = None, epoch: str = "last",
                  rows: Sequence[str] | None = None,
                  other_rule: Mapping[str, Any] | str | None = "auto") -> pd.DataFrame:
    """Our runs beside a paper table (Table 1/3 analogue, and the base of the Table 4/5 builders).

    runs: {row key: [metrics dict per seed]}. paper: a ``PaperTable`` or its name ("table1", "table3",
    "table4", "table5", "cifar"), or None for ours only. setting: the paper's column block
    ("resnet50", "resnext50", "cifar10_lt", ...; default the table's last one). rows: keys to show, in
    order; default the paper's rows in paper order (rows we did not run show NaN and ``seeds`` 0),
    then our keys that the paper lacks. other_rule: a shot rule ({"many", "few", "few_inclusive"})
    whose group accuracies are added as ``<Group> (<rule name> rule)`` columns (last epoch only);
    "auto": OLTR's rule when every run recorded Table 2's, else none; None: none.
    """
    table = paper_table(paper) if isinstance(paper, str) else paper
    if table is not None:
        setting = table.resolve_setting(setting)
    if rows is None:
        paper_keys = list(table.keys) if table is not None else []
        rows = paper_keys + [k for k in runs if k not in paper_keys]
    flag_columns = list(table.flag_columns) if table is not None else []
    rules = shot_rules(runs)
    other = _other_rule(runs, other_rule, epoch)
    same_many = other is not None and all(r["many"] == other["many"] for r in _recorded_rules(runs))

    records = []
    for key in rows:
        paper_row = table.row(key) if table is not None and key in table.keys else None
        if paper_row is None and key not in runs:
            raise KeyError(f"row {key!r} is neither in the runs {sorted(runs)} nor in "
                           f"{table.name if table else 'a paper table'}")
        ours_label, like = OUR_ROWS.get(key, (_paper_method_name(key), None))
        flags_from = paper_row or (table.row(like) if table is not None and like in table.keys else None)
        rec: dict[str, Any] = {"method": paper_row.method if paper_row else ours_label}
        rec.update({c: (flags_from.flags[c] if flags_from else None) for c in flag_columns})
        ours = summarize_seeds(runs.get(key, ()), epoch=epoch, row=key)
        rec["seeds"] = int(ours["seeds"])
        for g in GROUPS:
            label = GROUP_LABELS[g]
            rec[label] = ours[label]
            rec[f"{label} std"] = ours[f"{label} std"]
            if table is not None:
                printed = paper_row.numbers[setting][g] if paper_row else None
                rec[f"{label} paper"] = float("nan") if printed is None else float(printed)
                rec[f"{label} diff"] = rec[label] - rec[f"{label} paper"]
        if other is not None:
            rec.update(_other_rule_columns(runs.get(key, ()), other, key, with_many=not same_many))
        records.append(rec)
    frame = pd.DataFrame.from_records(records, index=pd.Index(list(rows), name="key"))
    for c in flag_columns:  # keep ints/bools as printed (a None for a row outside the paper would make K float)
        frame[c] = pd.Series([r[c] for r in records], index=frame.index, dtype=object)
    frame.attrs.update({
        "epoch": epoch,
        "paper_table": table.name if table is not None else None,
        "setting": setting,
        "shot_rules": rules,
        "other_rule": None if other is None else dict(other),
        "caption": (table.caption if table is not None else "Our results")
        + f" Ours: {'last' if epoch == 'last' else 'best test'} epoch, mean ± std over seeds, percent"
        + (f"; shot groups {'; '.join(rules)}" if rules else "")
        + ("" if other is None else f"; '({rule_name(other)} rule)' columns: the same runs grouped by "
           f"{describe_shot_rule(other)}") + "." + trained_on(runs),
    })
    return frame


def trained_on(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """" Trained on <device>." from the runs' recorded provenance or, where the runs trained on several
    devices (a profile's CPU runs beside its GPU runs), which rows trained on which (a row whose seeds
    trained on two devices is under both); "" when no run recorded its device. The same recipe may train
    on either (docs/design.md, "The same run on another device"): a table says where its numbers come from."""
    where: dict[str, list[str]] = {}
    for key, metrics in runs.items():
        # "CPU (x86_64, 2 threads)" -> "CPU (x86_64)": the count recorded is the last epoch's, and the
        # engine may choose another one before every epoch (train/cpu_threads.py)
        for device in dict.fromkeys(re.sub(r", \d+ threads?\)$", ")", str(m["provenance"]["device"]))
                                    for m in metrics if (m.get("provenance") or {}).get("device")):
            where.setdefault(device, []).append(str(key))
    if len(where) <= 1:
        return "".join(f" Trained on {device}." for device in where)
    return " Trained on " + "; ".join(f"{device}: {', '.join(keys)}" for device, keys in sorted(where.items())) + "."


def rule_name(rule: Mapping[str, Any]) -> str:
    """"Table 2" (few n <= 20, the paper), "OLTR" (few n < 20, the codebases) or the rule in words."""
    rule = {k: rule.get(k, OLTR_SHOT_RULE[k]) for k in OLTR_SHOT_RULE}
    if rule == dict(TABLE2_SHOT_RULE):
        return "Table 2"
    if rule == dict(OLTR_SHOT_RULE):
        return "OLTR"
    return describe_shot_rule(rule)


def _recorded_rules(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict]:
    """The distinct shot rules of the runs, as full dicts (a run without ``shot_rule`` used OLTR's)."""
    rules: list[dict] = []
    for metrics in runs.values():
        for m in metrics:
            rule = {**OLTR_SHOT_RULE, **(m.get("shot_rule") or {})}
            if rule not in rules:
                rules.append(rule)
    return rules


def _other_rule(runs, other_rule, epoch: str) -> Mapping[str, Any] | None:
    """The rule of the extra columns (see ``results_table``), or None."""
    if other_rule is None:
        return None
    if isinstance(other_rule, str):
        if other_rule != "auto":
            raise ValueError(f"other_rule must be a shot rule dict, 'auto' or None, got {other_rule!r}")
        recorded = _recorded_rules(runs)
        use = recorded == [dict(TABLE2_SHOT_RULE)]
        return OLTR_SHOT_RULE if use and epoch == "last" else None
    if epoch != "last":
        raise ValueError("other_rule needs the last epoch: runs record per-class accuracies only there")
    return {**OLTR_SHOT_RULE, **other_rule}


def _other_rule_columns(metrics: Sequence[Mapping[str, Any]], other: Mapping[str, Any], row: str,
                        with_many: bool) -> dict[str, float]:
    """``<Group> (<name> rule)`` mean and std columns of one row (Many only where its threshold differs)."""
    regrouped = [{**m, **regroup_metrics(m, **other)} for m in metrics]
    ours = summarize_seeds(regrouped, row=row)
    out = {}
    for g in SHOT_GROUPS if with_many else SHOT_GROUPS[1:]:
        label, column = GROUP_LABELS[g], f"{GROUP_LABELS[g]} ({rule_name(other)} rule)"
        out[column], out[f"{column} std"] = ours[label], ours[f"{label} std"]
    return out


def describe_shot_rule(rule: Mapping[str, Any]) -> str:
    """E.g. "many n > 100, few n < 20" (docs/decisions.md, decision 2; "n <= 20" is the paper's Table 2 wording)."""
    few_op = "<=" if rule.get("few_inclusive") else "<"
    return f"many n > {rule.get('many', 100)}, few n {few_op} {rule.get('few', 20)}"


def shot_rules(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """The distinct shot rules of the runs (``metrics.json`` ``shot_rule``, else OLTR's), in words.

    More than one means rows of a table were grouped differently; the caption then lists them all.
    """
    return [describe_shot_rule(rule) for rule in _recorded_rules(runs)]


def table1_frame(runs: Mapping[str, Sequence[Mapping[str, Any]]], backbone: str = "resnext50",
                 epoch: str = "last", rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 1 analogue (ImageNet-LT); ``backbone`` picks the paper's column block."""
    return results_table(runs, TABLE1, setting=backbone, epoch=epoch, rows=rows)


def table3_frame(runs: Mapping[str, Sequence[Mapping[str, Any]]], epoch: str = "last",
                 rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 3 analogue (iNaturalist-2018, ResNet-50)."""
    return results_table(runs, TABLE3, setting="resnet50", epoch=epoch, rows=rows)


def table4_frame(runs: Mapping[str, Sequence[Mapping[str, Any]]], epoch: str = "last",
                 rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 4 analogue (ALA ablation) with the flag columns Focal / LDAM / A_ins / A_cls."""
    return results_table(runs, TABLE4, epoch=epoch, rows=rows)


def table5_frame(runs: Mapping[str, Sequence[Mapping[str, Any]]], epoch: str = "last",
                 rows: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 5 analogue (router ablation) with the columns K / Style (RIDE* or MoE) / Router."""
    return results_table(runs, TABLE5, epoch=epoch, rows=rows)


def cifar_frame(runs: Mapping[str, Sequence[Mapping[str, Any]]], dataset: str = "cifar100_lt",
                epoch: str = "last", rows: Sequence[str] | None = None) -> pd.DataFrame:
    """CIFAR-LT (ResNet-32) results beside the published numbers (``CIFAR_PUBLISHED``; All only).

    The published baselines were picked at the best test epoch: pass ``epoch="best"`` for a
    like-for-like comparison, keep "last" for the headline (docs/decisions.md, decision 7).
    """
    return results_table(runs, CIFAR_PUBLISHED, setting=dataset, epoch=epoch, rows=rows)


def as_reference(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """``table`` for runs trained with a reduced recipe (``label``, e.g. "ResNet-8, 30 epochs, CPU,
    reduced recipe, not the paper's"): the paper's numbers stay beside ours as a reference, never as a
    target. ``X paper`` columns become ``X reference``, the ``X diff`` columns are dropped, and the
    caption says why. A table without paper columns is returned unchanged."""
    paper = [c for c in table.columns if str(c).endswith(" paper")]
    if not paper:
        return table
    out = table.drop(columns=[c for c in table.columns if str(c).endswith(" diff")])
    out = out.rename(columns={c: f"{str(c)[:-len(' paper')]} reference" for c in paper})
    out.attrs = dict(table.attrs, reference_only=True)
    out.attrs["caption"] = (f"{table.attrs.get('caption', '')} The '(reference)' columns are those published "
                            f"numbers, of the full recipe, shown for orientation only: ours are {label}, so a "
                            f"gap to them is not a shortfall to close.").strip()
    return out


# ---------------------------------------------------------------------------------------------
# rendering


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _cell(value: Any, decimals: int) -> str:
    """One cell as text: NaN/None -> "-" (the paper's convention), bool -> check mark or blank."""
    if isinstance(value, (bool, np.bool_)):
        return CHECK if value else ""
    if _is_missing(value):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{decimals}f}"
    return str(value)


def shows_index(frame: pd.DataFrame) -> bool:
    """Whether a table shows its index: not when it is pandas' unnamed row counter (0, 1, 2, ...)."""
    return not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)


def format_results(table: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Display form of a results table: strings, ``mean ± std`` merged, signed differences, check marks.

    Works on any frame: columns named ``X std`` are merged into ``X``; ``X paper`` becomes
    ``X (paper)``, ``X reference`` (:func:`as_reference`) ``X (reference)``; ``X diff`` becomes ``X Δ``
    with an explicit sign; missing values print "-". Flag columns that hold None for rows outside the
    paper print blank. Numbers get ``decimals`` decimals, or those ``table.attrs["column_decimals"]``
    gives their column.
    """
    out = {}
    column_decimals = table.attrs.get("column_decimals", {})
    for col in table.columns:
        name = str(col)
        if name.endswith(" std") and name[:-4] in table.columns:
            continue
        places = column_decimals.get(name, decimals)
        values = table[col].tolist()
        std_col = f"{name} std"
        if std_col in table.columns:
            cells = []
            for mean, std in zip(values, table[std_col].tolist()):
                text = _cell(mean, places)
                if not _is_missing(mean) and not _is_missing(std):
                    text += f" ± {float(std):.{places}f}"
                cells.append(text)
            out[name] = cells
        elif name.endswith(" diff"):
            out[f"{name[:-5]} Δ"] = ["-" if _is_missing(v) else f"{float(v):+.{places}f}" for v in values]
        elif name.endswith(" paper"):
            out[f"{name[:-6]} (paper)"] = [_cell(v, places) for v in values]
        elif name.endswith(" reference"):
            out[f"{name[:-len(' reference')]} (reference)"] = [_cell(v, places) for v in values]
        else:
            is_flag = any(isinstance(v, (bool, np.bool_)) for v in values)
            out[name] = ["" if is_flag and v is None else _cell(v, places) for v in values]
    return pd.DataFrame(out, index=table.index)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(frame: pd.DataFrame, index: bool | None = None, decimals: int = 1) -> str:
    """A GitHub-Markdown table: header row, separator row, one line per row (no ``tabulate`` needed).
    ``index`` None: shown unless it is the unnamed row counter (``shows_index``)."""
    # hand-written: DataFrame.to_markdown needs the optional ``tabulate`` package for these few lines
    index = shows_index(frame) if index is None else index
    header = ([str(frame.index.name or "")] if index else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for idx, row in zip(frame.index, frame.itertuples(index=False, name=None)):
        cells = ([_cell(idx, decimals)] if index else []) + [_cell(v, decimals) for v in row]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def table_markdown(table: pd.DataFrame, decimals: int = 1, caption: bool = True) -> str:
    """``format_results`` + ``to_markdown``, with the table's caption (attrs) as a line above it."""
    text = to_markdown(format_results(table, decimals=decimals), decimals=decimals)
    note = table.attrs.get("caption") if caption else None
    return f"{note}\n\n{text}" if note else text


def save_table(table: pd.DataFrame, path: str | Path, decimals: int = 1) -> Path:
    """Write ``.csv`` (numbers at full precision) or ``.md`` (rendered); creates parent directories."""
    path = Path(path)
    if path.suffix not in (".csv", ".md"):
        raise ValueError(f"{path}: save_table writes .csv or .md, not {path.suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path)
    else:
        path.write_text(table_markdown(table, decimals=decimals))
    return path
