#!/usr/bin/env bash
# End to end on a shared machine: how long the smoke Table 4 notebook (training its 8 runs) and a 2-epoch
# cifar-cpu ALA run take, alone and beside one busy process per core, with lt_paper's default (nothing
# set: the engine chooses its threads before each epoch) and with torch's own default
# (OMP_NUM_THREADS=<cores>). Every measurement trains into a fresh runs folder, after one untimed
# warm-up of each job (file caches, the tarball's decoded cache). Two times per measurement: the whole
# command (notebook kernel or Python start-up included) and the runs' own training (the sum of their
# metrics.json wall_time_s), with the threads the runs' history.json recorded. Prints a Markdown table.
# Run it on an otherwise idle machine; the cifar-cpu rows need the tarball in data/downloads/.
#
#   bash scripts/shared_machine.sh > results/shared-machine-2core.md    [minutes, data]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CORES=$(nproc)
TARBALL=data/downloads/cifar10-jpeg.tar.gz
SCRATCH=$(mktemp -d)
BUSY=()
trap 'kill "${BUSY[@]}" 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT
unset OMP_NUM_THREADS MKL_NUM_THREADS OMP_WAIT_POLICY GOMP_SPINCOUNT

busy_on() { for _ in $(seq "$CORES"); do "$PY" -c 'while True: pass' & BUSY+=($!); done; sleep 1; }
busy_off() { kill "${BUSY[@]}" 2>/dev/null || true; wait "${BUSY[@]}" 2>/dev/null || true; BUSY=(); }

# seconds a command takes (its output to a log in the scratch folder)
seconds() {
  local log=$SCRATCH/$1.log; shift
  local began=$(date +%s.%N)
  "$@" > "$log" 2>&1 || { echo "failed: $* (log below)" >&2; tail -20 "$log" >&2; exit 1; }
  awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { print b - a }'
}

# "<training seconds> <threads seen>" of the runs in a runs folder
training() {
  "$PY" - "$1" <<'EOF'
import json, sys
from pathlib import Path
runs = [p for p in Path(sys.argv[1]).iterdir() if (p / "metrics.json").is_file()]
wall = sum(json.loads((p / "metrics.json").read_text())["wall_time_s"] for p in runs)
threads = sorted({h.get("threads") for p in runs for h in json.loads((p / "history.json").read_text())})
print(f"{wall:.1f} {'/'.join(map(str, threads))}")
EOF
}

smoke() { # $1: a name for the runs folder; more arguments: reproduce's
  local name=$1; shift
  "$PY" -m lt_paper reproduce --profile smoke --only table4 --runs-dir "$SCRATCH/runs-smoke-$name" --out "$SCRATCH/out-$name" "$@"
}
cifar() {
  local name=$1; shift
  "$PY" -m lt_paper train --preset cifar10_lt/resnet8/ala --set epochs=2 --set progress=false \
    --set "data_root=$TARBALL" --runs-dir "$SCRATCH/runs-cifar-$name" "$@"
}

echo "# A shared machine, end to end: $(uname -m), $CORES cores, commit $(git rev-parse --short HEAD)"
echo
echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg). Busy processes: $CORES Python loops."
echo "Whole: the command's seconds; training: its runs' own seconds (metrics.json); threads: as history.json recorded."
echo
echo "| job | setting | alone: whole (s) | alone: training (s) | threads | beside $CORES busy: whole (s) | beside $CORES busy: training (s) | threads | ratio, whole | ratio, training |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for job in smoke cifar; do
  [ "$job" = cifar ] && [ ! -f "$TARBALL" ] && { echo "| cifar-cpu | (no $TARBALL) | - | - | - | - | - | - | - | - |"; continue; }
  if [ "$job" = smoke ]; then seconds warmup-smoke smoke warmup --set epochs=2 > /dev/null
  else seconds warmup-cifar cifar warmup --set epochs=1 > /dev/null; fi
  for setting in default torch; do
    if [ "$setting" = torch ]; then export OMP_NUM_THREADS=$CORES; label="OMP_NUM_THREADS=$CORES (torch's default)"
    else unset OMP_NUM_THREADS; label="nothing set (lt_paper's default)"; fi
    alone=$(seconds "$job-$setting-alone" "$job" "$setting-alone")
    read -r alone_train alone_threads <<< "$(training "$SCRATCH/runs-$job-$setting-alone")"
    busy_on
    shared=$(seconds "$job-$setting-shared" "$job" "$setting-shared")
    busy_off
    read -r shared_train shared_threads <<< "$(training "$SCRATCH/runs-$job-$setting-shared")"
    name=$([ "$job" = smoke ] && echo "smoke Table 4 (8 runs)" || echo "cifar-cpu ALA, 2 epochs")
    printf '| %s | %s | %.1f | %.1f | %s | %.1f | %.1f | %s | %.2f | %.2f |\n' "$name" "$label" "$alone" "$alone_train" \
      "$alone_threads" "$shared" "$shared_train" "$shared_threads" \
      "$(awk -v a="$alone" -v s="$shared" 'BEGIN { print s / a }')" \
      "$(awk -v a="$alone_train" -v s="$shared_train" 'BEGIN { print s / a }')"
  done
done
unset OMP_NUM_THREADS
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). torch $("$PY" -c 'import torch; print(torch.__version__)')."
