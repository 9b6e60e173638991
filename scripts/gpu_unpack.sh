#!/usr/bin/env bash
# After a GPU window (scripts/gpu_window.sh): merge the runs that came back into the published runs
# and keep the window's own record (log, test report, benchmark, campaign plan and outcome).
#
# Usage, from the repository root:
#   bash scripts/gpu_unpack.sh FILES_DIR [RUNS_DIR] [RECORD_DIR]
#     FILES_DIR   the folder holding the files that came back from the window's $OUT
#     RUNS_DIR    where the runs go (default results/cifar10_lt_if100/runs)
#     RECORD_DIR  where window.log, pytest-gpu.xml, bench.md, campaign.json are copied
#                 (default results/gpu_window/<UTC time of this unpack>, a new folder for every unpack:
#                 -2, -3 ... follow the time when two unpacks start in the same second). A RECORD_DIR
#                 named here that already holds another window's record (a file that differs from what
#                 came back) is refused: one window's record never overwrites or mixes with another's.
# A run already finished in RUNS_DIR is kept as it is (never overwritten); an unfinished one there (no
# metrics.json) is replaced by the finished one that came back. Only finished runs are merged.
#
# What came back is not trusted: the archive must hold nothing but plain files and folders named RUN/ and
# RUN/FILE (what the window packs). A link of any kind (symbolic or hard), a device, a name that is
# absolute, holds '..' or goes deeper refuses the whole archive before anything is extracted. The runs
# merge all or nothing: they are extracted into a staging folder inside RUNS_DIR (the same filesystem, so
# each merge is one rename, never a copy), every run is checked, and only then are they renamed into
# place; a rename that fails part-way moves the ones already merged back.
#
# Then, to rebuild every table and figure from the published runs without training:
#   python -m lt_paper reproduce --profile cifar --runs-dir results/cifar10_lt_if100/runs --no-train
#   python -m lt_paper publish outputs/cifar cifar10_lt_if100 --force
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:?usage: bash scripts/gpu_unpack.sh FILES_DIR [RUNS_DIR] [RECORD_DIR]}
RUNS_DIR=${2:-results/cifar10_lt_if100/runs}
[ -d "$FILES" ] || { echo "gpu_unpack: $FILES is not a folder" >&2; exit 2; }
refuse() { echo "gpu_unpack: $*; nothing merged" >&2; exit 2; }
shopt -s nullglob

