#!/usr/bin/env bash
# The figures of the map/reduce work on this machine, in one run:
#   1. one `nudge fit --delta` against 4 maps run one after another plus the
#      reduce (same delta bytes), the reduce alone, the size of each partial;
#   2. an incremental refit: 1% of the records new (rows 990000..1000000 of
#      a 1M corpus, the old rows 750000..990000 remapped as their own part),
#      its map plus the reduce against the full pass;
#   3. examples/ray/fit.py with 4 parts on a local Ray against one fit, at
#      200k x 384 (Ray's start-up reported apart).
# Usage: scripts/scale-check.sh [WORKDIR]   (needs ~2.5 GB there; python with
# nudge_rs and ray installed as PYTHON, default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
nudge="${NUDGE:-$PWD/target/release/nudge}"
py="${PYTHON:-python3}"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
TIMEFORMAT=%R
secs() { { time "$@" >/dev/null 2>&1; } 2>&1; }
# The median of three runs of a command, in seconds.
median3() { for _ in 1 2 3; do secs "$@"; done | sort -n | sed -n 2p; }

big="$work/synth-1m"
[ -f "$big/corpus.npy" ] || "$nudge" synth --out "$big" --records 1000000 --dim 384 --train 10000 --dev 1000 --test 1000 --quiet
cat "$big/corpus.npy" >/dev/null   # the page cache holds it for every run below
rm -rf "$work/fit" "$work/p" "$work/red" "$work/inc"
fit=$(median3 "$nudge" fit --dataset "$big" --method nudge-m --delta "$work/fit" --device cpu -q)
maps=0
for i in 0 1 2 3; do
  s=$(median3 "$nudge" map --dataset "$big" --part "$i/4" --out "$work/p/part-$i" --device cpu -q)
  maps=$(echo "$maps + $s" | bc)
done
red=$(median3 "$nudge" reduce --dataset "$big" --partials "$work/p" --method nudge-m --delta "$work/red" --device cpu -q)
cmp "$work/fit/vectors.npy" "$work/red/vectors.npy" && cmp "$work/fit/ids.txt" "$work/red/ids.txt"
sizes=$(du -sk "$work"/p/part-* | awk '{printf "%s%d", (NR>1?",":""), $1}')
"$nudge" map --dataset "$big" --part 0/4 --lean --out "$work/lean-0" --device cpu -q
lean_kib=$(du -sk "$work/lean-0" | awk '{print $1}')
echo "{\"check\": \"1M x 384, 4 parts\", \"fit_delta_s\": $fit, \"maps_s\": $maps, \"reduce_s\": $red, \"ratio\": $(echo "scale=3; ($maps + $red) / $fit" | bc), \"partial_kib\": [$sizes], \"lean_partial_kib\": $lean_kib, \"same_delta\": true}"

# Incremental: rows 990000.. are new; 0..750000 keep their partials.
mkdir -p "$work/inc"
cp -r "$work/p/part-0" "$work/p/part-1" "$work/p/part-2" "$work/inc/"
"$nudge" map --dataset "$big" --rows 750000..990000 --out "$work/inc/part-3" --device cpu -q
new=$(median3 "$nudge" map --dataset "$big" --rows 990000..1000000 --out "$work/inc/part-4" --device cpu -q)
red2=$(median3 "$nudge" reduce --dataset "$big" --partials "$work/inc" --method nudge-m --delta "$work/inc-delta" --device cpu -q)
cmp "$work/fit/vectors.npy" "$work/inc-delta/vectors.npy"
echo "{\"check\": \"incremental, 1% new rows\", \"map_new_s\": $new, \"reduce_s\": $red2, \"full_maps_s\": $maps, \"fraction_of_full_pass\": $(echo "scale=4; $new / $maps" | bc), \"same_delta\": true}"

# Ray at 200k x 384.
mid="$work/synth-200k"
[ -f "$mid/corpus.npy" ] || "$nudge" synth --out "$mid" --records 200000 --dim 384 --train 5000 --dev 1000 --test 1000 --quiet
rm -rf "$work/mid-fit" "$work/mid-ray"
fit=$(median3 "$nudge" fit --dataset "$mid" --method nudge-m --delta "$work/mid-fit" --device cpu -q)
for run in 1 2 3; do
  ray_json=$("$py" examples/ray/fit.py --dataset "$mid" --parts 4 --method nudge-m --delta "$work/mid-ray" 2>/dev/null | tail -1)
  cmp "$work/mid-fit/vectors.npy" "$work/mid-ray/vectors.npy"
  echo "{\"check\": \"ray, 200k x 384, 4 parts, run $run\", \"fit_delta_s\": $fit, \"ray\": $ray_json, \"same_delta\": true}"
done
