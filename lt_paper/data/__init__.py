"""Long-tailed datasets and loaders: from a dataset name to device batches.

Modules, one concern each:

- ``longtail``: ``lt_counts`` (docs/decisions.md, decision 3), ``shot_groups`` (decision 2), ``long_tail_indices``
  (LDAM-DRW's sampling rule).
- ``containers``: ``Augment``, ``ArrayDataset``, ``LongTailData``.
- ``splits``: ``read_split`` for ``relative/path.jpg label`` files, label checks, class counts.
- ``verify``: ``KNOWN_SPLITS`` (the one table of checksums), ``verify_split``, ``check_counts``.
- ``cache``: the ``.npz`` cache of decoded images; ``content_hash``: the sha256 of a source's bytes,
  which keys that cache and the run's data fingerprint (``fingerprint``).
- ``cifar``: CIFAR-10/100-LT from torchvision files, an image-folder tree or its tarball.
- ``digits``: ``digits_lt`` from scikit-learn (the smoke profile's data, no download).
- ``file_datasets``: ImageNet-LT, iNaturalist-2018, Places-LT from images + split files.
- ``registry``: ``load_dataset(name, ...)``.
- ``sharding``, ``augment``, ``loaders``: ``make_loaders`` (epoch = pure function of (seed, epoch),
  global batch sliced over ranks, on-device augmentation for array data).

Imports: ``files`` (atomic writes of the cache) and the standard library, torch, numpy, PIL; no other
package of ``lt_paper`` (the layers are drawn in docs/design.md).
"""

from .containers import ArrayDataset, Augment, LongTailData
from .file_datasets import SplitFileDataset
from .loaders import make_loaders
from .longtail import (OLTR_SHOT_RULE, SHOT_GROUPS, TABLE2_SHOT_RULE, long_tail_indices, lt_counts,
                       shot_groups)
from .registry import DATASETS, known_class_names, load_dataset
from .splits import class_counts, read_split
from .verify import KNOWN_SPLITS, SplitFacts, check_counts, verify_checksum, verify_split

__all__ = [
    "ArrayDataset", "Augment", "DATASETS", "KNOWN_SPLITS", "LongTailData", "OLTR_SHOT_RULE", "SHOT_GROUPS",
    "SplitFacts", "SplitFileDataset", "TABLE2_SHOT_RULE",
    "check_counts", "class_counts", "known_class_names", "load_dataset", "long_tail_indices", "lt_counts", "make_loaders",
    "read_split", "shot_groups", "verify_checksum", "verify_split",
]
