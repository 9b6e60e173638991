"""CIFAR-10-LT and CIFAR-100-LT at any imbalance factor (docs/decisions.md, decision 3), from three sources.

Sources (``root`` decides which, in this order):

1. a tarball of an image-folder tree (``root`` is the ``.tar``/``.tar.gz`` file, or a folder holding
   ``cifar10-jpeg.tar.gz`` / ``cifar100-jpeg.tar.gz``): members ``[top/]train/<class>/NNNN.jpg`` and
   ``[top/]test/<class>/NNNN.jpg``;
2. the same tree unpacked: ``root/train/<class>/*.jpg``, ``root/test/<class>/*.jpg``;
3. torchvision's CIFAR python files under ``root`` (``cifar-10-batches-py`` / ``cifar-100-python``),
   downloaded there only when ``download=True``.

Class order: the standard CIFAR order. For CIFAR-10 folders named like torchvision's classes we use
that order (airplane ... truck); otherwise the folder names sorted (CIFAR-100's fine labels are
alphabetical, so sorting reproduces them). Within a class, files are ordered by name so that the
long-tailed sampling picks the same files on every machine.

The long tail is then cut from the balanced train set exactly as LDAM-DRW does (``long_tail_indices``:
numpy seed 0, per-class shuffle, keep the first ``n_i``); the test set stays balanced. Decoded JPEG
arrays are cached as ``.npz`` under the source's content hash (``cache.py``, ``content_hash.py``);
torchvision's files are read directly (they are already raw arrays).
"""

from __future__ import annotations

import io
import lzma
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from PIL import Image

from .cache import cached_arrays
from .containers import ArrayDataset, Augment, LongTailData
from .content_hash import file_fingerprint, files_fingerprint
from .longtail import long_tail_indices, lt_counts

# torchvision's CIFAR10.classes and CIFAR100.classes (the fine labels, alphabetical), read from the
# datasets' meta files at run time there; fixed by the datasets. A label is an index into these: an image
# folder's class folders must carry exactly these names (a folder renamed "automobile" -> "car" would
# otherwise sort into another place and silently give its images another label).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")
# Every CIFAR image is 32x32 RGB; the networks, the training crop (32 px) and the published numbers
# assume it. Grayscale or palette files are converted to RGB when decoded; other sizes are refused.
IMAGE_SHAPE = (32, 32, 3)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "test")


