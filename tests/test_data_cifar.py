"""lt_paper.data CIFAR-LT sources: image-folder tree, its tarball, the cache, and the real JPEG tarball."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from lt_paper.data import load_dataset, lt_counts, make_loaders
from lt_paper.data.cifar import CIFAR100_CLASSES, read_cifar_source
from lt_paper.data.registry import default_data_root
from ldam_reference import ldam_pick

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# the real CIFAR-10 JPEG tarball where the package looks by default ($LT_PAPER_DATA or data/downloads)
REAL_TARBALL = default_data_root() / "cifar10-jpeg.tar.gz"




@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """10 CIFAR-10 class folders (written in scrambled order) x 12 train / 3 test PNGs of 32x32.

    Every image is constant-coloured with a value encoding (split, class, file number), so loaded
    pixels tell which file they came from.
    """
    root = tmp_path_factory.mktemp("cifar_tree") / "cifar10"
    for split, n in (("train", 12), ("test", 3)):
        for name in sorted(CIFAR10, reverse=True):
            (root / split / name).mkdir(parents=True)
            for k in reversed(range(n)):
                value = (CIFAR10.index(name) * 20 + k + (200 if split == "test" else 0)) % 256
                Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(root / split / name / f"{k:04d}.png")
    return root


def test_image_folder_gives_lt_counts_ldam_selection_and_balanced_test(tree, tmp_path):
    data = load_dataset("cifar10_lt", root=tree, imbalance=4, cache_dir=tmp_path, allow_incomplete=True)
    expected_counts = [12, 10, 8, 7, 6, 5, 4, 4, 3, 3]  # int(12 * 4 ** (-i / 9))
    assert data.train_counts == expected_counts == lt_counts(12, 10, 4)
    assert data.class_names == CIFAR10
    assert torch.bincount(data.train.labels, minlength=10).tolist() == expected_counts
    assert torch.bincount(data.test.labels, minlength=10).tolist() == [3] * 10
    assert data.train.images.shape == (sum(expected_counts), 3, 32, 32) and data.train.images.dtype == torch.uint8
    # which files: the balanced set ordered (class in CIFAR order, file name), then LDAM's rule
    balanced_labels = np.repeat(np.arange(10), 12)
    picked = ldam_pick(balanced_labels, expected_counts)
    expected_values = (balanced_labels[picked] * 20 + picked % 12) % 256
    assert data.train.images[:, :, 0, 0].tolist() == [[v] * 3 for v in expected_values]
    assert data.kind == "array" and data.augment.crop == 32 and data.augment.pad == 4 and data.augment.flip
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2023, 0.1994, 0.2010)


def test_cifar100_is_normalised_with_cifar10_statistics_as_ldam_drw_does(tmp_path):
    """LDAM-DRW's cifar_train.py applies CIFAR-10's Normalize to CIFAR-100 too (docs/decisions.md, decision 3)."""
    root = tmp_path / "cifar100"
    for split in ("train", "test"):
        for c, name in enumerate(CIFAR100_CLASSES):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(np.full((32, 32, 3), 2 * c, np.uint8)).save(root / split / name / "0.png")
    data = load_dataset("cifar100_lt", root=root, imbalance=1, cache_dir=tmp_path, allow_incomplete=True)
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2023, 0.1994, 0.2010)
    _, test = make_loaders(data, batch_size=100, device="cpu")
    x, y, _ = next(iter(test))  # constant images: every pixel of class c is (2c / 255 - mean) / std
    expected = (2 * y.view(-1, 1).double() / 255 - torch.tensor(data.mean)) / torch.tensor(data.std)  # (B, 3)
    assert torch.allclose(x[:, :, 0, 0].double(), expected, atol=1e-5)


def test_tarball_with_top_folder_equals_folder_and_is_cached(tree, tmp_path, monkeypatch):
    tar_path = tmp_path / "tree.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-images")
    cache = tmp_path / "cache"
    monkeypatch.setenv("LT_PAPER_CACHE", str(cache))
    from_tar = load_dataset("cifar10_lt", root=tar_path, imbalance=4, allow_incomplete=True)
    from_folder = load_dataset("cifar10_lt", root=tree, imbalance=4, cache_dir=tmp_path / "other",
                               allow_incomplete=True)
    assert torch.equal(from_tar.train.images, from_folder.train.images)
    assert torch.equal(from_tar.test.labels, from_folder.test.labels)
    assert len(list(cache.glob("cifar-tar-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr("lt_paper.data.cifar._decode", no_decoding)
    again = load_dataset("cifar10_lt", root=tar_path, imbalance=4, allow_incomplete=True)
    assert torch.equal(again.train.images, from_tar.train.images)


def test_wrong_class_count_and_missing_source(tree, tmp_path):
    with pytest.raises(ValueError, match="cifar100_lt expects 100 classes"):
        load_dataset("cifar100_lt", root=tree, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no cifar10_lt source.*cifar10-jpeg.tar.gz.*download=True"):
        load_dataset("cifar10_lt", root=tmp_path / "empty", cache_dir=tmp_path)


def _small_tree(root, side: int = 32, mode: str = "RGB", names=CIFAR10):
    """A CIFAR-10 folder of 2 train / 1 test images per class, ``side`` pixels square, PIL ``mode``."""
    for split, n in (("train", 2), ("test", 1)):
        for c, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                Image.new(mode, (side, side), (c * 20 + k) if mode == "L" else (c * 20 + k, 0, 0)).save(
                    root / split / name / f"{k}.png")
    return root


def test_a_cifar_source_must_be_32_pixel_images_in_cifars_class_folders(tmp_path, capsys):
    """64x64 images once trained with exit code 0 (32-pixel crops in training, 64-pixel images in testing);
    a class folder renamed automobile -> car once moved its images to another label, silently."""
    from lt_paper.cli import main

    large = _small_tree(tmp_path / "large", side=64)
    with pytest.raises(ValueError, match=rf"{large}: train images are 64x64x3 .*expected CIFAR's 32x32x3"):
        load_dataset("cifar10_lt", root=large, cache_dir=tmp_path, allow_incomplete=True, imbalance=1)
    renamed = _small_tree(tmp_path / "renamed", names=[n if n != "automobile" else "car" for n in CIFAR10])
    with pytest.raises(ValueError, match=rf"{renamed}: class folders \['car'\] are not cifar10_lt's classes "
                                         rf"\(missing: \['automobile'\]\)"):
        load_dataset("cifar10_lt", root=renamed, cache_dir=tmp_path, allow_incomplete=True, imbalance=1)
    gray = load_dataset("cifar10_lt", root=_small_tree(tmp_path / "gray", mode="L"), cache_dir=tmp_path,
                        allow_incomplete=True, imbalance=1)  # grayscale is converted to RGB, as before
    assert tuple(gray.train.images.shape[1:]) == (3, 32, 32) and gray.class_names == CIFAR10
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as done:  # what the reviewer ran: refused, and no run folder left
        main(["train", "--preset", "smoke/resnet8/ce", "--runs-dir", str(runs), "--set", "dataset=cifar10_lt",
              "--set", f"data_root={large}", "--set", "allow_incomplete_data=true", "--set", "epochs=1",
              "--set", "imbalance=1", "--set", "progress=false"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1 and "64x64x3" in err, err
    assert not runs.exists() or not list(runs.iterdir())


def test_incomplete_source_is_refused_naming_what_is_missing(tree, tmp_path):
    """A tree left by an interrupted extraction must not train silently on fewer images."""
    message = (r"incomplete cifar10_lt source: train split has 120 images, expected 50000 "
               r"\(5000 per class\); classes off: airplane 12.*allow_incomplete_data")
    with pytest.raises(ValueError, match=message):
        load_dataset("cifar10_lt", root=tree, cache_dir=tmp_path)
    arrays, _ = read_cifar_source("cifar10_lt", tree, cache_dir=tmp_path, allow_incomplete=True)
    assert np.bincount(arrays["train_labels"]).tolist() == [12] * 10


def test_corrupt_or_truncated_archive_is_named(tree, tmp_path):
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-images")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    noise = tmp_path / "noise.tar.gz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    unnamed = tmp_path / "noise.bin"
    unnamed.write_bytes(noise.read_bytes())
    for archive in (truncated, noise, unnamed):
        with pytest.raises(ValueError, match=f"{archive} is a corrupt or truncated archive"):
            load_dataset("cifar10_lt", root=archive, cache_dir=tmp_path / "cache", allow_incomplete=True)
    assert not list((tmp_path / "cache").glob("*.tmp.npz"))


def test_decode_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    """A killed decode of the same cache file leaves a temporary that the next decode removes; the other
    files of a shared cache folder (another key's temporary, another program's ``.*.tmp``) are not its
    to touch, whatever their pid."""
    import os
    import subprocess

    from lt_paper.data.cache import _key_digest, cached_arrays

    dead = subprocess.Popen(["true"])
    dead.wait()
    key = ["some", "source"]
    stale = tmp_path / f".cifar-tar-{_key_digest(key)}.npz.{dead.pid}.abc_1.tmp"  # left by a killed decode
    live = tmp_path / f".cifar-tar-4567.npz.{os.getpid()}.def_2.tmp"  # a decode running now
    others = [tmp_path / f".cifar-tar-0123.npz.{dead.pid}.abc_1.tmp",  # another key's, perhaps another host's
              tmp_path / f".report.md.{dead.pid}.xyz.tmp", tmp_path / ".editor.tmp"]  # other programs'
    for path in [stale, live, *others]:
        path.write_bytes(b"x" * 100)

    def killed():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_arrays("cifar-tar", key, killed, tmp_path)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [live, *others])


def test_cache_files_are_readable_by_others(tmp_path, monkeypatch):
    """The decoded-image cache is written by the one atomic writer (lt_paper.files.atomic): 0666 less the
    umask, not mkstemp's 0600."""
    import os

    from lt_paper.data.cache import cached_arrays, cached_json

    monkeypatch.setattr(os, "umask", lambda mask: 0o022)  # the umask is process-wide: fixed for the test
    cached_arrays("cifar-tar", ["a"], lambda: {"x": np.zeros(2)}, tmp_path)
    cached_json("sha256", ["a"], lambda: "0" * 64, tmp_path)
    assert sorted(oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()) == ["0o644", "0o644"]


