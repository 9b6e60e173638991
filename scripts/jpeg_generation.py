"""How much does one more JPEG pass cost? The `cifar-cpu` LDAM-DRW row trained on the CIFAR-10 copy
and on that copy compressed once more, the same way (quality 75, 4:2:0 chroma), seeds 0-2.

Our CIFAR-10 is a JPEG copy (quality 75, 4:2:0), not the lossless original, and the original pixels are
not at hand offline, so the cost of that first compression cannot be measured directly. This measures
the next one: every image is encoded again at the same quality with its 8x8 block grid moved by
``SHIFT`` pixels (edge-replicated padding, cropped off after decoding). Re-encoding on the same grid
would change almost nothing (JPEG nearly reproduces itself: tests/test_jpeg_generation.py); on a moved
grid the quantisation falls on fresh blocks, a pass of about the same strength as the first (the PSNR
against the copy is in the record). The copy has less fine detail left to lose than the original had,
so this second pass probably costs no more than the first one did. Decoded images are written as PNG
(lossless) under the same names, so the long-tailed cut picks the same images.

    .venv/bin/python scripts/jpeg_generation.py [--seeds 0 1 2] [--out results/jpeg-generation-cifar-cpu.md]

Builds ``data/downloads/cifar10-jpeg-2nd-pass/`` (about 2 min), trains the rows there into
``outputs/jpeg-generation/runs`` (about 6 min a run on 2 idle cores; a finished run is reused), and
writes a Markdown table beside the published runs of the copy (``results/cifar10_lt_if100_cpu/runs``).
docs/results.md reads it.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lt_paper.data.cifar import CIFAR10_CLASSES, read_image_folder, read_tarball
from lt_paper.train.provenance import provenance

REPO = Path(__file__).resolve().parents[1]
COPY = REPO / "data" / "downloads" / "cifar10-jpeg.tar.gz"
SECOND_PASS = REPO / "data" / "downloads" / "cifar10-jpeg-2nd-pass"
RUNS = REPO / "outputs" / "jpeg-generation" / "runs"
PUBLISHED_RUNS = REPO / "results" / "cifar10_lt_if100_cpu" / "runs"
PRESET = "cifar10_lt/resnet8/ldam_drw"
QUALITY, SHIFT = 75, 5  # the copy's quality; an odd shift moves the 2x2 chroma pairs too


def jpeg_pass(image: np.ndarray, quality: int = QUALITY, shift: int = SHIFT) -> np.ndarray:
    """``image`` (H, W, 3) uint8 encoded once as JPEG (4:2:0) on a grid moved by ``shift`` px, decoded."""
    padded = np.pad(image, ((shift, 0), (shift, 0), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(padded).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)[shift:, shift:]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, dB (inf where they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def build_second_pass(source: Path, target: Path, quality: int = QUALITY, shift: int = SHIFT) -> dict:
    """Write ``target/{train,test}/<class>/NNNN.png``: each image of the CIFAR-10 tarball ``source``
    after one more ``jpeg_pass``, in the same order (so the long tail picks the same images), and
    ``target/second_pass.json`` with the PSNR against ``source``. Built in a temporary folder and renamed:
    a build stopped halfway leaves no tree that looks whole. Returns what ``second_pass.json`` holds."""
    if (target / "second_pass.json").is_file():
        return json.loads((target / "second_pass.json").read_text())
    arrays = read_tarball(source)
    names = [str(n) for n in arrays["class_names"]]
    if tuple(names) != CIFAR10_CLASSES:
        raise ValueError(f"{source}: classes {names}, expected CIFAR-10's {list(CIFAR10_CLASSES)}")
    partial = target.with_name(target.name + ".partial")
    info = {"source": source.name, "quality": quality, "shift": shift, "subsampling": "4:2:0"}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        values = []
        for label, name in enumerate(names):
            folder = partial / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k, index in enumerate(np.flatnonzero(labels == label)):
                passed = jpeg_pass(images[index], quality, shift)
                values.append(psnr(images[index], passed))
                Image.fromarray(passed).save(folder / f"{k:04d}.png")
        finite = [v for v in values if np.isfinite(v)]
        info[f"{split}_psnr_db"] = {"mean": statistics.fmean(finite), "median": statistics.median(values),
                                    "images": len(values), "unchanged": len(values) - len(finite)}
    rebuilt = read_image_folder(partial)  # what training will read: the same labels, in the same order
    for split in ("train", "test"):
        if not np.array_equal(rebuilt[f"{split}_labels"], arrays[f"{split}_labels"]):
            raise RuntimeError(f"{partial}: the {split} labels came out in another order than {source}'s")
    (partial / "second_pass.json").write_text(json.dumps(info, indent=2))
    partial.rename(target)
    return info


def train_rows(seeds: list[int]) -> dict[str, list[dict]]:
    """The preset's finished runs on the copy (published) and on the second pass (trained if missing)."""
    from lt_paper.train import train
    from lt_paper.train.engine import find_finished_run, load_result
    from lt_paper.train.resolve import resolve_run_config

    rows: dict[str, list[dict]] = {"copy": [], "second pass": []}
    for seed in seeds:
        published = find_finished_run(PUBLISHED_RUNS, resolve_run_config(PRESET, {"seed": seed}, data=False),
                                      any_data=True)
        if published is None:
            raise FileNotFoundError(f"{PUBLISHED_RUNS} holds no finished {PRESET} run of seed {seed}")
        rows["copy"].append(load_result(published))
        rows["second pass"].append(train(PRESET, runs_dir=RUNS, data_root=str(SECOND_PASS), seed=seed))
    return rows


