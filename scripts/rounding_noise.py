"""How much of a difference between two smoke numbers is noise: prints, for a few smoke rows, the final
test accuracy (All, %) of the run, of the same run with its initial weights perturbed by 1e-7
(``lt_paper.train.perturb``), of the same run through the batched ensemble's code path, and of two other seeds.

    .venv/bin/python scripts/rounding_noise.py [--epochs 30] [--methods ce ldam_drw ala ala_moe3]

Runs go to a temporary folder (about 15 s a run on 2 CPU cores, idle). docs/equality.md,
quotes its output.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from lt_paper.train import train, train_ensemble
from lt_paper.train.perturb import perturbed_initial_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=["ce", "ldam_drw", "ala", "ala_moe3"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        print(f"smoke rows, {args.epochs} epochs, {args.threads} thread(s): final All (%)")
        print("| row | seed 0 | seed 0, weights x (1 + 1e-7 n) | seed 0, batched ensemble | seed 1 | seed 2 |")
        print("|---|---|---|---|---|---|")
        for method in args.methods:
            preset = f"smoke/resnet8/{method}"
            base = dict(epochs=args.epochs, progress=False)
            solo = train(preset, runs_dir=f"{runs}/solo", **base)
            with perturbed_initial_weights(1e-7):
                perturbed = train(preset, runs_dir=f"{runs}/perturbed", **base)
            # through the batched ensemble's code path (vmap over stacked weights), as a one-member ensemble
            member = train_ensemble([preset], runs_dir=f"{runs}/ensemble", **base)[0]
            seeds = [train(preset, runs_dir=f"{runs}/solo", seed=s, **base) for s in (1, 2)]
            cells = [solo, perturbed, member, *seeds]
            print(f"| {method} | " + " | ".join(f"{100 * r['all']:.1f}" for r in cells) + " |", flush=True)
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
