#!/bin/bash
# Queues the maps (an array of PARTS tasks) and the reduce that waits for
# them all:  DATASET=/shared/ds PARTIALS=/shared/partials OUT=/shared/out PARTS=8 ./submit.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PARTS="${PARTS:-4}"
export DATASET PARTIALS OUT PARTS METHOD="${METHOD:-nudge-m}"
maps=$(sbatch --parsable --export=ALL --array=0-$((PARTS - 1)) "$here/map.sbatch")
sbatch --parsable --export=ALL --dependency=afterok:"$maps" "$here/reduce.sbatch"
