"""``python -m lt_paper bench`` (and ``python -m lt_paper.bench``): the options, their checks, and the
section they run (``main_section``, ``cpu_section``, ``shared_cpu`` or ``recipe_cpu``, imported when chosen)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..train.distributed import device_type
from .core import SIZES

DESCRIPTION = "``python -m lt_paper bench``: how fast a CIFAR-LT run trains, the published way and ours."

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lt_paper bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the real sizes (a GPU); short: sized for about 90 s on an H100 (not yet "
                             "measured); tiny: a seconds-long check (CPU, CI)")
    parser.add_argument("--device", default=None, help="cuda, cuda:N, cpu or auto (default; main section only)")
    parser.add_argument("--out", default=None, help="also write the report here, e.g. results/bench-h100-full.md")
    parser.add_argument("--data-root", default=None,
                        help="real CIFAR-LT data instead of synthetic images (main section only)")
    parser.add_argument("--dataset", default=None, choices=["cifar10_lt", "cifar100_lt"],
                        help="which set --data-root holds (default cifar100_lt; main section only)")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="torch.compile in the fast path (auto: on CUDA only; about 60 s on a CPU)")
    parser.add_argument("--section", choices=["main", "cpu", "shared", "recipe-cpu"], default="main",
                        help="main: the sections above (default); cpu: the cifar-cpu profile's network on this "
                             "CPU beside the fp32 matmul ceiling, each CPU path, the projected profile time, and "
                             "each thread setting alone and beside busy processes (lt_paper.bench.cpu_section; "
                             "--size full: about 5 minutes on an idle 2-core machine); shared: only that last "
                             "table (lt_paper.bench.shared_cpu; about 2 minutes); recipe-cpu: the paper's "
                             "ResNet-32 recipe on this CPU, each path at all cores and at one thread, and the "
                             "hours one run takes (lt_paper.bench.recipe_cpu; --size full --compile on: about "
                             "10 minutes on 2 cores)")
    parser.add_argument("--preset", default=None,
                        help="recipe-cpu section only: the preset whose network and recipe it measures (default "
                             "cifar10_lt/resnet32/ldam_drw, the paper's; e.g. cifar10_lt/resnet8/ala_moe3, a "
                             "cifar-cpu run)")
    parser.add_argument("--threads-per-process", type=int, default=None,
                        help="CPU threads of each side-by-side process, at least 1 (default: cores / 7; tiny: 1; "
                             "main section only)")
    return parser


# The options only the main section uses: --section cpu measures this CPU on synthetic images of the
# cifar-cpu profile's shape, so it has no device, data, dataset or side-by-side processes to set.
MAIN_SECTION_ONLY = {"device": "--device", "data_root": "--data-root", "dataset": "--dataset",
                     "threads_per_process": "--threads-per-process"}


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the defaults filled in; for an option the chosen section cannot use or a value it cannot
    run with, one line ``error: ...`` and exit status 2 at once, before any section starts (as the other
    subcommands refuse bad input)."""
    def refuse(message: str):
        parser.exit(2, f"error: {message}\n")

    if args.section in ("cpu", "shared", "recipe-cpu"):
        given = [flag for key, flag in MAIN_SECTION_ONLY.items()
                 if getattr(args, key) is not None and not (key == "device" and args.device in ("cpu", "auto"))]
        if given:
            refuse(f"--section {args.section} measures this CPU on synthetic images and uses no {', '.join(given)}; "
                         f"leave them out (they belong to --section main)")
    if args.preset is not None:
        if args.section != "recipe-cpu":
            refuse(f"--preset belongs to --section recipe-cpu, not --section {args.section}")
        from ..train.presets import presets

        if args.preset not in presets():
            refuse(f"--preset {args.preset!r} is not a preset (python -m lt_paper presets lists them)")
    if args.threads_per_process is not None and args.threads_per_process < 1:
        refuse(f"--threads-per-process {args.threads_per_process}: at least 1 thread per process")
    if args.data_root is not None and not Path(args.data_root).expanduser().exists():
        refuse(f"--data-root {args.data_root}: no such file or folder (a CIFAR .tar.gz or folder)")
    device = args.device or "auto"
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        refuse(f"--device {device!r}: use cuda, cuda:N, cpu or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        refuse(f"--device {device}: no CUDA device here (use cpu or auto)")
    return argparse.Namespace(**dict(vars(args), device=device, dataset=args.dataset or "cifar100_lt"))


def main(argv: list[str] | None = None) -> int:
    """``python -m lt_paper bench [--size tiny|short|full] [--section main|cpu|shared] [--device D] [--out FILE] ...``;
    returns 0."""
    parser = build_parser()
    args = check_arguments(parser, parser.parse_args(argv))
    if args.section == "cpu":
        from .cpu_section import run_cpu_bench

        report = run_cpu_bench(SIZES[args.size], compile_mode=args.compile,
                               progress=lambda m: print(m, file=sys.stderr, flush=True))
    elif args.section == "recipe-cpu":
        from .recipe_cpu import RECIPE, run_recipe_bench

        typed = " ".join(["python -m lt_paper bench", *(sys.argv[1:] if argv is None else argv)])
        report = run_recipe_bench(SIZES[args.size], compile_mode=args.compile, command=typed,
                                  preset=args.preset or RECIPE,
                                  progress=lambda m: print(m, file=sys.stderr, flush=True))
    elif args.section == "shared":
        from .shared_cpu import run_shared_bench

        report = run_shared_bench(SIZES[args.size], progress=lambda m: print(m, file=sys.stderr, flush=True))
    else:
        from .main_section import run_bench

        report = run_bench(SIZES[args.size], torch.device(device_type(args.device)), dataset=args.dataset,
                           data_root=args.data_root, compile_mode=args.compile,
                           threads_per_process=args.threads_per_process,
                           progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    return 0

