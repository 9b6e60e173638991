#!/usr/bin/env bash
# The paper's recipe on a CPU: seed 0 of the `cifar` profile's LDAM-DRW and ALA rows (ResNet-32, 200
# epochs, tested after every epoch: the presets cifar10_lt/resnet32/ldam_drw and .../ala unchanged) on
# the JPEG CIFAR-10 tarball, trained in chunks of at most SECONDS, LDAM-DRW first.
#
#   bash scripts/recipe_on_cpu.sh SECONDS [THREADS]        # e.g. 5400 on an idle 2-core machine
#
# The path: channels_last + fused SGD, the fastest that `bench --section recipe-cpu` measured
# (results/bench-recipe-cpu-2core.md: 432 training images/s on 2 idle cores of an Intel Xeon, 1.93 h a
# run; torch.compile was slower there at 2 threads, 404 even with a warm Inductor cache, and a tie at
# one). A run's path is part of its hash, so every chunk keeps it; the notebooks of the `cifar` profile
# read these runs all the same (the same recipe on another device: docs/design.md, "The same run on
# another device"). THREADS: leave it out and the engine chooses its threads before every epoch (fewer
# while other work shares the machine); give a number to fix them.
#
# Between chunks an unfinished run's folder (its config and last checkpoint, about 4 MB) is kept in
# results/cifar10_lt_if100/unfinished/, so that the next chunk resumes it on this machine or on a fresh
# clone elsewhere: commit that folder after each chunk. A finished run stays in runs/ (publish it with
# `reproduce --profile cifar --no-train`, then `publish`) and leaves unfinished/. Stopping mid-epoch
# (the time limit) loses at most that epoch: checkpoints are written atomically after every epoch.
set -uo pipefail
cd "$(dirname "$0")/.."
LIMIT=${1:?usage: bash scripts/recipe_on_cpu.sh SECONDS [THREADS]}
THREADS=${2:-}
PY=${PYTHON:-.venv/bin/python}
DATA=data/downloads/cifar10-jpeg.tar.gz
KEEP=results/cifar10_lt_if100/unfinished
END=$(( $(date +%s) + LIMIT ))
[ -f "$DATA" ] || { echo "error: $DATA is missing (README, 'Real data on a laptop')" >&2; exit 2; }
mkdir -p runs
# a kept run resumes here unless this machine already holds it (its checkpoint is then as new or newer)
for kept in "$KEEP"/*/; do
  [ -d "$kept" ] && [ ! -e "runs/$(basename "$kept")" ] && cp -r "$kept" runs/
done

keep_unfinished() {  # copy each unfinished ResNet-32 run's config and checkpoint into $KEEP, atomically
  for run in runs/cifar10_lt-resnet32-*/; do
    name=$(basename "$run")
    if [ -f "$run/metrics.json" ]; then
      rm -rf "${KEEP:?}/$name"
    elif [ -f "$run/checkpoint.pt" ]; then
      mkdir -p "$KEEP" && rm -rf "$KEEP/.$name.tmp" && mkdir "$KEEP/.$name.tmp"
      cp "$run/config.json" "$run/checkpoint.pt" "$KEEP/.$name.tmp/"
      rm -rf "${KEEP:?}/$name" && mv "$KEEP/.$name.tmp" "$KEEP/$name"
    fi
  done
  rmdir "$KEEP" 2>/dev/null || true
}
trap keep_unfinished EXIT

for method in ldam_drw ala; do
  left=$(( END - $(date +%s) ))
  if [ "$left" -lt 120 ]; then echo "recipe_on_cpu: time is up before $method"; break; fi
  echo "recipe_on_cpu: $method, up to $left s, threads: ${THREADS:-chosen per epoch}"
  ${THREADS:+env OMP_NUM_THREADS=$THREADS} timeout --signal=TERM "$left" "$PY" -m lt_paper train \
    --preset "cifar10_lt/resnet32/$method" --runs-dir runs --set device=cpu --set channels_last=true \
    --set fused_optimizer=true --set data_root="$DATA"
  rc=$?
  # 124: the time limit; 143: stopped from outside (SIGTERM): either way the last checkpoint stands
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 143 ]; then echo "recipe_on_cpu: $method stopped (exit $rc); run again to resume"; break; fi
  if [ "$rc" -ne 0 ]; then echo "recipe_on_cpu: $method failed (exit $rc)" >&2; exit "$rc"; fi
done