def test_data_fingerprint_follows_the_content_not_the_path(tree, tmp_path, monkeypatch):
    import shutil

    from lt_paper.data.fingerprint import data_source

    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    assert data_source("cifar10_lt", tree) == data_source("cifar10_lt", copy)
    assert data_source("cifar10_lt", tree).kind == "image folder"
    (copy / "test" / "cat" / "0000.png").write_bytes(b"\x89PNG other bytes")
    assert data_source("cifar10_lt", tree) != data_source("cifar10_lt", copy)
    tar_path = tmp_path / "tree.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-images")
    source = data_source("cifar10_lt", tar_path)
    assert source.kind == "tarball" and f"{tar_path.stat().st_size} bytes, sha256 " in source.fingerprint
    digits = data_source("digits_lt", None)
    assert digits.as_record() == {"kind": "embedded", "fingerprint": "sklearn digits"}
    assert digits.config_value is None  # not hashed: the digits runs keep their hashes


def _bmp_tree(root, shade: int):
    """A CIFAR-10 folder of uncompressed 32x32 BMPs: the same names and sizes for any ``shade``,
    other pixels (train pixel value of class c, file k: c * 20 + k + shade)."""
    for split, n in (("train", 2), ("test", 1)):
        for c, name in enumerate(CIFAR10):
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                pixels = np.full((32, 32, 3), (c * 20 + k + shade) % 256, np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k}.bmp")
    return root


