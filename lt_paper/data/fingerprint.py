"""What data a run trains on: a cheap fingerprint of the data source, part of the run's identity.

A config names its data by ``dataset`` and ``data_root``, but a path says where the data is, not what it
is: the same path may hold another tarball tomorrow, and a run cached under the old one would be served
for the new one. So the fingerprint of the source itself enters the run hash (config field
``data_fingerprint``, filled by the trainers with ``train.identity.with_data_fingerprint`` before hashing), and ``metrics.json`` records it as
``data_source``. Per source:

- a tarball: its size and sha256 (about 1 s for CIFAR-10's 160 MB; computed once, then cached by
  path, size and mtime);
- an unpacked image folder: sha256 of the sorted listing of relative paths and sizes;
- torchvision's CIFAR files: the md5 sums torchvision checks them against when it opens them, so the
  fingerprint is a constant per set;
- the split-file sets (ImageNet-LT, iNaturalist-2018, Places-LT): sha256 of the train and test split
  files, which list every image and label (the images themselves are not read: hashing 100 GB before
  each run would cost more than many runs);
- the embedded digits: "sklearn digits". It is not hashed (``hashed=False``): the digits runs recorded
  before the fingerprint existed keep their hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

from .cache import cached_json, file_identity
from .cifar import CIFAR_SPECS, image_folder_files, locate_cifar_source, torchvision_class
from .file_datasets import FILE_SETS, find_split_file
from .verify import sha256_file, shipped_splits_dir


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


def tarball_fingerprint(path: Path) -> str:
    """``"<size> bytes, sha256 <hex>"`` of a file; the hash is cached by (path, size, mtime)."""
    size = path.stat().st_size
    sha = cached_json("sha256", file_identity(path), lambda: sha256_file(path))
    return f"{size} bytes, sha256 {sha}"


def folder_fingerprint(root: Path) -> str:
    """sha256 of the sorted ``relative/path size`` listing of an image-folder tree's images."""
    files = image_folder_files(root)
    listing = "\n".join(f"{p.relative_to(root).as_posix()} {p.stat().st_size}" for p in files)
    return f"{len(files)} files, listing sha256 {_sha256_text(listing)}"


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
            return DataSource(kind, tarball_fingerprint(path))
        if kind == "image folder":
            return DataSource(kind, folder_fingerprint(path))
        cls = torchvision_class(dataset)
        sums = json.dumps(sorted(cls.train_list + cls.test_list))
        return DataSource(kind, f"{cls.base_folder} md5 list sha256 {_sha256_text(sums)}")
    if dataset in FILE_SETS:
        spec = FILE_SETS[dataset]
        if root is None or not Path(root).expanduser().is_dir():
            raise FileNotFoundError(f"{dataset}: image root {root} does not exist; needed: {spec.how_to_get}")
        search = [Path(root).expanduser(), shipped_splits_dir()]
        files = [spec.train_file, next(iter(spec.test_files.values()))]
        shas = [f"{name} {sha256_file(find_split_file(name, search, dataset, spec.how_to_get))}"
                for name in files]
        return DataSource("split files", "; ".join(shas))
    raise ValueError(f"unknown dataset {dataset!r}; no data source to fingerprint")
