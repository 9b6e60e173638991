#!/usr/bin/env bash
# GPU check of the fast path and of runs side by side. PREPARED, NOT YET MEASURED: no GPU session has
# run this script yet; DESIGN.md "Speed" has the numbers to expect on one H100.
#
# About 8 minutes on one H100 (16 cores), in two timed parts, each under `timeout`:
#   1. python -m lt_paper bench --size full (about 2-3 minutes; cut at 240 s) -> $OUT/bench-<gpu>-full.md
#      reference-style loop vs our default path vs our fast path (s/epoch, images/s, 200-epoch
#      projection, host syncs per epoch), Table 4's 7 runs sequential vs side by side, ResNeXt-50 img/s;
#   2. one real 200-epoch run on the default path and one on the fast path, side by side on the GPU
#      (about 5 minutes; cut at 340 s) -> $OUT/fast-vs-default.{json,md}: the two runs' accuracies (the
#      fast path must not change results: expect agreement within run-to-run noise, not bit for bit:
#      compiled kernels and the fused SGD round differently) and wall times. If part 1 ran long, run
#      part 2 alone with BENCH=0.
#      Needs real data: DATA_ROOT=<cifar10-jpeg.tar.gz> (DESIGN "Data you have at hand"; copy it into
#      the gitignored data/downloads/ and carry that folder to the GPU machine). Skipped without it.
#
# Usage, from the repository root:
#   DATA_ROOT=data/downloads/cifar10-jpeg.tar.gz OUT=results bash scripts/gpu_check.sh
# Knobs: PYTHON (python3), OUT (results), DEVICE (cuda), PRESET (cifar10_lt/resnet32/ala), EPOCHS (200),
# BENCH=0 skips part 1, BENCH_SIZE (full). CPU dry run of the whole script (a minute):
#   PYTHON=.venv/bin/python DEVICE=cpu BENCH_SIZE=tiny PRESET=smoke/resnet8/ala EPOCHS=2 OUT=/tmp/gc bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-results}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-cifar10_lt/resnet32/ala}
EPOCHS=${EPOCHS:-200}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  TAG=$("$PY" -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())" 2>/dev/null || echo gpu)
else
  TAG=cpu
fi

if [ "${BENCH:-1}" = 1 ]; then
  timeout 240 "$PY" -m lt_paper.bench --size "${BENCH_SIZE:-full}" --device "$DEVICE" \
    --out "$OUT/bench-$TAG-${BENCH_SIZE:-full}.md" || echo "bench failed or timed out (exit $?)"
fi

if [ -z "${DATA_ROOT:-}" ] && [ "${PRESET#smoke/}" = "$PRESET" ]; then
  echo "DATA_ROOT not set: skipping the 200-epoch fast vs default runs"
  exit 0
fi
# a file, not stdin: the side-by-side processes re-import the main script (hence the __main__ guard)
RUNS_PY=$(mktemp --suffix=.py)
trap 'rm -f "$RUNS_PY"' EXIT
cat > "$RUNS_PY" <<'PYEOF'
import json, sys, time
from pathlib import Path
from lt_paper.data import load_dataset
from lt_paper.provenance import provenance
from lt_paper.train.config import apply_overrides, fast_path_overrides
from lt_paper.train.engine import resolve_config
from lt_paper.train.parallel import train_side_by_side


def main():  # guarded: the side-by-side processes re-import this file
    preset, epochs, device, data_root, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] or None, Path(sys.argv[5])
    default = resolve_config(preset, dict(epochs=epochs, device=device, data_root=data_root))
    fast = apply_overrides(default, fast_path_overrides(device))
    load_dataset(default.dataset, root=data_root, imbalance=default.imbalance)  # decode + cache once, not in both runs
    began = time.time()
    runs = train_side_by_side([default, fast], runs_dir=out / "runs-gpu-check", log_dir=out / "runs-gpu-check" / "logs")
    wall = time.time() - began
    keys = ("all", "many", "medium", "few", "wall_time_s", "best", "config_hash", "run_dir")
    summary = {"preset": preset, "epochs": epochs, "side_by_side_wall_s": wall,
               "note": "both runs shared the device: their wall times are side-by-side times, not solo times",
               "default": {k: runs[0][k] for k in keys}, "fast": {k: runs[1][k] for k in keys},
               "fast_overrides": fast_path_overrides(device), "provenance": provenance(device)}
    (out / "fast-vs-default.json").write_text(json.dumps(summary, indent=2, default=str))
    rows = [f"| {name} | {r['all']:.4f} | {r['many']:.4f} | {r['medium']:.4f} | {r['few']:.4f} | {r['wall_time_s']:.1f} |"
            for name, r in (("default path", runs[0]), ("fast path", runs[1]))]
    text = "\n".join([f"# {preset}, {epochs} epochs: default vs fast path, side by side on {provenance(device)['device']}", "",
                      "| path | all | many | medium | few | wall (s, shared device) |", "| --- | --- | --- | --- | --- | --- |",
                      *rows, "", f"Both runs together: {wall:.1f} s. Provenance: {json.dumps(provenance(device))}", ""])
    (out / "fast-vs-default.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
PYEOF
timeout 340 "$PY" "$RUNS_PY" "$PRESET" "$EPOCHS" "$DEVICE" "${DATA_ROOT:-}" "$OUT" || echo "runs failed or timed out (exit $?)"
