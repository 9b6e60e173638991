"""Running the rows of a table: many presets x seeds, cached by the engine, teachers first.

A notebook names its rows as ``{row key: method}`` (methods are those of :mod:`lt_paper.train.presets`)
and gets back ``{row key: [result per seed]}``. Runs already finished with the same config are reused,
so notebooks that share rows (Table 1 and Figure 1 both need CE and LDAM-DRW) train them once; so is the
same recipe trained on another device or kernel path (``engine.find_finished_run``): a CPU run of the
``cifar`` profile's preset is read where a GPU would otherwise train it again.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath

import numpy as np
import torch

from ..train import train as train_run  # `train` is run_rows' flag
from ..train import train_ensemble
from ..train.distributed import device_type
from ..train.config import EXECUTION_FIELDS, apply_overrides
from ..train.engine import find_finished_run, load_result
from ..train.presets import get_preset
from ..train.resolve import resolve_run_config
from ..train.run_config import read_run_config

# Decision 6: the paper distils from a 6-expert MoE trained with the ALA loss.
TEACHER_METHOD = "ala_moe6"


def preset_name(prefix: str, arch: str, method: str) -> str:
    """``smoke``/``cifar10_lt``/``imagenet_lt``... + arch + method -> a preset name (validated)."""
    name = f"{prefix}/{arch}/{method}"
    get_preset(name)  # raises naming the unknown part (prefix, arch or method) and what is valid
    return name


RUN_MODES = ("auto", "sequential", "side_by_side", "ensemble")


def run_mode(mode: str, parallel: int, device: str) -> str:
    """The way ``run_rows`` trains: ``mode`` itself, or for "auto" side by side when ``parallel`` > 1,
    else one ensemble on CUDA and one run after another on the CPU (smoke Table 4 on 2 CPU cores:
    sequential was the fastest; a grouped convolution on the CPU gains nothing)."""
    if mode not in RUN_MODES:
        raise ValueError(f"run_rows mode {mode!r} is not one of {RUN_MODES}")
    if mode != "auto":
        return mode
    if parallel > 1:
        return "side_by_side"
    return "ensemble" if device_type(device) == "cuda" else "sequential"


def run_rows(prefix: str, arch: str, rows: dict[str, str], seeds=(0,), runs_dir="runs",
             progress: bool = True, parallel: int = 1, mode: str = "auto", train: bool = True,
             **overrides) -> dict[str, list[dict]]:
    """Train (or reuse: the recipe's finished run, on any path) every row for every seed; ``overrides``
    apply to every run (and the teacher).

    ``mode``: "sequential" (one run after another in this process), "side_by_side" (up to
    ``parallel`` runs at once, one process each: :func:`lt_paper.train.parallel.train_side_by_side`),
    "ensemble" (the runs batched into one training step: :func:`lt_paper.train.train_ensemble`) or
    "auto" (:func:`run_mode`). A ResNet-32 run leaves a GPU mostly idle; the ensemble fills it.
    Distillation teachers are trained first in every mode. ``train=False`` trains nothing: see
    :func:`finished_rows`. ``progress`` prints one plain line per run and one per epoch (epoch of epochs,
    seconds left; no progress bar: in a notebook a bar needs widgets, and without them it lands in
    stderr as a red box).
    """
    if not train:
        return finished_rows(prefix, arch, rows, seeds=seeds, runs_dir=runs_dir, progress=progress, **overrides)
    jobs = [(row, method, seed) for row, method in rows.items() for seed in seeds]
    names = {job: preset_name(prefix, arch, job[1]) for job in jobs}
    distilled = [job for job in jobs if get_preset(names[job]).distill]
    teachers = {seed: _reuse_or_train(preset_name(prefix, arch, TEACHER_METHOD), runs_dir, "teacher", progress,
                                      **dict(overrides, seed=seed, progress=progress))["run_dir"]
                for seed in sorted({seed for _, _, seed in distilled})}
    # progress: each epoch's line ("epoch 3/30 ... 95 s left", train.engine) under the run's own line
    job_overrides = {job: dict(overrides, seed=job[2], progress=progress,
                               **({"teacher": teachers[job[2]]} if job in distilled else {}))
                     for job in jobs}
    configs = {job: resolve_run_config(names[job], job_overrides[job], data=False) for job in jobs}
    # a finished run of the same recipe is read, not trained again: this config's own run, or the same
    # preset and seed trained on another device or kernel path (config.EXECUTION_FIELDS)
    found = {job: _finished(runs_dir, configs[job], names[job], progress) for job in jobs}
    todo = [job for job in jobs if found[job] is None]
    how = run_mode(mode, parallel, configs[todo[0]].device if todo else "cpu")
    if not todo:
        trained = []
    elif how == "side_by_side":
        from ..train.parallel import train_side_by_side

        quiet = [apply_overrides(configs[job], {"progress": False}) for job in todo]  # side by side: no lines
        trained = train_side_by_side(quiet, runs_dir=runs_dir, max_parallel=parallel if parallel > 1 else None)
    elif how == "ensemble":
        trained = train_ensemble([configs[job] for job in todo], runs_dir=runs_dir)
    else:
        trained = [_train(names[job], runs_dir, f"{i}/{len(todo)} {job[0]}", progress, **job_overrides[job])
                   for i, job in enumerate(todo, 1)]
    found.update(zip(todo, trained))
    results: dict[str, list[dict]] = {row: [] for row in rows}
    for job in jobs:
        results[job[0]].append(found[job])
    return results


def _finished(runs_dir, config, name: str, announce: bool) -> dict | None:
    """The finished run of ``config``'s recipe in ``runs_dir`` as ``train`` returns it, or None; with
    ``announce``, one line naming it (and the path it trained on where that is not ``config``'s)."""
    run_dir = find_finished_run(Path(runs_dir), config)
    if run_dir is None:
        return None
    result = dict(load_result(run_dir), reused=True)
    saved = read_run_config(run_dir)
    path = {field: getattr(saved, field) for field in EXECUTION_FIELDS if getattr(saved, field) != getattr(config, field)}
    if announce:  # the lines _train prints, and the path the run trained on where it is another
        other = ("" if not path else " (the same recipe trained with " + ", ".join(f"{k}={v}" for k, v in path.items())
                 + f" on {result.get('provenance', {}).get('device', 'another machine')})")
        print(f"run {name}, seed {config.seed}\n    reused: {run_dir.name} top-1 {100 * result['all']:.1f} %{other}",
              flush=True)
    return result


def _reuse_or_train(name: str, runs_dir, label: str, announce: bool, **overrides) -> dict:
    """A teacher: its recipe's finished run (``_finished``), else ``train``."""
    return (_finished(runs_dir, resolve_run_config(name, overrides, data=False), name, announce)
            or _train(name, runs_dir, label, announce, **overrides))


def _train(name: str, runs_dir, label: str, announce: bool, **overrides) -> dict:
    """``train`` with plain lines (``announce``) saying which run is being trained or reused."""
    if announce:
        print(f"run {label} ({name}, seed {overrides.get('seed')}) ...", flush=True)
    result = train_run(name, runs_dir=runs_dir, **overrides)
    if announce:
        print(f"    {'reused' if result.get('reused') else 'trained'}: {Path(result['run_dir']).name} "
              f"top-1 {100 * result['all']:.1f} %", flush=True)
    return result


def finished_run(name: str, runs_dir, **overrides) -> dict | None:
    """What ``train(name, runs_dir=runs_dir, **overrides)`` would return for a finished run, or None.

    Never trains: the config is resolved for the requested device type without asking whether that
    device is present, and the data need not be here either (``engine.find_finished_run``), so that
    GPU runs can be read on a laptop.
    """
    config = resolve_run_config(name, overrides, data=False)  # find_finished_run adds the data's fingerprint
    # the run on the data here, else the same preset and seed trained on another copy of the dataset (the
    # JPEG tarball's runs read with torchvision's files): finished_rows says so
    run_dir = find_finished_run(Path(runs_dir), config) or find_finished_run(Path(runs_dir), config, any_data=True)
    return None if run_dir is None else dict(load_result(run_dir), reused=True)


def finished_rows(prefix: str, arch: str, rows: dict[str, str], seeds=(0,), runs_dir="runs",
                  progress: bool = True, **overrides) -> dict[str, list[dict]]:
    """``run_rows`` for finished runs only (published results): ``{row: [result per finished seed]}``.

    A row/seed without a finished run in ``runs_dir`` is left out of its list (an empty list for a
    row none of whose seeds finished: tables show it as missing, never as 0) and named in one printed
    line. Distilled rows are looked up with the teacher the engine would have used.
    """
    results: dict[str, list[dict]] = {row: [] for row in rows}
    missing = []
    for seed in seeds:
        teacher = None
        for row, method in rows.items():
            name = preset_name(prefix, arch, method)
            extra = {}
            if get_preset(name).distill:
                teacher = teacher or finished_run(preset_name(prefix, arch, TEACHER_METHOD), runs_dir,
                                                  **dict(overrides, seed=seed)) or {}
                if not teacher:
                    missing.append(f"{row} (seed {seed}, its teacher {TEACHER_METHOD} is missing)")
                    continue
                extra = {"teacher": teacher["run_dir"]}
            result = finished_run(name, runs_dir, **dict(overrides, seed=seed, **extra))
            if result is None:
                missing.append(f"{row} (seed {seed})")
            else:
                results[row].append(result)
    if progress and not Path(runs_dir).is_dir():
        print(f"runs_dir {runs_dir} does not exist: no finished run to read (train=False trains nothing); "
              f"check the path, e.g. results/smoke/runs for the published smoke runs")
    elif progress:
        found = sum(map(len, results.values()))
        print(f"{found} finished run(s) read from {runs_dir}"
              + (f"; missing (train=False trains nothing): {', '.join(missing)}" if missing else ""))
        note = other_data_note(preset_name(prefix, arch, next(iter(rows.values()))), results, overrides) \
            if found else None
        if note:
            print(note)
    return results


def other_data_note(preset: str, results: dict[str, list[dict]], overrides: dict) -> str | None:
    """One line when the runs found trained on another source of the dataset than the one ``preset`` with
    ``overrides`` reads here (None: the same source, or no data here to compare with)."""
    from ..train.identity import data_source_of

    trained = {r["data_source"]["fingerprint"]: r["data_source"].get("kind", "?") for rs in results.values()
               for r in rs if isinstance(r.get("data_source"), dict) and "fingerprint" in r["data_source"]}
    config = resolve_run_config(preset, overrides, data=False)
    try:
        here = data_source_of(config)
    except (FileNotFoundError, ValueError):
        return None
    others = {fp: kind for fp, kind in trained.items() if fp != here.fingerprint}
    if not others:
        return None
    return (f"data: the runs trained on another source of {config.dataset} ("
            + "; ".join(f"{kind} {fp}" for fp, kind in others.items())
            + f") than the one here ({here.kind} {here.fingerprint}); the test images shown come from the "
              f"one here, its test labels checked against the runs' records")


def finished_runs_held(runs_dir) -> dict[tuple[str, str, int], list[int]]:
    """What a runs directory holds: ``{(prefix, arch, epochs): [seed per finished run]}``, read from each
    finished run's ``config.json`` (a run whose config cannot be read is left out)."""
    held: dict[tuple[str, str, int], list[int]] = {}
    for run_dir in sorted(Path(runs_dir).glob("*/metrics.json")):
        try:
            config = json.loads((run_dir.parent / "config.json").read_text())
            key = (config["name"].split("/")[0], config["arch"], int(config["epochs"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        held.setdefault(key, []).append(config.get("seed"))
    return held


def runs_used(results: dict[str, list[dict]]) -> list[str]:
    """Every run directory behind ``run_rows`` / ``finished_rows`` results, absolute, sorted: each
    result's run and the teacher a distilled run learned from (what ``publish`` must copy).

    A student's ``config.json`` names its teacher by the path it had when the student trained (maybe
    on another machine); the teacher used here lies beside the student, under that run name (its config
    hash): ``run_rows`` trains it, and ``finished_rows`` finds it, in the student's runs directory.
    """
    used = set()
    for run_dir in (Path(r["run_dir"]).resolve() for rs in results.values() for r in rs):
        used.add(str(run_dir))
        teacher = json.loads((run_dir / "config.json").read_text()).get("teacher")
        if teacher:
            used.add(str(run_dir.parent / PurePath(teacher).name))
    return sorted(used)


def main_results_table(dataset: str, arch: str, runs: dict[str, list[dict]], epoch: str = "last"):
    """The Table 1 / Table 3 analogue for ``dataset``: our rows beside the paper's matching column.

    ImageNet-LT -> Table 1 (the ResNet-50 or ResNeXt-50 block), iNaturalist-2018 -> Table 3, CIFAR-LT ->
    the published ResNet-32 numbers (``analysis.CIFAR_PUBLISHED``). Other datasets (the smoke digits) are shown beside
    Table 1's ResNeXt-50 block for layout only: the paper numbers there are ImageNet-LT's.
    """
    from ..analysis import cifar_frame, table1_frame, table3_frame

    if dataset == "imagenet_lt":
        return table1_frame(runs, backbone=arch, epoch=epoch)
    if dataset == "inat2018":
        return table3_frame(runs, epoch=epoch)
    if dataset.startswith("cifar"):
        return cifar_frame(runs, dataset=dataset, epoch=epoch)
    return table1_frame(runs, backbone="resnext50", epoch=epoch)


def num_classes(dataset: str) -> int:
    """Classes of ``dataset``, known without loading it (Figure 3)."""
    from ..data import DATASETS

    return DATASETS[dataset].num_classes


def input_size(dataset: str) -> tuple[int, int, int]:
    """(C, H, W) of the images the dataset's models see, known without loading it (Figure 3)."""
    from ..data import DATASETS

    side = DATASETS[dataset].image_size
    return (3, side, side)


def moe_shapes(model, dataset: str) -> dict[str, str]:
    """Tensor shapes through an MoE for one sample (Figure 3's labels), measured by a forward pass."""
    import torch

    x = torch.zeros(1, *input_size(dataset))
    model.eval()
    with torch.no_grad():
        trunk = model.shared(model.stem(x))
        expert = model.experts[0].stages(trunk)
        out = model(x)
    fmt = lambda t: "×".join(str(s) for s in tuple(t.shape)[1:])  # noqa: E731
    return {"input": fmt(x), "trunk": fmt(trunk), "expert": fmt(expert), "logits": fmt(out.logits),
            "weights": fmt(out.router_weights)}


def load_test_images(record, indices, data_root=None,
                     side: int = 96) -> tuple[dict[int, np.ndarray], list[str]]:
    """The test images at ``indices`` of the dataset a run was evaluated on, as (H, W, 3) uint8 arrays,
    and the dataset's class names (CIFAR-10: airplane ... truck).

    Where the data lies: ``data_root`` (this machine's), else the run's own ``data_root`` if it exists
    here, else the dataset's default location (``data/downloads`` or ``$LT_PAPER_DATA``): so runs
    published from another machine find the CIFAR tarball a clone keeps in ``data/downloads``. No source
    raises FileNotFoundError saying where it looked; data whose test labels are not the run's raises
    ValueError. CIFAR: any verified source of the same set will do (the JPEG tree or its tarball,
    torchvision's files; :func:`cifar_test_positions`), and only the images asked for are decoded.
    Small images (CIFAR's 32 px, the digits' 8 px) are scaled up by the largest whole factor that fits
    ``side``, each pixel a square block (nearest neighbour), so that a reader can see them; image-file
    datasets are shrunk to ``side`` pixels on the longer edge."""
    from ..data import load_dataset
    from ..data.cifar import CIFAR_SPECS, read_test_split

    config = record.config
    recorded = config.get("data_root")
    root = data_root or (recorded if recorded and Path(recorded).exists() else None)
    if config["dataset"] in CIFAR_SPECS:
        from ..data.registry import default_data_root

        split = read_test_split(config["dataset"], root if root is not None else default_data_root())
        positions = cifar_test_positions(record, split.labels, split.kind)
        return {i: scale_up(split.image(positions[int(i)]), side) for i in indices}, split.class_names
    data = load_dataset(config["dataset"], root=root, imbalance=config.get("imbalance", 100),
                        allow_incomplete=config.get("allow_incomplete_data", False))
    _check_test_labels(record, np.asarray(data.test.labels), config["dataset"])
    images = {}
    for i in map(int, indices):
        if data.kind == "array":
            images[i] = scale_up(data.test.images[i].permute(1, 2, 0).numpy(), side)  # (C, H, W) -> (H, W, C)
        else:
            from PIL import Image

            with Image.open(data.test.image_path(i)) as image:
                image = image.convert("RGB")
                image.thumbnail((side, side))
                images[i] = np.asarray(image)
    return images, list(data.class_names)


def _check_test_labels(record, labels: np.ndarray, dataset: str) -> None:
    """ValueError unless ``labels`` (a test set found here) are the test labels the run recorded."""
    if len(labels) != record.num_samples or not np.array_equal(labels, record.label):
        raise ValueError(f"{record.run_dir}: the test labels of records.npz ({record.num_samples} samples) are not "
                         f"those of the {dataset} test set found here ({len(labels)} samples): "
                         f"not the data the run saw")


def cifar_test_positions(record, labels: np.ndarray, kind: str) -> np.ndarray:
    """For each test sample of ``record``, its position in a CIFAR source whose test labels are ``labels``.

    The same order when the labels are the run's (checked, :func:`_check_test_labels`). Torchvision's files
    list the test images in their batch order, the JPEG tree by class and number: between the two (one
    side torchvision's, the other not) the k-th test image of a class in one is the k-th of that class
    in the other (the tree numbers each class's images in batch order), and the per-class counts must
    agree. Anything else is other data.
    """
    recorded_kind = (record.metrics.get("data_source") or {}).get("kind")
    if (kind == "torchvision") == (recorded_kind == "torchvision") or np.array_equal(labels, record.label):
        _check_test_labels(record, labels, record.config["dataset"])
        return np.arange(len(labels))
    if len(labels) != record.num_samples or not np.array_equal(np.bincount(labels, minlength=100),
                                                               np.bincount(record.label, minlength=100)):
        _check_test_labels(record, labels, record.config["dataset"])
    # stable sorts: rank within class is kept on both sides
    by_class_here, by_class_run = np.argsort(labels, kind="stable"), np.argsort(record.label, kind="stable")
    positions = np.empty(len(labels), dtype=np.int64)
    positions[by_class_run] = by_class_here
    return positions


def scale_up(image: np.ndarray, side: int) -> np.ndarray:
    """(H, W, C) ``image`` enlarged by the largest whole factor k with k * max(H, W) <= ``side`` (at least
    1): every pixel becomes a k x k block, so no interpolation blurs or invents detail."""
    k = max(1, side // max(image.shape[:2]))
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)
