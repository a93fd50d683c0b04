#!/usr/bin/env bash
# One prepared device check (issue 11, item 7): on a machine with a GPU,
# builds the release binary (or uses one given in NUDGE_BIN), then writes
#   devices.txt     `nudge devices --peak` (adapters, measured FP32 peak and
#                   host-to-device bandwidth)
#   tune.txt        `nudge devices --tune` (every GEMM tile variant timed at
#                   d 384 and 768, the winners cached for the benches)
#   tests.txt       the GPU tests with NUDGE_REQUIRE_GPU=1
#   bench-384.json  `nudge bench --json --device gpu`, 1M x 384, 10k/1k/1k
#   bench-768.json  the same at 1M x 768 with 5k dev queries
# under the folder given as the first argument, else $OUT, else ./gpu-check.
# Meant to finish in under 8 minutes on one GPU, build included (so each
# bench step runs once: `--repeat 1`; at 1M rows a run's first-touch costs
# are small next to its work).
#
# Environment overrides (for a try-out on a small or software adapter):
#   NUDGE_BIN             use this nudge binary instead of building one
#   GPU_CHECK_SKIP_TESTS  1: do not build or run the tests
#   GPU_CHECK_384         bench-384 flags (default below)
#   GPU_CHECK_768         bench-768 flags (default below)
#   GPU_CHECK_TEST_FILTER which tests of the `it` binary (default gpu::)
#   XDG_RUNTIME_DIR       set to /tmp when unset (wgpu's Vulkan loader wants one)
set -uo pipefail

out="${1:-${OUT:-./gpu-check}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
b384="${GPU_CHECK_384:---records 1000000 --dim 384 --train 10000 --dev 1000 --test 1000}"
b768="${GPU_CHECK_768:---records 1000000 --dim 768 --train 10000 --dev 5000 --test 0}"
filter="${GPU_CHECK_TEST_FILTER:-gpu::}"
status=0
start=$(date +%s)
note() { echo "[gpu-check $(($(date +%s) - start))s] $*" | tee -a "$out/log.txt"; }

bin="${NUDGE_BIN:-}"
if [ -z "$bin" ]; then
  note "building the release binary"
  if ! cargo build --release --quiet 2>>"$out/log.txt"; then
    note "build failed (see log.txt)"
    exit 1
  fi
  bin="${CARGO_TARGET_DIR:-target}/release/nudge"
fi
note "binary: $bin"

note "nudge devices --peak"
{ date -u; "$bin" devices --peak; } >"$out/devices.txt" 2>&1 || status=1
# The tile autotune, run once here so that no bench pays for it.
note "nudge devices --tune"
"$bin" devices --tune >"$out/tune.txt" 2>&1 || status=1

if [ "${GPU_CHECK_SKIP_TESTS:-0}" != 1 ]; then
  # The tests build in the background of nothing else: the benches below
  # must not share the CPU with a compiler.
  note "GPU tests ($filter) with NUDGE_REQUIRE_GPU=1"
  NUDGE_REQUIRE_GPU=1 cargo test --release --test it -- "$filter" \
    >"$out/tests.txt" 2>&1 || status=1
  grep -E "^test result" "$out/tests.txt" | tee -a "$out/log.txt"
fi

# shellcheck disable=SC2086 # the flag strings are meant to split
note "bench 384: $b384"
"$bin" bench $b384 --device gpu --repeat 1 --json --quiet >"$out/bench-384.json" 2>>"$out/log.txt" || status=1
# shellcheck disable=SC2086
note "bench 768: $b768"
"$bin" bench $b768 --device gpu --repeat 1 --json --quiet >"$out/bench-768.json" 2>>"$out/log.txt" || status=1

note "done (status $status); files in $out"
exit $status
