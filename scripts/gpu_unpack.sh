#!/usr/bin/env bash
# After a GPU window (scripts/gpu_window.sh): merge the runs that came back into the published runs
# and keep the window's own record (log, test report, benchmark, campaign plan and outcome).
#
# Usage, from the repository root:
#   bash scripts/gpu_unpack.sh FILES_DIR [RUNS_DIR] [RECORD_DIR]
#     FILES_DIR   the folder holding the files that came back from the window's $OUT
#     RUNS_DIR    where the runs go (default results/cifar10_lt_if100/runs)
#     RECORD_DIR  where window.log, pytest-gpu.xml, bench.md, campaign.json are copied
#                 (default results/gpu_window/<UTC time of this unpack>)
# A run already finished in RUNS_DIR is kept as it is (never overwritten); an unfinished one there (no
# metrics.json) is replaced by the finished one that came back. Only finished runs are merged.
#
# Then, to rebuild every table and figure from the published runs without training:
#   python -m lt_paper reproduce --profile cifar --runs-dir results/cifar10_lt_if100/runs --no-train
#   python -m lt_paper publish outputs/cifar cifar10_lt_if100 --force
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:?usage: bash scripts/gpu_unpack.sh FILES_DIR [RUNS_DIR] [RECORD_DIR]}
RUNS_DIR=${2:-results/cifar10_lt_if100/runs}
RECORD_DIR=${3:-results/gpu_window/$(date -u +%Y%m%dT%H%MZ)}
[ -d "$FILES" ] || { echo "gpu_unpack: $FILES is not a folder" >&2; exit 2; }

mkdir -p "$RECORD_DIR"
for f in window.log pytest-gpu.xml bench.md campaign.json; do
  [ -f "$FILES/$f" ] && cp "$FILES/$f" "$RECORD_DIR/$f"
done
echo "gpu_unpack: window record in $RECORD_DIR: $(ls "$RECORD_DIR" | tr '\n' ' ')"

pieces=$(find "$FILES" -maxdepth 1 -name 'runs.tar.gz.*' | sort -V)
if [ -z "$pieces" ]; then
  echo "gpu_unpack: no runs came back (no runs.tar.gz.* in $FILES)"
  exit 0
fi
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
# the pieces are one gzip stream cut in order; GNU tar refuses absolute and '..' member names
# shellcheck disable=SC2086
cat $pieces | tar -xzf - -C "$staging"
mkdir -p "$RUNS_DIR"
merged=0 kept=0 unfinished=0
for run in "$staging"/*/; do
  name=$(basename "$run")
  if [ ! -f "$run/metrics.json" ]; then
    unfinished=$((unfinished + 1))
    echo "gpu_unpack: $name came back without metrics.json: not merged"
  elif [ -f "$RUNS_DIR/$name/metrics.json" ]; then
    kept=$((kept + 1))
    echo "gpu_unpack: $name is already finished in $RUNS_DIR: kept"
  else
    rm -rf "${RUNS_DIR:?}/$name"
    mv "$run" "$RUNS_DIR/$name"
    merged=$((merged + 1))
  fi
done
echo "gpu_unpack: $merged run(s) merged into $RUNS_DIR, $kept already there, $unfinished not finished"
echo "next: python -m lt_paper reproduce --profile cifar --runs-dir $RUNS_DIR --no-train"