def table(rows: dict[str, list[dict]], seeds: list[int], info: dict, seconds: float) -> str:
    """The Markdown record: mean ± std (ddof 1) per group and the difference first (what README quotes),
    then the difference paired by seed, each run, and the provenance."""
    groups = ("many", "medium", "all")
    lines = [f"# One more JPEG pass: `{PRESET}` (ResNet-8, 40 epochs, the `cifar-cpu` recipe) on the "
             "CIFAR-10 copy and on that copy compressed once more",
             "", f"Written by `python scripts/jpeg_generation.py` (this call: {seconds:.0f} s; each run's own "
             f"training time is in the second table). The second pass: quality {info['quality']}, 4:2:0, block "
             f"grid moved by {info['shift']} px; PSNR against the copy {info['train_psnr_db']['mean']:.1f} dB "
             f"(train, mean of {info['train_psnr_db']['images']:,} images), {info['test_psnr_db']['mean']:.1f} dB "
             "(test). Each trained and tested on its own images. Top-1 %, last epoch, mean ± std over seeds; "
             "CIFAR-10-LT at imbalance 100 has no few-shot class.", "",
             "| data | seeds | Many | Medium | All |", "|---|---|---|---|---|"]
    means = {}
    for name, results in rows.items():
        cells = []
        for g in groups:
            values = [100 * r[g] for r in results]
            means[name, g] = statistics.fmean(values)
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{means[name, g]:.1f}{spread}")
        lines.append(f"| {name} | {len(results)} | " + " | ".join(cells) + " |")
    lines.append("| second pass - copy | | " + " | ".join(
        f"{means['second pass', g] - means['copy', g]:+.1f}" for g in groups) + " |")
    paired = [100 * (b["all"] - a["all"]) for a, b in zip(rows["copy"], rows["second pass"])]
    spread = f", standard deviation {statistics.stdev(paired):.1f}" if len(paired) > 1 else ""
    lines += ["", f"Paired by seed, All: {', '.join(f'{d:+.1f}' for d in paired)} (seeds "
              f"{', '.join(map(str, seeds))}; mean {statistics.fmean(paired):+.1f}{spread}).", "",
              "| data | seed | Many | Medium | All | wall time (s) | trained on |", "|---|---|---|---|---|---|---|"]
    for name, results in rows.items():
        for seed, r in zip(seeds, results):
            where = f"{r['provenance']['device']}, commit {r['provenance']['commit'][:7]}"
            lines.append(f"| {name} | {seed} | " + " | ".join(f"{100 * r[g]:.1f}" for g in groups)
                         + f" | {r['wall_time_s']:.0f} | {where} |")
    lines += ["", "Provenance of this table:", "", "```", json.dumps(provenance(), indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "jpeg-generation-cifar-cpu.md")
    args = parser.parse_args()
    started = time.perf_counter()
    info = build_second_pass(COPY, SECOND_PASS)
    print(f"second pass: {SECOND_PASS} (PSNR against the copy: train {info['train_psnr_db']['mean']:.1f} dB, "
          f"test {info['test_psnr_db']['mean']:.1f} dB)", flush=True)
    text = table(train_rows(args.seeds), args.seeds, info, time.perf_counter() - started)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