def _swap_in_place(path, content: bytes) -> None:
    """Rewrite ``path`` in place with ``content`` of the same size, and put its old mtime back."""
    import os
    import time

    before = path.stat()
    assert len(content) == before.st_size
    time.sleep(0.02)  # past the coarse clock tick that stamps ctime
    path.write_bytes(content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _plain_tar(folder) -> bytes:
    """An uncompressed tarball of ``folder``: the same size for the same names and sizes."""
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname="cifar10", filter=lambda m: m.replace(mtime=0, deep=False))
    return buffer.getvalue()


@pytest.mark.parametrize("large", [False, True], ids=["hashed-every-time", "cached-by-stat-identity"])
def test_same_names_and_sizes_other_pixels_are_other_data_and_decode_anew(tmp_path, monkeypatch, large):
    """Two folders of the same names and sizes, and a tarball rewritten in place with its size and mtime
    kept, are other data: other fingerprints (so other runs), and the decoded cache gives their pixels.
    ``large``: the path for sources too large to hash every time, whose hash is cached by stat identity."""
    from lt_paper.data.fingerprint import data_source

    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    if large:
        from lt_paper.data import content_hash

        monkeypatch.setattr(content_hash, "HASH_EVERY_TIME_BYTES", 0)
    dark, light = _bmp_tree(tmp_path / "dark", 0), _bmp_tree(tmp_path / "light", 100)

    def first_pixel(root):
        return int(read_cifar_source("cifar10_lt", root, allow_incomplete=True)[0]["train_images"][0, 0, 0, 0])

    assert data_source("cifar10_lt", dark) != data_source("cifar10_lt", light)
    assert (first_pixel(dark), first_pixel(light)) == (0, 100)
    tarball = tmp_path / "cifar10.tar"
    tarball.write_bytes(_plain_tar(dark))
    before = data_source("cifar10_lt", tarball)
    assert first_pixel(tarball) == 0
    _swap_in_place(tarball, _plain_tar(light))
    assert data_source("cifar10_lt", tarball) != before
    assert first_pixel(tarball) == 100
    image = dark / "train" / "airplane" / "0.bmp"
    _swap_in_place(image, (light / "train" / "airplane" / "0.bmp").read_bytes())
    assert first_pixel(dark) == 100


