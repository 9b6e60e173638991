"""The paper's own numbers, as data, in exactly one place.

Every number below is copied by hand from the paper:
Table 1 (ImageNet-LT, ResNet-50 and ResNeXt-50), Table 3 (iNaturalist-2018, ResNet-50), Table 4
(ALA ablation, ImageNet-LT, ResNeXt-50), Table 5 (router ablation, ImageNet-LT, ResNeXt-50), plus the
published CIFAR-LT ResNet-32 numbers of the methods the paper builds on (CE, Focal and LDAM-DRW from
the LDAM-DRW paper, Cao et al. 2019; logit adjustment from Menon et al. 2021; RIDE from Wang et al. 2021).
Top-1 accuracy in percent; ``None`` where the paper prints "-". The bracketed gains of the paper
("52.3 (+1.2)") are not stored: they are differences between rows and are recomputed when needed.

Each row has a stable ``key`` (e.g. ``"ala_moe4"``) that a notebook maps to its own runs; each table
has one or more column blocks called *settings* (a backbone for Tables 1, 3-5, a dataset for the
CIFAR table), each holding the groups ``many``/``medium``/``few``/``all``.

Shot groups: the paper's Table 2 writes few as ``n <= 20``; the published codebases the paper compares
with use ``n < 20`` (both rules: ``lt_paper.data.longtail``, docs/decisions.md, decision 2). The rule used by a
result of ours is recorded in its ``metrics.json`` (``shot_rule``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import pandas as pd

from ..data import SHOT_GROUPS

GROUPS = (*SHOT_GROUPS, "all")
"""Group keys, in table order."""

GROUP_LABELS = MappingProxyType({"many": "Many", "medium": "Medium", "few": "Few", "all": "All"})
"""Column titles for the group keys (the paper's Table 1 abbreviates Medium as "Med")."""

Number = float | None


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table.

    ``numbers[setting][group]`` is the printed top-1 accuracy in percent (``None`` for "-").
    ``flags`` holds the row's descriptive columns (Table 4: which loss components; Table 5: K, style,
    router), keyed by the table's ``flag_columns``.
    """

    key: str
    line: int | None  # "#L" in the paper; None where the table has no line numbers
    method: str  # the method as the paper prints it
    numbers: Mapping[str, Mapping[str, Number]]
    flags: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: rows in the paper's order, one or more column blocks (``settings``)."""

    name: str  # e.g. "table1"
    caption: str
    dataset: str  # lt_paper dataset name ("imagenet_lt", "inat2018", ...), or "" if several
    settings: tuple[str, ...]  # column blocks: backbones or datasets
    rows: tuple[PaperRow, ...]
    flag_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [r.key for r in self.rows]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.name}: duplicate row keys in {keys}")
        for row in self.rows:
            if set(row.numbers) != set(self.settings):
                raise ValueError(f"{self.name} row {row.key!r}: settings {sorted(row.numbers)} "
                                 f"!= table settings {list(self.settings)}")
            for setting, values in row.numbers.items():
                if set(values) != set(GROUPS):
                    raise ValueError(f"{self.name} row {row.key!r} setting {setting!r}: groups "
                                     f"{sorted(values)} != {list(GROUPS)}")
            if set(row.flags) != set(self.flag_columns):
                raise ValueError(f"{self.name} row {row.key!r}: flags {sorted(row.flags)} != "
                                 f"{list(self.flag_columns)}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.rows)

    def row(self, key: str) -> PaperRow:
        """The row with this key; KeyError listing the valid keys otherwise."""
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(f"{self.name}: no row {key!r}; rows are {list(self.keys)}")

    def resolve_setting(self, setting: str | None) -> str:
        """``setting`` checked against the table; None means the only (or the last) column block.

        The last block is the default because the paper's ablations and its headline single-table
        comparisons use the last backbone (ResNeXt-50 in Table 1).
        """
        if setting is None:
            return self.settings[-1]
        if setting not in self.settings:
            raise KeyError(f"{self.name}: no setting {setting!r}; settings are {list(self.settings)}")
        return setting

    def value(self, key: str, group: str, setting: str | None = None) -> Number:
        """One printed number (percent, None for "-")."""
        return self.row(key).numbers[self.resolve_setting(setting)][group]

    def frame(self, setting: str | None = None) -> pd.DataFrame:
        """The table as a DataFrame: index = row key, columns line, method, flags, Many..All (percent)."""
        setting = self.resolve_setting(setting)
        records = []
        for r in self.rows:
            rec = {"line": r.line, "method": r.method, **r.flags}
            rec.update({GROUP_LABELS[g]: r.numbers[setting][g] for g in GROUPS})
            records.append(rec)
        frame = pd.DataFrame.from_records(records, index=pd.Index(self.keys, name="key"))
        for g in GROUPS:  # "-" stays missing (NaN), never 0
            frame[GROUP_LABELS[g]] = frame[GROUP_LABELS[g]].astype(float)
        frame.attrs.update({"paper_table": self.name, "setting": setting})
        return frame


def _groups(many: Number, medium: Number, few: Number, all_: Number) -> dict[str, Number]:
    return {"many": many, "medium": medium, "few": few, "all": all_}


def _row(key: str, line: int | None, method: str, flags: Mapping[str, object] | None = None,
         **numbers: tuple[Number, Number, Number, Number]) -> PaperRow:
    return PaperRow(key=key, line=line, method=method,
                    numbers={s: _groups(*v) for s, v in numbers.items()}, flags=dict(flags or {}))


_ = None  # the paper's "-"

TABLE1 = PaperTable(
    name="table1",
    caption="Top-1 accuracy (%) on the test set of ImageNet-LT (paper Table 1).",
    dataset="imagenet_lt",
    settings=("resnet50", "resnext50"),
    rows=(
        #    key            #L  method                                   resnet50: Many, Med, Few, All        resnext50
        _row("ce", 1, "Cross Entropy (CE)", resnet50=(64.0, 33.8, 5.8, 41.6), resnext50=(65.9, 37.5, 7.7, 44.4)),
        _row("focal", 2, "Focal Loss", resnet50=(_, _, _, _), resnext50=(64.3, 37.1, 8.2, 43.7)),
        _row("eql", 3, "Equalization Loss", resnet50=(_, _, _, 46.0), resnext50=(_, _, _, _)),
        _row("ldam_drw", 4, "LDAM + DRW", resnet50=(61.8, 47.2, 31.4, 50.7), resnext50=(62.9, 47.5, 31.9, 51.3)),
        _row("la", 5, "Logit adjustment loss (tau = 1)", resnet50=(_, _, _, 51.1), resnext50=(_, _, _, _)),
        _row("oltr", 6, "OLTR", resnet50=(_, _, _, _), resnext50=(51.0, 40.8, 20.8, 41.9)),
        _row("lws", 7, "Decouple-LWS", resnet50=(57.1, 45.2, 29.3, 47.4), resnext50=(60.2, 47.2, 30.3, 49.9)),
        _row("tde", 8, "De-confound-TDE", resnet50=(_, _, _, _), resnext50=(62.7, 48.8, 31.6, 51.8)),
        _row("ala", 9, "ALA Loss (single expert)", resnet50=(62.9, 48.9, 33.8, 52.3),
             resnext50=(64.1, 49.1, 34.0, 52.8)),
        _row("ala_distill", 10, "ALA Loss (single expert) + Distill", resnet50=(66.0, 51.4, 34.6, 54.8),
             resnext50=(67.2, 52.0, 35.0, 55.6)),
        _row("ride3", 11, "RIDE (3 experts)", resnet50=(66.2, 51.7, 34.9, 54.4), resnext50=(67.6, 53.5, 35.9, 56.4)),
        _row("ride4", 12, "RIDE (4 experts)", resnet50=(66.2, 52.3, 36.5, 55.4), resnext50=(68.2, 53.8, 36.0, 56.8)),
        _row("ala_moe3", 13, "ALA Loss + MoE (3 experts)", resnet50=(66.3, 53.5, 36.4, 56.1),
             resnext50=(68.3, 54.1, 37.9, 57.4)),
        _row("ala_moe4", 14, "ALA Loss + MoE (4 experts)", resnet50=(66.7, 54.1, 37.6, 56.7),
             resnext50=(68.9, 54.8, 38.6, 58.0)),
    ),
)

TABLE3 = PaperTable(
    name="table3",
    caption="Top-1 accuracy (%) of ResNet-50 on the validation set of iNaturalist 2018 (paper Table 3).",
    dataset="inat2018",
    settings=("resnet50",),
    rows=(
        _row("ce", 1, "Cross Entropy (CE)", resnet50=(72.2, 63.0, 57.2, 61.7)),
        _row("cb_focal", 2, "CB-Focal", resnet50=(_, _, _, 61.1)),
        _row("eql", 3, "Equalization Loss", resnet50=(_, _, _, 61.6)),
        _row("ldam_drw", 4, "LDAM + DRW", resnet50=(_, _, _, 68.0)),
        _row("la", 5, "Logit adjustment loss (tau = 1)", resnet50=(_, _, _, 66.4)),
        _row("oltr", 6, "OLTR", resnet50=(59.0, 64.1, 64.9, 63.9)),
        _row("lws", 7, "Decouple-LWS", resnet50=(65.0, 66.3, 65.5, 65.9)),
        _row("ala", 8, "ALA Loss (single expert)", resnet50=(71.3, 70.8, 70.4, 70.7)),
        _row("ala_distill", 9, "ALA Loss (single expert) + Distill", resnet50=(71.7, 73.2, 73.0, 73.0)),
        _row("bbn", 10, "BBN", resnet50=(49.4, 70.8, 65.3, 66.3)),
        _row("ride3", 11, "RIDE (3 experts)", resnet50=(70.2, 72.2, 72.7, 72.2)),
        _row("ride4", 12, "RIDE (4 experts)", resnet50=(70.9, 72.4, 73.1, 72.6)),
        _row("ala_moe3", 13, "ALA Loss + MoE (3 experts)", resnet50=(72.6, 74.1, 74.3, 74.0)),
        _row("ala_moe4", 14, "ALA Loss + MoE (4 experts)", resnet50=(72.8, 74.8, 74.6, 74.5)),
    ),
)

TABLE4_FLAGS = ("Focal", "LDAM", "A_ins", "A_cls")


def _ablation(key: str, line: int, method: str, focal: bool, ldam: bool, ains: bool, acls: bool,
              numbers: tuple[Number, Number, Number, Number]) -> PaperRow:
    flags = dict(zip(TABLE4_FLAGS, (focal, ldam, ains, acls)))
    return _row(key, line, method, flags, resnext50=numbers)


TABLE4 = PaperTable(
    name="table4",
    caption="Ablation of the ALA loss, ImageNet-LT test set, single expert ResNeXt-50 (paper Table 4).",
    dataset="imagenet_lt",
    settings=("resnext50",),
    flag_columns=TABLE4_FLAGS,
    rows=(
        #          key           #L method               Focal  LDAM   A_ins  A_cls  Many  Medium Few   All
        _ablation("ce", 1, "CE", False, False, False, False, (65.9, 37.5, 7.7, 44.4)),
        # #2 prints Table 1 #4's LDAM + DRW numbers: it is LDAM-DRW, and so is our run of it
        _ablation("ldam", 2, "LDAM-DRW", False, True, False, False, (62.9, 47.5, 31.9, 51.3)),
        _ablation("ains", 3, "A_ins", False, False, True, False, (64.7, 47.3, 28.6, 51.5)),
        _ablation("acls", 4, "A_cls", False, False, False, True, (61.4, 47.7, 33.0, 51.0)),
        _ablation("focal_acls", 5, "Focal + A_cls", True, False, False, True, (63.0, 48.6, 27.9, 51.3)),
        _ablation("ldam_ains", 6, "A_ins + LDAM", False, True, True, False, (63.5, 48.4, 31.9, 52.0)),
        _ablation("ala", 7, "ALA (A_ins + A_cls)", False, False, True, True, (64.1, 49.1, 34.0, 52.8)),
    ),
)

TABLE5_FLAGS = ("K", "Style", "Router")


def _router(key: str, k: int, style: str, router: bool,
            numbers: tuple[Number, Number, Number, Number]) -> PaperRow:
    method = f"{'RIDE' if style == 'RIDE*' else 'MoE'} ({k} experts, {'router' if router else 'mean'})"
    return _row(key, None, method, {"K": k, "Style": style, "Router": router}, resnext50=numbers)


TABLE5 = PaperTable(
    name="table5",
    caption=("Ablation of the routing module, ImageNet-LT test set, ResNeXt-50 (paper Table 5; "
             "RIDE* = vanilla RIDE without distillation, MoE = ours; no router = mean of the experts)."),
    dataset="imagenet_lt",
    settings=("resnext50",),
    flag_columns=TABLE5_FLAGS,
    rows=(
        #        key            K  style    router  Many  Medium Few   All
        _router("ride3_mean", 3, "RIDE*", False, (67.3, 52.2, 35.1, 55.7)),
        _router("ride3_router", 3, "RIDE*", True, (67.6, 53.1, 35.5, 56.3)),
        _router("moe3_mean", 3, "MoE", False, (67.9, 53.7, 36.1, 56.8)),
        _router("moe3_router", 3, "MoE", True, (68.3, 54.1, 37.9, 57.4)),
        _router("ride4_mean", 4, "RIDE*", False, (67.3, 53.2, 35.6, 56.2)),
        _router("ride4_router", 4, "RIDE*", True, (68.0, 53.5, 36.3, 56.8)),
        _router("moe4_mean", 4, "MoE", False, (68.6, 54.3, 36.9, 57.5)),
        _router("moe4_router", 4, "MoE", True, (68.9, 54.8, 38.6, 58.0)),
    ),
)

CIFAR_PUBLISHED = PaperTable(
    name="cifar",
    caption=("Published top-1 accuracy (%) on CIFAR-LT (imbalance 100), ResNet-32, 200 epochs, LDAM recipe "
             "(Cao et al. 2019; Menon et al. 2021; Wang et al. 2021); these are All-class numbers only, most picked at the best test epoch."),
    dataset="",
    settings=("cifar10_lt", "cifar100_lt"),
    rows=(
        _row("ce", None, "CE", cifar10_lt=(_, _, _, 70.4), cifar100_lt=(_, _, _, 38.3)),
        _row("focal", None, "Focal", cifar10_lt=(_, _, _, 70.4), cifar100_lt=(_, _, _, 38.4)),
        _row("ldam_drw", None, "LDAM-DRW", cifar10_lt=(_, _, _, 77.0), cifar100_lt=(_, _, _, 42.0)),
        _row("la", None, "Logit adjustment (loss)", cifar10_lt=(_, _, _, 77.9), cifar100_lt=(_, _, _, 44.1)),
        _row("ride3", None, "RIDE, 3 experts", cifar10_lt=(_, _, _, _), cifar100_lt=(_, _, _, 48.0)),
    ),
)

PAPER_TABLES: Mapping[str, PaperTable] = MappingProxyType(
    {t.name: t for t in (TABLE1, TABLE3, TABLE4, TABLE5, CIFAR_PUBLISHED)})
"""All tables by name: "table1", "table3", "table4", "table5", "cifar"."""


def paper_table(name: str) -> PaperTable:
    """The table registered under ``name``; KeyError listing valid names otherwise."""
    try:
        return PAPER_TABLES[name]
    except KeyError:
        raise KeyError(f"no paper table {name!r}; valid names: {list(PAPER_TABLES)}") from None
