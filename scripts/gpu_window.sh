#!/usr/bin/env bash
# The one command of a short GPU window: checks, speed, then as many real runs as the time allows.
#
# Steps, each under its own `timeout`, a failing or timed-out step never stopping the next:
#   1. the carried wheels (papermill & co., scripts/gpu_wheels.sh) into $WINDOW_SITE, on PYTHONPATH;
#      a `python3` Jupyter kernel for this interpreter (for papermill);
#   2. python -m pytest -m gpu tests/test_gpu.py                      -> $OUT/pytest-gpu.xml
#   3. python -m lt_paper bench --size short (--size full where the bench has no `short`) -> $OUT/bench.md
#   4. python -m lt_paper campaign --profile cifar with the time left  -> $OUT/campaign.json
#   5. the small files of every run finished in this window (config, history, metrics, records; never
#      checkpoint.pt / model.pt) -> $OUT/runs.tar.gz.0, .1, ... (15 MiB pieces: cat them | tar -xz)
# Everything printed also goes to $OUT/window.log. What comes back from the GPU machine is at most
# 8 files of 16 MiB (64 MiB in all) directly under $OUT, named with letters, digits, '.', '_', '-':
# here 4 files plus at most 4 pieces of the run archive. scripts/gpu_unpack.sh merges them afterwards.
#
# The window (the device tool; carry the wheels and the CIFAR-10 tarball, see docs/gpu.md):
#   PYTHONUNBUFFERED=1 bash scripts/gpu_window.sh        (OUT is set by the tool; timeout_s 600)
# CPU dry run (tests/test_gpu_window.py does this with a few seconds per step):
#   OUT=/tmp/w WINDOW_DEVICE=cpu WINDOW_PROFILE=smoke WINDOW_BENCH_SIZE=tiny WINDOW_BUDGET=120 \
#     WINDOW_ROWS=core WINDOW_CAMPAIGN_SET=epochs=1 WINDOW_RUNS_DIR=/tmp/w-runs WINDOW_WHEELS=none bash scripts/gpu_window.sh
#
# Knobs (environment): OUT (required), PYTHON (python3), WINDOW_BUDGET (540 s for everything; the
# device command limit is 600 s), WINDOW_DEVICE (cuda), WINDOW_PROFILE (cifar), WINDOW_RUNS_DIR
# (results/cifar10_lt_if100/runs: the published runs, so that finished runs are skipped),
# WINDOW_CAMPAIGN_SET (notebook parameters for the campaign, space-separated key=value), WINDOW_ROWS
# (the campaign's --rows: all, core or claims; default all), WINDOW_TESTS_S
# (210), WINDOW_BENCH_SIZE (short), WINDOW_BENCH_S (110; WINDOW_BENCH_FULL_S, 240, when the bench has no
# such size and runs --size full), WINDOW_PACK_S (seconds kept for packing, 20),
# WINDOW_WHEELS (.whl; "none" skips the install), WINDOW_SITE (/tmp/site).
set -uo pipefail  # no -e: every step runs whatever the previous one did
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
PY=${PYTHON:-python3}
BUDGET=${WINDOW_BUDGET:-540}
DEVICE=${WINDOW_DEVICE:-cuda}
PROFILE=${WINDOW_PROFILE:-cifar}
RUNS_DIR=${WINDOW_RUNS_DIR:-results/cifar10_lt_if100/runs}
CAMPAIGN_SET=${WINDOW_CAMPAIGN_SET:-}
ROWS=${WINDOW_ROWS:-all}
TESTS_S=${WINDOW_TESTS_S:-210}
BENCH_SIZE=${WINDOW_BENCH_SIZE:-short}
BENCH_S=${WINDOW_BENCH_S:-110}
PACK_S=${WINDOW_PACK_S:-20}
WHEELS=${WINDOW_WHEELS:-.whl}
SITE=${WINDOW_SITE:-/tmp/site}
PIECE_BYTES=$((15 * 1024 * 1024))
MAX_PIECES=4
START=$(date +%s)
mkdir -p "$OUT"

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
at_most() { local want=$1 have; have=$(left); echo $(( want < have ? want : have )); }

STATUS=()
# step NAME SECONDS COMMAND...: COMMAND under `timeout`; its exit status and time go into the summary
step() {
  local name=$1 limit=$2 began rc note=""
  shift 2
  if [ "$limit" -le 0 ]; then
    echo "=== [$(elapsed) s] $name: skipped, no time left"
    STATUS+=("$name: skipped (no time left)")
    return 0
  fi
  echo "=== [$(elapsed) s] $name (at most $limit s): $*"
  began=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  [ $rc = 124 ] || [ $rc = 137 ] && note=" (timed out)"
  STATUS+=("$name: exit $rc after $(( $(date +%s) - began )) s$note")
  echo "=== [$(elapsed) s] $name: exit $rc$note"
  return 0
}

