"""ImageNet-LT, iNaturalist-2018 and Places-LT: images on disk, listed by split files.

The long tail of these sets is defined by their published train split files (OLTR /
classifier-balancing releases), so per-class training counts are counted from the train split file,
checked against ``KNOWN_SPLITS`` (and, for ImageNet-LT, against the shipped per-class counts JSON) before
anything trains: a different list would silently change the shot groups and the ALA class term.

Expected layout (``root`` holds the images; split-file paths are relative to it)::

    ImageNet-LT   root/train/n01440764/n01440764_10026.JPEG ...   (ILSVRC-2012 train images)
                  root/val/n01440764/ILSVRC2012_val_00000293.JPEG  (ILSVRC-2012 val, class subfolders)
                  root/ImageNet_LT_train.txt, root/ImageNet_LT_test.txt
    iNat-2018     root/train_val2018/<kingdom>/<category id>/<hash>.jpg
                  root/iNaturalist18_train.txt, root/iNaturalist18_val.txt
    Places-LT     root/<paths as listed>, root/Places_LT_train.txt, root/Places_LT_test.txt

Split files are looked up in ``split_dir`` when given, else in ``root`` and then in the repository's
``data/splits`` (which ships the ImageNet-LT val/test and iNaturalist-2018 val files).

Transforms (docs/decisions.md, decision 4, the published recipe): training RandomResizedCrop(224) + horizontal
flip, evaluation Resize(256) + CenterCrop(224), both ToTensor + ImageNet mean/std normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image
from torch.utils.data import Dataset

from .containers import Augment, LongTailData
from .splits import check_labels, class_counts, read_split_entries
from .verify import KNOWN_SPLITS, check_counts, shipped_splits_dir, verify_split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP = 224
RESIZE = 256


def train_transform() -> Callable:
    """RandomResizedCrop(224) + flip + ToTensor + Normalize(ImageNet): the published training transform."""
    from torchvision import transforms  # here, not at the top: importing torchvision takes seconds

    return transforms.Compose([
        transforms.RandomResizedCrop(CROP), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def eval_transform() -> Callable:
    """Resize(256) + CenterCrop(224) + ToTensor + Normalize(ImageNet): the published evaluation transform."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(RESIZE), transforms.CenterCrop(CROP), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class SplitFileDataset(Dataset):
    """Images listed in a split file, opened with PIL: ``dataset[i] -> (transform(image), label)``.

    Labels are checked against ``num_classes`` when the dataset is built (ValueError naming file and
    line); a missing image raises FileNotFoundError naming the image path and the split file's line.
    """

    def __init__(self, image_root: str | Path, split_file: str | Path, num_classes: int,
                 transform: Callable | None = None):
        self.image_root = Path(image_root)
        self.split_file = Path(split_file)
        self.num_classes = num_classes
        self.transform = transform
        self.paths, self.labels, self.line_numbers = read_split_entries(self.split_file)
        check_labels(self.labels, num_classes, self.split_file, self.line_numbers)

    def __len__(self) -> int:
        return len(self.paths)

    def image_path(self, i: int) -> Path:
        return self.image_root / self.paths[i]

    def check_image(self, i: int) -> None:
        """Raise FileNotFoundError naming the image, split file and line when image ``i`` is missing."""
        if not self.image_path(i).is_file():
            raise FileNotFoundError(f"image {self.image_path(i)} not found (listed at "
                                    f"{self.split_file}:{self.line_numbers[i]}; paths are relative to "
                                    f"the image root {self.image_root})")

    def __getitem__(self, i: int):
        try:
            with Image.open(self.image_path(i)) as img:
                image = img.convert("RGB")
        except FileNotFoundError:
            self.check_image(i)
            raise
        return (self.transform(image) if self.transform is not None else image), self.labels[i]


@dataclass(frozen=True)
class FileSetSpec:
    """A split-file dataset: class count, split files, optional counts JSON and where to get it."""

    num_classes: int
    train_file: str
    test_files: dict[str, str]  # test_split name -> split file; the first is the default
    counts_json: str | None
    how_to_get: str


