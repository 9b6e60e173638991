"""lt_paper.data split-file datasets (ImageNet-LT / iNat / Places-LT layout) on a tiny tree of real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lt_paper.data import SplitFileDataset, load_dataset, make_loaders
from lt_paper.data.file_datasets import eval_transform


def _write_tree(root: Path, per_class: list[int], test_per_class: int = 2) -> tuple[Path, Path]:
    """Places-LT-like tree: root/train/<c>/<k>.jpg, root/val/<c>/<k>.jpg and the two split files."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for split, sizes in (("train", per_class), ("val", [test_per_class] * len(per_class))):
        for c, n in enumerate(sizes):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
            for k in range(n):
                rel = f"{split}/class{c}/{k:03d}.jpg"
                pixels = rng.integers(0, 256, (30 + 3 * c, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / rel)
                lines[split].append(f"{rel} {c}\n")
    train = root / "Places_LT_train.txt"
    test = root / "Places_LT_test.txt"
    train.write_text("".join(lines["train"]))
    test.write_text("".join(lines["val"]))
    return train, test


@pytest.fixture
def tree(tmp_path):
    train, test = _write_tree(tmp_path, [5, 3, 2])
    return tmp_path, train, test


def test_split_dataset_reads_images_with_eval_transform(tree):
    root, _, test = tree
    ds = SplitFileDataset(root, test, num_classes=3, transform=eval_transform())
    image, label = ds[3]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 1
    raw = np.asarray(Image.open(root / "val/class1/001.jpg").convert("RGB"), dtype=np.float64) / 255
    # Normalize(ImageNet): mean of channel 0 of the resized centre crop is near the raw image's
    assert abs(image[0].mean().item() * 0.229 + 0.485 - raw[..., 0].mean()) < 0.05


def test_missing_image_names_image_split_file_and_line(tree):
    root, train, _ = tree
    (root / "train/class0/002.jpg").unlink()
    ds = SplitFileDataset(root, train, num_classes=3)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{root / 'train/class0/002.jpg'}") + ".*"
                       + re.escape(f"{train}:3")):
        ds[2]


def test_label_out_of_range_names_file_and_line(tree):
    root, train, _ = tree
    with pytest.raises(ValueError, match=re.escape(f"{train}:6: label 1 out of range for 1 classes")):
        SplitFileDataset(root, train, num_classes=1)


@pytest.mark.parametrize("bad_path, message", [
    ("../../outside.jpg", "has a '..' part and leaves the image root"),
    ("train/../../outside.jpg", "has a '..' part"),
    ("/etc/passwd", "is absolute"),
])
def test_split_paths_cannot_leave_the_image_root(tree, bad_path, message, capsys):
    from lt_paper.cli import main

    root, train, _ = tree
    (root.parent / "outside.jpg").write_bytes((root / "train/class0/000.jpg").read_bytes())
    with open(train, "a") as f:
        f.write(f"{bad_path} 1\n")
    where = re.escape(f"{train}:11: path {bad_path!r} ")
    with pytest.raises(ValueError, match=where + message):
        SplitFileDataset(root, train, num_classes=3)  # never opened by the loader
    with pytest.raises(SystemExit) as done:
        main(["verify-data", str(train)])
    assert done.value.code == 1 and f"{train}:11: path {bad_path!r} " in capsys.readouterr().err


def test_non_utf8_split_file_names_file_and_line(tree):
    root, train, _ = tree
    with open(train, "ab") as f:
        f.write(b"train/class0/\xff\xfe.jpg 0\n")
    with pytest.raises(ValueError, match=re.escape(f"{train}:11: not UTF-8 text")):
        SplitFileDataset(root, train, num_classes=3)


def test_load_places_lt_layout_counts_and_missing_pieces(tree, tmp_path):
    root, _, _ = tree
    data = load_dataset("places_lt", root=root, verify=False)  # a toy tree: not the real split
    assert data.kind == "files" and data.num_classes == 365
    assert data.train_counts[:3] == [5, 3, 2] and sum(data.train_counts) == 10
    assert len(data.test) == 6 and data.class_names[:3] == ["class0", "class1", "class2"]
    assert data.augment.random_resized and data.augment.crop == 224
    assert data.groups()["few"][:3].tolist() == [True, True, True]
    with pytest.raises(ValueError, match=r"Places_LT_train.txt: split file does not match.*line count 10 != "
                                         r"expected 62500; classes: 3 distinct"):
        load_dataset("places_lt", root=root)
    with pytest.raises(FileNotFoundError, match=r"no root given.*Places-365 images.*Places_LT_train.txt"):
        load_dataset("places_lt")
    with pytest.raises(FileNotFoundError, match=r"does not exist.*OLTR"):
        load_dataset("places_lt", root=tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"Places_LT_train.txt not found in"):
        load_dataset("places_lt", root=root, split_dir=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"unknown test_split 'dev'"):
        load_dataset("places_lt", root=root, test_split="dev", verify=False)


