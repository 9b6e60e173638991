"""lt_paper.data: long-tail sizes, shot groups, split files, verifier, digits_lt and the device loaders.

Expected values come from outside the implementation: published CIFAR-LT sizes, the ImageNet-LT shot
group files shipped with the data, LDAM-DRW's literal sampling code, sklearn's digits, and per-sample
reference crops.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_paper.data import (KNOWN_SPLITS, ArrayDataset, Augment, LongTailData, check_counts, load_dataset,
                           long_tail_indices, lt_counts, make_loaders, read_split, shot_groups, verify_split)
from lt_paper.data.augment import crop_flip
from lt_paper.data.sharding import global_batch_sizes
from lt_paper.data.verify import KNOWN_ARCHIVES_SHA256, SHIPPED_FILES_SHA256, sha256_file
from ldam_reference import ldam_pick

REPO = Path(__file__).resolve().parents[1]
SPLITS = REPO / "data" / "splits"


# ----------------------------------------------------------------------------------------- lt_counts
# (sum, first, last) of the CIFAR-LT training sets as reported by LDAM-DRW and later papers.
PUBLISHED_SIZES = {
    (5000, 10, 10): (20431, 5000, 500), (5000, 10, 50): (13996, 5000, 100),
    (5000, 10, 100): (12406, 5000, 50), (5000, 10, 200): (11203, 5000, 25),
    (500, 100, 10): (19573, 500, 50), (500, 100, 50): (12608, 500, 10),
    (500, 100, 100): (10847, 500, 5), (500, 100, 200): (9502, 500, 2),
}


@pytest.mark.parametrize("n_max,classes,imbalance", sorted(PUBLISHED_SIZES))
def test_lt_counts_published_sizes(n_max, classes, imbalance):
    counts = lt_counts(n_max, classes, imbalance)
    total, first, last = PUBLISHED_SIZES[(n_max, classes, imbalance)]
    assert len(counts) == classes
    assert (sum(counts), counts[0], counts[-1]) == (total, first, last)
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_lt_counts_cifar10_if100_profile():
    # LDAM-DRW's CIFAR-10-LT (IF 100) class sizes
    assert lt_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_lt_counts_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        lt_counts(10, 1, 10)
    with pytest.raises(ValueError, match="imbalance"):
        lt_counts(10, 10, 0.5)


# --------------------------------------------------------------------------------------- shot_groups
def _group_file_labels(name: str) -> set[int]:
    return {int(line.split()[0]) for line in (SPLITS / name).read_text().splitlines() if line.strip()}


def test_shot_groups_imagenet_lt_match_published_group_files():
    counts = json.loads((SPLITS / "ImageNet_LT_train_cls_freq.json").read_text())
    groups = shot_groups(counts)
    assert [int(groups[k].sum()) for k in ("many", "medium", "few")] == [385, 479, 136]
    assert set(np.flatnonzero(groups["many"])) == _group_file_labels("imagenet_lt_many_train.txt")
    assert set(np.flatnonzero(groups["medium"])) == _group_file_labels("imagenet_lt_median_train.txt")
    assert set(np.flatnonzero(groups["few"])) == _group_file_labels("imagenet_lt_few_train.txt")


def test_shot_groups_few_inclusive_moves_the_n20_classes():
    counts = json.loads((SPLITS / "ImageNet_LT_train_cls_freq.json").read_text())
    exactly_20 = {c for c, n in enumerate(counts) if n == 20}
    assert len(exactly_20) == 10  # ImageNet-LT has 10 classes with exactly 20 training images
    groups = shot_groups(counts, few_inclusive=True)
    assert [int(groups[k].sum()) for k in ("many", "medium", "few")] == [385, 469, 146]
    assert set(np.flatnonzero(groups["few"])) == _group_file_labels("imagenet_lt_few_train.txt") | exactly_20


def test_shot_groups_boundaries_partition():
    groups = shot_groups([101, 100, 20, 19, 0])
    assert groups["many"].tolist() == [True, False, False, False, False]
    assert groups["medium"].tolist() == [False, True, True, False, False]
    assert groups["few"].tolist() == [False, False, False, True, True]
    inclusive = shot_groups([101, 100, 20, 19], few_inclusive=True)
    assert inclusive["few"].tolist() == [False, False, True, True]
    assert inclusive["medium"].tolist() == [False, True, False, False]


# ------------------------------------------------------------------------------------ LDAM sampling


def test_long_tail_indices_equal_ldam_drw_code():
    targets = np.random.default_rng(5).permutation(np.repeat(np.arange(10), 300))
    counts = lt_counts(300, 10, 100)
    before = np.random.get_state()[1].copy()
    ours = long_tail_indices(targets, counts, seed=0)
    assert np.array_equal(np.random.get_state()[1], before)  # global RNG untouched
    assert np.array_equal(ours, ldam_pick(targets, counts))
    assert np.bincount(targets[ours]).tolist() == counts


def test_long_tail_indices_rejects_empty_class():
    with pytest.raises(ValueError, match="class 3 would keep 0"):  # int(5 * 200 ** (-3 / 9)) == 0
        long_tail_indices(np.repeat(np.arange(10), 5), lt_counts(5, 10, 200))


# ---------------------------------------------------------------------------------------- read_split
def test_read_split_round_trip(tmp_path):
    rows = [("train/a/1.jpg", 0), ("train/b/2.JPEG", 7), ("x/y z.jpg".replace(" ", "_"), 3)]
    path = tmp_path / "split.txt"
    path.write_text("".join(f"{p} {y}\n" for p, y in rows) + "\n")  # trailing blank line is ignored
    paths, labels = read_split(path)
    assert paths == [p for p, _ in rows]
    assert labels == [y for _, y in rows]


@pytest.mark.parametrize("bad_line,message", [
    ("train/c/3.jpg", "missing label"),
    ("train/c/3.jpg three", "'three' is not an integer"),
    ("train/c/3.jpg 1 extra", "expected 2 fields"),
    ("train/c/3.jpg -2", "negative label"),
])
def test_read_split_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"train/a/1.jpg 0\n\ntrain/b/2.jpg 1\n{bad_line}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:4: ") + ".*" + re.escape(message)):
        read_split(path)


def test_read_split_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_split(tmp_path / "nope.txt")


# ------------------------------------------------------------------------------------------ verifier
@pytest.mark.parametrize("name,lines,classes", [
    ("ImageNet_LT_val.txt", 20_000, 1000), ("ImageNet_LT_test.txt", 50_000, 1000),
    ("iNaturalist18_val.txt", 24_426, 8142)])
def test_verify_split_shipped_files(name, lines, classes):
    report = verify_split(SPLITS / name)
    assert (report["lines"], report["num_classes"], report["sha256_checked"]) == (lines, classes, True)


def test_verify_split_corrupted_copy_names_what_disagrees(tmp_path):
    lines = (SPLITS / "ImageNet_LT_val.txt").read_text().splitlines(keepends=True)
    edited = tmp_path / "ImageNet_LT_val.txt"
    edited.write_text("".join(lines[:-1]) + lines[-1].replace(" 999", " 998"))  # one label changed
    with pytest.raises(ValueError, match=rf"{re.escape(str(edited))}.*sha256 [0-9a-f]{{64}} != expected") as err:
        verify_split(edited)
    assert "line count" not in str(err.value)
    shorter = tmp_path / "short" / "ImageNet_LT_val.txt"
    shorter.parent.mkdir()
    shorter.write_text("".join(lines[:-20]))  # the last class (20 lines) removed
    with pytest.raises(ValueError, match=r"line count 19980 != expected 20000.*classes: 999 distinct.*sha256"):
        verify_split(shorter)


def test_verify_split_unknown_name(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("a.jpg 0\n")
    with pytest.raises(ValueError, match="not a known split file"):
        verify_split(path)


def test_verify_data_cli_checks_split_files_and_other_known_files(tmp_path, capsys):
    from lt_paper.cli import main

    freq = SPLITS / "ImageNet_LT_train_cls_freq.json"  # a known file that is not a split file: sha256 only
    with pytest.raises(SystemExit) as done:
        main(["verify-data", str(SPLITS / "ImageNet_LT_val.txt"), str(freq)])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "ImageNet_LT_val.txt: ok" in out and SHIPPED_FILES_SHA256[freq.name] in out
    edited = tmp_path / freq.name
    edited.write_text(freq.read_text() + " ")
    with pytest.raises(SystemExit) as done:
        main(["verify-data", str(edited)])
    assert done.value.code == 1 and "FAILED" in capsys.readouterr().err


def test_sha256sums_file_matches_table_and_files():
    sums = {}
    for line in (REPO / "data" / "SHA256SUMS").read_text().splitlines():
        sha, rel = line.split("  ")
        sums[rel] = sha
    table = {f"splits/{name}": facts.sha256 for name, facts in KNOWN_SPLITS.items()
             if (SPLITS / name).exists()}
    table.update({f"splits/{name}": sha for name, sha in SHIPPED_FILES_SHA256.items()})
    assert sums == table
    assert sorted(p.name for p in SPLITS.iterdir()) == sorted(Path(rel).name for rel in sums)
    for rel, sha in sums.items():
        assert sha256_file(REPO / "data" / rel) == sha, rel
    readme = (REPO / "data" / "README.md").read_text()
    recorded = [f.sha256 for f in KNOWN_SPLITS.values() if f.sha256]
    for sha in recorded + list(SHIPPED_FILES_SHA256.values()) + list(KNOWN_ARCHIVES_SHA256.values()):
        assert sha in readme


def test_check_counts_against_group_files(tmp_path):
    counts = [0] * 1000  # counts from the shot-group files, a source independent of the JSON
    for name in ("imagenet_lt_many_train.txt", "imagenet_lt_median_train.txt", "imagenet_lt_few_train.txt"):
        for line in (SPLITS / name).read_text().splitlines():
            counts[int(line.split()[0])] = int(line.split()[-1])
    assert sum(counts) == 115_846
    check_counts(counts, SPLITS / "ImageNet_LT_train_cls_freq.json")
    counts[17] += 1
    with pytest.raises(ValueError, match=r"ImageNet_LT_train_cls_freq.json.*class 17: 14 != 13"):
        check_counts(counts, SPLITS / "ImageNet_LT_train_cls_freq.json", source="my split")
    as_dict = tmp_path / "counts.json"
    as_dict.write_text(json.dumps({"0": 3, "1": 2}))
    check_counts([3, 2], as_dict)
    with pytest.raises(ValueError, match="2 classes, but"):
        check_counts([3, 2, 1], as_dict)


# --------------------------------------------------------------------------------------- load_dataset
def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist_lt'.*cifar100_lt.*digits_lt.*places_lt"):
        load_dataset("mnist_lt")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits_lt", imbalance=20)


def test_digits_lt_counts_and_balanced_test(digits):
    from sklearn.datasets import load_digits

    source = load_digits()
    expected_counts = [130, 93, 66, 47, 34, 24, 17, 12, 9, 6]  # int(130 * 20 ** (-i / 9))
    assert digits.kind == "array" and digits.num_classes == 10
    assert digits.train_counts == expected_counts
    assert torch.bincount(digits.train.labels, minlength=10).tolist() == expected_counts
    assert torch.bincount(digits.test.labels, minlength=10).tolist() == [40] * 10
    assert digits.train.images.dtype == torch.uint8 and digits.train.images.shape == (438, 3, 8, 8)
    assert digits.test.images.shape == (400, 3, 8, 8)
    # test = first 40 of each class in dataset order, pixels 0..16 -> 0..255, same on 3 channels
    first40 = np.sort(np.concatenate([np.flatnonzero(source.target == c)[:40] for c in range(10)]))
    expected = np.rint(source.images[first40] * 255 / 16).astype(np.uint8)
    for ch in range(3):
        assert np.array_equal(digits.test.images[:, ch].numpy(), expected)
    assert np.array_equal(digits.test.labels.numpy(), source.target[first40])
    # train = LDAM's rule on the remaining images
    pool = np.setdiff1d(np.arange(len(source.target)), first40)
    picked = pool[ldam_pick(source.target[pool], expected_counts)]
    assert np.array_equal(digits.train.images[:, 0].numpy(), np.rint(source.images[picked] * 255 / 16))
    assert digits.augment == Augment(crop=8, pad=1, flip=False)
    pixels = digits.train.images.double() / 255
    assert np.allclose(digits.mean, [pixels.mean().item()] * 3)
    assert np.allclose(digits.std, [pixels.std(unbiased=False).item()] * 3)
    groups = digits.groups()
    assert [int(groups[k].sum()) for k in ("many", "medium", "few")] == [1, 5, 4]


# ---------------------------------------------------------------------------------------- loaders
def _denormalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return torch.round((x * s + m) * 255).to(torch.uint8)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader]


def test_train_loader_ranks_slice_the_global_batch_and_keep_the_last_partial_one(digits):
    """438 digits at batch 64: 6 full batches and the partial 7th of 54 (LDAM-DRW keeps it), halved
    for 2 ranks; every image once per epoch."""
    single, _ = make_loaders(digits, batch_size=64, device="cpu", seed=3)
    ranks = [make_loaders(digits, batch_size=64, device="cpu", rank=r, world_size=2, seed=3)[0] for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 7
    assert single.images_per_epoch == ranks[0].images_per_epoch == 438
    for epoch in (0, 1):
        full = _epoch(single, epoch)
        parts = [_epoch(loader, epoch) for loader in ranks]
        assert [len(y) for _, y, _ in full] == [64] * 6 + [54]
        assert [len(y) for _, y, _ in parts[1]] == [32] * 6 + [27]
        for b, (x, y, i) in enumerate(full):
            assert x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == i.dtype == torch.int64
            assert torch.equal(torch.cat([parts[0][b][2], parts[1][b][2]]), i)
            assert torch.equal(torch.cat([parts[0][b][0], parts[1][b][0]]), x)  # same augmentation too
            assert torch.equal(y, digits.train.labels[i])
        seen = torch.cat([i for _, _, i in full])
        assert sorted(seen.tolist()) == list(range(438))  # every image once


@pytest.mark.parametrize("n, world_size, drop_last, sizes", [
    (438, 1, True, [64] * 6),  # drop_last: the partial batch is left out
    (438, 4, False, [64] * 6 + [52]),  # 54 cut to a multiple of 4 ranks: 13 images each
    (385, 1, False, [64] * 6),  # a last batch of 1 image is left out (BatchNorm on one image)
    (387, 2, False, [64] * 6),  # 3 images on 2 ranks: 1 each, left out
    (388, 2, False, [64] * 6 + [4]),  # 2 each: kept
    (50, 1, False, [50]),  # smaller than one batch: one partial batch
])
def test_the_last_partial_batch_is_kept_in_equal_slices_of_two_or_more(n, world_size, drop_last, sizes):
    assert global_batch_sizes(n, 64, world_size, drop_last) == sizes


def test_a_training_set_without_a_batch_is_an_error():
    with pytest.raises(ValueError, match="training set of 3 images gives no training batch"):
        global_batch_sizes(3, 64, world_size=2)


def test_train_loader_epoch_is_pure_function_of_seed_and_epoch(digits):
    a, _ = make_loaders(digits, batch_size=64, device="cpu", seed=0)
    b, _ = make_loaders(digits, batch_size=64, device="cpu", seed=0)
    e2_first = _epoch(a, 2)
    _epoch(b, 0)  # b has run another epoch before: must not matter
    e2_again = _epoch(b, 2)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[2], q[2]) for p, q in zip(e2_first, e2_again))
    e3 = _epoch(a, 3)
    assert not torch.equal(e2_first[0][2], e3[0][2])
    other_seed, _ = make_loaders(digits, batch_size=64, device="cpu", seed=1)
    assert not torch.equal(_epoch(other_seed, 2)[0][2], e2_first[0][2])


def test_batch_size_must_divide_by_world_size(digits):
    with pytest.raises(ValueError, match="multiple of world_size 3"):
        make_loaders(digits, batch_size=64, device="cpu", world_size=3)


def _window_matches(out: torch.Tensor, image: torch.Tensor, pad: int) -> set[tuple[int, int, bool]]:
    """All (row, col, flipped) placements whose window of the zero-padded image equals ``out``."""
    c, h, w = image.shape
    crop = out.shape[-1]
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad:pad + h, pad:pad + w] = image
    found = set()
    for r in range(h + 2 * pad - crop + 1):
        for col in range(w + 2 * pad - crop + 1):
            window = padded[:, r:r + crop, col:col + crop]
            if torch.equal(window, out):
                found.add((r, col, False))
            if torch.equal(window.flip(-1), out):
                found.add((r, col, True))
    return found


def _random_array_data(augment: Augment, n=96, size=6) -> LongTailData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)  # no zeros
    labels = torch.arange(n) % 4
    ds = ArrayDataset(images, labels)
    return LongTailData(name="toy", num_classes=4, class_names=list("abcd"), train_counts=[n // 4] * 4,
                        train=ds, test=ds, kind="array", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                        augment=augment)


def test_train_loader_crop_is_window_of_padded_image_and_flips():
    data = _random_array_data(Augment(crop=6, pad=2, flip=True))
    loader, _ = make_loaders(data, batch_size=32, device="cpu", seed=7)
    flipped = offsets = 0
    for x, y, idx in loader:
        assert x.shape == (32, 3, 6, 6)
        raw = _denormalise(x, data.mean, data.std)
        for out, i in zip(raw, idx):
            matches = _window_matches(out, data.train.images[i], pad=2)
            assert len(matches) == 1, "each output is exactly one window (random pixels, no zeros)"
            r, c, f = matches.pop()
            flipped += f
            offsets += (r, c) != (2, 2)
    assert 20 < flipped < 76 and offsets > 60  # both flips and many different offsets occur


def test_crop_flip_matches_per_sample_reference():
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (9, 3, 5, 7), generator=gen, dtype=torch.uint8)
    offsets = torch.stack([torch.randint(0, 5, (9,), generator=gen), torch.randint(0, 5, (9,), generator=gen)], 1)
    flips = torch.rand(9, generator=gen) < 0.5
    out = crop_flip(images, offsets, flips, pad=2, crop=4)
    for k in range(9):
        padded = torch.nn.functional.pad(images[k], (2, 2, 2, 2))
        ref = padded[:, offsets[k, 0]:offsets[k, 0] + 4, offsets[k, 1]:offsets[k, 1] + 4]
        assert torch.equal(out[k], ref.flip(-1) if flips[k] else ref)


def test_digits_loader_never_flips(digits):
    loader, _ = make_loaders(digits, batch_size=128, device="cpu")
    for x, _, idx in loader:
        raw = _denormalise(x, digits.mean, digits.std)
        for out, i in zip(raw[:40], idx[:40]):
            assert any(not f for _, _, f in _window_matches(out, digits.train.images[i], pad=1))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_test_loader_shards_cover_test_set_once(digits, world_size):
    indices, sizes = [], []
    for rank in range(world_size):
        _, test = make_loaders(digits, batch_size=60, device="cpu", rank=rank, world_size=world_size,
                               eval_batch_size=64)
        shard = []
        for x, y, i in test:
            assert torch.equal(y, digits.test.labels[i])
            assert torch.equal(_denormalise(x, digits.mean, digits.std), digits.test.images[i])  # no augment
            shard.append(i)
        shard = torch.cat(shard)
        assert len(test) == -(-len(shard) // 64)
        assert torch.equal(shard, torch.arange(shard[0], shard[0] + len(shard)))  # contiguous, in order
        indices.append(shard)
        sizes.append(len(shard))
    assert torch.equal(torch.cat(indices), torch.arange(400))
    assert max(sizes) - min(sizes) <= 1