FILE_SETS = {
    "imagenet_lt": FileSetSpec(
        1000, "ImageNet_LT_train.txt", {"test": "ImageNet_LT_test.txt", "val": "ImageNet_LT_val.txt"},
        "ImageNet_LT_train_cls_freq.json",
        "ILSVRC-2012 train and val images from image-net.org (val images sorted into val/<wnid>/ folders) "
        "under root, and ImageNet_LT_train.txt from the classifier-balancing (facebookresearch/"
        "classifier-balancing, data/ImageNet_LT/) or OLTR release in root (or split_dir)"),
    "inat2018": FileSetSpec(
        8142, "iNaturalist18_train.txt", {"val": "iNaturalist18_val.txt"}, None,
        "the iNaturalist-2018 images (train_val2018/, github.com/visipedia/inat_comp/tree/master/2018) "
        "under root, and iNaturalist18_train.txt from classifier-balancing data/iNaturalist18/ in root "
        "(or split_dir)"),
    "places_lt": FileSetSpec(
        365, "Places_LT_train.txt", {"test": "Places_LT_test.txt", "val": "Places_LT_val.txt"}, None,
        "the Places-365 images (places2.csail.mit.edu) under root, and Places_LT_train.txt / "
        "Places_LT_test.txt from the OLTR release (zhmiao/OpenLongTailRecognition-OLTR) in root "
        "(or split_dir)"),
}


def find_split_file(file_name: str, search: list[Path], name: str, how_to_get: str) -> Path:
    """First ``search`` folder holding ``file_name``; FileNotFoundError naming where it looked."""
    for folder in search:
        if (folder / file_name).is_file():
            return folder / file_name
    raise FileNotFoundError(f"{name}: split file {file_name} not found in {[str(f) for f in search]}; "
                            f"needed: {how_to_get}")


def locate_split_files(name: str, root: str | Path | None, split_dir: str | Path | None = None,
                       test_split: str | None = None) -> tuple[Path, Path, Path]:
    """``(image root, train split file, test split file)`` of split-file dataset ``name`` (the files
    ``load_file_dataset`` reads, and ``fingerprint.data_source`` hashes).

    FileNotFoundError when the root or a split file is missing, saying where to get them; ValueError for
    an unknown ``test_split``.
    """
    spec = FILE_SETS[name]
    if root is None or not Path(root).expanduser().is_dir():
        where = "no root given" if root is None else f"root {root} does not exist"
        raise FileNotFoundError(f"{name}: {where}. Download {spec.how_to_get}, then call "
                                f"load_dataset({name!r}, root=<that folder>)")
    root = Path(root).expanduser()
    search = [Path(split_dir).expanduser()] if split_dir is not None else [root, shipped_splits_dir()]
    test_split = test_split or next(iter(spec.test_files))
    if test_split not in spec.test_files:
        raise ValueError(f"{name}: unknown test_split {test_split!r}; valid: {sorted(spec.test_files)}")
    return (root, find_split_file(spec.train_file, search, name, spec.how_to_get),
            find_split_file(spec.test_files[test_split], search, name, spec.how_to_get))


def load_file_dataset(name: str, root: str | Path | None, many: int = 100, few: int = 20,
                      split_dir: str | Path | None = None, test_split: str | None = None,
                      verify: bool = True) -> LongTailData:
    """A split-file dataset as a "files" LongTailData (layout in the module docstring).

    ``test_split`` picks the evaluation list ("test" for ImageNet-LT / Places-LT, "val" for iNat by
    default). With ``verify`` the split files with a known name are checked by ``verify_split`` and the
    ImageNet-LT train counts against the shipped counts JSON; disagreements raise ValueError.
    """
    spec = FILE_SETS[name]
    root, train_file, test_file = locate_split_files(name, root, split_dir, test_split)
    train = SplitFileDataset(root, train_file, spec.num_classes, train_transform())
    test = SplitFileDataset(root, test_file, spec.num_classes, eval_transform())
    counts = class_counts(train.labels, spec.num_classes)
    reports = {}
    if verify:
        for split_file in (train_file, test_file):
            if split_file.name in KNOWN_SPLITS:
                reports[split_file.name] = verify_split(split_file)
        if spec.counts_json is not None and (shipped_splits_dir() / spec.counts_json).is_file():
            check_counts(counts, shipped_splits_dir() / spec.counts_json, source=str(train_file))
    for dataset in (train, test):  # fail now, not hours into a run, when the images are elsewhere
        if len(dataset):
            dataset.check_image(0)

    class_names = [""] * spec.num_classes  # the folder holding each class's first training image
    for rel_path, label in zip(train.paths, train.labels):
        class_names[label] = class_names[label] or Path(rel_path).parent.name
    return LongTailData(
        name=name, num_classes=spec.num_classes, class_names=[n or str(c) for c, n in enumerate(class_names)],
        train_counts=counts, train=train, test=test, kind="files", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment=Augment(crop=CROP, pad=0, flip=True, random_resized=True), many=many, few=few,
        info={"source": str(root), "train_split": str(train_file), "test_split": str(test_file),
              "verified": reports})