def test_the_fingerprint_hashes_the_split_files_the_loader_reads(tree, tmp_path):
    """One lookup of the split files (file_datasets.locate_split_files) for the loader and the run's data
    fingerprint: the same files, and the same errors."""
    import hashlib

    from lt_paper.data.fingerprint import data_source

    root, train, test = tree
    source = data_source("places_lt", root)
    assert source.kind == "split files" and source.fingerprint == "; ".join(
        f"{f.name} {hashlib.sha256(f.read_bytes()).hexdigest()}" for f in (train, test))
    for missing in (None, tmp_path / "absent"):
        with pytest.raises(FileNotFoundError) as loading:
            load_dataset("places_lt", root=missing)
        with pytest.raises(FileNotFoundError) as fingerprinting:
            data_source("places_lt", missing)
        assert str(fingerprinting.value) == str(loading.value)


def test_load_fails_early_when_images_are_elsewhere(tree, tmp_path):
    root, _, _ = tree
    empty = tmp_path / "images_elsewhere"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"train/class0/000.jpg not found.*Places_LT_train.txt:1"):
        load_dataset("places_lt", root=empty, split_dir=root, verify=False)


def test_imagenet_lt_train_split_is_verified(tmp_path):
    _write_tree(tmp_path, [4, 2])
    (tmp_path / "Places_LT_train.txt").rename(tmp_path / "ImageNet_LT_train.txt")
    (tmp_path / "Places_LT_test.txt").rename(tmp_path / "ImageNet_LT_test.txt")
    with pytest.raises(ValueError, match=r"ImageNet_LT_train.txt: split file does not match.*line count 6 "
                                         r"!= expected 115846"):
        load_dataset("imagenet_lt", root=tmp_path)
    data = load_dataset("imagenet_lt", root=tmp_path, verify=False)
    assert data.train_counts[:3] == [4, 2, 0] and len(data.train_counts) == 1000


def _drain(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader]


def test_file_loaders_shard_and_repeat(tree):
    root, _, _ = tree
    data = load_dataset("places_lt", root=root, verify=False)  # a toy tree: not the real split
    train0, test0 = make_loaders(data, batch_size=4, device="cpu", rank=0, world_size=2, num_workers=0)
    train1, test1 = make_loaders(data, batch_size=4, device="cpu", rank=1, world_size=2, num_workers=0)
    single, _ = make_loaders(data, batch_size=4, device="cpu", num_workers=0)
    # 10 images, global batch 4: the 2 left over are a last batch in one process, 1 image per rank
    # (too few for BatchNorm, so left out) on 2 ranks
    assert len(train0) == 2 and len(single) == 3 and single.images_per_epoch == 10
    full = _drain(single, 1)
    halves = [_drain(train0, 1), _drain(train1, 1)]
    assert full[2][0].shape == (2, 3, 224, 224)
    for b, (x, y, i) in enumerate(full[:2]):
        assert x.shape == (4, 3, 224, 224)
        assert torch.equal(torch.cat([halves[0][b][2], halves[1][b][2]]), i)
        assert torch.equal(torch.cat([halves[0][b][0], halves[1][b][0]]), x)  # same augmentation per sample
        assert y.tolist() == [data.train.labels[k] for k in i.tolist()]
    again = _drain(single, 1)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(full, again))
    assert not torch.equal(_drain(single, 2)[0][0], full[0][0])
    with_workers, _ = make_loaders(data, batch_size=4, device="cpu", num_workers=2)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(full, _drain(with_workers, 1)))
    shards = [torch.cat([i for _, _, i in _drain(t, 0)]) for t in (test0, test1)]
    assert torch.equal(torch.cat(shards), torch.arange(6)) and [len(s) for s in shards] == [3, 3]
