"""``load_dataset(name, ...)``: the one entry point from a dataset name to a ``LongTailData``.

A plain dict maps names to ``DatasetEntry`` (loader, classes, image size; no reflection from strings). Default roots: CIFAR looks in
``$LT_PAPER_DATA`` or the repository's ``data/downloads`` (git-ignored) when ``root`` is None; the
split-file sets need an explicit ``root`` (their images are tens of GB and live wherever the user put them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from .cifar import CIFAR10_CLASSES, load_cifar_lt
from .containers import LongTailData
from .digits import load_digits_lt
from .file_datasets import load_file_dataset
from .longtail import OLTR_SHOT_RULE


def default_data_root() -> Path:
    """``$LT_PAPER_DATA`` if set, else the repository's ``data/downloads``."""
    env = os.environ.get("LT_PAPER_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "downloads"


def _digits(root, imbalance, download, many, few, **_options) -> LongTailData:
    return load_digits_lt(imbalance=imbalance, many=many, few=few)


def _cifar(name: str) -> Callable[..., LongTailData]:
    def load(root, imbalance, download, many, few, cache_dir=None, allow_incomplete=False,
             **_options) -> LongTailData:
        return load_cifar_lt(name, root if root is not None else default_data_root(), imbalance=imbalance,
                             download=download, many=many, few=few, cache_dir=cache_dir,
                             allow_incomplete=allow_incomplete)
    return load


def _files(name: str) -> Callable[..., LongTailData]:
    def load(root, imbalance, download, many, few, split_dir=None, test_split=None, verify=True,
             **_options) -> LongTailData:
        return load_file_dataset(name, root, many=many, few=few, split_dir=split_dir,
                                 test_split=test_split, verify=verify)
    return load


class DatasetEntry(NamedTuple):
    """One registered dataset: its loader, and what is known without loading it (Figure 3's shapes)."""

    load: Callable[..., LongTailData]
    num_classes: int
    image_size: int  # side of the square images the models see (after cropping)
    class_names: tuple[str, ...] | None = None  # fixed by the dataset itself; None: read from the data


# The one table of datasets.
DATASETS: dict[str, DatasetEntry] = {
    "digits_lt": DatasetEntry(_digits, 10, 8, tuple(str(c) for c in range(10))),
    "cifar10_lt": DatasetEntry(_cifar("cifar10_lt"), 10, 32, CIFAR10_CLASSES),
    "cifar100_lt": DatasetEntry(_cifar("cifar100_lt"), 100, 32),
    "imagenet_lt": DatasetEntry(_files("imagenet_lt"), 1000, 224),
    "inat2018": DatasetEntry(_files("inat2018"), 8142, 224),
    "places_lt": DatasetEntry(_files("places_lt"), 365, 224),
}


def known_class_names(name: str) -> list[str] | None:
    """The class names of dataset ``name`` where the dataset fixes them (digits, CIFAR-10), without
    loading any data: figures drawn from published runs name their classes on a machine without the
    images. None where the names come with the data (CIFAR-100's, ImageNet-LT's folders)."""
    entry = DATASETS.get(name)
    return list(entry.class_names) if entry is not None and entry.class_names else None


def load_dataset(name: str, root: str | Path | None = None, imbalance: float = 100, download: bool = False,
                 many: int = OLTR_SHOT_RULE["many"], few: int = OLTR_SHOT_RULE["few"], *,
                 cache_dir: str | Path | None = None, split_dir: str | Path | None = None,
                 test_split: str | None = None, verify: bool = True,
                 allow_incomplete: bool = False) -> LongTailData:
    """Load a long-tailed dataset by name.

    name: "digits_lt", "cifar10_lt", "cifar100_lt" (``imbalance`` = n_max / n_min, ``root`` a CIFAR source,
    see ``cifar.py``), "imagenet_lt", "inat2018", "places_lt" (``root`` = the image folder; the split
    files define the long tail, so ``imbalance`` and ``download`` are ignored). ``many``/``few``: shot
    thresholds (docs/decisions.md, decision 2). Keyword-only extras: ``cache_dir`` (decoded CIFAR JPEGs),
    ``split_dir`` (where the split files are), ``test_split`` ("test" or "val"), ``verify`` (check split
    files against the known checksums and counts), ``allow_incomplete`` (accept a CIFAR source smaller
    than the real set: a test tree; config key ``allow_incomplete_data``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    return DATASETS[name].load(root, imbalance, download, many, few, cache_dir=cache_dir,
                               split_dir=split_dir, test_split=test_split, verify=verify,
                               allow_incomplete=allow_incomplete)