RECORD_FILES=(window.log pytest-gpu.xml bench.md campaign.json)
if [ $# -ge 3 ]; then
  RECORD_DIR=$3
  for f in "${RECORD_FILES[@]}"; do  # the same window unpacked again is fine; another window is not
    if [ -e "$RECORD_DIR/$f" ] && ! cmp -s "$FILES/$f" "$RECORD_DIR/$f"; then
      refuse "$RECORD_DIR already holds another window's record ($f differs); name a new RECORD_DIR"
    fi
  done
  mkdir -p "$RECORD_DIR"
else
  # mkdir without -p fails when the folder exists: the first free name is this unpack's alone
  mkdir -p results/gpu_window
  RECORD_DIR=results/gpu_window/$(date -u +%Y%m%dT%H%M%SZ)
  base=$RECORD_DIR n=1
  until mkdir "$RECORD_DIR" 2>/dev/null; do
    n=$((n + 1))
    [ "$n" -le 100 ] || refuse "could not create a record folder $base-N"
    RECORD_DIR=$base-$n
  done
fi
for f in "${RECORD_FILES[@]}"; do
  if [ -f "$FILES/$f" ] && [ ! -L "$FILES/$f" ]; then cp "$FILES/$f" "$RECORD_DIR/$f"; fi
done
echo "gpu_unpack: window record in $RECORD_DIR: $(ls "$RECORD_DIR" | tr '\n' ' ')"

# one path a line (a FILES_DIR with spaces stays one path; the pieces' own names are plain)
mapfile -t pieces < <(find "$FILES" -maxdepth 1 -type f -name 'runs.tar.gz.*' | sort -V)
if [ ${#pieces[@]} -eq 0 ]; then
  echo "gpu_unpack: no runs came back (no runs.tar.gz.* in $FILES)"
  exit 0
fi
# the pieces are one gzip stream cut in order
archive() { cat "${pieces[@]}"; }

# 1. what the archive holds, before anything is written: each member's type letter ('-' file, 'd' folder,
# 'l' symbolic link, 'h' hard link, ...) and name as stored (not stripped), one line each (escaped)
one_line() { head -3 | paste -sd ',' - | sed 's/,/, /g'; }
types=$(archive | tar -tvzf - --absolute-names --quoting-style=escape | cut -c1) || refuse "the runs archive is unreadable"
names=$(archive | tar -tzf - --absolute-names --quoting-style=escape)
others=$(paste -d ' ' <(printf '%s\n' "$types") <(printf '%s\n' "$names") | grep -v '^[-d] ' \
         | sed -e 's/^l /symbolic link /' -e 's/^h /hard link /' -e 's/^\(.\) /member of type \1 /' | one_line || true)
[ -z "$others" ] || refuse "the runs archive holds more than plain files and folders: $others"
plain='[A-Za-z0-9_][A-Za-z0-9._-]*'
odd=$(printf '%s\n' "$names" | grep -Ev "^$plain(/($plain)?)?\$" | one_line || true)
[ -z "$odd" ] || refuse "the runs archive holds names other than RUN/ and RUN/FILE (plain names, no '..'): $odd"

# 2. extracted beside the runs (one filesystem: merging is renaming), then checked again on disk
mkdir -p "$RUNS_DIR"
staging=$(mktemp -d "$RUNS_DIR/.gpu_unpack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
archive | tar -xzf - -C "$staging" --no-same-owner
others=$(find "$staging" -mindepth 1 \( \( ! -type f ! -type d \) -o \( -type f -links +1 \) \) -print | one_line)
[ -z "$others" ] || refuse "the runs archive unpacked to links or other non-plain files: $others"

# 3. which runs merge; anything in the way refuses them all
merge=() kept=0 unfinished=0
for run in "$staging"/*; do
  name=$(basename "$run")
  [ -d "$run" ] || refuse "the runs archive holds a file $name outside any run folder"
  dest="$RUNS_DIR/$name"
  if [ ! -f "$run/metrics.json" ]; then
    unfinished=$((unfinished + 1))
    echo "gpu_unpack: $name came back without metrics.json: not merged"
  elif [ -L "$dest" ] || { [ -e "$dest" ] && [ ! -d "$dest" ]; }; then
    refuse "$dest is not a plain folder (a link or a file): move it away to merge $name"
  elif [ -f "$dest/metrics.json" ]; then
    kept=$((kept + 1))
    echo "gpu_unpack: $name is already finished in $RUNS_DIR: kept"
  else
    merge+=("$name")
  fi
done

# 4. all or nothing: an unfinished run in the way moves into the staging folder (removed at exit), and
# a failed rename puts back what was already moved
mkdir "$staging/.replaced"  # a run name never starts with '.'
merged=()
put_back() {
  local i name
  for ((i = ${#merged[@]} - 1; i >= 0; i--)); do
    name=${merged[i]}
    mv -T "$RUNS_DIR/$name" "$staging/$name"
    if [ -d "$staging/.replaced/$name" ]; then mv -T "$staging/.replaced/$name" "$RUNS_DIR/$name"; fi
  done
}
for name in ${merge[@]+"${merge[@]}"}; do
  if [ -e "$RUNS_DIR/$name" ] && ! mv -T "$RUNS_DIR/$name" "$staging/.replaced/$name"; then
    put_back
    refuse "could not move the unfinished run $RUNS_DIR/$name aside"
  fi
  if ! mv -T "$staging/$name" "$RUNS_DIR/$name"; then
    if [ -d "$staging/.replaced/$name" ]; then mv -T "$staging/.replaced/$name" "$RUNS_DIR/$name"; fi
    put_back
    refuse "could not move $name into $RUNS_DIR"
  fi
  merged+=("$name")
done
echo "gpu_unpack: ${#merged[@]} run(s) merged into $RUNS_DIR, $kept already there, $unfinished not finished"
echo "next: python -m lt_paper reproduce --profile cifar --runs-dir $RUNS_DIR --no-train"