# LDAM-DRW's cifar_train.py normalises CIFAR-10 and CIFAR-100 alike with CIFAR-10's channel mean and
# std (docs/decisions.md, decision 3); CIFAR-100's own, (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762), differ
# by up to 0.06 and are not used.
LDAM_DRW_MEAN = (0.4914, 0.4822, 0.4465)
LDAM_DRW_STD = (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class CifarSpec:
    """What distinguishes CIFAR-10 from CIFAR-100 here; both normalise with ``LDAM_DRW_MEAN`` / ``_STD``."""

    num_classes: int
    n_max: int  # training images per class in the balanced set
    n_test: int  # test images per class
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    torchvision_folder: str
    tarball_name: str
    classes: tuple[str, ...]  # the class names, in label order


CIFAR_SPECS = {
    "cifar10_lt": CifarSpec(10, 5000, 1000, LDAM_DRW_MEAN, LDAM_DRW_STD, "cifar-10-batches-py",
                            "cifar10-jpeg.tar.gz", CIFAR10_CLASSES),
    "cifar100_lt": CifarSpec(100, 500, 100, LDAM_DRW_MEAN, LDAM_DRW_STD, "cifar-100-python",
                             "cifar100-jpeg.tar.gz", CIFAR100_CLASSES),
}


def class_order(folder_names: set[str]) -> list[str]:
    """Standard CIFAR order: torchvision's CIFAR-10 list when the names match it, else sorted."""
    if folder_names == set(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return sorted(folder_names)


def _decode(data: bytes, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of one encoded image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except OSError as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"{where}: cannot decode image: {err}") from None


def _arrays_from_encoded(files: dict[tuple[str, str, str], bytes], origin: str) -> dict[str, np.ndarray]:
    """Decode ``{(split, class, file name): bytes}`` into train/test arrays in CIFAR order.

    Returns ``train_images`` (N, H, W, 3) uint8, ``train_labels`` (N,), ``test_images``, ``test_labels``,
    ``class_names`` (C,) unicode. Order: by class, then by file name within a class.
    """
    train_classes = {c for split, c, _ in files if split == "train"}
    test_classes = {c for split, c, _ in files if split == "test"}
    if not train_classes or not test_classes:
        raise FileNotFoundError(f"{origin}: expected images under train/<class>/ and test/<class>/, found "
                                f"{len(train_classes)} train and {len(test_classes)} test class folders")
    if not test_classes <= train_classes:
        raise ValueError(f"{origin}: test classes without training images: {sorted(test_classes - train_classes)}")
    names = class_order(train_classes)
    label_of = {c: i for i, c in enumerate(names)}
    out: dict[str, np.ndarray] = {"class_names": np.array(names)}
    for split in SPLITS:
        keys = sorted((k for k in files if k[0] == split), key=lambda k: (label_of[k[1]], k[2]))
        images = [_decode(files[k], f"{origin}:{'/'.join(k)}") for k in keys]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ValueError(f"{origin}: {split} images have different sizes {sorted(shapes)}")
        out[f"{split}_images"] = np.stack(images)
        out[f"{split}_labels"] = np.array([label_of[k[1]] for k in keys], dtype=np.int64)
    return out


def _split_member(name: str) -> tuple[str, str, str] | None:
    """``(split, class, file)`` for a tar member ``[top/]split/class/file`` holding an image, else None."""
    parts = Path(name).parts
    if len(parts) >= 3 and parts[-3] in SPLITS and parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return parts[-3], parts[-2], parts[-1]
    return None


def read_tarball(path: Path, cache_dir=None) -> dict[str, np.ndarray]:
    """Arrays of an image-folder tarball (decoded once, then cached under the tarball's content hash)."""

    def build() -> dict[str, np.ndarray]:
        files = {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    key = _split_member(member.name)
                    if key is not None and member.isfile():
                        files[key] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            # a truncated .tar.gz ends in EOFError, random bytes in ReadError: neither names the file
            raise ValueError(f"{path} is a corrupt or truncated archive: {type(err).__name__}: {err}") \
                from None
        return _arrays_from_encoded(files, str(path))

    return cached_arrays("cifar-tar", file_fingerprint(path), build, cache_dir)


def image_folder_files(root: Path) -> list[Path]:
    """The images of an unpacked ``root/{train,test}/<class>/*`` tree, sorted."""
    return sorted(p for split in SPLITS for p in (root / split).glob("*/*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image_folder(root: Path, cache_dir=None) -> dict[str, np.ndarray]:
    """Arrays of an unpacked ``root/{train,test}/<class>/*`` tree (cached under its content hash)."""
    paths = image_folder_files(root)

    def build() -> dict[str, np.ndarray]:
        files = {(p.parent.parent.name, p.parent.name, p.name): p.read_bytes() for p in paths}
        return _arrays_from_encoded(files, str(root))

    return cached_arrays("cifar-folder", files_fingerprint(root, paths), build, cache_dir)


def read_torchvision(root: Path, name: str, download: bool) -> dict[str, np.ndarray]:
    """Arrays of torchvision's CIFAR python files under ``root`` (downloads only when asked)."""
    cls = torchvision_class(name)
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        try:
            ds = cls(str(root), train=split == "train", download=download)
        except RuntimeError as err:  # "Dataset not found or corrupted": torchvision checks its md5 sums
            raise ValueError(f"{root / CIFAR_SPECS[name].torchvision_folder}: {err}") from None
        out[f"{split}_images"] = np.asarray(ds.data, dtype=np.uint8)  # (N, 32, 32, 3)
        out[f"{split}_labels"] = np.asarray(ds.targets, dtype=np.int64)
        out["class_names"] = np.array(ds.classes)
    return out


def torchvision_class(name: str):
    """torchvision's dataset class for ``name`` (it carries the md5 sums of its files)."""
    from torchvision import datasets  # imported here: only this source needs it

    return datasets.CIFAR10 if name == "cifar10_lt" else datasets.CIFAR100


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def locate_cifar_source(name: str, root: str | Path, download: bool = False) -> tuple[str, Path]:
    """Which source ``root`` is: ``("tarball" | "image folder" | "torchvision", path)``.

    A file is taken as a tarball (a corrupt one fails when read, naming itself); the order of the
    module docstring decides between the others. FileNotFoundError lists what was looked for.
    """
    spec = CIFAR_SPECS[name]
    root = Path(root).expanduser()
    if root.is_file():
        if tarfile.is_tarfile(root) or root.name.lower().endswith(ARCHIVE_SUFFIXES):
            return "tarball", root
        raise ValueError(f"{root} is a corrupt or truncated archive (or not an archive): tarfile cannot "
                         f"read it; expected a CIFAR image-folder .tar/.tar.gz")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "image folder", root
    if (root / spec.torchvision_folder).is_dir() or download:
        return "torchvision", root
    if (root / spec.tarball_name).is_file():
        return "tarball", root / spec.tarball_name
    raise FileNotFoundError(
        f"no {name} source at {root}: expected one of (1) an image-folder tarball (the file itself, or "
        f"{root / spec.tarball_name}), (2) {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg, "
        f"(3) torchvision's {root / spec.torchvision_folder} (pass download=True to fetch it there)")


def read_cifar_source(name: str, root: str | Path, download: bool = False, cache_dir=None,
                      allow_incomplete: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """Balanced CIFAR arrays from whichever source ``root`` is, and a short description of that source.

    The per-class split sizes are checked (:func:`check_split_sizes`) unless ``allow_incomplete``.
    """
    kind, path = locate_cifar_source(name, root, download)
    if kind == "tarball":
        arrays = read_tarball(path, cache_dir)
    elif kind == "image folder":
        arrays = read_image_folder(path, cache_dir)
    else:
        arrays = read_torchvision(path, name, download)
        path = path / CIFAR_SPECS[name].torchvision_folder
    check_split_sizes(arrays, name, str(path), allow_incomplete)
    return arrays, f"{kind} {path}"


class TestSplit(NamedTuple):
    """A CIFAR source's test split, its images decoded only when asked for (:func:`read_test_split`)."""

    labels: np.ndarray  # (N,) int64, in the source's order
    class_names: list[str]
    kind: str  # "tarball", "image folder", "torchvision"
    image: Callable[[int], np.ndarray]  # index -> (H, W, 3) uint8


def read_test_split(name: str, root: str | Path) -> TestSplit:
    """The test split of the CIFAR source at ``root``: its labels in the source's order (image trees: by
    class, then file name, as :func:`read_cifar_source` orders them; torchvision's files: their batch
    order) and a decoder of single images. Nothing is cached and the train split is not read: a gallery
    needs a few images, not the 60,000 a run trains on.
    """
    kind, path = locate_cifar_source(name, root)
    if kind == "torchvision":
        try:
            test = torchvision_class(name)(str(path), train=False, download=False)  # checks every file's md5
        except RuntimeError as err:
            raise ValueError(f"{path / CIFAR_SPECS[name].torchvision_folder}: {err}") from None
        return TestSplit(np.asarray(test.targets, dtype=np.int64), list(test.classes), kind,
                         lambda i: np.asarray(test.data[i]))
    if kind == "tarball":
        files = {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    key = _split_member(member.name)
                    if key is not None and key[0] == "test" and member.isfile():
                        files[key] = tar.extractfile(member).read()  # encoded: ~1 KB a CIFAR image
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            raise ValueError(f"{path} is a corrupt or truncated archive: {type(err).__name__}: {err}") from None
        read = files.__getitem__
    else:
        files = {(p.parent.parent.name, p.parent.name, p.name): p for p in image_folder_files(path)
                 if p.parent.parent.name == "test"}
        read = lambda key: files[key].read_bytes()  # noqa: E731
    if not files:
        raise FileNotFoundError(f"{path}: no test/<class>/ images")
    names = class_order({c for _, c, _ in files})
    label_of = {c: i for i, c in enumerate(names)}
    keys = sorted(files, key=lambda k: (label_of[k[1]], k[2]))
    return TestSplit(np.array([label_of[k[1]] for k in keys], dtype=np.int64), names, kind,
                     lambda i: _decode(read(keys[i]), f"{path}:{'/'.join(keys[i])}"))


def check_classes_and_images(arrays: dict[str, np.ndarray], name: str, origin: str) -> None:
    """ValueError unless the source has CIFAR's classes, by CIFAR's names and in its label order, and
    every image is 32x32 RGB (:data:`IMAGE_SHAPE`); the message names the source and what is off."""
    spec = CIFAR_SPECS[name]
    names = [str(c) for c in arrays["class_names"]]
    if len(names) != spec.num_classes:
        raise ValueError(f"{name} expects {spec.num_classes} classes but the source ({origin}) has "
                         f"{len(names)}: {names[:12]}")
    if names != list(spec.classes):
        unknown, missing = sorted(set(names) - set(spec.classes)), sorted(set(spec.classes) - set(names))
        raise ValueError(f"{origin}: class folders {unknown[:6]} are not {name}'s classes (missing: {missing[:6]}); "
                         f"a class is its label, so its folder must carry CIFAR's name (e.g. "
                         f"{', '.join(spec.classes[:3])}, ...)")
    for split in SPLITS:
        shape = arrays[f"{split}_images"].shape[1:]
        if shape != IMAGE_SHAPE:
            raise ValueError(f"{origin}: {split} images are {'x'.join(map(str, shape))} (height x width x "
                             f"channels), expected CIFAR's {'x'.join(map(str, IMAGE_SHAPE))}: another dataset, "
                             f"or images resized")


def check_split_sizes(arrays: dict[str, np.ndarray], name: str, origin: str, allow_incomplete: bool) -> None:
    """ValueError unless the source has CIFAR's classes and image size (:func:`check_classes_and_images`)
    and every class has the real set's train / test size (5,000 / 1,000 for CIFAR-10, 500 / 100 for
    CIFAR-100): a tree left by an interrupted extraction would otherwise train silently on fewer images.
    ``allow_incomplete`` (config key ``allow_incomplete_data``) accepts a smaller tree.
    """
    spec = CIFAR_SPECS[name]
    check_classes_and_images(arrays, name, origin)
    names = list(spec.classes)
    if allow_incomplete:
        return
    for split, per_class in (("train", spec.n_max), ("test", spec.n_test)):
        counts = np.bincount(arrays[f"{split}_labels"], minlength=len(names))  # (C,)
        off = [f"{names[c]} {int(n)}" for c, n in enumerate(counts) if n != per_class]
        if off:
            raise ValueError(
                f"{origin}: incomplete {name} source: {split} split has {int(counts.sum())} images, expected "
                f"{per_class * spec.num_classes} ({per_class} per class); classes off: {', '.join(off[:6])}"
                f"{' ...' if len(off) > 6 else ''} (a smaller tree is accepted only with config key "
                f"'allow_incomplete_data' true)")


def load_cifar_lt(name: str, root: str | Path, imbalance: float = 100, download: bool = False,
                  many: int = 100, few: int = 20, cache_dir=None,
                  allow_incomplete: bool = False) -> LongTailData:
    """CIFAR-10-LT / CIFAR-100-LT (``name`` "cifar10_lt" / "cifar100_lt") as an "array" LongTailData.

    ``n_max`` is 5000 / 500 (the per-class size of the balanced set); a smaller source is refused unless
    ``allow_incomplete`` (a test tree), and then uses its smallest class size instead. Augmentation: crop
    32 with zero padding 4 and flips.
    """
    spec = CIFAR_SPECS[name]
    arrays, source = read_cifar_source(name, root, download, cache_dir, allow_incomplete)
    class_names = [str(c) for c in arrays["class_names"]]  # C of them: checked by read_cifar_source
    train_labels = arrays["train_labels"]
    n_max = min(spec.n_max, int(np.bincount(train_labels, minlength=spec.num_classes).min()))
    counts = lt_counts(n_max, spec.num_classes, imbalance)
    keep = long_tail_indices(train_labels, counts, seed=0)  # (N_lt,)

    def to_dataset(images: np.ndarray, labels: np.ndarray) -> ArrayDataset:
        nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, 3, H, W)
        return ArrayDataset(nchw, torch.from_numpy(labels.astype(np.int64)))

    return LongTailData(
        name=name, num_classes=spec.num_classes, class_names=class_names, train_counts=counts,
        train=to_dataset(arrays["train_images"][keep], train_labels[keep]),
        test=to_dataset(arrays["test_images"], arrays["test_labels"]),
        kind="array", mean=spec.mean, std=spec.std, augment=Augment(crop=32, pad=4, flip=True),
        many=many, few=few,
        info={"source": source, "imbalance": imbalance, "n_max": n_max,
              "sampling": "LDAM-DRW: numpy seed 0, per-class shuffle, keep first n_i (docs/decisions.md, decision 3)"})
