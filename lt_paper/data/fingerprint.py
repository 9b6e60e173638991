"""What data a run trains on: a fingerprint of the data source, part of the run's identity.

A config names its data by ``dataset`` and ``data_root``, but a path says where the data is, not what it
is: the same path may hold another tarball tomorrow, and a run cached under the old one would be served
for the new one. So the fingerprint of the source itself enters the run hash (config field
``data_fingerprint``, filled by the trainers with ``train.identity.with_data_fingerprint`` before
hashing), and ``metrics.json`` records it as ``data_source``. Per source:

- a tarball: its size and the sha256 of its bytes;
- an unpacked image folder: the sha256 of every image, with its relative path (``content_hash.py`` says
  when these are computed afresh: always for sources up to 1 GiB, which CIFAR is);
- torchvision's CIFAR files: the md5 sums torchvision checks them against when it opens them, so the
  fingerprint is a constant per set;
- the split-file sets (ImageNet-LT, iNaturalist-2018, Places-LT): sha256 of the train and test split
  files, which list every image and label. The images themselves are not read (hashing 100 GB before
  each run would cost more than many runs): an image replaced under the same name is not seen;
- the embedded digits: "sklearn digits". It is not hashed (``hashed=False``): the digits runs recorded
  before the fingerprint existed keep their hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

from .cifar import CIFAR_SPECS, image_folder_files, locate_cifar_source, torchvision_class
from .content_hash import file_fingerprint, files_fingerprint
from .file_datasets import FILE_SETS, locate_split_files
from .verify import sha256_file


class DataSource(NamedTuple):
    """A data source: its kind, a fingerprint of its content, and whether the run hash includes it."""

    kind: str  # "tarball", "image folder", "torchvision", "split files", "embedded"
    fingerprint: str
    hashed: bool = True

    @property
    def config_value(self) -> str | None:
        """The value of the config field ``data_fingerprint``: None for sources left out of the hash."""
        return f"{self.kind}: {self.fingerprint}" if self.hashed else None

    def as_record(self) -> dict:
        """What ``metrics.json`` records as ``data_source``."""
        return {"kind": self.kind, "fingerprint": self.fingerprint}


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def data_source(dataset: str, root: str | Path | None, download: bool = False) -> DataSource:
    """The :class:`DataSource` of ``dataset`` at ``root`` (the roots ``load_dataset`` would read).

    Raises FileNotFoundError / ValueError as loading would, naming what is missing.
    """
    if dataset == "digits_lt":
        return DataSource("embedded", "sklearn digits", hashed=False)
    if dataset in CIFAR_SPECS:
        from .registry import default_data_root  # registry imports this module's neighbours

        kind, path = locate_cifar_source(dataset, root if root is not None else default_data_root(), download)
        if kind == "tarball":
            return DataSource(kind, file_fingerprint(path))
        if kind == "image folder":
            return DataSource(kind, files_fingerprint(path, image_folder_files(path)))
        cls = torchvision_class(dataset)
        sums = json.dumps(sorted(cls.train_list + cls.test_list))
        return DataSource(kind, f"{cls.base_folder} md5 list sha256 {_sha256_text(sums)}")
    if dataset in FILE_SETS:
        _, *split_files = locate_split_files(dataset, root)
        return DataSource("split files", "; ".join(f"{f.name} {sha256_file(f)}" for f in split_files))
    raise ValueError(f"unknown dataset {dataset!r}; no data source to fingerprint")
