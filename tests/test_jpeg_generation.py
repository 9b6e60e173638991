"""scripts/jpeg_generation.py: the second JPEG pass that measures what one more compression costs."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lt_paper.data.cifar import CIFAR10_CLASSES, read_image_folder, read_tarball

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("jpeg_generation", REPO / "scripts" / "jpeg_generation.py")
jg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jg)


def _photo(seed: int) -> np.ndarray:
    """A 32x32 image with smooth shapes and some texture, stored once as JPEG quality 75 (like the copy)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 31.0
    planes = [np.sin(rng.uniform(2, 9) * x + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 9) * y) for _ in range(3)]
    image = np.stack(planes, -1) * 90 + 128 + rng.normal(0, 12, (32, 32, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=75, subsampling="4:2:0")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_a_pass_on_the_same_grid_changes_almost_nothing_and_on_a_moved_grid_about_as_much_as_a_first():
    copies = [_photo(seed) for seed in range(20)]
    same = [jg.psnr(a, jg.jpeg_pass(a, shift=0)) for a in copies]
    moved = [jg.psnr(a, jg.jpeg_pass(a, shift=5)) for a in copies]
    assert all(jg.jpeg_pass(a).shape == (32, 32, 3) for a in copies)
    # JPEG nearly reproduces itself on its own grid; on a moved one the quantisation is fresh
    assert np.median(same) > 40 and np.median(moved) < 36 and min(same) > max(moved)
    assert jg.psnr(copies[0], copies[0]) == float("inf")


def _tarball(path: Path, per_class: dict[str, int]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split, n in per_class.items():
            for c, name in enumerate(CIFAR10_CLASSES):
                for k in range(n):
                    data = io.BytesIO()
                    Image.fromarray(_photo(100 * c + 10 * k + (split == "test"))).save(data, "JPEG", quality=95)
                    member = tarfile.TarInfo(f"{split}/{name}/{k:04d}.jpg")
                    member.size = data.tell()
                    data.seek(0)
                    tar.addfile(member, data)
    return path


def test_the_second_pass_keeps_every_image_in_its_place_and_records_its_psnr(tmp_path, monkeypatch):
    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    source = _tarball(tmp_path / "copy.tar.gz", {"train": 3, "test": 2})
    target = tmp_path / "second"
    info = jg.build_second_pass(source, target)
    original, passed = read_tarball(source), read_image_folder(target)
    for split, n in (("train", 30), ("test", 20)):
        assert np.array_equal(passed[f"{split}_labels"], original[f"{split}_labels"])  # the same order
        assert len(list((target / split).glob("*/*.png"))) == n
        expected = np.stack([jg.jpeg_pass(image) for image in original[f"{split}_images"]])
        assert np.array_equal(passed[f"{split}_images"], expected)  # lossless PNG of each pass
        assert info[f"{split}_psnr_db"]["images"] == n and 25 < info[f"{split}_psnr_db"]["mean"] < 40
    assert json.loads((target / "second_pass.json").read_text()) == info
    assert not target.with_name("second.partial").exists()
    # built once: a second call reads the record and writes nothing
    stamp = (target / "train" / "cat" / "0000.png").stat().st_mtime_ns
    assert jg.build_second_pass(source, target) == info
    assert (target / "train" / "cat" / "0000.png").stat().st_mtime_ns == stamp


def test_the_record_gives_each_seed_the_means_and_the_difference():
    def run(many, medium, all_):
        return {"many": many, "medium": medium, "all": all_, "wall_time_s": 300.0,
                "provenance": {"device": "CPU (x86_64, 2 threads)", "commit": "abcdef0123"}}

    rows = {"copy": [run(0.60, 0.50, 0.58), run(0.62, 0.52, 0.60)],
            "second pass": [run(0.58, 0.45, 0.55), run(0.60, 0.47, 0.57)]}
    info = {"quality": 75, "shift": 5, "train_psnr_db": {"mean": 32.4, "images": 30},
            "test_psnr_db": {"mean": 32.5, "images": 20}}
    text = jg.table(rows, [0, 1], info, 12.0)
    assert "| copy | 0 | 60.0 | 50.0 | 58.0 | 300 | CPU (x86_64, 2 threads), commit abcdef0 |" in text
    assert "| copy | 2 | 61.0 ± 1.4 | 51.0 ± 1.4 | 59.0 ± 1.4 |" in text
    assert "| second pass - copy | | -2.0 | -5.0 | -3.0 |" in text
    assert "Paired by seed, All: -3.0, -3.0 (seeds 0, 1; mean -3.0, standard deviation 0.0)." in text
    assert text.index("| data | seeds |") < text.index("| data | seed |")  # the summary first (README quotes it)
    assert "/work" not in text.split("Provenance")[0]


def test_a_source_with_other_classes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LT_PAPER_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "other.tar.gz"
    with tarfile.open(source, "w:gz") as tar:
        for split in ("train", "test"):
            data = io.BytesIO()
            Image.fromarray(_photo(1)).save(data, "PNG")
            member = tarfile.TarInfo(f"{split}/apple/0000.png")
            member.size = data.tell()
            data.seek(0)
            tar.addfile(member, data)
    with pytest.raises(ValueError, match="expected CIFAR-10"):
        jg.build_second_pass(source, tmp_path / "second")
    assert not (tmp_path / "second").exists()