finished_runs() {  # names of the finished runs under RUNS_DIR (metrics.json is written last)
  [ -d "$RUNS_DIR" ] || return 0
  find "$RUNS_DIR" -mindepth 2 -maxdepth 2 -name metrics.json -printf '%h\n' | xargs -r -n1 basename | sort
}

pack_runs() {  # pack_runs NAMES_FILE [records]: the runs' small files as 15 MiB pieces of one tar.gz
  local names=$1 with_records=${2:-records} list
  list=$(mktemp)
  while read -r run; do
    for f in config.json history.json metrics.json records.npz; do
      [ "$f" = records.npz ] && [ "$with_records" != records ] && continue
      [ -f "$RUNS_DIR/$run/$f" ] && echo "$run/$f"
    done
  done < "$names" > "$list"
  rm -f "$OUT"/runs.tar.gz.*
  tar -czf - -C "$RUNS_DIR" -T "$list" | split -b "$PIECE_BYTES" -d -a 1 - "$OUT/runs.tar.gz."
  rm -f "$list"
}

main() {
  echo "gpu_window: budget $BUDGET s, device $DEVICE, profile $PROFILE, runs $RUNS_DIR, $(date -u +%FT%TZ)"
  echo "gpu_window: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ "$DEVICE" = cuda ]; then
    timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  fi

  # 1. wheels and kernel
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if [ "$WHEELS" != none ] && compgen -G "$WHEELS/*.whl" > /dev/null; then
    step install "$(at_most 90)" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:$SITE"  # this checkout's lt_paper first, the carried packages after
  else
    echo "gpu_window: no wheels to install ($WHEELS)"
  fi
  # papermill starts the kernel named python3: make it this interpreter, whatever else is registered
  local jupyter="${TMPDIR:-/tmp}/lt_paper-jupyter-$$"
  step kernel "$(at_most 30)" "$PY" -m ipykernel install --prefix "$jupyter" --name python3
  export JUPYTER_PATH="$jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
  timeout 60 "$PY" -c "import sys, torch; cuda = torch.cuda.is_available(); print('gpu_window: python',
    sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name() if cuda else 'no CUDA')"
  if [ "$PROFILE" = cifar ] && [ ! -f data/downloads/cifar10-jpeg.tar.gz ]; then
    echo "gpu_window: WARNING: data/downloads/cifar10-jpeg.tar.gz is missing: carry data/downloads"
  fi

  # 2. CUDA tests
  # one process (-o addopts: without the suite's parallel workers, whether or not pytest-xdist is there)
  step tests "$(at_most "$TESTS_S")" "$PY" -m pytest -o addopts=-ra -p no:xdist -m gpu tests/test_gpu.py -p no:cacheprovider -v -ra \
    --junitxml="$OUT/pytest-gpu.xml"

  # 3. speed benchmark (the short size where this checkout's bench has it, else the full one)
  local size=$BENCH_SIZE bench_s=$BENCH_S
  if ! "$PY" -c "import sys; from lt_paper.bench.core import SIZES; sys.exit('$size' not in SIZES)" 2>/dev/null; then
    # a checkout without the short size has no ensembles either: the campaign would train little anyway
    echo "gpu_window: bench has no --size $size here; running --size full (about 3 minutes)"
    size=full bench_s=${WINDOW_BENCH_FULL_S:-240}
  fi
  step bench "$(at_most "$bench_s")" "$PY" -m lt_paper bench --size "$size" --device "$DEVICE" --out "$OUT/bench.md"

  # 4. the campaign, with what is left once packing is provided for
  local before after campaign_s sets=()
  before=$(mktemp)
  after=$(mktemp)
  finished_runs > "$before"
  for kv in $CAMPAIGN_SET; do sets+=(--set "$kv"); done
  campaign_s=$(( $(left) - PACK_S ))
  step campaign "$(( campaign_s > 0 ? campaign_s + 15 : 0 ))" "$PY" -m lt_paper campaign --profile "$PROFILE" \
    --rows "$ROWS" --budget "$campaign_s" --runs-dir "$RUNS_DIR" --json "$OUT/campaign.json" "${sets[@]}"

  # 5. the runs finished in this window, as pieces of one archive
  finished_runs > "$after"
  comm -13 "$before" "$after" > "$after.new"
  if [ -s "$after.new" ]; then
    pack_runs "$after.new" records
    if [ "$(find "$OUT" -maxdepth 1 -name 'runs.tar.gz.*' | wc -l)" -gt "$MAX_PIECES" ]; then
      echo "gpu_window: the runs' records exceed $MAX_PIECES pieces; packing without records.npz"
      pack_runs "$after.new" no-records
    fi
    echo "gpu_window: $(wc -l < "$after.new") new finished run(s) packed: $(ls "$OUT" | grep -c '^runs.tar.gz') piece(s)"
  else
    echo "gpu_window: no run finished in this window"
  fi
  rm -f "$before" "$after" "$after.new"

  echo "=== [$(elapsed) s] summary"
  printf '  %s\n' "${STATUS[@]}"
  ls -l "$OUT"
}

main 2>&1 | tee -a "$OUT/window.log"
