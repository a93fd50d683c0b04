#!/usr/bin/env bash
# One prepared device check (issue 11, item 7): on a machine with a GPU,
# builds the release binary (or uses one given in NUDGE_BIN), then writes
#   devices.txt     `nudge devices --peak` (adapters, measured FP32 peak and
#                   host-to-device bandwidth)
#   tune.txt        `nudge devices --tune --queries 1000,5000` (every GEMM
#                   tile variant timed at d 384 and 768 for the benches'
#                   query counts, the winners cached for the benches)
#   tests.txt       the GPU tests with NUDGE_REQUIRE_GPU=1
#   bench-384.json  `nudge bench --json --device gpu`, 1M x 384, 10k/1k/1k
#   bench-768.json  the same at 1M x 768 with 5k dev queries
#   delta.txt       `fit --delta` at 1M x 384 on the GPU against `cat` of the
#                   corpus from the page cache (the issue's "bound by
#                   reading" target), the GPU's start-up (a fit of 2k rows),
#                   and an f16 corpus evaluated at --gpu-precision f32 and f16
# under the folder given as the first argument, else $OUT, else ./gpu-check.
# The benches run the CPU path too (`--device auto`): the issue's targets are
# ratios against the CPU of the same machine. The synthetic corpora are
# written once into a scratch folder (GPU_CHECK_DATA, default a temp dir).
# Meant to finish in under 8 minutes on one GPU, build included (so each
# bench step runs once: `--repeat 1`; at 1M rows a run's first-touch costs
# are small next to its work).
#
# Environment overrides (for a try-out on a small or software adapter):
#   NUDGE_BIN             use this nudge binary instead of building one
#   NUDGE_TEST_BIN        run this prebuilt `it` test binary instead of
#                         `cargo test` (a machine without a toolchain; it
#                         must find the checkout at the path it was built in)
#   GPU_CHECK_DEVICE      the benches' --device (default auto: CPU and GPU)
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
device="${GPU_CHECK_DEVICE:-auto}"
data="${GPU_CHECK_DATA:-$(mktemp -d)}"
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
note "nudge devices --tune --queries 1000,5000"
"$bin" devices --tune --queries 1000,5000 >"$out/tune.txt" 2>&1 || status=1

if [ "${GPU_CHECK_SKIP_TESTS:-0}" != 1 ]; then
  # The tests run before the benches so that no bench shares the CPU with a
  # compiler.
  note "GPU tests ($filter) with NUDGE_REQUIRE_GPU=1"
  if [ -n "${NUDGE_TEST_BIN:-}" ]; then
    NUDGE_REQUIRE_GPU=1 "$NUDGE_TEST_BIN" "$filter" >"$out/tests.txt" 2>&1 || status=1
  else
    NUDGE_REQUIRE_GPU=1 cargo test --release --test it -- "$filter" \
      >"$out/tests.txt" 2>&1 || status=1
  fi
  grep -E "^test result|FAILED|panicked" "$out/tests.txt" | head -20 | tee -a "$out/log.txt"
fi

# One bench: synthesise the corpus once, then `nudge bench --dataset`.
bench() { # name, synth flags
  local dir="$data/$1"
  note "synth $1: $2"
  # shellcheck disable=SC2086 # the flag strings are meant to split
  "$bin" synth $2 --out "$dir" --quiet 2>>"$out/log.txt" || { status=1; return; }
  note "bench $1 (--device $device)"
  "$bin" bench --dataset "$dir" --device "$device" --repeat 1 --json --quiet \
    >"$out/bench-$1.json" 2>>"$out/log.txt" || status=1
}
bench 384 "$b384"

# `fit --delta` against reading the corpus from the page cache: the fit
# streams the corpus once, so its floor is the read.
{
  corpus=$(ls "$data/384"/corpus*.npy 2>/dev/null | head -1)
  if [ -n "$corpus" ]; then
    cat "$corpus" >/dev/null
    for i in 1 2 3; do
      TIMEFORMAT="cat $corpus: %R s"
      time cat "$corpus" >/dev/null
      TIMEFORMAT="fit --delta --device gpu: %R s"
      time "$bin" fit --dataset "$data/384" --method nudge-m --device gpu --no-test \
        --delta "$data/delta" --report "$data/delta.json" --quiet
    done
    # Where the last fit's time went.
    cat "$data/delta.json"
  fi
  # The fixed cost a GPU fit pays before its first chunk: listing the
  # adapters, then a whole fit of a tiny corpus.
  "$bin" synth --records 2000 --train 200 --dev 100 --test 0 --out "$data/tiny" --quiet
  for i in 1 2 3; do
    TIMEFORMAT="devices: %R s"
    time "$bin" devices >/dev/null
    TIMEFORMAT="fit of 2k rows --device gpu: %R s"
    time "$bin" fit --dataset "$data/tiny" --method nudge-m --device gpu --no-test \
      --delta "$data/tiny-delta" --report "$data/tiny.json" --quiet
  done
  if [ -f "$data/tiny.json" ]; then
    cat "$data/tiny.json"
  fi
  # An f16 corpus (the fit's output, written as f16) evaluated with the
  # corpus stored as f32 and as f16 on the device: f16 goes up as stored.
  if [ -n "$corpus" ] && "$bin" fit --dataset "$data/384" --method nudge-n --device gpu \
      --no-test --out "$data/f16.npy" --out-dtype f16 --quiet; then
    for p in f32 f16 f32 f16; do
      TIMEFORMAT="eval of the f16 corpus, --gpu-precision $p: %R s"
      time "$bin" eval --dataset "$data/384" --corpus "$data/f16.npy" --split dev \
        --device gpu --gpu-precision "$p" --json --quiet >"$data/eval-$p.json"
    done
    cat "$data/eval-f32.json" "$data/eval-f16.json"
    rm -f "$data/f16.npy"
  fi
} >"$out/delta.txt" 2>&1 || status=1
rm -rf "$data/384"
bench 768 "$b768"
rm -rf "$data/768"

note "done (status $status); files in $out"
exit $status