def test_a_large_source_is_hashed_once_while_it_is_unchanged(tmp_path, monkeypatch):
    from lt_paper.data import content_hash

    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(content_hash, "HASH_EVERY_TIME_BYTES", 0)
    tarball = tmp_path / "big.tar"
    tarball.write_bytes(b"x" * 1000)
    first = content_hash.file_fingerprint(tarball)

    def no_hashing(path):
        raise AssertionError("hashed again although unchanged")

    monkeypatch.setattr(content_hash, "sha256_file", no_hashing)
    assert content_hash.file_fingerprint(tarball) == first


@pytest.mark.skipif(not REAL_TARBALL.is_file(), reason=f"real CIFAR-10 JPEG tarball not at {REAL_TARBALL}")
def test_real_cifar10_jpeg_tarball(tmp_path):
    """Decodes the 60,000 JPEGs once (about 15 s on 2 cores) into a temporary cache, then reuses it."""
    arrays, source = read_cifar_source("cifar10_lt", REAL_TARBALL, cache_dir=tmp_path)
    assert source == f"tarball {REAL_TARBALL}"
    assert arrays["train_images"].shape == (50_000, 32, 32, 3)
    assert np.bincount(arrays["train_labels"]).tolist() == [5000] * 10
    assert np.bincount(arrays["test_labels"]).tolist() == [1000] * 10
    assert arrays["class_names"].tolist() == CIFAR10
    mean = arrays["train_images"].reshape(-1, 3).mean(axis=0) / 255
    assert np.allclose(mean, [0.4913, 0.4821, 0.4465], atol=2e-4)  # data/README's measured mean
    data = load_dataset("cifar10_lt", root=REAL_TARBALL.parent, imbalance=100, cache_dir=tmp_path)
    assert len(data.train) == 12_406 and len(data.test) == 10_000
    assert data.train_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    picked = ldam_pick(arrays["train_labels"], data.train_counts)
    assert np.array_equal(data.train.images[::997].permute(0, 2, 3, 1).numpy(),
                          arrays["train_images"][picked][::997])
